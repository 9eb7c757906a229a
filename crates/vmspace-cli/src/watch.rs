//! Watch modes: `vmspace top --interval SECS [--count N]` and `vmspace map PID --interval SECS`,
//! a sample every SECS with what changed since the one before. Cheap enough for every second on a
//! busy machine: `top` reads only `status` and `smaps_rollup` (the kernel sums the counters; no
//! per-VMA text), `map` asks the VMA list with the `PROCMAP_QUERY` ioctl (Linux 6.11; parsing
//! `maps` before) and the totals from `smaps_rollup`. Each sample says what it cost.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use vmspace::procmaps::{self, Stats};

use crate::diff::signed;
use crate::out::{esc, human};
use crate::top::Filter;

/// One process in a `top` sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcSample {
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub name: String,
    /// `Rss`.
    pub rss: u64,
    /// `Pss`.
    pub pss: u64,
    /// `Private_Clean + Private_Dirty`.
    pub uss: u64,
    /// `Shared_Dirty + Private_Dirty`.
    pub dirty: u64,
    /// `Swap`.
    pub swap: u64,
    /// Not in the sample before.
    pub new: bool,
    /// `rss` minus the sample before's (0 when new).
    pub rss_delta: i64,
    /// `pss` delta.
    pub pss_delta: i64,
    /// `uss` delta.
    pub uss_delta: i64,
    /// `dirty` delta.
    pub dirty_delta: i64,
    /// `swap` delta.
    pub swap_delta: i64,
}

/// A `top` sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TopSample {
    /// 1-based sample number.
    pub sample: u64,
    /// Processes read.
    pub processes: Vec<ProcSample>,
    /// Pids of the sample before that are gone.
    pub exited: Vec<u32>,
    /// Processes that could not be read (permission, kernel threads, zombies).
    pub unreadable: u64,
    /// Wall time the sample took, in milliseconds.
    pub ms: f64,
    /// `ms` per process read.
    pub ms_per_process: f64,
}

