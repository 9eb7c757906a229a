//! Memory pressure, as Linux reports it: PSI (`/proc/pressure/memory`, or the process's cgroup v2
//! `memory.pressure`) and cgroup v2 `memory.events` (`high` / `max` events), the stand-in for xnu's
//! `memorystatus` pressure levels that make its reclaimer trim harder.
//!
//! Invariant: a source only reads files; a source that cannot be read reports `None` (no pressure
//! known), never an error that stops the reclaimer. Sources are injectable, so tests drive the pressure
//! path with made-up readings.

use std::fs;
use std::path::{Path, PathBuf};

/// A memory-pressure reading: the share of wall time, in percent (0–100), in which some task waited for
/// memory over the last ten seconds (PSI's `some avg10`). The [`Reclaimer`](super::Reclaimer) compares it
/// with its threshold (xnu's `kVMPressureWarning`/`Critical` levels play this part).
pub trait PressureSource: Send {
    /// The current pressure in percent, or `None` when unknown.
    fn read(&mut self) -> Option<f64>;
}

/// Any closure is a source: the injection point for tests (`|| Some(80.0)`).
impl<F: FnMut() -> Option<f64> + Send> PressureSource for F {
    fn read(&mut self) -> Option<f64> {
        self()
    }
}

/// PSI from a `memory.pressure`-format file (`some avg10=1.23 avg60=… total=…`).
#[derive(Debug, Clone)]
pub struct Psi {
    path: PathBuf,
}

impl Psi {
    /// A reader of the PSI file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Psi {
        Psi { path: path.into() }
    }

    /// The path read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl PressureSource for Psi {
    fn read(&mut self) -> Option<f64> {
        parse_psi_some_avg10(&fs::read_to_string(&self.path).ok()?)
    }
}

/// `some avg10` from PSI text.
pub fn parse_psi_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let v = line.split_whitespace().find_map(|f| f.strip_prefix("avg10="))?;
    v.parse().ok()
}

/// cgroup v2 `memory.events`: pressure is 100 % for a reading in which the `high` or `max` counter grew
/// since the previous one (the cgroup was throttled at `memory.high` or hit `memory.max`), else 0 %.
#[derive(Debug, Clone)]
pub struct CgroupEvents {
    path: PathBuf,
    last: Option<u64>,
}

impl CgroupEvents {
    /// A reader of the `memory.events` file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> CgroupEvents {
        CgroupEvents { path: path.into(), last: None }
    }
}

impl PressureSource for CgroupEvents {
    fn read(&mut self) -> Option<f64> {
        let text = fs::read_to_string(&self.path).ok()?;
        let count: u64 = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(k, _)| *k == "high" || *k == "max")
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .fold(0u64, u64::saturating_add);
        let grew = self.last.is_some_and(|l| count > l);
        self.last = Some(count);
        Some(if grew { 100.0 } else { 0.0 })
    }
}

/// This process's cgroup v2 directory (`0::/path` in `/proc/self/cgroup`), if it is mounted at
/// `/sys/fs/cgroup`.
pub fn own_cgroup_dir() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// The best source this system has, detected now: the cgroup's `memory.pressure` (PSI for this cgroup),
/// else the system's `/proc/pressure/memory`, else the cgroup's `memory.events`, else `None`.
pub fn detect() -> Option<Box<dyn PressureSource>> {
    let cg = own_cgroup_dir();
    let readable = |p: &Path| fs::read_to_string(p).ok().and_then(|t| parse_psi_some_avg10(&t)).is_some();
    if let Some(p) = cg.as_ref().map(|d| d.join("memory.pressure")).filter(|p| readable(p)) {
        return Some(Box::new(Psi::at(p)));
    }
    let sys = Path::new("/proc/pressure/memory");
    if readable(sys) {
        return Some(Box::new(Psi::at(sys)));
    }
    let ev = cg.map(|d| d.join("memory.events")).filter(|p| p.is_file())?;
    Some(Box::new(CgroupEvents::at(ev)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_psi() {
        let t =
            "some avg10=12.50 avg60=3.00 avg300=0.10 total=123\nfull avg10=1.00 avg60=0 avg300=0 total=4\n";
        assert_eq!(parse_psi_some_avg10(t), Some(12.5));
        assert_eq!(parse_psi_some_avg10("full avg10=1.00"), None);
        assert_eq!(parse_psi_some_avg10(""), None);
    }

    #[test]
    fn the_system_source_reads() {
        if let Some(mut s) = detect() {
            let v = s.read();
            assert!(v.is_none_or(|v| (0.0..=100.0).contains(&v)), "{v:?}");
        }
    }
}
