//! The parsers: pure functions of the text of `/proc/PID/{maps,smaps,smaps_rollup,status}`, so they
//! can be tested on snapshots. The `maps` and `smaps` formats are parsed once, in
//! `vmspace_linux::proc`; here their lines become `Region`s.
//!
//! Invariant: a text either parses whole, in order, or gives the first bad line's number and content.

use std::fmt;

use vmspace_linux::proc::maps::MapsLine;

use super::region::{Region, Stats};

/// Why a text could not be parsed: the 1-based line number and the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The offending line (cut to 200 characters).
    pub content: String,
    /// What was wrong.
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {:?}", self.line, self.reason, self.content)
    }
}

impl std::error::Error for ParseError {}

fn perr(line: usize, content: &str, reason: &'static str) -> ParseError {
    let content = content.chars().take(200).collect();
    ParseError { line, content, reason }
}

/// A `maps` line as a [`Region`] (no counters, no VmFlags).
fn region_of(line: MapsLine) -> Region {
    Region::from_line(line)
}

/// Parses one `/proc/PID/maps` line: `start-end perms offset major:minor inode [path]`, with
/// [`vmspace_linux::proc::maps::parse_line`].
pub fn parse_maps_line(line: &str) -> Result<Region, &'static str> {
    vmspace_linux::proc::maps::parse_line(line).map(region_of)
}

/// The line `n` (1-based) of `text`, for an error message.
fn line_of(text: &str, n: usize) -> &str {
    text.lines().nth(n.saturating_sub(1)).unwrap_or("")
}

/// Parses `/proc/PID/maps`: one region per non-empty line, in order ([`vmspace_linux::proc::maps`]).
pub fn parse_maps(text: &str) -> Result<Vec<Region>, ParseError> {
    let lines =
        vmspace_linux::proc::maps::parse(text).map_err(|e| perr(e.line, line_of(text, e.line), e.reason))?;
    Ok(lines.into_iter().map(region_of).collect())
}

/// Parses `/proc/PID/smaps`: a maps line per region followed by `Key: N kB` lines and `VmFlags:`
/// ([`vmspace_linux::proc::smaps`]).
pub fn parse_smaps(text: &str) -> Result<Vec<Region>, ParseError> {
    let entries =
        vmspace_linux::proc::smaps::parse(text).map_err(|e| perr(e.line, line_of(text, e.line), e.reason))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let mut r = region_of(e.maps);
            r.stats = Some(Stats::from(&e.counters));
            r.vm_flags = e.vm_flags;
            r.kernel_page_size = e.kernel_page_size;
            r
        })
        .collect())
}

/// Parses `/proc/PID/smaps_rollup`: the process's totals ([`vmspace_linux::proc::rollup`]).
pub fn parse_rollup(text: &str) -> Result<Stats, ParseError> {
    vmspace_linux::proc::rollup::parse(text)
        .map(|r| Stats::from(&r.counters))
        .map_err(|reason| perr(1, text.lines().next().unwrap_or(""), reason))
}

fn kb(v: &str) -> Option<u64> {
    v.strip_suffix("kB").unwrap_or(v).trim().parse().ok()
}

/// What `/proc/PID/status` says about a process's memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The command name (`Name`).
    pub name: String,
    /// Threads (`Threads`).
    pub threads: u64,
    /// The state letter (`State`: `R`, `S`, `D`, `Z` zombie, `X` dead…; `'\0'` when absent).
    pub state: char,
    /// A kernel thread (`Kthread: 1`, Linux 6.7+; older kernels do not say).
    pub kthread: bool,
    /// The real user id (`Uid`, first of four).
    pub uid: u32,
    /// Total mapped bytes (`VmSize`), not counting `[vsyscall]`.
    pub vm_size: u64,
    /// Peak of `vm_size` (`VmPeak`).
    pub vm_peak: u64,
    /// Resident bytes (`VmRSS`).
    pub vm_rss: u64,
    /// Locked bytes (`VmLck`).
    pub vm_lck: u64,
    /// Swapped bytes (`VmSwap`).
    pub vm_swap: u64,
}

