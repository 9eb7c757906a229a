//! `vmspace map PID`: one process's address space the way `procstat -v` and `vmmap` show it, built from
//! the [`VmMap`](vmspace_core::VmMap) that [`ProcMaps`] loads: entries and holes, a summary, JSON, and
//! an SVG picture on a log-scaled axis.

use std::fmt::Write as _;

use vmspace::procmaps::{Mapping, ProcMaps, Stats};
use vmspace_core::{Behavior, Entry, EntryFlags, Inherit, Prot, VmMap};

use crate::out::{Style, grouped, human, json_str, xml};

/// The highest user address plus one: 47-bit unless something is mapped above it (5-level paging).
pub fn user_top<O: vmspace_core::MapObject>(map: &VmMap<O>) -> u64 {
    let low = (1u64 << 47) - 4096;
    let high = (1u64 << 56) - 4096;
    if map.entries().any(|e| e.end > low && e.end <= high) { high } else { low }
}

/// The largest free gap inside user space (`[vm.mmap_min_addr, user top)`), ignoring the gap up to
/// `[vsyscall]` above the user limit.
pub fn user_largest_gap<O: vmspace_core::MapObject>(map: &VmMap<O>) -> u64 {
    let (lo, hi) = (0x10000u64, user_top(map));
    map.holes()
        .map(|h| {
            let (s, e) = (h.start.max(lo), h.end.min(hi));
            e.saturating_sub(s)
        })
        .max()
        .unwrap_or(0)
}

fn inherit_name(i: Inherit) -> &'static str {
    match i {
        Inherit::Share => "share",
        Inherit::Copy => "copy",
        Inherit::None => "none",
        Inherit::Zero => "zero",
    }
}

fn behavior_name(b: Behavior) -> &'static str {
    match b {
        Behavior::Normal => "-",
        Behavior::Sequential => "sr",
        Behavior::Random => "rr",
    }
}

/// Linux's names for the entry flags shown: `gd` stack, `dd` no-dump, `sl` sealed, `gu` guard.
fn flag_names(f: EntryFlags) -> Vec<&'static str> {
    let mut v = Vec::new();
    for (flag, name) in [
        (EntryFlags::STACK, "gd"),
        (EntryFlags::NOCOREDUMP, "dd"),
        (EntryFlags::SEALED, "sl"),
        (EntryFlags::GUARD, "gu"),
    ] {
        if f.contains(flag) {
            v.push(name);
        }
    }
    v
}

fn entry_name(e: &Entry<Mapping>) -> String {
    let n = e.object().display_name();
    if n.is_empty() { "[anon]".into() } else { n }
}

/// The process's totals: `smaps_rollup` when it could be read, else the sum of the regions.
pub fn totals(p: &ProcMaps) -> Stats {
    p.rollup.unwrap_or_else(|| p.totals())
}

/// The listing: a header, one line per entry and per hole, a summary.
pub fn text(p: &ProcMaps, style: Style, max_map_count: Option<u64>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}",
        style.paint("1", &format!("pid {} ({}): {} threads", p.pid, p.status.name, p.status.threads))
    );
    let _ = writeln!(
        o,
        "{}",
        style.paint(
            "1",
            &format!(
                "{:>16} {:>16} {:>7} {:<7} {:<5} {:<2} {:<2} {:<8} {:<11} {:>7} {:>7} {:>6}  NAME",
                "START", "END", "SIZE", "PRT/MAX", "INH", "LO", "BH", "FLAGS", "KIND", "RSS", "PSS", "SWAP"
            )
        )
    );
    let stats = p.entry_stats();
    let mut at = p.map.min();
    let hole = |o: &mut String, s: u64, e: u64| {
        let _ = writeln!(o, "{}", style.paint("2", &format!("{s:>16x} {e:>16x} {:>7} (free)", human(e - s))));
    };
    for (e, st) in p.map.entries().zip(&stats) {
        if e.start > at {
            hole(&mut o, at, e.start);
        }
        let prot = format!("{}/{}", e.prot(), e.max_prot());
        let flags = flag_names(e.flags());
        let line = format!(
            "{:>16x} {:>16x} {:>7} {} {:<5} {:<2} {:<2} {:<8} {:<11} {:>7} {:>7} {:>6}  {}",
            e.start,
            e.end,
            human(e.len()),
            style.prot(e.prot(), &format!("{prot:<7}")),
            inherit_name(e.inherit()),
            if e.user_wired() { "lo" } else { "-" },
            behavior_name(e.behavior()),
            if flags.is_empty() { "-".to_string() } else { flags.join(",") },
            e.object().kind_name(),
            if p.detailed { human(st.rss) } else { "?".into() },
            if p.detailed { human(st.pss) } else { "?".into() },
            if p.detailed { human(st.swap) } else { "?".into() },
            entry_name(e)
        );
        let _ = writeln!(o, "{line}");
        at = e.end;
    }
    if p.map.max() > at {
        hole(&mut o, at, p.map.max());
    }
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
        "\n{} entries from {} VMAs{}; {} mapped, {} resident, Pss {}, swap {}, wired {}",
        grouped(p.map.len() as u64),
        grouped(p.regions.len() as u64),
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
    let holes = p.map.holes().count();
    let _ = writeln!(
        o,
        "{} holes; largest free gap in user space {}; by kind: {}",
        holes,
        human(user_largest_gap(&p.map)),
        kinds.iter().map(|(k, b)| format!("{k} {}", human(*b))).collect::<Vec<_>>().join(", ")
    );
    if !p.detailed {
        let _ = writeln!(o, "(smaps not readable: no per-region counters or VmFlags; max prot shown as rwx)");
    }
    o
}

