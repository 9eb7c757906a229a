//! `vmspace map PID`: one process's address space the way `pmap -X`, `procstat -v` and `vmmap` show
//! it: one line per Linux VMA (as the kernel and pmap list them) with the map's attributes, the free
//! gaps between them, the end of user space (`TASK_SIZE`) and the kernel's part above it, and a
//! summary from the [`VmMap`](vmspace_core::VmMap) that [`ProcMaps`] loads. JSON is in
//! [`crate::mapjson`], the picture in [`crate::mapsvg`].

use std::fmt::Write as _;

use vmspace::procmaps::{Mapping, ProcMaps, Region, Stats};
use vmspace_core::{Behavior, Entry, Inherit, VmMap};

use crate::out::{Style, esc, grouped, human};

/// `TASK_SIZE`: one past the highest user address. x86-64: `2^47 - 4096` with 4-level paging, or
/// `2^56 - 4096` when something is mapped above the 47-bit limit (5-level paging, a process that
/// asked for high addresses); arm64 and others: `2^48`. `[vsyscall]` lies above it, in the kernel's
/// half.
pub fn user_top<O: vmspace_core::MapObject>(map: &VmMap<O>) -> u64 {
    let (low, high) = if cfg!(target_arch = "x86_64") {
        ((1u64 << 47) - 4096, (1u64 << 56) - 4096)
    } else {
        (1u64 << 48, 1u64 << 52)
    };
    if map.entries().any(|e| e.end > low && e.end <= high) { high } else { low }
}

/// The free gaps of user space, `[0, TASK_SIZE)`, in address order.
pub fn user_holes<O: vmspace_core::MapObject>(map: &VmMap<O>) -> Vec<(u64, u64)> {
    let top = user_top(map);
    map.holes().filter(|h| h.start < top).map(|h| (h.start, h.end.min(top))).collect()
}

/// The largest free gap inside user space (`[vm.mmap_min_addr, TASK_SIZE)`).
pub fn user_largest_gap<O: vmspace_core::MapObject>(map: &VmMap<O>) -> u64 {
    user_holes(map).iter().map(|&(s, e)| e.saturating_sub(s.max(0x10000))).max().unwrap_or(0)
}

/// `copy`, `share`, `none` (MADV_DONTFORK), `zero` (MADV_WIPEONFORK).
pub fn inherit_name(i: Inherit) -> &'static str {
    match i {
        Inherit::Share => "share",
        Inherit::Copy => "copy",
        Inherit::None => "none",
        Inherit::Zero => "zero",
    }
}

/// `-`, `sr` (MADV_SEQUENTIAL), `rr` (MADV_RANDOM).
pub fn behavior_name(b: Behavior) -> &'static str {
    match b {
        Behavior::Normal => "-",
        Behavior::Sequential => "sr",
        Behavior::Random => "rr",
    }
}

/// The VmFlags mnemonics a listing shows in its FLAGS column: all the kernel printed but the six that
/// PRT/MAX already shows (`rd wr ex mr mw me`), in the kernel's order.
pub fn shown_flags(r: &Region) -> Vec<&'static str> {
    r.vm_flags
        .map(|f| f.names().filter(|n| !matches!(*n, "rd" | "wr" | "ex" | "mr" | "mw" | "me")).collect())
        .unwrap_or_default()
}

/// The name column of a region as the kernel writes it (`[vvar_vclock]`, `[anon:NAME]`, a path with
/// ` (deleted)`), or `[anon]` for unnamed anonymous memory.
pub fn region_name(r: &Region) -> &str {
    if r.path().is_empty() { "[anon]" } else { r.path() }
}

/// The kernel's name for a map entry: the name of the first VMA it is made of.
pub fn entry_name<'a>(p: &'a ProcMaps, e: &Entry<Mapping>) -> &'a str {
    let i = p.regions.partition_point(|r| r.range.end <= e.start);
    p.regions.get(i).map_or("[anon]", region_name)
}

/// The process's totals: `smaps_rollup` when it could be read, else the sum of the regions.
pub fn totals(p: &ProcMaps) -> Stats {
    p.rollup.unwrap_or_else(|| p.totals())
}

/// One row of the layout: a VMA, a free gap of user space, or the part above `TASK_SIZE` that is
/// not user space.
#[derive(Clone, Copy, Debug)]
pub enum Row<'a> {
    /// A VMA.
    Vma(&'a Region),
    /// A free gap of user space.
    Free(u64, u64),
    /// `[TASK_SIZE, next)`: the kernel's half (and the non-canonical hole below it on x86-64).
    Kernel(u64, u64),
}

/// The layout in address order: VMAs, the gaps between them up to `TASK_SIZE`, then the kernel's part
/// up to the next VMA above it (`[vsyscall]`), if there is one.
pub fn layout(p: &ProcMaps) -> Vec<Row<'_>> {
    let top = user_top(&p.map);
    let mut rows = Vec::with_capacity(p.regions.len() * 2 + 2);
    let mut at = 0u64;
    for r in &p.regions {
        if r.range.start >= top && at <= top {
            if at < top {
                rows.push(Row::Free(at, top));
            }
            rows.push(Row::Kernel(top, r.range.start));
        } else if r.range.start > at {
            rows.push(Row::Free(at, r.range.start));
        }
        rows.push(Row::Vma(r));
        at = r.range.end;
    }
    if at < top {
        rows.push(Row::Free(at, top));
    }
    rows
}

