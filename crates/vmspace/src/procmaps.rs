//! A live process's address space, read from `/proc/PID/{smaps,maps,smaps_rollup,status}` and loaded
//! into a [`VmMap<Mapping>`](crate::VmMap): the counterpart of FreeBSD's `procstat -v`
//! (`kinfo_vmentry`) and macOS's `vmmap`, built on the same `vm_map` the rest of this crate drives.
//!
//! Invariant kept here: every Linux VMA becomes one [`VmMap::insert`](crate::VmMap::insert) with the
//! attributes Linux reports for it (protection from the permissions, max protection from the `mr mw me`
//! VmFlags, inheritance from `s`/`p` and `dc`/`wf`, behaviour from `sr`/`rr`, `dd` → NOCOREDUMP, `sl` →
//! SEALED, `gd` → STACK), plus a user wiring for `lo`. So the map's size is the sum of the VMAs' sizes,
//! even where the map merges neighbours that Linux keeps apart (different `anon_vma`), and every entry of
//! the map is a union of whole VMAs, whose per-VMA counters ([`Region::stats`]) add up per entry.
//!
//! The parsers are pure functions of the text ([`parse_smaps`], [`parse_maps`], [`parse_rollup`],
//! [`parse_status`]) so they can be tested on snapshots; [`ProcMaps::load`] reads a live process and
//! turns each way a process can vanish or refuse into one [`ProcError`] variant.

use std::fmt;
use std::io;
use std::ops::Range;

use vmspace_linux::proc::counters::Counters;

use crate::{Behavior, EntryFlags, Inherit, MapObject, MapSpec, Prot, VmError, VmMap};

/// The lowest address a loaded map covers.
pub const MAP_MIN: u64 = 0;
/// One past the highest address a loaded map covers: `2^64 - 4096`, so that `[vsyscall]` at
/// `0xffffffffff600000` (above the 47-bit user limit) fits.
pub const MAP_MAX: u64 = 0u64.wrapping_sub(4096);

/// What backs a region (the seed's `vm_object`, as `procstat -v`'s TYPE column and `vmmap`'s region
/// names show it). Two neighbours merge in the map only when their backings are equal (and, for
/// files, their offsets are contiguous).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mapping {
    /// A file: its path as the kernel prints it (with ` (deleted)` removed), device and inode.
    File {
        /// The path.
        path: String,
        /// Device, `major:minor`.
        dev: (u32, u32),
        /// Inode number.
        inode: u64,
        /// Whether the kernel marked the file ` (deleted)`.
        deleted: bool,
    },
    /// The `brk` heap (`[heap]`).
    Heap,
    /// The main thread's stack (`[stack]`).
    Stack,
    /// The vDSO (`[vdso]`).
    Vdso,
    /// The vDSO's data pages (`[vvar]`, `[vvar_vclock]`).
    Vvar,
    /// The legacy `[vsyscall]` page, above the user address limit.
    Vsyscall,
    /// Private anonymous memory, optionally named by `PR_SET_VMA_ANON_NAME` (`[anon:NAME]`).
    Anonymous {
        /// The name, if any.
        name: Option<String>,
    },
    /// Shared anonymous memory (`MAP_SHARED|MAP_ANONYMOUS`: `/dev/zero (deleted)`, `[anon_shmem:NAME]`).
    SharedAnonymous {
        /// Inode of the shmem object (0 when unknown).
        inode: u64,
        /// The name, if any.
        name: Option<String>,
    },
    /// A shmem object: SysV shared memory (`/SYSV…`) or a memfd (`/memfd:NAME`).
    Shmem {
        /// The path as printed.
        path: String,
        /// Inode number.
        inode: u64,
    },
    /// Another kernel-named region (`[uprobes]`, …).
    Special(String),
}