fn stats_json(s: &Stats) -> String {
    format!(
        "{{\"rss\":{},\"pss\":{},\"shared\":{},\"private\":{},\"anonymous\":{},\"swap\":{},\"swap_pss\":{},\"locked\":{}}}",
        s.rss, s.pss, s.shared, s.private, s.anonymous, s.swap, s.swap_pss, s.locked
    )
}

fn prot_json(p: Prot) -> String {
    json_str(&p.to_string())
}

/// The map as one JSON object: entries (with their counters), holes, the VMAs, totals.
pub fn json(p: &ProcMaps, max_map_count: Option<u64>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"pid\":{},\"name\":{},\"threads\":{},\"detailed\":{},\"entries\":[",
        json_str(&p.pid.to_string()),
        json_str(&p.status.name),
        p.status.threads,
        p.detailed
    );
    let stats = p.entry_stats();
    for (i, (e, st)) in p.map.entries().zip(&stats).enumerate() {
        let flags: Vec<String> = flag_names(e.flags()).into_iter().map(json_str).collect();
        let _ = write!(
            o,
            "{}{{\"start\":{},\"end\":{},\"size\":{},\"prot\":{},\"max_prot\":{},\"inherit\":{},\"wired\":{},\"behavior\":{},\"flags\":[{}],\"kind\":{},\"name\":{},\"offset\":{},\"stats\":{}}}",
            if i == 0 { "" } else { "," },
            e.start,
            e.end,
            e.len(),
            prot_json(e.prot()),
            prot_json(e.max_prot()),
            json_str(inherit_name(e.inherit())),
            e.user_wired(),
            json_str(behavior_name(e.behavior())),
            flags.join(","),
            json_str(e.object().kind_name()),
            json_str(&e.object().display_name()),
            e.offset(),
            stats_json(st)
        );
    }
    o.push_str("],\"holes\":[");
    for (i, h) in p.map.holes().enumerate() {
        let _ = write!(
            o,
            "{}{{\"start\":{},\"end\":{},\"size\":{}}}",
            if i == 0 { "" } else { "," },
            h.start,
            h.end,
            h.end - h.start
        );
    }
    o.push_str("],\"regions\":[");
    for (i, r) in p.regions.iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"start\":{},\"end\":{},\"perms\":{},\"offset\":{},\"dev\":\"{:02x}:{:02x}\",\"inode\":{},\"path\":{},\"vm_flags\":{},\"stats\":{}}}",
            if i == 0 { "" } else { "," },
            r.range.start,
            r.range.end,
            json_str(&format!("{}{}", r.prot, if r.shared { 's' } else { 'p' })),
            r.offset,
            r.dev.0,
            r.dev.1,
            r.inode,
            json_str(&r.path),
            r.vm_flags.map_or("null".to_string(), |f| json_str(&f.to_string())),
            r.stats.as_ref().map_or("null".to_string(), stats_json)
        );
    }
    let t = totals(p);
    let _ = write!(
        o,
        "],\"summary\":{{\"entries\":{},\"vmas\":{},\"mapped\":{},\"wired\":{},\"largest_user_gap\":{},\"max_map_count\":{},\"totals\":{}}}}}",
        p.map.len(),
        p.regions.len(),
        p.map.size(),
        p.map.wired_size(),
        user_largest_gap(&p.map),
        max_map_count.map_or("null".to_string(), |m| m.to_string()),
        stats_json(&t)
    );
    o.push('\n');
    o
}