/// The guard regions (`MADV_GUARD_INSTALL`) inside each VMA flagged `gu`, as ranges, read from
/// `/proc/PID/pagemap` where that may be read (root, or the process's owner) and the kernel marks
/// them (6.15+); keyed by the VMA's start. Empty where pagemap says nothing.
pub fn guards(p: &ProcMaps) -> std::collections::HashMap<u64, Vec<std::ops::Range<u64>>> {
    let pid = crate::mapjson::pid_number(p);
    p.regions
        .iter()
        .filter(|r| r.vm_flags.is_some_and(|f| f.has("gu")))
        .filter_map(|r| {
            let runs = vmspace::os::inspect::guard_runs(pid, r.range.clone()).ok()?;
            (!runs.is_empty()).then_some((r.range.start, runs))
        })
        .collect()
}

/// The per-region counters, or `?` where smaps could not be read.
fn counter(p: &ProcMaps, r: &Region, f: fn(&Stats) -> u64) -> String {
    match (&r.stats, p.detailed) {
        (Some(s), true) => human(f(s)),
        _ => "?".into(),
    }
}

/// The header line of a process.
pub fn title(p: &ProcMaps) -> String {
    format!("pid {} ({}): {} threads", p.pid, esc(&p.status.name), p.status.threads)
}

/// The listing: a header, one line per VMA and per gap, then the summary.
pub fn text(p: &ProcMaps, style: Style, max_map_count: Option<u64>) -> String {
    text_with(p, style, max_map_count, true)
}

/// [`text`], with the free gaps and the kernel's part left out when `gaps` is false (a filtered
/// listing, whose gaps would not be free).
pub fn text_with(p: &ProcMaps, style: Style, max_map_count: Option<u64>, gaps: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", style.paint("1", &title(p)));
    let _ = writeln!(
        o,
        "{}",
        style.paint(
            "1",
            &format!(
                "{:>16} {:>16} {:>6} {:<7} {:<5} {:<2} {:<11} {:<11} {:>6} {:>6} {:>6}  NAME",
                "START", "END", "SIZE", "PRT/MAX", "INH", "BH", "FLAGS", "KIND", "RSS", "PSS", "SWAP"
            )
        )
    );
    let guard_runs = guards(p);
    for row in layout(p) {
        if !gaps && !matches!(row, Row::Vma(_)) {
            continue;
        }
        match row {
            Row::Vma(r) => {
                let prot = format!("{}/{}", r.prot, r.max_prot());
                let flags = shown_flags(r);
                let _ = writeln!(
                    o,
                    "{:>16x} {:>16x} {:>6} {} {:<5} {:<2} {:<11} {:<11} {:>6} {:>6} {:>6}  {}",
                    r.range.start,
                    r.range.end,
                    human(r.len()),
                    style.prot(r.prot, &format!("{prot:<7}")),
                    inherit_name(r.inherit()),
                    behavior_name(r.behavior()),
                    if flags.is_empty() { "-".to_string() } else { flags.join(",") },
                    r.mapping.kind_name(),
                    counter(p, r, |s| s.rss),
                    counter(p, r, |s| s.pss),
                    counter(p, r, |s| s.swap),
                    esc(region_name(r))
                );
                for g in guard_runs.get(&r.range.start).into_iter().flatten() {
                    let _ = writeln!(
                        o,
                        "{}",
                        style.paint(
                            "33",
                            &format!(
                                "{:>16x} {:>16x} {:>6}   guard region (MADV_GUARD_INSTALL)",
                                g.start,
                                g.end,
                                human(g.end - g.start)
                            )
                        )
                    );
                }
            }
            Row::Free(s, e) => {
                let _ = writeln!(
                    o,
                    "{}",
                    style.paint("2", &format!("{s:>16x} {e:>16x} {:>6} (free)", human(e - s)))
                );
            }
            Row::Kernel(s, e) => {
                let _ = writeln!(
                    o,
                    "{}",
                    style.paint(
                        "2",
                        &format!("{s:>16x} {e:>16x} {:>6} (not user space: TASK_SIZE is {s:#x})", "-")
                    )
                );
            }
        }
    }
    o.push_str(&summary_lines(p, max_map_count));
    o
}

/// The two summary lines under a listing.
pub fn summary_lines(p: &ProcMaps, max_map_count: Option<u64>) -> String {
    let mut o = String::new();
    let t = totals(p);
    let mut kinds: Vec<(&'static str, u64)> = Vec::new();
    for e in p.map.entries() {
        let k = e.object().kind_name();
        match kinds.iter_mut().find(|(n, _)| *n == k) {
            Some(x) => x.1 += e.len(),
            None => kinds.push((k, e.len())),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    let _ = writeln!(
        o,
        "\n{} VMAs in {} map entries{}; {} mapped, {} resident, Pss {}, swap {}, wired {}",
        grouped(p.regions.len() as u64),
        grouped(p.map.len() as u64),
        match max_map_count {
            Some(m) if m > 0 => format!(
                " ({:.2}% of vm.max_map_count {})",
                p.regions.len() as f64 * 100.0 / m as f64,
                grouped(m)
            ),
            _ => String::new(),
        },
        human(p.map.size()),
        human(t.rss),
        human(t.pss),
        human(t.swap),
        human(p.map.wired_size())
    );
    let _ = writeln!(
        o,
        "{} free gaps below TASK_SIZE {:#x}; largest {}; by kind: {}",
        user_holes(&p.map).len(),
        user_top(&p.map),
        human(user_largest_gap(&p.map)),
        kinds.iter().map(|(k, b)| format!("{k} {}", human(*b))).collect::<Vec<_>>().join(", ")
    );
    if !p.detailed {
        let _ = writeln!(o, "(smaps not readable: no per-region counters or VmFlags; max prot shown as rwx)");
    }
    o
}