impl Mapping {
    /// A short name for the kind of backing: `file`, `heap`, `stack`, `vdso`, `vvar`, `vsyscall`,
    /// `anon`, `shared-anon`, `shmem`, `special`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Mapping::File { .. } => "file",
            Mapping::Heap => "heap",
            Mapping::Stack => "stack",
            Mapping::Vdso => "vdso",
            Mapping::Vvar => "vvar",
            Mapping::Vsyscall => "vsyscall",
            Mapping::Anonymous { .. } => "anon",
            Mapping::SharedAnonymous { .. } => "shared-anon",
            Mapping::Shmem { .. } => "shmem",
            Mapping::Special(_) => "special",
        }
    }

    /// The name a listing shows: the path, `[heap]`, `[anon:NAME]`, or empty for unnamed anonymous
    /// memory.
    pub fn display_name(&self) -> String {
        match self {
            Mapping::File { path, deleted, .. } => {
                if *deleted {
                    format!("{path} (deleted)")
                } else {
                    path.clone()
                }
            }
            Mapping::Heap => "[heap]".into(),
            Mapping::Stack => "[stack]".into(),
            Mapping::Vdso => "[vdso]".into(),
            Mapping::Vvar => "[vvar]".into(),
            Mapping::Vsyscall => "[vsyscall]".into(),
            Mapping::Anonymous { name: Some(n) } => format!("[anon:{n}]"),
            Mapping::Anonymous { name: None } => String::new(),
            Mapping::SharedAnonymous { name: Some(n), .. } => format!("[anon_shmem:{n}]"),
            Mapping::SharedAnonymous { name: None, .. } => "/dev/zero (deleted)".into(),
            Mapping::Shmem { path, .. } => path.clone(),
            Mapping::Special(s) => s.clone(),
        }
    }

    /// Classifies a region from its `/proc/PID/maps` path column, device and inode.
    pub fn classify(path: &str, dev: (u32, u32), inode: u64, shared: bool) -> Mapping {
        match path {
            "" => {
                if shared {
                    Mapping::SharedAnonymous { inode, name: None }
                } else {
                    Mapping::Anonymous { name: None }
                }
            }
            "[heap]" => Mapping::Heap,
            "[stack]" => Mapping::Stack,
            "[vdso]" => Mapping::Vdso,
            "[vvar]" | "[vvar_vclock]" => Mapping::Vvar,
            "[vsyscall]" => Mapping::Vsyscall,
            _ => {
                if let Some(n) = path.strip_prefix("[anon:").and_then(|s| s.strip_suffix(']')) {
                    return Mapping::Anonymous { name: Some(n.to_string()) };
                }
                if let Some(n) = path.strip_prefix("[anon_shmem:").and_then(|s| s.strip_suffix(']')) {
                    return Mapping::SharedAnonymous { inode, name: Some(n.to_string()) };
                }
                if path == "/dev/zero (deleted)" && shared {
                    return Mapping::SharedAnonymous { inode, name: None };
                }
                if path.starts_with("/SYSV") || path.starts_with("/memfd:") {
                    return Mapping::Shmem { path: path.to_string(), inode };
                }
                if path.starts_with('[') && path.ends_with(']') {
                    return Mapping::Special(path.to_string());
                }
                let (p, deleted) = match path.strip_suffix(" (deleted)") {
                    Some(p) => (p, true),
                    None => (path, false),
                };
                Mapping::File { path: p.to_string(), dev, inode, deleted }
            }
        }
    }
}

impl MapObject for Mapping {
    fn anonymous() -> Self {
        Mapping::Anonymous { name: None }
    }

    /// Private anonymous memory of any kind: unnamed or named anonymous memory, the heap, the stack
    /// (what Linux's `MADV_WIPEONFORK` accepts).
    fn is_anonymous(&self) -> bool {
        matches!(self, Mapping::Anonymous { .. } | Mapping::Heap | Mapping::Stack)
    }
}

/// Linux's two-letter `VmFlags` of a VMA (`/proc/PID/smaps`), as a bit set: the one table, in
/// `vmspace-linux`.
pub use vmspace_linux::proc::vmflags::VmFlags;

/// Memory counters of a region or a whole process, in bytes (smaps reports kB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Resident bytes (`Rss`).
    pub rss: u64,
    /// Proportional resident bytes (`Pss`): each shared page divided among its mappers.
    pub pss: u64,
    /// Resident pages shared with another process (`Shared_Clean + Shared_Dirty`).
    pub shared: u64,
    /// Resident pages mapped only here (`Private_Clean + Private_Dirty`).
    pub private: u64,
    /// Shared pages written to (`Shared_Dirty`), part of `shared`.
    pub shared_dirty: u64,
    /// Private pages written to (`Private_Dirty`), part of `private`.
    pub private_dirty: u64,
    /// Anonymous resident bytes (`Anonymous`).
    pub anonymous: u64,
    /// Swapped-out bytes (`Swap`).
    pub swap: u64,
    /// Proportional swap (`SwapPss`).
    pub swap_pss: u64,
    /// Locked bytes (`Locked`).
    pub locked: u64,
}

impl Stats {
    /// Adds `other` to `self`, field by field (saturating).
    pub fn add(&mut self, other: &Stats) {
        self.rss = self.rss.saturating_add(other.rss);
        self.pss = self.pss.saturating_add(other.pss);
        self.shared = self.shared.saturating_add(other.shared);
        self.private = self.private.saturating_add(other.private);
        self.shared_dirty = self.shared_dirty.saturating_add(other.shared_dirty);
        self.private_dirty = self.private_dirty.saturating_add(other.private_dirty);
        self.anonymous = self.anonymous.saturating_add(other.anonymous);
        self.swap = self.swap.saturating_add(other.swap);
        self.swap_pss = self.swap_pss.saturating_add(other.swap_pss);
        self.locked = self.locked.saturating_add(other.locked);
    }
}

