//! `vmspace top`: every readable process, one row each, from the map [`ProcMaps`] builds.

use std::fmt::Write as _;

use serde::Serialize;
use vmspace::procmaps::{self, Pid, ProcMaps};

use crate::mapview::{totals, user_largest_gap};
use crate::out::{Style, esc, grouped, human};

/// One process's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub name: String,
    /// Map entries (merged VMAs).
    pub entries: u64,
    /// Linux VMAs (what `vm.max_map_count` limits).
    pub vmas: u64,
    /// Bytes mapped.
    pub mapped: u64,
    /// Resident bytes.
    pub rss: u64,
    /// Proportional resident bytes.
    pub pss: u64,
    /// Unique set size: `Private_Clean + Private_Dirty`.
    pub uss: u64,
    /// Dirty resident bytes: `Shared_Dirty + Private_Dirty`.
    pub dirty: u64,
    /// Swapped bytes.
    pub swap: u64,
    /// Wired (mlocked) bytes.
    pub wired: u64,
    /// Largest free gap in user space.
    #[serde(rename = "largest_gap")]
    pub gap: u64,
    /// Whether its memory could be read. A process of another user, read without privilege, is
    /// listed with its name and `false` here, and every counter 0 (shown as `?`).
    pub readable: bool,
}

/// What was not shown, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Exited while being read.
    pub gone: u64,
    /// Not readable (permission).
    pub denied: u64,
    /// Kernel threads (no address space: `Kthread: 1`, or no memory and not a zombie).
    #[serde(rename = "kernel_threads")]
    pub kernel: u64,
    /// Zombies (`State: Z`): exited, not yet reaped, their memory already freed.
    pub zombies: u64,
    /// Other errors.
    pub other: u64,
}

/// Sort keys: every size column sorts largest first; `pid` sorts ascending, the order `ps` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// Map entries.
    Entries,
    /// Resident bytes.
    Rss,
    /// Proportional resident bytes.
    Pss,
    /// Unique set size.
    Uss,
    /// Dirty bytes.
    Dirty,
    /// Swapped bytes.
    Swap,
    /// Mapped bytes.
    Mapped,
    /// Wired bytes.
    Wired,
    /// Largest free gap.
    Gap,
    /// Process id (ascending).
    Pid,
}

/// Which processes `top` shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only these user ids.
    pub uid: Option<u32>,
    /// Only processes whose command name contains this.
    pub name: Option<String>,
    /// Only these pids.
    pub pids: Vec<u32>,
}

impl Filter {
    fn keeps(&self, p: &ProcMaps) -> bool {
        self.uid.is_none_or(|u| p.status.uid == u)
            && self.name.as_ref().is_none_or(|n| p.status.name.contains(n.as_str()))
    }
}

/// The user id of `user`: a number, or a name in `/etc/passwd`.
pub fn uid_of(user: &str) -> Result<u32, String> {
    if let Ok(u) = user.parse() {
        return Ok(u);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(user)).then(|| f.nth(1)?.parse().ok()).flatten()
        })
        .ok_or_else(|| format!("--user: no user '{user}'"))
}

/// Loads every process in `/proc`. Processes that vanish or refuse are counted in [`Skipped`].
pub fn collect() -> Result<(Vec<Row>, Skipped), String> {
    collect_filtered(&Filter::default())
}

/// [`collect`], keeping only what `f` selects (skipped counts cover the selected pids only).
pub fn collect_filtered(f: &Filter) -> Result<(Vec<Row>, Skipped), String> {
    let mut pids = procmaps::all_pids().map_err(|e| format!("/proc: {e}"))?;
    if !f.pids.is_empty() {
        pids.retain(|p| f.pids.contains(p));
    }
    let mut rows = Vec::new();
    let mut sk = Skipped::default();
    let mut buf = String::with_capacity(256 * 1024);
    for pid in pids {
        // smaps only: the rollup would make the kernel walk every page table a second time.
        match ProcMaps::load_without_rollup(Pid::Id(pid), &mut buf) {
            Ok(p) if !f.keeps(&p) => {}
            Ok(p) if p.regions.is_empty() && p.status.state == 'Z' => sk.zombies += 1,
            Ok(p) if p.regions.is_empty() => sk.kernel += 1,
            Ok(p) => rows.push(row(pid, &p)),
            Err(e) if e.is_gone() => sk.gone += 1,
            Err(e) if e.is_denied() => {
                sk.denied += 1;
                rows.extend(unreadable_row(pid, f));
            }
            Err(_) => sk.other += 1,
        }
    }
    Ok((rows, sk))
}

/// The row of a loaded process.
pub fn row(pid: u32, p: &ProcMaps) -> Row {
    let t = totals(p);
    Row {
        pid,
        name: p.status.name.clone(),
        entries: p.map.len() as u64,
        vmas: p.regions.len() as u64,
        mapped: p.map.size(),
        rss: t.rss,
        pss: t.pss,
        uss: t.private,
        dirty: t.shared_dirty + t.private_dirty,
        swap: t.swap,
        wired: p.map.wired_size(),
        gap: user_largest_gap(&p.map),
        readable: true,
    }
}

