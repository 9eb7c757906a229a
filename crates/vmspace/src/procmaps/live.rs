//! Reading a live process: `/proc/PID/{status,smaps,maps,smaps_rollup}` read and loaded, each way a
//! process can vanish or refuse turned into one `ProcError` variant.
//!
//! Invariant: a `ProcMaps` is one consistent read: its regions are the VMAs of one read of smaps (or
//! maps), its map built from exactly those.

use std::fmt;
use std::io;
use std::ops::Range;

use crate::{VmError, VmMap};

use super::mapping::Mapping;
use super::parse::{ParseError, Status, parse_maps, parse_rollup, parse_smaps, parse_status};
use super::region::{Region, Stats, build_map};

/// Which process to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pid {
    /// The calling process (`/proc/self`).
    This,
    /// A process id.
    Id(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::This => "/proc/self".into(),
            Pid::Id(p) => format!("/proc/{p}"),
        }
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pid::This => f.write_str("self"),
            Pid::Id(p) => write!(f, "{p}"),
        }
    }
}

/// Why a process could not be loaded.
#[derive(Debug)]
pub enum ProcError {
    /// The process does not exist or exited while it was read (ENOENT, ESRCH), or is a zombie.
    Gone(Pid),
    /// Reading it is not permitted (EACCES, EPERM: another user's process without privilege).
    Denied(Pid),
    /// Another I/O error.
    Io(Pid, io::Error),
    /// A file did not parse.
    Parse(Pid, &'static str, ParseError),
    /// The regions could not be loaded into a map (they overlap, or lie outside the map).
    Map(Pid, Range<u64>, VmError),
}

impl ProcError {
    /// Whether the process simply vanished (as opposed to refusing or being malformed).
    pub fn is_gone(&self) -> bool {
        matches!(self, ProcError::Gone(_))
    }

    /// Whether reading was refused.
    pub fn is_denied(&self) -> bool {
        matches!(self, ProcError::Denied(_))
    }
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcError::Gone(p) => write!(f, "process {p} does not exist (or exited while being read)"),
            ProcError::Denied(p) => write!(f, "process {p}: permission denied (try as root or as its owner)"),
            ProcError::Io(p, e) => write!(f, "process {p}: {e}"),
            ProcError::Parse(p, file, e) => write!(f, "process {p}: /proc/{p}/{file}: {e}"),
            ProcError::Map(p, r, e) => write!(f, "process {p}: region {:#x}-{:#x}: {e}", r.start, r.end),
        }
    }
}

impl std::error::Error for ProcError {}

fn io_err(pid: Pid, e: io::Error) -> ProcError {
    match e.raw_os_error() {
        Some(2) | Some(3) => ProcError::Gone(pid),    // ENOENT, ESRCH
        Some(1) | Some(13) => ProcError::Denied(pid), // EPERM, EACCES
        _ => match e.kind() {
            io::ErrorKind::NotFound => ProcError::Gone(pid),
            io::ErrorKind::PermissionDenied => ProcError::Denied(pid),
            _ => ProcError::Io(pid, e),
        },
    }
}

/// Reads a whole /proc file into `buf` (cleared first).
fn read_into(path: &str, buf: &mut String) -> io::Result<()> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)?.read_to_string(buf)?;
    Ok(())
}

/// A process's address space: its VMAs, the map built from them, its totals.
#[derive(Debug)]
pub struct ProcMaps {
    /// The process read.
    pub pid: Pid,
    /// What `status` says (name, threads, VmSize…).
    pub status: Status,
    /// The VMAs in address order.
    pub regions: Vec<Region>,
    /// The map: one insert per VMA, merged where attributes are equal.
    pub map: VmMap<Mapping>,
    /// `smaps_rollup`'s totals, when it could be read.
    pub rollup: Option<Stats>,
    /// Whether per-region counters and VmFlags were available (smaps readable).
    pub detailed: bool,
}

impl ProcMaps {
    /// Reads `/proc/PID/{status,smaps,smaps_rollup}` (falling back to `maps` when `smaps` is refused)
    /// and builds the map.
    ///
    /// Errors: the process is gone or exits meanwhile → [`ProcError::Gone`]; not readable →
    /// [`ProcError::Denied`]; malformed text → [`ProcError::Parse`]. A kernel thread loads as an empty
    /// map.
    pub fn load(pid: Pid) -> Result<ProcMaps, ProcError> {
        let mut buf = String::with_capacity(64 * 1024);
        Self::load_with(pid, &mut buf)
    }