/// One Linux VMA as `/proc/PID/maps` and `smaps` describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// `[start, end)`.
    pub range: Range<u64>,
    /// Protection from the `rwx` permission letters.
    pub prot: Prot,
    /// `s` (shared) rather than `p` (private).
    pub shared: bool,
    /// Offset in the file (or the page offset of anonymous memory).
    pub offset: u64,
    /// Device, `major:minor` (hexadecimal in the file).
    pub dev: (u32, u32),
    /// Inode number (0 for anonymous memory).
    pub inode: u64,
    /// The path column, as printed.
    pub path: String,
    /// What backs the region.
    pub mapping: Mapping,
    /// The counters (`None` when only `maps` could be read).
    pub stats: Option<Stats>,
    /// `VmFlags` (`None` when only `maps` could be read).
    pub vm_flags: Option<VmFlags>,
    /// `KernelPageSize` in bytes (4096 unless hugetlb).
    pub kernel_page_size: u64,
}

impl Region {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Whether the region is empty (never, for a region the kernel printed).
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Maximum protection: the `mr mw me` VmFlags, or everything when they are unknown. Never less than
    /// the current protection: `[vsyscall]` reports `--x` with VmFlags `ex` only, and a map entry needs
    /// `prot ⊆ max_prot`.
    pub fn max_prot(&self) -> Prot {
        match self.vm_flags {
            Some(f) => f.max_prot() | self.prot,
            None => Prot::ALL,
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.vm_flags.is_some_and(|f| f.has(name))
    }

    /// Inheritance at fork: `dc` (MADV_DONTFORK) → none, `wf` (MADV_WIPEONFORK) → zero, shared →
    /// share, private → copy.
    pub fn inherit(&self) -> Inherit {
        if self.flag("dc") {
            Inherit::None
        } else if self.flag("wf") {
            Inherit::Zero
        } else if self.shared {
            Inherit::Share
        } else {
            Inherit::Copy
        }
    }

    /// Behaviour: `sr` sequential, `rr` random, else normal.
    pub fn behavior(&self) -> Behavior {
        if self.flag("sr") {
            Behavior::Sequential
        } else if self.flag("rr") {
            Behavior::Random
        } else {
            Behavior::Normal
        }
    }

    /// Entry flags: `dd` → NOCOREDUMP, `sl` → SEALED, `gd` → STACK.
    pub fn entry_flags(&self) -> EntryFlags {
        let mut f = EntryFlags::EMPTY;
        f.set(EntryFlags::NOCOREDUMP, self.flag("dd"));
        f.set(EntryFlags::SEALED, self.flag("sl"));
        f.set(EntryFlags::STACK, self.flag("gd"));
        f
    }

    /// Whether the region is locked (`lo`, mlock).
    pub fn locked(&self) -> bool {
        self.flag("lo")
    }

    /// The insert that reproduces this region in a [`VmMap`].
    pub fn spec(&self) -> MapSpec<Mapping> {
        let offset = if self.mapping.is_anonymous() { 0 } else { self.offset };
        MapSpec::new(self.prot, self.max_prot())
            .with_inherit(self.inherit())
            .with_behavior(self.behavior())
            .with_flags(self.entry_flags())
            .with_object(self.mapping.clone(), offset)
    }
}

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
fn region_of(l: vmspace_linux::proc::maps::MapsLine) -> Region {
    let mapping = Mapping::classify(&l.name, l.dev, l.inode, l.shared);
    Region {
        range: l.range,
        prot: l.prot,
        shared: l.shared,
        offset: l.offset,
        dev: l.dev,
        inode: l.inode,
        path: l.name,
        mapping,
        stats: None,
        vm_flags: None,
        kernel_page_size: 4096,
    }
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

impl From<&Counters> for Stats {
    fn from(c: &Counters) -> Stats {
        Stats {
            rss: c.rss,
            pss: c.pss,
            shared: c.shared_clean.saturating_add(c.shared_dirty),
            private: c.private_clean.saturating_add(c.private_dirty),
            shared_dirty: c.shared_dirty,
            private_dirty: c.private_dirty,
            anonymous: c.anonymous,
            swap: c.swap,
            swap_pss: c.swap_pss,
            locked: c.locked,
        }
    }
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

/// Builds the map of `regions`: one insert per region (merging equal neighbours) and a wiring for
/// each locked one.
pub fn build_map(regions: &[Region]) -> Result<VmMap<Mapping>, (Range<u64>, VmError)> {
    let mut map = VmMap::new(MAP_MIN, MAP_MAX).map_err(|e| (0..0, e))?;
    for r in regions {
        map.insert(r.range.clone(), r.spec()).map_err(|e| (r.range.clone(), e))?;
        if r.locked() {
            map.wire(r.range.clone()).map_err(|e| (r.range.clone(), e))?;
        }
        map.take_effects();
    }
    Ok(map)
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
