//! `/proc/PID/smaps_rollup`: one `[rollup]` header (from the first VMA's start to the last one's end)
//! and the process's [`Counters`] summed by the kernel (`show_smaps_rollup`).

use core::ops::Range;

use super::counters::{Counters, kb_line};

/// What `smaps_rollup` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollup {
    /// The header's range: the first VMA's start to the last one's end (`0..0` without VMAs or
    /// header).
    pub range: Range<u64>,
    /// The totals.
    pub counters: Counters,
}

/// Parses `smaps_rollup`. Errors: a counter line whose number does not parse, or a text with neither
/// a header nor a counter.
pub fn parse(text: &str) -> Result<Rollup, &'static str> {
    let mut r = Rollup::default();
    let mut any = false;
    for line in text.lines() {
        if line.ends_with("[rollup]") {
            let first = line.split(' ').next().unwrap_or("");
            let (a, b) = first.split_once('-').ok_or("bad [rollup] header")?;
            let a = u64::from_str_radix(a, 16).map_err(|_| "bad [rollup] start")?;
            let b = u64::from_str_radix(b, 16).map_err(|_| "bad [rollup] end")?;
            r.range = a..b;
            any = true;
            continue;
        }
        if let Some(kv) = kb_line(line) {
            let (k, b) = kv?;
            any |= r.counters.set(k, b);
        }
    }
    if !any && !text.trim().is_empty() {
        return Err("neither a [rollup] header nor a counter");
    }
    Ok(r)
}