/// Parses `/proc/PID/status`. Kernel threads have no `Vm*` lines: those stay 0.
pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        match k {
            "Name" => s.name = v.to_string(),
            "Threads" => s.threads = v.parse().unwrap_or(0),
            "State" => s.state = v.chars().next().unwrap_or('\0'),
            "Kthread" => s.kthread = v == "1",
            "Uid" => s.uid = v.split_ascii_whitespace().next().and_then(|u| u.parse().ok()).unwrap_or(0),
            "VmSize" => s.vm_size = kb(v).unwrap_or(0) * 1024,
            "VmPeak" => s.vm_peak = kb(v).unwrap_or(0) * 1024,
            "VmRSS" => s.vm_rss = kb(v).unwrap_or(0) * 1024,
            "VmLck" => s.vm_lck = kb(v).unwrap_or(0) * 1024,
            "VmSwap" => s.vm_swap = kb(v).unwrap_or(0) * 1024,
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procmaps::mapping::Mapping;
    use crate::procmaps::region::build_map;
    use crate::{Behavior, EntryFlags, Inherit, Prot};

    const SMAPS: &str = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 08:01 1234                       /usr/bin/cat
Size:                  8 kB
Rss:                   8 kB
Pss:                   4 kB
Shared_Clean:          8 kB
Swap:                  0 kB
Locked:                0 kB
VmFlags: rd mr mw me dw sd
55d0c0a02000-55d0c0a06000 r-xp 00002000 08:01 1234                       /usr/bin/cat
Rss:                  16 kB
Pss:                  16 kB
VmFlags: rd ex mr mw me dw sd
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0                          [heap]
Rss:                  12 kB
Pss:                  12 kB
Swap:                  4 kB
VmFlags: rd wr mr mw me ac sd
7f0000000000-7f0000001000 rw-s 00000000 00:01 77                         /dev/zero (deleted)
Rss:                   4 kB
VmFlags: rd wr sh mr mw me ms sd lo dc
7f0000001000-7f0000003000 rw-p 00000000 00:00 0                          [anon:my arena]
VmFlags: rd wr mr mw me ac wf dd sr
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
VmFlags: rd wr mr mw me gd ac
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
VmFlags: ex
";

    #[test]
    fn smaps_parse_and_map() {
        let regions = parse_smaps(SMAPS).unwrap();
        assert_eq!(regions.len(), 7);
        assert_eq!(regions[0].mapping.kind_name(), "file");
        assert_eq!(regions[0].stats.unwrap().pss, 4096);
        assert_eq!(regions[0].stats.unwrap().shared, 8192);
        assert_eq!(regions[2].mapping, Mapping::Heap);
        assert_eq!(regions[3].mapping.kind_name(), "shared-anon");
        assert_eq!(regions[3].inherit(), Inherit::None);
        assert!(regions[3].locked());
        assert_eq!(regions[4].inherit(), Inherit::Zero);
        assert_eq!(regions[4].behavior(), Behavior::Sequential);
        assert!(regions[4].entry_flags().contains(EntryFlags::NOCOREDUMP));
        assert_eq!(regions[4].mapping, Mapping::Anonymous { name: Some("my arena".into()) });
        assert!(regions[5].entry_flags().contains(EntryFlags::STACK));
        assert_eq!(regions[6].max_prot(), Prot::EXECUTE);
        let map = build_map(&regions).unwrap();
        map.check_invariants().unwrap();
        // The two pieces of /usr/bin/cat are different protections: 7 entries.
        assert_eq!(map.len(), 7);
        assert_eq!(map.size(), regions.iter().map(Region::len).sum::<u64>());
        assert_eq!(map.wired_size(), 4096);
        let e = map.lookup_entry(0xffffffffff600000).unwrap();
        assert_eq!(e.object(), &Mapping::Vsyscall);
    }

    #[test]
    fn contiguous_file_pieces_merge() {
        let text = "\
00400000-00401000 r--p 00000000 08:01 5 /bin/x
00401000-00402000 r--p 00001000 08:01 5 /bin/x
00402000-00403000 rw-p 00000000 00:00 0
00403000-00404000 rw-p 00000000 00:00 0
";
        let regions = parse_maps(text).unwrap();
        let map = build_map(&regions).unwrap();
        assert_eq!(map.len(), 2);
        map.check_invariants().unwrap();
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "zzzz-1000 r--p 0 0:0 0",
            "1000-0 r--p 0 0:0 0",
            "1000-2000 r--q 0 0:0 0",
            "1000-2000 r--p 0 00 0",
            "1000-2000 r--p",
            "1001-2000 r--p 0 0:0 0",
            "1000-2000 rw p 0 0:0 0",
        ] {
            assert!(parse_maps(bad).is_err(), "{bad}");
        }
        assert!(parse_smaps("Rss: 4 kB\n").is_err());
        assert!(parse_maps("2000-3000 r--p 0 0:0 0\n1000-2000 r--p 0 0:0 0\n").is_err());
    }
}
