//! `vmspace map PID --json`: the schema, as types. Every number is a JSON number and every size,
//! address and counter is in bytes; names are the kernel's, unescaped (JSON escapes them).
//!
//! ```text
//! { "pid": 1234, "name": "sleep", "threads": 1, "detailed": true, "task_size": 140737488351232,
//!   "regions": [ { "start", "end", "size", "prot": "r-x", "max_prot": "rwx", "shared": false,
//!                  "offset", "dev": "fe:00", "inode", "name": "/usr/bin/sleep", "kind": "file",
//!                  "inherit": "copy", "behavior": "-", "locked": false,
//!                  "vm_flags": ["rd", "ex", "mr", "mw", "me"] | null, "kernel_page_size",
//!                  "stats": { "rss", "pss", "shared", "private", "shared_dirty", "private_dirty",
//!                             "anonymous", "swap", "swap_pss", "locked" } | null,
//!                  "guards": [ { "start", "end", "size" } ] } ],   (MADV_GUARD_INSTALL ranges, pagemap)
//!   "entries": [ { "start", "end", "size", "prot", "max_prot", "inherit", "wired", "behavior",
//!                  "kind", "name", "offset", "stats" } ],
//!   "holes": [ { "start", "end", "size" } ],            (free gaps below task_size)
//!   "summary": { "entries", "vmas", "mapped", "wired", "largest_user_gap",
//!                "max_map_count": 65530 | null, "totals": stats } }
//! ```
//!
//! `regions` are the kernel's VMAs (what `/proc/PID/maps` and `pmap -X` list); `entries` are the map's
//! entries, neighbouring VMAs with equal attributes merged. The schema only grows: fields are never
//! renamed or removed.

use serde::Serialize;
use vmspace::procmaps::{ProcMaps, Region, Stats};

use crate::mapview::{
    behavior_name, entry_name, inherit_name, totals, user_holes, user_largest_gap, user_top,
};

/// The counters of a region, an entry or a process, in bytes.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsJson {
    /// `Rss`.
    pub rss: u64,
    /// `Pss`.
    pub pss: u64,
    /// `Shared_Clean + Shared_Dirty`.
    pub shared: u64,
    /// `Private_Clean + Private_Dirty` (the unique set size, USS).
    pub private: u64,
    /// `Shared_Dirty`.
    pub shared_dirty: u64,
    /// `Private_Dirty`.
    pub private_dirty: u64,
    /// `Anonymous`.
    pub anonymous: u64,
    /// `Swap`.
    pub swap: u64,
    /// `SwapPss`.
    pub swap_pss: u64,
    /// `Locked`.
    pub locked: u64,
}

impl From<&Stats> for StatsJson {
    fn from(s: &Stats) -> StatsJson {
        StatsJson {
            rss: s.rss,
            pss: s.pss,
            shared: s.shared,
            private: s.private,
            shared_dirty: s.shared_dirty,
            private_dirty: s.private_dirty,
            anonymous: s.anonymous,
            swap: s.swap,
            swap_pss: s.swap_pss,
            locked: s.locked,
        }
    }
}

/// One VMA.
#[derive(Serialize, Debug)]
pub struct RegionJson<'a> {
    start: u64,
    end: u64,
    size: u64,
    prot: String,
    max_prot: String,
    shared: bool,
    offset: u64,
    dev: String,
    inode: u64,
    name: &'a str,
    kind: &'static str,
    inherit: &'static str,
    behavior: &'static str,
    locked: bool,
    vm_flags: Option<Vec<&'static str>>,
    kernel_page_size: u64,
    stats: Option<StatsJson>,
    /// Guard regions inside the VMA, from pagemap (empty where it cannot tell).
    guards: Vec<HoleJson>,
}