    /// [`ProcMaps::load`] reusing `buf` for the file contents.
    pub fn load_with(pid: Pid, buf: &mut String) -> Result<ProcMaps, ProcError> {
        Self::load_opts(pid, buf, true)
    }

    /// [`ProcMaps::load_with`] without reading `smaps_rollup` (`rollup` is `None`): the kernel walks
    /// the page tables once for `smaps` and again for the rollup, so a survey of every process
    /// (`vmspace top`) that can live with Pss summed per VMA (rounded down to a kB each) reads half.
    pub fn load_without_rollup(pid: Pid, buf: &mut String) -> Result<ProcMaps, ProcError> {
        Self::load_opts(pid, buf, false)
    }

    fn load_opts(pid: Pid, buf: &mut String, with_rollup: bool) -> Result<ProcMaps, ProcError> {
        let dir = pid.dir();
        read_into(&format!("{dir}/status"), buf).map_err(|e| io_err(pid, e))?;
        let status = parse_status(buf);
        let (regions, detailed) = match read_into(&format!("{dir}/smaps"), buf) {
            Ok(()) => (parse_smaps(buf).map_err(|e| ProcError::Parse(pid, "smaps", e))?, true),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                read_into(&format!("{dir}/maps"), buf).map_err(|e| io_err(pid, e))?;
                (parse_maps(buf).map_err(|e| ProcError::Parse(pid, "maps", e))?, false)
            }
            Err(e) => return Err(io_err(pid, e)),
        };
        let rollup = match with_rollup.then(|| read_into(&format!("{dir}/smaps_rollup"), buf)) {
            Some(Ok(())) => Some(parse_rollup(buf).map_err(|e| ProcError::Parse(pid, "smaps_rollup", e))?),
            _ => None,
        };
        let map = build_map(&regions).map_err(|(r, e)| ProcError::Map(pid, r, e))?;
        Ok(ProcMaps { pid, status, regions, map, rollup, detailed })
    }

    /// The sum of the regions' counters.
    pub fn totals(&self) -> Stats {
        let mut t = Stats::default();
        for r in &self.regions {
            if let Some(s) = &r.stats {
                t.add(s);
            }
        }
        t
    }

    /// For each map entry, in order, the sum of the counters of the regions it is made of.
    pub fn entry_stats(&self) -> Vec<Stats> {
        let mut out = Vec::with_capacity(self.map.len());
        let mut i = 0;
        for e in self.map.entries() {
            let mut s = Stats::default();
            while i < self.regions.len() && self.regions[i].range.start < e.end {
                if self.regions[i].range.end > e.start
                    && let Some(st) = &self.regions[i].stats
                {
                    s.add(st);
                }
                i += 1;
            }
            out.push(s);
        }
        out
    }

    /// Bytes of the `[vsyscall]` page(s): mapped in every process but not a VMA, so not in `VmSize`.
    pub fn gate_size(&self) -> u64 {
        self.regions.iter().filter(|r| r.mapping == Mapping::Vsyscall).map(Region::len).sum()
    }
}

/// The ids of every process in `/proc`, in increasing order.
pub fn all_pids() -> io::Result<Vec<u32>> {
    let mut v: Vec<u32> =
        std::fs::read_dir("/proc")?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    v.sort_unstable();
    Ok(v)
}

/// `vm.max_map_count` (`/proc/sys/vm/max_map_count`): the most VMAs a process may have.
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_self() {
        let p = ProcMaps::load(Pid::This).unwrap();
        assert!(p.map.len() > 3);
        p.map.check_invariants().unwrap();
        assert!(p.detailed);
        assert!(p.regions.iter().any(|r| r.mapping == Mapping::Stack));
    }

    #[test]
    fn missing_pid_is_gone() {
        let e = ProcMaps::load(Pid::Id(u32::MAX - 1)).unwrap_err();
        assert!(e.is_gone(), "{e}");
    }
}
