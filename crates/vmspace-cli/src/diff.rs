//! `vmspace diff A B`: two address spaces compared VMA by VMA. Each side is a snapshot written by
//! `vmspace map PID --json` or a live process (`PID`, `self`). VMAs are matched by start address:
//! one only in A was removed, one only in B was added, one in both whose end, protection, sharing,
//! offset, name or VmFlags differ was changed; resident, dirty and swapped bytes are compared per
//! matched VMA and in total. Any of these is a difference (exit 1).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vmspace::procmaps::{Pid, ProcMaps, Region};

use crate::out::{esc, human};

/// One VMA as a diff sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// `r-x` and so on.
    pub prot: String,
    /// `MAP_SHARED`.
    pub shared: bool,
    /// Page offset in bytes.
    pub offset: u64,
    /// The kernel's name.
    pub name: String,
    /// VmFlags mnemonics (empty when not known).
    #[serde(default)]
    pub vm_flags: Option<Vec<String>>,
    /// The counters (absent when smaps was not readable).
    #[serde(default)]
    pub stats: Option<Counts>,
}

/// The counters a diff compares, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// `Rss`.
    pub rss: u64,
    /// `Shared_Dirty`.
    #[serde(default)]
    pub shared_dirty: u64,
    /// `Private_Dirty`.
    #[serde(default)]
    pub private_dirty: u64,
    /// `Swap`.
    #[serde(default)]
    pub swap: u64,
}

impl Counts {
    fn dirty(&self) -> u64 {
        self.shared_dirty + self.private_dirty
    }
}

/// One side: its label and VMAs in address order.
#[derive(Clone, Debug, Deserialize)]
pub struct Side {
    /// The process the VMAs belong to.
    pub pid: u32,
    /// The VMAs.
    pub regions: Vec<Vma>,
}

fn vma_of(r: &Region) -> Vma {
    Vma {
        start: r.range.start,
        end: r.range.end,
        prot: r.prot.to_string(),
        shared: r.shared,
        offset: r.offset,
        name: r.path().to_string(),
        vm_flags: r.vm_flags.map(|f| f.names().map(String::from).collect()),
        stats: r.stats.as_ref().map(|s| Counts {
            rss: s.rss,
            shared_dirty: s.shared_dirty,
            private_dirty: s.private_dirty,
            swap: s.swap,
        }),
    }
}

/// Reads one side: `self`, a pid, or a file holding `vmspace map --json` output (its first line).
pub fn load(arg: &str) -> Result<Side, String> {
    let live = if arg == "self" { Some(Pid::This) } else { arg.parse::<u32>().ok().map(Pid::Id) };
    if let Some(pid) = live
        && !std::path::Path::new(arg).exists()
    {
        let p = ProcMaps::load(pid).map_err(|e| e.to_string())?;
        return Ok(Side {
            pid: crate::mapjson::pid_number(&p),
            regions: p.regions.iter().map(vma_of).collect(),
        });
    }
    let text = std::fs::read_to_string(arg).map_err(|e| format!("{arg}: {e}"))?;
    let first =
        text.lines().find(|l| !l.trim().is_empty()).ok_or_else(|| format!("{arg}: empty snapshot"))?;
    let mut side: Side = serde_json::from_str(first)
        .map_err(|e| format!("{arg}: not a `vmspace map --json` snapshot ({e})"))?;
    side.regions.sort_by_key(|v| v.start);
    if side.regions.windows(2).any(|w| w[0].end > w[1].start || w[0].start >= w[0].end) {
        return Err(format!("{arg}: regions overlap or are empty"));
    }
    Ok(side)
}

/// A VMA in both sides that differs.
#[derive(Clone, Debug, Serialize)]
pub struct Changed {
    /// In A.
    pub before: Vma,
    /// In B.
    pub after: Vma,
    /// What differs: `end`, `prot`, `shared`, `offset`, `name`, `vm_flags`, `rss`, `dirty`, `swap`.
    pub what: Vec<&'static str>,
    /// B's `Rss` minus A's.
    pub rss_delta: i64,
    /// B's dirty bytes minus A's.
    pub dirty_delta: i64,
    /// B's `Swap` minus A's.
    pub swap_delta: i64,
}

/// The differences.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    /// A's pid.
    pub a: u32,
    /// B's pid.
    pub b: u32,
    /// VMAs only in B.
    pub added: Vec<Vma>,
    /// VMAs only in A.
    pub removed: Vec<Vma>,
    /// VMAs in both that differ.
    pub changed: Vec<Changed>,
    /// Total `Rss`, dirty and `Swap` deltas (B minus A) and mapped bytes delta.
    pub rss_delta: i64,
    /// Total dirty delta.
    pub dirty_delta: i64,
    /// Total swap delta.
    pub swap_delta: i64,
    /// Total mapped delta.
    pub mapped_delta: i64,
}

impl Diff {
    /// Whether A and B differ.
    pub fn differs(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty() || !self.changed.is_empty()
    }
}

