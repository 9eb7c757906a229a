//! `/proc/self/smaps`: the kernel's own view of this process's mappings, for `stats` and for checking
//! that the map and the kernel agree.

use std::io;
use std::ops::Range;

use vmspace_core::{Behavior, EntryFlags, Inherit, Prot, VmMap};

use crate::backing::Backing;

/// One VMA as smaps describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    /// Its range.
    pub range: Range<u64>,
    /// Protection from the permission column.
    pub prot: Prot,
    /// `s` (shared) rather than `p` (private).
    pub shared: bool,
    /// The two-letter VmFlags (`lo`, `dc`, `wf`, `dd`, `sr`, `rr`, `sl`, `mr`, …).
    pub flags: Vec<[u8; 2]>,
    /// `Rss` in bytes.
    pub rss: u64,
    /// `Pss` in bytes.
    pub pss: u64,
    /// `Anonymous` in bytes.
    pub anonymous: u64,
    /// `Swap` in bytes.
    pub swap: u64,
}

impl Vma {
    /// Whether VmFlags has `flag`.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag.as_bytes())
    }
}

/// Reads this process's smaps.
pub fn read_self() -> io::Result<Vec<Vma>> {
    parse(&std::fs::read_to_string("/proc/self/smaps")?)
}

/// Parses smaps text.
pub fn parse(text: &str) -> io::Result<Vec<Vma>> {
    let bad =
        |line: &str| io::Error::new(io::ErrorKind::InvalidData, format!("smaps: cannot parse {line:?}"));
    let mut out: Vec<Vma> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            let perms = words.next().ok_or_else(|| bad(line))?.as_bytes();
            if perms.len() < 4 {
                return Err(bad(line));
            }
            let mut prot = Prot::NONE;
            if perms[0] == b'r' {
                prot |= Prot::READ;
            }
            if perms[1] == b'w' {
                prot |= Prot::WRITE;
            }
            if perms[2] == b'x' {
                prot |= Prot::EXECUTE;
            }
            out.push(Vma {
                range: start..end,
                prot,
                shared: perms[3] == b's',
                flags: Vec::new(),
                rss: 0,
                pss: 0,
                anonymous: 0,
                swap: 0,
            });
            continue;
        }
        let Some(vma) = out.last_mut() else { continue };
        let kib = || words.clone().next().and_then(|v| v.parse::<u64>().ok()).map_or(0, |v| v * 1024);
        match first {
            "Rss:" => vma.rss = kib(),
            "Pss:" => vma.pss = kib(),
            "Anonymous:" => vma.anonymous = kib(),
            "Swap:" => vma.swap = kib(),
            "VmFlags:" => {
                vma.flags = words.filter_map(|w| w.as_bytes().try_into().ok()).collect();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// What the kernel should show for a page: protection, shared, and the flags vmspace controls.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expect {
    prot: Prot,
    shared: bool,
    flags: [bool; 7],
}

const FLAGS: [&str; 7] = ["lo", "dc", "wf", "dd", "sr", "rr", "sl"];

/// Every difference between `map` and the kernel's `vmas` over the map's range, one line each.
/// `prot_guards`: guard regions are `PROT_NONE` (the fallback) rather than guard markers.
pub fn differences(map: &VmMap<Backing>, vmas: &[Vma], prot_guards: bool) -> Vec<String> {
    let owned = map.min()..map.max();
    // Cut points: every VMA and entry boundary inside the range.
    let mut cuts: Vec<u64> = vec![owned.start, owned.end];
    for v in vmas.iter().filter(|v| v.range.start < owned.end && v.range.end > owned.start) {
        cuts.extend([v.range.start.max(owned.start), v.range.end.min(owned.end)]);
    }
    for e in map.entries() {
        cuts.extend([e.start, e.end]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    for w in cuts.windows(2) {
        let seg = w[0]..w[1];
        let want = match map.lookup_entry(seg.start) {
            None => Expect { prot: Prot::NONE, shared: false, flags: [false; 7] },
            Some(e) => {
                let f = e.flags();
                Expect {
                    prot: if prot_guards && f.contains(EntryFlags::GUARD) { Prot::NONE } else { e.prot() },
                    shared: e.object().is_shared(),
                    flags: [
                        e.wired_count() > 0,
                        e.inherit() == Inherit::None,
                        e.inherit() == Inherit::Zero,
                        f.contains(EntryFlags::NOCOREDUMP),
                        e.behavior() == Behavior::Sequential,
                        e.behavior() == Behavior::Random,
                        f.contains(EntryFlags::SEALED),
                    ],
                }
            }
        };
        let Some(v) = vmas.iter().find(|v| v.range.start <= seg.start && seg.start < v.range.end) else {
            out.push(format!("{:#x}..{:#x}: not mapped in the kernel", seg.start, seg.end));
            continue;
        };
        let got = Expect { prot: v.prot, shared: v.shared, flags: FLAGS.map(|f| v.has(f)) };
        if got != want {
            out.push(format!(
                "{:#x}..{:#x}: map {:?}, kernel {:?} (flags {})",
                seg.start,
                seg.end,
                want,
                got,
                FLAGS.join(" ")
            ));
        }
    }
    out
}