fn delta(a: u64, b: u64) -> i64 {
    (b as i128 - a as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Reads one `top` sample, deltas against `before`.
pub fn top_sample(n: u64, f: &Filter, before: &HashMap<u32, ProcSample>) -> Result<TopSample, String> {
    let t0 = Instant::now();
    let mut pids = procmaps::all_pids().map_err(|e| format!("/proc: {e}"))?;
    if !f.pids.is_empty() {
        pids.retain(|p| f.pids.contains(p));
    }
    let mut s = TopSample { sample: n, ..TopSample::default() };
    let mut buf = String::with_capacity(4096);
    for pid in pids {
        let read = |file: &str, buf: &mut String| {
            use std::io::Read;
            buf.clear();
            std::fs::File::open(format!("/proc/{pid}/{file}")).and_then(|mut h| h.read_to_string(buf)).is_ok()
        };
        if !read("status", &mut buf) {
            continue;
        }
        let st = procmaps::parse_status(&buf);
        if f.uid.is_some_and(|u| st.uid != u)
            || f.name.as_ref().is_some_and(|n| !st.name.contains(n.as_str()))
        {
            continue;
        }
        if !read("smaps_rollup", &mut buf) || buf.trim().is_empty() {
            s.unreadable += 1;
            continue;
        }
        let Ok(r) = procmaps::parse_rollup(&buf) else {
            s.unreadable += 1;
            continue;
        };
        s.processes.push(proc_sample(pid, st.name, &r, before.get(&pid)));
    }
    let now: std::collections::HashSet<u32> = s.processes.iter().map(|p| p.pid).collect();
    s.exited = before.keys().copied().filter(|p| !now.contains(p)).collect();
    s.exited.sort_unstable();
    s.ms = t0.elapsed().as_secs_f64() * 1e3;
    s.ms_per_process = s.ms / s.processes.len().max(1) as f64;
    // What grew most first, then the largest.
    s.processes.sort_by(|a, b| {
        b.rss_delta
            .unsigned_abs()
            .cmp(&a.rss_delta.unsigned_abs())
            .then(b.pss.cmp(&a.pss))
            .then(a.pid.cmp(&b.pid))
    });
    Ok(s)
}

fn proc_sample(pid: u32, name: String, r: &Stats, before: Option<&ProcSample>) -> ProcSample {
    let mut p = ProcSample {
        pid,
        name,
        rss: r.rss,
        pss: r.pss,
        uss: r.private,
        dirty: r.shared_dirty + r.private_dirty,
        swap: r.swap,
        new: before.is_none(),
        ..ProcSample::default()
    };
    if let Some(b) = before {
        p.rss_delta = delta(b.rss, p.rss);
        p.pss_delta = delta(b.pss, p.pss);
        p.uss_delta = delta(b.uss, p.uss);
        p.dirty_delta = delta(b.dirty, p.dirty);
        p.swap_delta = delta(b.swap, p.swap);
    }
    p
}

/// A `top` sample as a table of at most `limit` rows.
pub fn top_text(s: &TopSample, limit: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "-- sample {}: {} processes in {:.1} ms ({:.3} ms per process){}{}",
        s.sample,
        s.processes.len(),
        s.ms,
        s.ms_per_process,
        if s.exited.is_empty() { String::new() } else { format!("; exited: {:?}", s.exited) },
        if s.unreadable > 0 { format!("; {} not readable", s.unreadable) } else { String::new() }
    );
    let _ = writeln!(
        o,
        "{:>7} {:<16} {:>6} {:>7} {:>6} {:>7} {:>6} {:>7} {:>6} {:>7} {:>6} {:>7}",
        "PID", "NAME", "RSS", "ΔRSS", "PSS", "ΔPSS", "USS", "ΔUSS", "DIRTY", "ΔDIRTY", "SWAP", "ΔSWAP"
    );
    for p in s.processes.iter().take(limit) {
        let d = |n: i64| if p.new { "new".to_string() } else { signed(n) };
        let name: String = esc(&p.name).chars().take(16).collect();
        let _ = writeln!(
            o,
            "{:>7} {:<16} {:>6} {:>7} {:>6} {:>7} {:>6} {:>7} {:>6} {:>7} {:>6} {:>7}",
            p.pid,
            name,
            human(p.rss),
            d(p.rss_delta),
            human(p.pss),
            d(p.pss_delta),
            human(p.uss),
            d(p.uss_delta),
            human(p.dirty),
            d(p.dirty_delta),
            human(p.swap),
            d(p.swap_delta)
        );
    }
    o
}

/// One VMA of a `map` sample.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmaSample {
    /// Start.
    pub start: u64,
    /// End.
    pub end: u64,
    /// Protection and sharing (`rw-p`).
    pub perms: String,
    /// The kernel's name.
    pub name: String,
}

/// A `map` sample: what appeared, went and changed size since the sample before, and the totals.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MapSample {
    /// 1-based sample number.
    pub sample: u64,
    /// The process.
    pub pid: u32,
    /// VMAs now.
    pub vmas: usize,
    /// Whether the VMAs came from `PROCMAP_QUERY` (else from parsing `maps`).
    pub procmap_query: bool,
    /// VMAs new since the sample before.
    pub appeared: Vec<VmaSample>,
    /// VMAs gone.
    pub gone: Vec<VmaSample>,
    /// VMAs whose end or protection changed: (before, after).
    pub changed: Vec<(VmaSample, VmaSample)>,
    /// `smaps_rollup` now.
    pub rss: u64,
    /// `Pss`.
    pub pss: u64,
    /// Dirty bytes.
    pub dirty: u64,
    /// `Swap`.
    pub swap: u64,
    /// Deltas against the sample before.
    pub rss_delta: i64,
    /// `pss` delta.
    pub pss_delta: i64,
    /// `dirty` delta.
    pub dirty_delta: i64,
    /// `swap` delta.
    pub swap_delta: i64,
    /// Milliseconds the sample took.
    pub ms: f64,
}