/// The row of a process whose memory may not be read: its name and owner from `status`, which
/// anyone may read; `None` if even that is gone.
fn unreadable_row(pid: u32, f: &Filter) -> Option<Row> {
    let st = procmaps::parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?);
    let keep =
        f.uid.is_none_or(|u| st.uid == u) && f.name.as_ref().is_none_or(|n| st.name.contains(n.as_str()));
    keep.then_some(Row {
        pid,
        name: st.name,
        entries: 0,
        vmas: 0,
        mapped: 0,
        rss: 0,
        pss: 0,
        uss: 0,
        dirty: 0,
        swap: 0,
        wired: 0,
        gap: 0,
        readable: false,
    })
}

/// Sorts rows by `key`, largest first (pid ascending for `Pid`).
pub fn sort(rows: &mut [Row], key: SortKey) {
    rows.sort_by(|a, b| {
        let k = |r: &Row| match key {
            SortKey::Entries => r.entries,
            SortKey::Rss => r.rss,
            SortKey::Pss => r.pss,
            SortKey::Uss => r.uss,
            SortKey::Dirty => r.dirty,
            SortKey::Swap => r.swap,
            SortKey::Mapped => r.mapped,
            SortKey::Wired => r.wired,
            SortKey::Gap => r.gap,
            SortKey::Pid => u64::MAX - r.pid as u64,
        };
        // Unreadable processes go last whatever the key: their counters are unknown, not 0.
        b.readable.cmp(&a.readable).then(k(b).cmp(&k(a))).then(a.pid.cmp(&b.pid))
    });
}

/// The table.
pub fn text(
    rows: &[Row],
    sk: Skipped,
    max_map_count: Option<u64>,
    style: Style,
    limit: Option<usize>,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}",
        style.paint(
            "1",
            &format!(
                "{:>7} {:<16} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6}",
                "PID",
                "NAME",
                "ENTRIES",
                "VMAS",
                "MAPPED",
                "RSS",
                "PSS",
                "USS",
                "DIRTY",
                "SWAP",
                "WIRED",
                "GAP",
                "MAXMAP"
            )
        )
    );
    let shown = limit.unwrap_or(usize::MAX).min(rows.len());
    for r in &rows[..shown] {
        let pct = match max_map_count {
            Some(m) if m > 0 => format!("{:.1}%", r.vmas as f64 * 100.0 / m as f64),
            _ => "?".into(),
        };
        let name: String = esc(&r.name).chars().take(16).collect();
        if !r.readable {
            let _ =
                writeln!(o, "{:>7} {:<16} {:>7}  (not permitted: another user's process)", r.pid, name, "?");
            continue;
        }
        let _ = writeln!(
            o,
            "{:>7} {:<16} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6}",
            r.pid,
            name,
            grouped(r.entries),
            grouped(r.vmas),
            human(r.mapped),
            human(r.rss),
            human(r.pss),
            human(r.uss),
            human(r.dirty),
            human(r.swap),
            human(r.wired),
            human(r.gap),
            pct
        );
    }
    let sum = |f: fn(&Row) -> u64| rows.iter().map(f).sum::<u64>();
    let _ = writeln!(
        o,
        "{} processes{}{}: {} mapped, {} resident, Pss {}, swap {}, wired {}; vm.max_map_count {}",
        rows.len(),
        if shown < rows.len() { format!(" ({shown} shown)") } else { String::new() },
        match rows.iter().filter(|r| !r.readable).count() {
            0 => String::new(),
            n => format!(", {n} not readable"),
        },
        human(sum(|r| r.mapped)),
        human(sum(|r| r.rss)),
        human(sum(|r| r.pss)),
        human(sum(|r| r.swap)),
        human(sum(|r| r.wired)),
        max_map_count.map_or("?".to_string(), grouped)
    );
    let _ = writeln!(
        o,
        "skipped: {} kernel threads, {} zombies, {} exited while read; {} not permitted (listed as ?), {} unreadable",
        sk.kernel, sk.zombies, sk.gone, sk.denied, sk.other
    );
    o
}

#[derive(Serialize)]
struct TopJson<'a> {
    processes: &'a [Row],
    skipped: Skipped,
    max_map_count: Option<u64>,
}

/// The rows as JSON: `{"processes": [{"pid", "name", "entries", "vmas", "mapped", "rss", "pss",
/// "uss", "dirty", "swap", "wired", "largest_gap"}], "skipped": {"gone", "denied", "kernel_threads", "zombies",
/// "other"}, "max_map_count": N | null}`, sizes in bytes.
pub fn json(rows: &[Row], sk: Skipped, max_map_count: Option<u64>) -> String {
    crate::mapjson::to_line(&TopJson { processes: rows, skipped: sk, max_map_count })
}