impl<'a> RegionJson<'a> {
    /// The JSON form of `r`.
    pub fn new(r: &'a Region) -> RegionJson<'a> {
        RegionJson {
            start: r.range.start,
            end: r.range.end,
            size: r.len(),
            prot: r.prot.to_string(),
            max_prot: r.max_prot().to_string(),
            shared: r.shared,
            offset: r.offset,
            dev: format!("{:02x}:{:02x}", r.dev.0, r.dev.1),
            inode: r.inode,
            name: r.path(),
            kind: r.mapping.kind_name(),
            inherit: inherit_name(r.inherit()),
            behavior: behavior_name(r.behavior()),
            locked: r.locked(),
            vm_flags: r.vm_flags.map(|f| f.names().collect()),
            kernel_page_size: r.kernel_page_size,
            stats: r.stats.as_ref().map(StatsJson::from),
            guards: Vec::new(),
        }
    }
}

#[derive(Serialize, Debug)]
struct EntryJson<'a> {
    start: u64,
    end: u64,
    size: u64,
    prot: String,
    max_prot: String,
    inherit: &'static str,
    wired: bool,
    behavior: &'static str,
    kind: &'static str,
    name: &'a str,
    offset: u64,
    stats: StatsJson,
}

#[derive(Serialize, Debug)]
struct HoleJson {
    start: u64,
    end: u64,
    size: u64,
}

#[derive(Serialize, Debug)]
struct SummaryJson {
    entries: usize,
    vmas: usize,
    mapped: u64,
    wired: u64,
    largest_user_gap: u64,
    max_map_count: Option<u64>,
    totals: StatsJson,
}

/// The whole document of one process.
#[derive(Serialize, Debug)]
pub struct MapJson<'a> {
    pid: u32,
    name: &'a str,
    threads: u64,
    detailed: bool,
    task_size: u64,
    regions: Vec<RegionJson<'a>>,
    entries: Vec<EntryJson<'a>>,
    holes: Vec<HoleJson>,
    summary: SummaryJson,
}

/// The process id `p` was read as (`self` is this process).
pub fn pid_number(p: &ProcMaps) -> u32 {
    match p.pid {
        vmspace::procmaps::Pid::Id(n) => n,
        vmspace::procmaps::Pid::This => std::process::id(),
    }
}

/// The document of `p`.
pub fn document(p: &ProcMaps, max_map_count: Option<u64>) -> MapJson<'_> {
    let stats = p.entry_stats();
    MapJson {
        pid: pid_number(p),
        name: &p.status.name,
        threads: p.status.threads,
        detailed: p.detailed,
        task_size: user_top(&p.map),
        regions: {
            let g = crate::mapview::guards(p);
            p.regions
                .iter()
                .map(|r| {
                    let mut j = RegionJson::new(r);
                    j.guards = g
                        .get(&r.range.start)
                        .into_iter()
                        .flatten()
                        .map(|x| HoleJson { start: x.start, end: x.end, size: x.end - x.start })
                        .collect();
                    j
                })
                .collect()
        },
        entries: p
            .map
            .entries()
            .zip(&stats)
            .map(|(e, st)| EntryJson {
                start: e.start,
                end: e.end,
                size: e.len(),
                prot: e.prot().to_string(),
                max_prot: e.max_prot().to_string(),
                inherit: inherit_name(e.inherit()),
                wired: e.user_wired(),
                behavior: behavior_name(e.behavior()),
                kind: e.object().kind_name(),
                name: entry_name(p, e),
                offset: e.offset(),
                stats: StatsJson::from(st),
            })
            .collect(),
        holes: user_holes(&p.map)
            .into_iter()
            .map(|(s, e)| HoleJson { start: s, end: e, size: e - s })
            .collect(),
        summary: SummaryJson {
            entries: p.map.len(),
            vmas: p.regions.len(),
            mapped: p.map.size(),
            wired: p.map.wired_size(),
            largest_user_gap: user_largest_gap(&p.map),
            max_map_count,
            totals: StatsJson::from(&totals(p)),
        },
    }
}

/// `value` as one line of JSON.
pub fn to_line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// The map of `p` as one JSON object on one line.
pub fn json(p: &ProcMaps, max_map_count: Option<u64>) -> String {
    to_line(&document(p, max_map_count))
}