/// The VMAs of `pid`: `PROCMAP_QUERY` where the kernel has it, else `maps` parsed.
fn vmas_of(pid: u32) -> Result<(Vec<VmaSample>, bool), String> {
    let path = format!("/proc/{pid}/maps");
    let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let perms = |p: vmspace_core::Prot, s: bool| format!("{p}{}", if s { 's' } else { 'p' });
    if let Some(v) =
        vmspace::os::inspect::query_vmas(&f).map_err(|e| format!("{path}: PROCMAP_QUERY: {e}"))?
    {
        let v = v
            .into_iter()
            .map(|q| VmaSample {
                start: q.range.start,
                end: q.range.end,
                perms: perms(q.prot, q.shared),
                name: q.name,
            })
            .collect();
        return Ok((v, true));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let r = procmaps::parse_maps(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok((
        r.into_iter()
            .map(|r| VmaSample {
                start: r.range.start,
                end: r.range.end,
                perms: perms(r.prot, r.shared),
                name: r.line.name,
            })
            .collect(),
        false,
    ))
}

/// Reads one `map` sample of `pid`, against `before` (the VMAs and the sample before).
pub fn map_sample(
    n: u64,
    pid: u32,
    before: Option<&(Vec<VmaSample>, MapSample)>,
) -> Result<(Vec<VmaSample>, MapSample), String> {
    let t0 = Instant::now();
    let (vmas, pq) = vmas_of(pid)?;
    let path = format!("/proc/{pid}/smaps_rollup");
    let r = procmaps::parse_rollup(&std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?)
        .map_err(|e| format!("{path}: {e}"))?;
    let mut s = MapSample {
        sample: n,
        pid,
        vmas: vmas.len(),
        procmap_query: pq,
        rss: r.rss,
        pss: r.pss,
        dirty: r.shared_dirty + r.private_dirty,
        swap: r.swap,
        ..MapSample::default()
    };
    if let Some((old, b)) = before {
        let by_start: HashMap<u64, &VmaSample> = old.iter().map(|v| (v.start, v)).collect();
        let now: HashMap<u64, &VmaSample> = vmas.iter().map(|v| (v.start, v)).collect();
        for v in &vmas {
            match by_start.get(&v.start) {
                None => s.appeared.push(v.clone()),
                Some(o) if *o != v => s.changed.push(((*o).clone(), v.clone())),
                _ => {}
            }
        }
        s.gone = old.iter().filter(|v| !now.contains_key(&v.start)).cloned().collect();
        s.rss_delta = delta(b.rss, s.rss);
        s.pss_delta = delta(b.pss, s.pss);
        s.dirty_delta = delta(b.dirty, s.dirty);
        s.swap_delta = delta(b.swap, s.swap);
    }
    s.ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok((vmas, s))
}

/// A `map` sample as text.
pub fn map_text(s: &MapSample) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "-- sample {} of pid {}: {} VMAs ({}), {:.2} ms; resident {} ({}), Pss {} ({}), dirty {} ({}), swap {} ({})",
        s.sample,
        s.pid,
        s.vmas,
        if s.procmap_query { "PROCMAP_QUERY" } else { "maps" },
        s.ms,
        human(s.rss),
        signed(s.rss_delta),
        human(s.pss),
        signed(s.pss_delta),
        human(s.dirty),
        signed(s.dirty_delta),
        human(s.swap),
        signed(s.swap_delta)
    );
    let row = |v: &VmaSample| {
        let name = if v.name.is_empty() { "[anon]" } else { &v.name };
        format!("{:>12x}-{:<12x} {} {:>6}  {}", v.start, v.end, v.perms, human(v.end - v.start), esc(name))
    };
    for v in &s.appeared {
        let _ = writeln!(o, "+ {}", row(v));
    }
    for v in &s.gone {
        let _ = writeln!(o, "- {}", row(v));
    }
    for (a, b) in &s.changed {
        let _ = writeln!(o, "~ {}  (was {} {})", row(b), a.perms, human(a.end - a.start));
    }
    o
}

/// Sleeps until `start + k * interval`, so samples keep their period whatever each one cost.
pub fn sleep_until(start: Instant, k: u64, interval: Duration) {
    let at = start + interval.mul_f64(k as f64);
    if let Some(d) = at.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}
