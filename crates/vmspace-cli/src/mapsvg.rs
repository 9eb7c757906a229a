//! `vmspace map PID --svg FILE`: the address space as a picture. Each VMA and each free gap is a band
//! whose height grows with the logarithm of its size, coloured by protection, with a legend. A space
//! with more rows than a picture can show ([`MAX_BANDS`]) is aggregated: the largest free gaps stay
//! as separators and the VMAs between two of them become one band, labelled with their count and
//! bytes and painted with the share of each protection, so 60,000 VMAs still make a picture of a few
//! hundred bands (tens of kB) that a browser renders.

use std::fmt::Write as _;

use vmspace::procmaps::{ProcMaps, Region};
use vmspace_core::Prot;

use crate::mapview::{Row, layout, region_name};
use crate::out::{grouped, human, xml};

/// The most bands drawn one for one; above this the picture aggregates.
pub const MAX_BANDS: usize = 400;

/// How many of the largest free gaps separate the aggregated groups.
const SEPARATORS: usize = 120;

const CLASSES: [(&str, &str); 5] =
    [("r-x", "#d62728"), ("rw-", "#2ca02c"), ("r--", "#1f77b4"), ("rwx", "#ff7f0e"), ("---", "#bbbbbb")];

fn class(p: Prot) -> usize {
    match (p.contains(Prot::READ), p.contains(Prot::WRITE), p.contains(Prot::EXECUTE)) {
        (_, false, true) => 0,
        (_, true, false) => 1,
        (true, false, false) => 2,
        (_, true, true) => 3,
        (false, false, false) => 4,
    }
}

fn band(len: u64) -> f64 {
    16.0 + 5.0 * ((len.max(4096) / 4096) as f64).log2()
}

/// What one band shows.
enum Band<'a> {
    One(&'a Region),
    Free(u64, u64),
    Kernel(u64, u64),
    /// VMAs `[start, end)` too many to draw one by one: count, bytes per protection class, gaps.
    Group {
        start: u64,
        end: u64,
        vmas: u64,
        bytes: [u64; 5],
        gaps: u64,
    },
}

fn bands<'a>(rows: &[Row<'a>]) -> Vec<Band<'a>> {
    if rows.len() <= MAX_BANDS {
        return rows
            .iter()
            .map(|r| match *r {
                Row::Vma(v) => Band::One(v),
                Row::Free(s, e) => Band::Free(s, e),
                Row::Kernel(s, e) => Band::Kernel(s, e),
            })
            .collect();
    }
    // The largest free gaps (at least 1 MiB) are kept; everything between two of them is one group.
    let mut gaps: Vec<(u64, usize)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match *r {
            Row::Free(s, e) if e - s >= 1 << 20 => Some((e - s, i)),
            _ => None,
        })
        .collect();
    gaps.sort_unstable_by(|a, b| b.cmp(a));
    let mut keep = vec![false; rows.len()];
    for &(_, i) in gaps.iter().take(SEPARATORS) {
        keep[i] = true;
    }
    let mut out = Vec::new();
    let mut group: Vec<&Row<'a>> = Vec::new();
    let flush = |group: &mut Vec<&Row<'a>>, out: &mut Vec<Band<'a>>| {
        let vmas: Vec<&Region> = group
            .iter()
            .filter_map(|r| match r {
                Row::Vma(v) => Some(*v),
                _ => None,
            })
            .collect();
        match vmas.len() {
            0 => {}
            1 if group.len() == 1 => out.push(Band::One(vmas[0])),
            _ => {
                let mut bytes = [0u64; 5];
                for v in &vmas {
                    bytes[class(v.prot)] += v.len();
                }
                let gaps = group.iter().filter(|r| matches!(r, Row::Free(..))).count() as u64;
                out.push(Band::Group {
                    start: vmas[0].range.start,
                    end: vmas[vmas.len() - 1].range.end,
                    vmas: vmas.len() as u64,
                    bytes,
                    gaps,
                });
            }
        }
        group.clear();
    };
    for (i, r) in rows.iter().enumerate() {
        match *r {
            Row::Free(s, e) if keep[i] => {
                flush(&mut group, &mut out);
                out.push(Band::Free(s, e));
            }
            Row::Kernel(s, e) => {
                flush(&mut group, &mut out);
                out.push(Band::Kernel(s, e));
            }
            _ => group.push(r),
        }
    }
    flush(&mut group, &mut out);
    out
}

