//! `vmspace map PID --summary`: one row per kind of region, in the spirit of `vmmap -summary`: each
//! mapped file by path, then heap, stack, anonymous, shared memory, vdso/vvar, guard and reserved
//! ranges, with virtual, resident, dirty, clean, swapped, Pss and USS bytes and the VMA count, and
//! the totals. The totals are `smaps_rollup`'s (the kernel sums Pss once per process instead of
//! rounding it per VMA), so for a stopped process they equal it byte for byte.

use std::fmt::Write as _;

use serde::Serialize;
use vmspace::procmaps::{Mapping, ProcMaps, Region, Stats};
use vmspace_core::Prot;

use crate::mapview::totals;
use crate::out::{esc, grouped, human};

/// One row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindRow {
    /// `file`, `heap`, `stack`, `anon`, `shared-anon`, `shmem`, `vdso`, `vvar`, `vsyscall`,
    /// `special`, `guard` (private anonymous `PROT_NONE`), `reserved` (the same, `MAP_NORESERVE`).
    pub kind: String,
    /// The file's path for `file` and `shmem`, else the kernel's name of the first region.
    pub name: String,
    /// VMAs.
    pub count: u64,
    /// Bytes mapped.
    pub r#virtual: u64,
    /// `Rss`.
    pub resident: u64,
    /// `Shared_Dirty + Private_Dirty`.
    pub dirty: u64,
    /// `Shared_Clean + Private_Clean`.
    pub clean: u64,
    /// `Swap`.
    pub swapped: u64,
    /// `Pss`.
    pub pss: u64,
    /// `Private_Clean + Private_Dirty`.
    pub uss: u64,
}

impl KindRow {
    fn add(&mut self, r: &Region) {
        self.count += 1;
        self.r#virtual += r.len();
        if let Some(s) = &r.stats {
            self.add_stats(s);
        }
    }

    fn add_stats(&mut self, s: &Stats) {
        let dirty = s.shared_dirty + s.private_dirty;
        self.resident += s.rss;
        self.dirty += dirty;
        self.clean += s.rss.saturating_sub(dirty);
        self.swapped += s.swap;
        self.pss += s.pss;
        self.uss += s.private;
    }
}

/// The row key of a region.
fn key(r: &Region) -> (String, String) {
    let anon_none = r.prot == Prot::NONE && matches!(r.mapping, Mapping::Anonymous { .. });
    if anon_none {
        let k = if r.vm_flags.is_some_and(|f| f.has("nr")) { "reserved" } else { "guard" };
        return (k.into(), String::new());
    }
    match &r.mapping {
        Mapping::File { .. } | Mapping::Shmem { .. } => (r.mapping.kind_name().into(), r.path().to_string()),
        m => (m.kind_name().into(), String::new()),
    }
}

/// The summary of `p`: rows (largest virtual size first) and totals.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The process.
    pub pid: u32,
    /// One row per kind (per file for files).
    pub rows: Vec<KindRow>,
    /// `smaps_rollup` (or the sum of the rows when it cannot be read); `virtual` and `count` are the
    /// rows' sums.
    pub totals: KindRow,
}

/// Builds the summary.
pub fn summary(p: &ProcMaps) -> Summary {
    let mut rows: Vec<KindRow> = Vec::new();
    let mut index: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
    for r in &p.regions {
        let k = key(r);
        let i = *index.entry(k.clone()).or_insert_with(|| {
            let name = if k.1.is_empty() { crate::mapview::region_name(r).to_string() } else { k.1.clone() };
            rows.push(KindRow { kind: k.0.clone(), name, ..KindRow::default() });
            rows.len() - 1
        });
        rows[i].add(r);
    }
    rows.sort_by(|a, b| b.r#virtual.cmp(&a.r#virtual).then_with(|| a.name.cmp(&b.name)));
    let mut t = KindRow { kind: "total".into(), name: String::new(), ..KindRow::default() };
    t.count = rows.iter().map(|r| r.count).sum();
    t.r#virtual = rows.iter().map(|r| r.r#virtual).sum();
    t.add_stats(&totals(p));
    Summary { pid: crate::mapjson::pid_number(p), rows, totals: t }
}

/// The summary as a table.
pub fn text(p: &ProcMaps, s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", crate::mapview::title(p));
    let _ = writeln!(
        o,
        "{:<12} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  NAME",
        "KIND", "COUNT", "VIRTUAL", "RSS", "DIRTY", "CLEAN", "SWAP", "PSS", "USS"
    );
    let line = |o: &mut String, r: &KindRow| {
        let _ = writeln!(
            o,
            "{:<12} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  {}",
            r.kind,
            grouped(r.count),
            human(r.r#virtual),
            human(r.resident),
            human(r.dirty),
            human(r.clean),
            human(r.swapped),
            human(r.pss),
            human(r.uss),
            esc(&r.name)
        );
    };
    for r in &s.rows {
        line(&mut o, r);
    }
    line(&mut o, &s.totals);
    if p.rollup.is_some() {
        let _ = writeln!(o, "(totals from smaps_rollup)");
    }
    o
}