fn delta(a: u64, b: u64) -> i64 {
    (b as i128 - a as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Compares `a` with `b`.
pub fn diff(a: &Side, b: &Side) -> Diff {
    let mut d = Diff { a: a.pid, b: b.pid, ..Diff::default() };
    let (mut i, mut j) = (0, 0);
    let counts = |v: &Vma| v.stats.unwrap_or_default();
    while i < a.regions.len() || j < b.regions.len() {
        let (x, y) = (a.regions.get(i), b.regions.get(j));
        match (x, y) {
            (Some(x), Some(y)) if x.start == y.start => {
                let (cx, cy) = (counts(x), counts(y));
                let mut what = Vec::new();
                for (name, differs) in [
                    ("end", x.end != y.end),
                    ("prot", x.prot != y.prot),
                    ("shared", x.shared != y.shared),
                    ("offset", x.offset != y.offset),
                    ("name", x.name != y.name),
                    ("vm_flags", x.vm_flags.is_some() && y.vm_flags.is_some() && x.vm_flags != y.vm_flags),
                    ("rss", cx.rss != cy.rss),
                    ("dirty", cx.dirty() != cy.dirty()),
                    ("swap", cx.swap != cy.swap),
                ] {
                    if differs {
                        what.push(name);
                    }
                }
                if !what.is_empty() {
                    d.changed.push(Changed {
                        before: x.clone(),
                        after: y.clone(),
                        what,
                        rss_delta: delta(cx.rss, cy.rss),
                        dirty_delta: delta(cx.dirty(), cy.dirty()),
                        swap_delta: delta(cx.swap, cy.swap),
                    });
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.start < y.start => {
                d.removed.push(x.clone());
                i += 1;
            }
            (Some(x), None) => {
                d.removed.push(x.clone());
                i += 1;
            }
            (_, Some(y)) => {
                d.added.push(y.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    let sum = |s: &Side, f: fn(&Counts) -> u64| s.regions.iter().map(|v| f(&counts(v))).sum::<u64>();
    d.rss_delta = delta(sum(a, |c| c.rss), sum(b, |c| c.rss));
    d.dirty_delta = delta(sum(a, Counts::dirty), sum(b, Counts::dirty));
    d.swap_delta = delta(sum(a, |c| c.swap), sum(b, |c| c.swap));
    let mapped = |s: &Side| s.regions.iter().map(|v| v.end - v.start).sum::<u64>();
    d.mapped_delta = delta(mapped(a), mapped(b));
    d
}

/// `+12K`, `-4K`, `0`.
pub fn signed(n: i64) -> String {
    match n.signum() {
        1 => format!("+{}", human(n.unsigned_abs())),
        -1 => format!("-{}", human(n.unsigned_abs())),
        _ => "0".into(),
    }
}

fn line(v: &Vma) -> String {
    format!(
        "{:>12x}-{:<12x} {}{} {:>6}  {}",
        v.start,
        v.end,
        v.prot,
        if v.shared { 's' } else { 'p' },
        human(v.end - v.start),
        esc(if v.name.is_empty() { "[anon]" } else { &v.name })
    )
}

/// The diff as text: `-` removed, `+` added, `~` changed, then the totals.
pub fn text(d: &Diff) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "--- pid {}\n+++ pid {}", d.a, d.b);
    let mut rows: Vec<(u64, String)> = Vec::new();
    rows.extend(d.removed.iter().map(|v| (v.start, format!("- {}", line(v)))));
    rows.extend(d.added.iter().map(|v| (v.start, format!("+ {}", line(v)))));
    for c in &d.changed {
        let mut notes = Vec::new();
        if c.before.end != c.after.end {
            notes.push(format!(
                "size {} -> {}",
                human(c.before.end - c.before.start),
                human(c.after.end - c.after.start)
            ));
        }
        if c.before.prot != c.after.prot {
            notes.push(format!("prot {} -> {}", c.before.prot, c.after.prot));
        }
        for (w, n) in [("rss", c.rss_delta), ("dirty", c.dirty_delta), ("swap", c.swap_delta)] {
            if n != 0 {
                notes.push(format!("{w} {}", signed(n)));
            }
        }
        for w in &c.what {
            if matches!(*w, "shared" | "offset" | "name" | "vm_flags") {
                notes.push(format!("{w} changed"));
            }
        }
        rows.push((c.after.start, format!("~ {}  ({})", line(&c.after), notes.join(", "))));
    }
    rows.sort_by_key(|r| r.0);
    for (_, r) in rows {
        let _ = writeln!(o, "{r}");
    }
    let _ = writeln!(
        o,
        "{} added, {} removed, {} changed; mapped {}, resident {}, dirty {}, swap {}",
        d.added.len(),
        d.removed.len(),
        d.changed.len(),
        signed(d.mapped_delta),
        signed(d.rss_delta),
        signed(d.dirty_delta),
        signed(d.swap_delta)
    );
    o
}