fn prot_colour(p: Prot) -> &'static str {
    match (p.contains(Prot::READ), p.contains(Prot::WRITE), p.contains(Prot::EXECUTE)) {
        (_, true, true) => "#ff7f0e",
        (_, false, true) => "#d62728",
        (_, true, false) => "#2ca02c",
        (true, false, false) => "#1f77b4",
        (false, false, false) => "#bbbbbb",
    }
}

/// The address space as an SVG picture: every entry and hole a band whose height grows with the
/// logarithm of its size, coloured by protection, labelled with its range, size, protection and name.
pub fn svg(p: &ProcMaps) -> String {
    let band = |len: u64| -> f64 { 16.0 + 5.0 * ((len.max(4096) / 4096) as f64).log2() };
    let mut rows: Vec<(u64, u64, Option<&Entry<Mapping>>)> = Vec::new();
    let mut at = p.map.min();
    for e in p.map.entries() {
        if e.start > at {
            rows.push((at, e.start, None));
        }
        rows.push((e.start, e.end, Some(e)));
        at = e.end;
    }
    if p.map.max() > at {
        rows.push((at, p.map.max(), None));
    }
    let top = 70.0;
    let height = top + rows.iter().map(|(s, e, _)| band(e - s)).sum::<f64>() + 20.0;
    let width = 1100.0;
    let mut o = String::new();
    let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" font-family="monospace" font-size="11">"#
    );
    let title = format!("address space of pid {} ({})", p.pid, p.status.name);
    let _ = writeln!(o, "<title>{}</title>", xml(&title));
    let _ = writeln!(o, r#"<rect width="{width}" height="{height:.0}" fill="white"/>"#);
    let _ = writeln!(o, r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#, xml(&title));
    let legend =
        [("r-x", "#d62728"), ("rw-", "#2ca02c"), ("r--", "#1f77b4"), ("rwx", "#ff7f0e"), ("---", "#bbbbbb")];
    for (i, (label, colour)) in legend.iter().enumerate() {
        let x = 10.0 + i as f64 * 80.0;
        let _ = writeln!(o, r#"<rect x="{x}" y="32" width="14" height="12" fill="{colour}"/>"#);
        let _ = writeln!(o, r#"<text x="{}" y="42">{label}</text>"#, x + 18.0);
    }
    let _ = writeln!(
        o,
        r##"<text x="430" y="42" fill="#555">band height grows with log2(size); addresses increase downwards; dashed = free</text>"##
    );
    let mut y = top;
    for (s, e, entry) in rows {
        let h = band(e - s);
        match entry {
            Some(en) => {
                let name = entry_name(en);
                let _ = writeln!(
                    o,
                    r##"<g><title>{}</title><rect x="10" y="{y:.1}" width="160" height="{:.1}" fill="{}" stroke="#333" stroke-width="0.5"/>"##,
                    xml(&format!("{s:#x}-{e:#x} {} {}", human(e - s), name)),
                    h,
                    prot_colour(en.prot())
                );
                let _ = writeln!(
                    o,
                    r#"<text x="180" y="{:.1}">{}</text></g>"#,
                    y + h / 2.0 + 4.0,
                    xml(&format!(
                        "{s:012x}-{e:012x} {:>7} {}/{} {}",
                        human(e - s),
                        en.prot(),
                        en.max_prot(),
                        name
                    ))
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    r##"<rect x="10" y="{y:.1}" width="160" height="{h:.1}" fill="none" stroke="#999" stroke-dasharray="4,3"/>"##
                );
                let _ = writeln!(
                    o,
                    r##"<text x="180" y="{:.1}" fill="#888">{}</text>"##,
                    y + h / 2.0 + 4.0,
                    xml(&format!("{s:012x}-{e:012x} {:>7} (free)", human(e - s)))
                );
            }
        }
        y += h;
    }
    o.push_str("</svg>\n");
    o
}