/// The picture of `p`.
pub fn svg(p: &ProcMaps) -> String {
    let rows = layout(p);
    let bands = bands(&rows);
    let aggregated = rows.len() > MAX_BANDS;
    let size = |b: &Band| match *b {
        Band::One(r) => band(r.len()),
        Band::Free(s, e) => band(e - s),
        Band::Kernel(..) => 24.0,
        Band::Group { start, end, .. } => band(end - start).max(30.0),
    };
    let top = 90.0;
    let height = top + bands.iter().map(size).sum::<f64>() + 20.0;
    let width = 1100.0;
    let mut o = String::with_capacity(bands.len() * 300 + 4096);
    let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" font-family="monospace" font-size="11">"#
    );
    let title = format!(
        "address space of pid {} ({}): {} VMAs",
        p.pid,
        p.status.name,
        grouped(p.regions.len() as u64)
    );
    let _ = writeln!(o, "<title>{}</title>", xml(&title));
    let _ = writeln!(o, r#"<rect width="{width}" height="{height:.0}" fill="white"/>"#);
    let _ = writeln!(o, r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#, xml(&title));
    for (i, (label, colour)) in CLASSES.iter().enumerate() {
        let x = 10.0 + i as f64 * 80.0;
        let _ = writeln!(o, r#"<rect x="{x}" y="32" width="14" height="12" fill="{colour}"/>"#);
        let _ = writeln!(o, r#"<text x="{}" y="42">{label}</text>"#, x + 18.0);
    }
    let _ = writeln!(
        o,
        r##"<text x="430" y="42" fill="#555">band height grows with log2(size); addresses increase downwards; dashed = free</text>"##
    );
    if aggregated {
        let _ = writeln!(
            o,
            r##"<text x="10" y="62" fill="#555">{} rows are too many to draw: VMAs between the {} largest free gaps are one band, painted by the share of each protection</text>"##,
            grouped(rows.len() as u64),
            SEPARATORS
        );
    }
    let mut y = top;
    for b in &bands {
        let h = size(b);
        let mid = y + h / 2.0 + 4.0;
        match *b {
            Band::One(r) => {
                let (s, e) = (r.range.start, r.range.end);
                let name = region_name(r);
                let _ = writeln!(
                    o,
                    r##"<g><title>{}</title><rect x="10" y="{y:.1}" width="160" height="{h:.1}" fill="{}" stroke="#333" stroke-width="0.5"/>"##,
                    xml(&format!("{s:#x}-{e:#x} {} {name}", human(e - s))),
                    CLASSES[class(r.prot)].1
                );
                let _ = writeln!(
                    o,
                    r#"<text x="180" y="{mid:.1}">{}</text></g>"#,
                    xml(&format!("{s:012x}-{e:012x} {:>6} {}/{} {name}", human(e - s), r.prot, r.max_prot()))
                );
            }
            Band::Free(s, e) => {
                let _ = writeln!(
                    o,
                    r##"<rect x="10" y="{y:.1}" width="160" height="{h:.1}" fill="none" stroke="#999" stroke-dasharray="4,3"/><text x="180" y="{mid:.1}" fill="#888">{}</text>"##,
                    xml(&format!("{s:012x}-{e:012x} {:>6} (free)", human(e - s)))
                );
            }
            Band::Kernel(s, e) => {
                let _ = writeln!(
                    o,
                    r##"<rect x="10" y="{y:.1}" width="160" height="{h:.1}" fill="#eeeeee"/><text x="180" y="{mid:.1}" fill="#888">{}</text>"##,
                    xml(&format!("{s:012x}-{e:012x} not user space (TASK_SIZE {s:#x})"))
                );
            }
            Band::Group { start, end, vmas, bytes, gaps } => {
                let total: u64 = bytes.iter().sum::<u64>().max(1);
                let mut x = 10.0;
                let _ = write!(o, "<g><title>{}</title>", xml(&format!("{vmas} VMAs {start:#x}-{end:#x}")));
                for (i, &n) in bytes.iter().enumerate() {
                    if n == 0 {
                        continue;
                    }
                    let w = 160.0 * n as f64 / total as f64;
                    let _ = write!(
                        o,
                        r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}"/>"#,
                        CLASSES[i].1
                    );
                    x += w;
                }
                let shares: Vec<String> = bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| format!("{} {}", CLASSES[i].0, human(*n)))
                    .collect();
                let _ = writeln!(
                    o,
                    r##"<rect x="10" y="{y:.1}" width="160" height="{h:.1}" fill="none" stroke="#333" stroke-width="1.5"/><text x="180" y="{mid:.1}">{}</text></g>"##,
                    xml(&format!(
                        "{start:012x}-{end:012x} {} VMAs, {} gaps: {}",
                        grouped(vmas),
                        grouped(gaps),
                        shares.join(", ")
                    ))
                );
            }
        }
        y += h;
    }
    o.push_str("</svg>\n");
    o
}
