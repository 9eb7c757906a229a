//! Real kernel limits, each scenario in a child process of its own: this test binary run again with
//! `VMSPACE_LIMITS_CHILD` naming the scenario (the `child_entry` pattern of `tests/fault.rs`).
//!
//! - `vm.max_map_count` (read, never changed: it is machine-wide): the child fills its address space
//!   with VMAs until it holds exactly the limit, where the kernel refuses every call that must split
//!   a VMA. Calls in the middle of an entry (unmap, protect, protect_max, map_at, inherit, wire,
//!   guard, madvise, seal) must fail, leave map and kernel equal and leave contents alone; then a few
//!   hundred random calls at the limit, map == kernel after each.
//! - `RLIMIT_MEMLOCK` as an unprivileged user (uid/gid 65534): a wire beyond the limit, and a sealed
//!   `map_at` under `wire_future` whose implied lock fails, must leave nothing locked, nothing sealed
//!   and no reservation behind.
//! - `RLIMIT_AS` lowered: reserving, the reclaim ring and the scratch space fail with typed errors
//!   and leak nothing, while a space reserved before keeps working (mapping over its own
//!   reservation does not grow the address space).
//!
//! Two are regression tests of recovery defects (both fail on aa91570, before the recovery work): a
//! failed unmap in the middle of an entry that the map then forgot while the kernel kept the page,
//! and a sealed `map_at` whose implied lock failed, after which the map was empty while the kernel
//! held sealed memory (the range could not be mapped again, nor the reservation dropped).
//!
//! The parent gives each child [`CHILD_TIME_LIMIT`], kills it after that and fails (a hang is a
//! failure, never a hung suite), and passes only on a zero exit status with the scenario's `done`
//! line on stderr, so a child that ran nothing cannot pass.

use std::io::{BufRead, Read};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmspace::reclaim::{MAX_CAPACITY, ReclaimError, ReclaimRing};
use vmspace::scratch::{ScratchError, ScratchSpace};
use vmspace::{
    AddressSpace, Advice, Backing, Behavior, Entry, EntryFlags, Error, Inherit, MapSpec, Options, Prot,
};

const PS: u64 = 4096;
/// The variable that turns `child_entry` into a scenario.
const CHILD_ENV: &str = "VMSPACE_LIMITS_CHILD";
/// Overrides the random sequence's seed.
const SEED_ENV: &str = "VMSPACE_LIMITS_SEED";
/// How long a child may run before the parent kills it and fails.
const CHILD_TIME_LIMIT: Duration = Duration::from_secs(60);
/// The RLIMIT_MEMLOCK the unprivileged child runs with.
const MEMLOCK_LIMIT: u64 = 64 << 10;
/// `CAP_IPC_LOCK`, the capability that lifts RLIMIT_MEMLOCK.
const CAP_IPC_LOCK: u32 = 14;
/// uid and gid `nobody`.
const NOBODY: u32 = 65534;
/// The largest `vm.max_map_count` the scenarios fill up to (Linux's default is 65530; some
/// distributions raise it to 1048576).
const MAX_MAP_COUNT_REACHABLE: u64 = 1 << 20;
/// Up to this `vm.max_map_count` the refused-calls scenario puts the filler below its spaces, so that
/// every read of smaps over a space (in the calls and in recovery) goes through all the filler's VMAs
/// first; above it that would not fit the time bound, and the filler goes above them.
const FILLER_BELOW_UP_TO: u64 = 1 << 17;
/// Random calls made at the map-count limit.
const RANDOM_STEPS: u64 = 400;

// ---------------------------------------------------------------------------------------------
// The parent side.

/// Runs this test binary as `exe` again as the child `scenario`, `setup` adjusting the command; kills
/// it after [`CHILD_TIME_LIMIT`]. Returns its status and its output (stdout, then stderr).
fn run_child(scenario: &str, exe: &Path, setup: impl FnOnce(&mut Command)) -> (ExitStatus, String) {
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    setup(&mut cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("scenario {scenario}: cannot start {exe:?} with the scenario's uid and limits: {e}")
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + CHILD_TIME_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => (status, output),
        None => panic!(
            "scenario {scenario}: the child ran for more than {CHILD_TIME_LIMIT:?} and was killed; its \
             output:\n{output}"
        ),
    }
}

/// Runs `scenario` and asserts it ran to its end.
fn expect_done(scenario: &str, exe: &Path, setup: impl FnOnce(&mut Command)) {
    let (status, output) = run_child(scenario, exe, setup);
    let done = format!("limits child {scenario}: done");
    assert!(
        status.success() && output.contains(&done),
        "scenario {scenario}: the child exited with {status}; its output:\n{output}"
    );
}

fn this_exe() -> PathBuf {
    std::env::current_exe().expect("the test binary's path")
}

#[test]
fn map_count_limit_refused_calls_leave_map_and_kernel_equal() {
    expect_done("map_count_calls", &this_exe(), |_| {});
}

#[test]
fn map_count_limit_random_calls_leave_map_and_kernel_equal() {
    expect_done("map_count_random", &this_exe(), |_| {});
}

#[test]
fn memlock_limit_as_an_unprivileged_user() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // The child must be able to execute the binary as nobody; if some directory above it or the file
    // itself is closed to others, run a copy from a directory that is not.
    let exe = this_exe();
    let copy = (root && !runnable_by_others(&exe)).then(|| TempCopy::of(&exe));
    let run = copy.as_ref().map_or(exe.as_path(), |c| c.exe.as_path());
    expect_done("memlock", run, |cmd| {
        if root {
            // std drops the supplementary groups (setgroups) before setuid when started by root.
            cmd.uid(NOBODY).gid(NOBODY).current_dir("/");
        }
        // SAFETY: the closure runs in the forked child before exec; it only calls setrlimit, which is
        // async-signal-safe, and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit { rlim_cur: MEMLOCK_LIMIT, rlim_max: MEMLOCK_LIMIT };
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    drop(copy);
}

/// A copy of the test binary in a directory of its own, mode 0755 both, removed when dropped.
struct TempCopy {
    dir: PathBuf,
    exe: PathBuf,
}

impl TempCopy {
    fn of(exe: &Path) -> TempCopy {
        let dir = std::env::temp_dir().join(format!("vmspace-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let to = dir.join("limits");
        std::fs::copy(exe, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempCopy { dir, exe: to }
    }
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn address_space_limit() {
    expect_done("address_space", &this_exe(), |_| {});
}

/// The kernel's features probed first at a limit that refuses the probe's scratch mapping: the
/// failed probe is not remembered. (Before, `features()` said "no mseal, no guards" for the rest of
/// the process: `seal` was NotSupported on a 6.18 kernel.)
#[test]
fn a_probe_refused_at_a_limit_is_not_remembered() {
    expect_done("probe_at_limit", &this_exe(), |_| {});
}

/// Whether a user other than the owner can reach and execute `exe` (every directory above it `o+x`,
/// the file `o+rx`).
fn runnable_by_others(exe: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    mode(exe) & 0o005 == 0o005 && exe.ancestors().skip(1).all(|d| mode(d) & 0o001 != 0)
}

// ---------------------------------------------------------------------------------------------
// The child side.

/// The children's side of the tests above: does nothing unless run by `run_child`.
#[test]
fn child_entry() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else { return };
    assert_eq!(vmspace::os::page_size(), PS, "these scenarios count in 4 KiB pages");
    let started = Instant::now();
    match scenario.as_str() {
        "map_count_calls" => map_count_calls(),
        "map_count_random" => map_count_random(),
        "memlock" => memlock(),
        "address_space" => address_space(),
        "probe_at_limit" => probe_at_limit(),
        other => panic!("unknown scenario {other}"),
    }
    eprintln!("limits child {scenario}: done in {:.1?}", started.elapsed());
}

fn rw() -> MapSpec<Backing> {
    MapSpec::new(Prot::RW, Prot::ALL)
}

/// What each page of the tests holds: a value that names the page.
fn tag(page: u64) -> u64 {
    page ^ 0x5eed_0000_0000_0000
}

fn write(addr: u64, v: u64) {
    // SAFETY: the tests write only pages that a space of their own maps read-write (its map says so,
    // the space keeps the kernel equal to its map, and the tests check that it does); nothing else
    // in the process refers to those pages.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: the tests read only pages that a space of their own maps readable and not guard (as for
    // `write`).
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

/// Readable memory, not a guard region (whose markers fault on any access).
fn readable(e: &Entry<Backing>) -> bool {
    e.prot().contains(Prot::READ) && !e.flags().contains(EntryFlags::GUARD)
}

/// The kernel's error number and the ranges it kept, for an error of a system call; `None` for the
/// map's refusals and missing features.
fn kernel_error(e: &Error) -> Option<(i32, Vec<Range<u64>>)> {
    match e {
        Error::Os { source, .. } => Some((source.raw_os_error()?, Vec::new())),
        Error::Incomplete { source, kept, .. } => Some((source.raw_os_error()?, kept.clone())),
        _ => None,
    }
}

/// Asserts that the map and the kernel agree over the whole space (`kernel_differences` empty) and
/// that the map keeps its invariants.
fn agree(s: &AddressSpace, what: &str) {
    let d = s.kernel_differences().unwrap_or_else(|e| panic!("{what}: kernel_differences failed: {e}"));
    assert!(d.is_empty(), "{what}: map and kernel disagree:\n{}\nthe map:\n{s}", d.join("\n"));
    s.with_map(|m| m.check_invariants()).unwrap_or_else(|e| panic!("{what}: map invariant broken: {e}"));
}

/// Every page of `window` the map says is mapped readable holds [`tag`].
fn intact(s: &AddressSpace, window: Range<u64>, what: &str) {
    for page in window.step_by(PS as usize) {
        if s.lookup_entry(page).is_some_and(|e| readable(&e)) {
            assert_eq!(read(page), tag(page), "{what}: page {page:#x} lost its contents\n{s}");
        }
    }
}

/// The whole reservation of `s`: its range and the guard page on each side.
fn outer(s: &AddressSpace) -> Range<u64> {
    let r = s.range();
    r.start - PS..r.end + PS
}

fn parse_hex(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    b.iter().try_fold(0u64, |v, c| Some(v << 4 | u64::from((*c as char).to_digit(16)?)))
}

/// `start-end` at the head of a maps or smaps line.
fn line_range(line: &[u8]) -> Option<Range<u64>> {
    let first = line.split(|c| *c == b' ').next()?;
    let dash = first.iter().position(|c| *c == b'-')?;
    Some(parse_hex(&first[..dash])?..parse_hex(&first[dash + 1..])?)
}

/// `/proc/self/maps` read into a buffer allocated once: counting VMAs allocates nothing, so it
/// neither needs a new VMA at the limit nor lands a heap mapping in a range being checked.
struct Maps {
    buf: Vec<u8>,
}

impl Maps {
    /// Room for `vmas` lines (at most 73 bytes each without a path; a few have one).
    fn new(vmas: u64) -> Maps {
        Maps { buf: Vec::with_capacity((vmas * 96 + (1 << 20)) as usize) }
    }

    fn lines(&mut self) -> impl Iterator<Item = &[u8]> {
        self.buf.clear();
        let room = self.buf.capacity();
        let mut f = std::fs::File::open("/proc/self/maps").expect("open /proc/self/maps");
        f.read_to_end(&mut self.buf).expect("read /proc/self/maps");
        assert_eq!(self.buf.capacity(), room, "/proc/self/maps outgrew its buffer");
        self.buf.split(|c| *c == b'\n').filter(|l| !l.is_empty())
    }

    /// The process's VMAs (`mm->map_count`): the lines of maps but the `[vsyscall]` gate, which is no
    /// VMA.
    fn count(&mut self) -> u64 {
        self.lines().filter(|l| !l.ends_with(b"[vsyscall]")).count() as u64
    }

    /// The VMAs that start below `addr`, read only that far (the kernel formats maps as it is read).
    fn count_below(&mut self, addr: u64) -> u64 {
        let mut f = std::fs::File::open("/proc/self/maps").expect("open /proc/self/maps");
        let (mut n, mut at, mut len) = (0, 0, 0);
        self.buf.clear();
        self.buf.resize(1 << 16, 0);
        loop {
            let got = f.read(&mut self.buf[len..]).expect("read /proc/self/maps");
            if got == 0 {
                return n;
            }
            len += got;
            while let Some(nl) = self.buf[at..len].iter().position(|c| *c == b'\n') {
                let line = &self.buf[at..at + nl];
                at += nl + 1;
                match line_range(line) {
                    Some(v) if v.start >= addr => return n,
                    _ => n += u64::from(!line.ends_with(b"[vsyscall]")),
                }
            }
            // Keep the partial line at the front and read on after it.
            self.buf.copy_within(at..len, 0);
            (len, at) = (len - at, 0);
            assert!(len < self.buf.len(), "a line of /proc/self/maps longer than 64 KiB");
        }
    }

    /// The VMAs overlapping `r` and the bytes of `r` they cover.
    fn over(&mut self, r: &Range<u64>) -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        for v in self.lines().filter_map(line_range) {
            if v.start < r.end && v.end > r.start {
                n += 1;
                bytes += v.end.min(r.end) - v.start.max(r.start);
            }
        }
        (n, bytes)
    }

    /// What is mapped inside `r`, as sorted disjoint ranges.
    fn inside(&mut self, r: &Range<u64>) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        for v in self.lines().filter_map(line_range) {
            if v.start < r.end && v.end > r.start {
                push_joined(&mut out, v.start.max(r.start)..v.end.min(r.end));
            }
        }
        out
    }

    /// Every mapped byte of the process but the brk heap (which moves with every allocation), as
    /// sorted disjoint ranges.
    fn coverage(&mut self) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        let ranges: Vec<Range<u64>> =
            self.lines().filter(|l| !l.ends_with(b"[heap]")).filter_map(line_range).collect();
        for v in ranges {
            push_joined(&mut out, v);
        }
        out
    }
}

/// Appends `r` to sorted ranges, joining it with the last when they touch.
fn push_joined(out: &mut Vec<Range<u64>>, r: Range<u64>) {
    match out.last_mut() {
        Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
        _ => out.push(r),
    }
}

/// The bytes of `after` that `before` does not cover.
fn grown(before: &[Range<u64>], after: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for a in after {
        let mut at = a.start;
        for b in before.iter().filter(|b| b.start < a.end && b.end > a.start) {
            if b.start > at {
                out.push(at..b.start);
            }
            at = at.max(b.end);
        }
        if at < a.end {
            out.push(at..a.end);
        }
    }
    out
}

/// One VMA of smaps: its range and VmFlags.
#[derive(Debug)]
struct KernelVma {
    range: Range<u64>,
    flags: Vec<String>,
}

/// The VMAs of `/proc/self/smaps` over `r`, read a line at a time (never the whole file at once:
/// at the map-count limit it is tens of megabytes) and only up to `r`'s end.
fn kernel_vmas(r: &Range<u64>) -> Vec<KernelVma> {
    let f = std::fs::File::open("/proc/self/smaps").expect("open /proc/self/smaps");
    let mut f = std::io::BufReader::with_capacity(64 << 10, f);
    let (mut out, mut line, mut inside) = (Vec::new(), String::new(), false);
    loop {
        line.clear();
        if f.read_line(&mut line).expect("read /proc/self/smaps") == 0 {
            break;
        }
        if let Some(v) = line_range(line.as_bytes()) {
            if v.start >= r.end {
                break;
            }
            inside = v.end > r.start;
            if inside {
                out.push(KernelVma { range: v, flags: Vec::new() });
            }
        } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
            out.last_mut().expect("a VMA before its flags").flags =
                flags.split_ascii_whitespace().map(str::to_string).collect();
        }
    }
    out
}

/// The sealed (`sl`) pieces of `r` in the kernel.
fn sealed_in_kernel(r: &Range<u64>) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for v in kernel_vmas(r).into_iter().filter(|v| v.flags.iter().any(|f| f == "sl")) {
        push_joined(&mut out, v.range.start.max(r.start)..v.range.end.min(r.end));
    }
    out
}

/// The entries of `s` carrying `flag`, joined.
fn entries_with(s: &AddressSpace, flag: EntryFlags) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for e in s.regions().into_iter().filter(|e| e.flags().contains(flag)) {
        push_joined(&mut out, e.range());
    }
    out
}

/// Drops `s` and asserts its reservation left nothing in the process but its sealed entries, which
/// by definition cannot be unmapped.
fn drop_and_check(s: AddressSpace, maps: &mut Maps, what: &str) {
    let (range, sealed) = (outer(&s), entries_with(&s, EntryFlags::SEALED));
    drop(s);
    let left = maps.inside(&range);
    assert_eq!(
        left, sealed,
        "{what}: after the drop the former reservation {range:#x?} still holds {left:#x?} (sealed \
         entries: {sealed:#x?})"
    );
}

fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status_kib(&status, "VmSize:") * 1024
}

/// A `kB` field of /proc/self/status.
fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn mprotect(addr: u64, len: u64, prot: i32) -> Result<(), i32> {
    // SAFETY: only called on the filler and probe mappings this file made with libc::mmap, which no
    // Rust reference points into; changing their protection affects nothing else.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len as usize, prot) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) }
}

/// A fresh private anonymous mapping of `pages` pages, outside every space.
fn mmap_pages(pages: u64, prot: i32) -> u64 {
    // SAFETY: a new mapping where the kernel chooses overlaps nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            (pages * PS) as usize,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap of {pages} pages: {}", std::io::Error::last_os_error());
    p as u64
}

/// [`mmap_pages`] `PROT_NONE` at `addr` (`MAP_FIXED_NOREPLACE`), or `None` if something is there.
fn mmap_pages_at(addr: u64, pages: u64) -> Option<u64> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: it fails instead.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            (pages * PS) as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    if p as u64 != addr {
        // A kernel without MAP_FIXED_NOREPLACE took `addr` as a hint only.
        // SAFETY: the mapping just made, which nothing refers to.
        unsafe { libc::munmap(p, (pages * PS) as usize) };
        return None;
    }
    Some(addr)
}

/// `vm.max_map_count`, if the scenarios can reach it here.
fn max_map_count() -> u64 {
    let text = std::fs::read_to_string("/proc/sys/vm/max_map_count").expect("read vm.max_map_count");
    let max: u64 = text.trim().parse().expect("vm.max_map_count is a number");
    assert!(
        (1024..=MAX_MAP_COUNT_REACHABLE).contains(&max),
        "vm.max_map_count is {max}: the map-count scenarios hold the process at the limit, which they \
         can do for 1024 to {MAX_MAP_COUNT_REACHABLE} VMAs (the sysctl is machine-wide: the tests never \
         change it)"
    );
    max
}

/// VMAs outside every space that hold the process at a chosen VMA count: one mapping whose pages
/// alternate `PROT_NONE` and `PROT_READ`.
///
/// Layout: `[pad][N][R][N][R]…[N…][tail][pad]`. The pads (first and last page) are `r-x`, which no
/// neighbouring anonymous mapping shares, so the filler never merges with anything outside it and
/// its VMA count is exactly `3 + 2 * raised + tail`: raising page `2 + 2i` splits a `PROT_NONE` run
/// in three (+2), raising the tail page splits the last run's end off (+1).
struct Filler {
    base: u64,
    pages: u64,
    raised: u64,
    tail: bool,
    /// The process's VMAs above the filler when last counted in full (see [`Filler::hold_fast`]).
    above: u64,
}

impl Filler {
    /// A filler that can reach `max` VMAs on its own; at `below` (its end there) if that is free.
    fn new(max: u64, below: Option<u64>) -> Filler {
        let pages = max + 16;
        let base = below
            .and_then(|b| mmap_pages_at(b - pages * PS, pages))
            .unwrap_or_else(|| mmap_pages(pages, libc::PROT_NONE));
        let pad = libc::PROT_READ | libc::PROT_EXEC;
        for p in [0, pages - 1] {
            mprotect(base + p * PS, PS, pad).unwrap_or_else(|e| panic!("filler pad: errno {e}"));
        }
        Filler { base, pages, raised: 0, tail: false, above: 0 }
    }

    fn range(&self) -> Range<u64> {
        self.base..self.base + self.pages * PS
    }

    fn vmas(&self) -> u64 {
        3 + 2 * self.raised + u64::from(self.tail)
    }

    /// Makes the filler `vmas` VMAs: lowering first, then raising, so no step ever needs more VMAs
    /// than the end state has.
    fn set(&mut self, vmas: u64) {
        assert!(vmas >= 3, "the filler cannot go below 3 VMAs (asked {vmas})");
        let (raised, tail) = ((vmas - 3) / 2, (vmas - 3) % 2 == 1);
        assert!(2 + 2 * raised < self.pages - 3, "the filler cannot reach {vmas} VMAs");
        let page = |i: u64| self.base + (2 + 2 * i) * PS;
        let tail_page = self.base + (self.pages - 2) * PS;
        if self.tail && !tail {
            mprotect(tail_page, PS, libc::PROT_NONE).expect("filler: lowering the tail");
            self.tail = false;
        }
        while self.raised > raised {
            self.raised -= 1;
            mprotect(page(self.raised), PS, libc::PROT_NONE).expect("filler: lowering a page");
        }
        while self.raised < raised {
            let at = self.raised;
            mprotect(page(at), PS, libc::PROT_READ)
                .unwrap_or_else(|e| panic!("filler: raising page {at} to {vmas} VMAs: errno {e}"));
            self.raised += 1;
        }
        if tail && !self.tail {
            mprotect(tail_page, PS, libc::PROT_READ)
                .unwrap_or_else(|e| panic!("filler: raising the tail to {vmas} VMAs: errno {e}"));
            self.tail = true;
        }
    }

    /// Brings the whole process to `target` VMAs, counting them all in maps before and after.
    fn hold(&mut self, maps: &mut Maps, target: u64) {
        let now = maps.count();
        let want = (self.vmas() + target).checked_sub(now).expect("the process has too many VMAs");
        self.set(want);
        let now = maps.count();
        assert_eq!(now, target, "the process should hold {target} VMAs");
        self.above = now - maps.count_below(self.base) - self.vmas();
    }

    /// [`Filler::hold`] counting only the VMAs below the filler, for a process whose changes all
    /// happen there: those above are taken from the last full count.
    fn hold_fast(&mut self, maps: &mut Maps, target: u64) {
        let now = maps.count_below(self.base) + self.vmas() + self.above;
        let want = (self.vmas() + target).checked_sub(now).expect("the process has too many VMAs");
        self.set(want);
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        // SAFETY: the filler's own mapping, made by `Filler::new`; nothing refers into it.
        let _ = unsafe { libc::munmap(self.base as *mut libc::c_void, (self.pages * PS) as usize) };
    }
}

/// Checks that counting maps lines is counting what the kernel limits: at `max - 2` VMAs a
/// `PROT_NONE` page in the middle of a readable mapping splits it (two more VMAs); at `max` the same
/// call is refused with ENOMEM.
fn calibrate(filler: &mut Filler, maps: &mut Maps, max: u64) {
    let probe = mmap_pages(3, libc::PROT_READ);
    filler.hold(maps, max - 2);
    mprotect(probe + PS, PS, libc::PROT_NONE)
        .unwrap_or_else(|e| panic!("at max_map_count - 2 a split of two VMAs failed: errno {e}"));
    assert_eq!(maps.count(), max, "the split should have made two VMAs");
    mprotect(probe + PS, PS, libc::PROT_READ).expect("merging the probe back");
    filler.hold(maps, max);
    assert_eq!(
        mprotect(probe + PS, PS, libc::PROT_NONE),
        Err(libc::ENOMEM),
        "at max_map_count VMAs the kernel should refuse a split"
    );
    // SAFETY: the probe mapping made above, which nothing refers to.
    let _ = unsafe { libc::munmap(probe as *mut libc::c_void, (3 * PS) as usize) };
    filler.hold(maps, max);
}

/// Runs the probes the library caches (features, whether smaps shows `nr` and pagemap shows guard
/// markers) on a throwaway space before the process is at the limit: they map memory, which is
/// not what the scenarios are about.
fn warm_up() {
    let s = AddressSpace::reserve(1 << 20).unwrap();
    let a = s.map(2 * PS, rw()).unwrap();
    s.guard(a..a + PS).unwrap();
    agree(&s, "warm-up");
}

/// A space of `len` bytes whose reservation lies below `limit`; reservations that land in a gap above
/// it are kept aside until one does, then dropped.
fn reserve_under(limit: u64, len: u64, opts: Options) -> AddressSpace {
    let mut aside = Vec::new();
    loop {
        let s = AddressSpace::reserve_with(len, opts).unwrap();
        if outer(&s).end <= limit {
            return s;
        }
        assert!(aside.len() < 64, "no room for a space below {limit:#x}");
        aside.push(s);
    }
}

/// A call of the refused-calls table: name, the space it acts on, and the call at a region's base.
type Case<'s> = (&'static str, &'s AddressSpace, Box<dyn Fn(&AddressSpace, u64) -> Result<(), Error> + 's>);

/// Regions of each space in the refused-calls scenario.
const REGIONS: u64 = 32;

/// Region `i` of space `s`: 64 pages, with an entry at pages 16..32 (holes on both sides).
fn region(s: &AddressSpace, i: u64) -> u64 {
    s.range().start + i * 64 * PS
}

/// Scenario 1a/1b: at exactly `vm.max_map_count` VMAs, calls that must split a VMA are refused by
/// the kernel; each must fail, leave the map unchanged and equal to the kernel, and leave every page
/// the map says is mapped with its contents. A seal that takes one entry whole and must split the
/// next seals the first for good: the map must say so. The filler lies below the spaces (see
/// [`FILLER_BELOW_UP_TO`]), so every read of smaps over a space goes through all of its VMAs.
fn map_count_calls() {
    let max = max_map_count();
    warm_up();
    let mut maps = Maps::new(max);
    // Where the filler goes: below the spaces (made after them, right under the lowest), or for a
    // large vm.max_map_count above them (made first, the spaces under it).
    let below = max <= FILLER_BELOW_UP_TO;
    let early = (!below).then(|| Filler::new(max, None));
    let under = early.as_ref().map_or(u64::MAX, |f| f.base);
    let s = reserve_under(under, 1 << 30, Options::default());
    let fallback = reserve_under(under, 1 << 26, Options { guard_fallback: true, ..Options::default() });
    let z = reserve_under(under, 1 << 26, Options::default());
    let markers = vmspace::os::features().guard_install;
    assert!(vmspace::os::features().mseal, "the kernel lacks mseal (6.10): the seal cases cannot run");
    // Regions: one entry of 16 read-write pages each, every page tagged.
    for sp in [&s, &fallback, &z] {
        for i in 0..REGIONS {
            let e = region(sp, i) + 16 * PS;
            sp.map_at(e..e + 16 * PS, rw()).unwrap();
            for p in 0..16 {
                write(e + p * PS, tag(e + p * PS));
            }
        }
    }
    // In z's region 1 the entry is two: read-write, then read-only.
    let z1 = region(&z, 1) + 16 * PS;
    z.protect(z1 + 8 * PS..z1 + 16 * PS, Prot::READ).unwrap();
    let lowest = [&s, &fallback, &z].iter().map(|sp| outer(sp).start).min().unwrap();
    let mut filler = early.unwrap_or_else(|| Filler::new(max, Some(lowest - (1 << 20))));
    eprintln!(
        "limits child map_count_calls: max_map_count {max}, filler {:#x?}, spaces {:#x?} {:#x?} {:#x?}",
        filler.range(),
        s.range(),
        fallback.range(),
        z.range()
    );
    calibrate(&mut filler, &mut maps, max);

    let mid = |base: u64, from: u64, to: u64| base + (16 + from) * PS..base + (16 + to) * PS;
    let mut cases: Vec<Case<'_>> = vec![
        ("unmap in the middle of an entry", &s, Box::new(move |s, b| s.unmap(mid(b, 4, 5)))),
        ("unmap of pages in the middle", &s, Box::new(move |s, b| s.unmap(mid(b, 3, 9)))),
        ("protect in the middle", &s, Box::new(move |s, b| s.protect(mid(b, 4, 6), Prot::READ))),
        ("protect_max in the middle", &s, Box::new(move |s, b| s.protect_max(mid(b, 4, 6), Prot::READ))),
        (
            "map_at in the middle of a hole",
            &s,
            Box::new(move |s, b| s.map_at(b + 40 * PS..b + 42 * PS, rw())),
        ),
        ("inherit none in the middle", &s, Box::new(move |s, b| s.inherit(mid(b, 4, 6), Inherit::None))),
        ("inherit zero in the middle", &s, Box::new(move |s, b| s.inherit(mid(b, 4, 6), Inherit::Zero))),
        ("wire in the middle", &s, Box::new(move |s, b| s.wire(mid(b, 4, 6)))),
        (
            "madvise sequential in the middle",
            &s,
            Box::new(move |s, b| s.madvise(mid(b, 4, 6), Advice::Sequential)),
        ),
        ("madvise nocore in the middle", &s, Box::new(move |s, b| s.madvise(mid(b, 4, 6), Advice::NoCore))),
        ("guard (PROT_NONE fallback) in the middle", &fallback, Box::new(move |s, b| s.guard(mid(b, 4, 6)))),
        ("seal in the middle", &z, Box::new(move |s, b| s.seal(mid(b, 4, 6)))),
    ];
    if !markers {
        cases.push(("guard in the middle", &s, Box::new(move |s, b| s.guard(mid(b, 4, 6)))));
    }
    for (i, (name, sp, call)) in cases.iter().enumerate() {
        let base = region(sp, i as u64 + 2);
        let before = sp.regions();
        filler.hold(&mut maps, max);
        let got = call(sp, base);
        eprintln!("limits child map_count_calls: {name}: {got:?}");
        let e = got
            .err()
            .unwrap_or_else(|| panic!("{name}: at the limit the call should fail, but it succeeded"));
        let Some((errno, kept)) = kernel_error(&e) else { panic!("{name}: not the kernel's error: {e:?}") };
        assert!(errno == libc::ENOMEM || errno == libc::EAGAIN, "{name}: {e}");
        agree(sp, name);
        intact(sp, sp.range().start..sp.range().start + REGIONS * 64 * PS, name);
        // The kernel refused before it changed anything: nothing is kept and the map is as it was.
        assert!(kept.is_empty(), "{name}: the kernel kept nothing, yet the error says {e}");
        assert_eq!(sp.regions(), before, "{name}: the map changed although the kernel did nothing");
        if std::ptr::eq(*sp, &z) {
            assert!(sealed_in_kernel(&outer(sp)).is_empty(), "{name}: the kernel sealed something");
        }
    }

    // Guard markers need no VMA of their own: at the limit they are installed all the same.
    if markers {
        let e = region(&s, 30) + 16 * PS;
        filler.hold(&mut maps, max);
        let got = s.guard(e + 4 * PS..e + 6 * PS);
        eprintln!("limits child map_count_calls: guard (markers) in the middle: {got:?}");
        got.expect("guard markers need no split: at the limit they still go in");
        agree(&s, "guard markers at the limit");
        intact(&s, e..e + 16 * PS, "guard markers at the limit");
    }

    // A seal over a whole entry and into the middle of the next: the kernel seals the first (no
    // split needed) and refuses the second. The seal stays; the map must say so.
    filler.hold(&mut maps, max);
    let got = z.seal(z1..z1 + 12 * PS);
    eprintln!("limits child map_count_calls: seal into the middle of the next entry: {got:?}");
    let e = got.expect_err("at the limit a seal that must split should fail");
    let (errno, kept) = kernel_error(&e).unwrap_or_else(|| panic!("not the kernel's error: {e:?}"));
    assert_eq!(errno, libc::ENOMEM, "{e}");
    agree(&z, "seal into the middle of the next entry");
    intact(
        &z,
        z.range().start..z.range().start + REGIONS * 64 * PS,
        "seal into the middle of the next entry",
    );
    let sealed = sealed_in_kernel(&outer(&z));
    assert_eq!(
        entries_with(&z, EntryFlags::SEALED),
        sealed,
        "the map's sealed entries should be what the kernel sealed"
    );
    assert_eq!(sealed, vec![z1..z1 + 8 * PS], "the kernel should have sealed the first entry only");
    assert_eq!(kept, sealed, "the error should name what the kernel kept: {e}");

    // A whole entry needs no split: its unmap goes through at the limit.
    filler.hold(&mut maps, max);
    let e = region(&s, 31) + 16 * PS;
    s.unmap(e..e + 16 * PS).expect("unmapping a whole entry needs no split");
    agree(&s, "unmap of a whole entry at the limit");

    drop(cases);
    drop(filler);
    for (sp, what) in [(s, "the space"), (fallback, "the fallback space"), (z, "the sealed space")] {
        drop_and_check(sp, &mut maps, what);
    }
}

/// A small xorshift generator: the sequence is the seed's, printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value: splitmix64 spreads it, and the state is never zero).
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[self.below(of.len() as u64) as usize]
    }
}

/// One random call of the sequence.
#[derive(Clone, Debug)]
enum Op {
    MapAt(Range<u64>, Prot, Inherit, Behavior, EntryFlags),
    Map(u64, Prot),
    Unmap(Range<u64>),
    Protect(Range<u64>, Prot),
    ProtectMax(Range<u64>, Prot),
    Inherit(Range<u64>, Inherit),
    Madvise(Range<u64>, Advice),
    Wire(Range<u64>),
    Unwire(Range<u64>),
    Guard(Range<u64>),
    Unguard(Range<u64>),
    Seal(Range<u64>),
}

/// Pages of each space the random calls act on.
const WINDOW: u64 = 96;

/// The runs of mapped pages (adjacent entries joined) and the holes of `window` in `s`.
fn runs_and_holes(s: &AddressSpace, window: &Range<u64>) -> (Vec<Range<u64>>, Vec<Range<u64>>) {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for e in s.regions().into_iter().filter(|e| e.start < window.end && e.end > window.start) {
        push_joined(&mut runs, e.start.max(window.start)..e.end.min(window.end));
    }
    let mut holes = Vec::new();
    let mut at = window.start;
    for r in &runs {
        if r.start > at {
            holes.push(at..r.start);
        }
        at = r.end;
    }
    if at < window.end {
        holes.push(at..window.end);
    }
    (runs, holes)
}

/// A random range of whole pages inside `r`, at most 16 pages.
fn inside(rng: &mut Rng, r: &Range<u64>) -> Range<u64> {
    let pages = (r.end - r.start) / PS;
    let a = rng.below(pages);
    let b = a + 1 + rng.below((pages - a).min(16));
    r.start + a * PS..r.start + b * PS
}

/// A random call on `window` of `s`: mostly over mapped pages (or, for a map, a hole), where the
/// map accepts it and the kernel may have to split a VMA; sometimes anywhere, which the map may
/// refuse.
fn random_op(rng: &mut Rng, s: &AddressSpace, window: &Range<u64>) -> Op {
    let (runs, holes) = runs_and_holes(s, window);
    let mut any = || {
        let start = rng.below(WINDOW);
        let len = (1 + rng.below(12)).min(WINDOW - start);
        window.start + start * PS..window.start + (start + len) * PS
    };
    let any = any();
    // Half the time strictly inside one entry, so the kernel must split its VMA (if the entry is
    // one VMA); else across the entries of a run, or anywhere.
    let entries: Vec<Entry<Backing>> = s
        .regions()
        .into_iter()
        .filter(|e| e.start >= window.start && e.end <= window.end && e.len() >= 3 * PS)
        .collect();
    let mapped = match rng.below(10) {
        0..=4 if !entries.is_empty() => {
            let e = &entries[rng.below(entries.len() as u64) as usize];
            inside(rng, &(e.start + PS..e.end - PS))
        }
        _ if runs.is_empty() || rng.below(8) == 0 => any.clone(),
        _ => {
            let r = runs[rng.below(runs.len() as u64) as usize].clone();
            inside(rng, &r)
        }
    };
    let hole = if holes.is_empty() || rng.below(10) == 0 {
        any
    } else {
        let h = holes[rng.below(holes.len() as u64) as usize].clone();
        inside(rng, &h)
    };
    // A protection other than the one there, so a protect has something to do.
    let now = s.lookup_entry(mapped.start).map_or(Prot::RW, |e| e.prot());
    let prot = loop {
        let p = rng.pick(&[Prot::NONE, Prot::READ, Prot::RW]);
        if p != now || rng.below(8) == 0 {
            break p;
        }
    };
    match rng.below(100) {
        0..=13 => {
            let inherit = rng.pick(&[Inherit::Copy, Inherit::Copy, Inherit::None, Inherit::Zero]);
            let behavior =
                rng.pick(&[Behavior::Normal, Behavior::Normal, Behavior::Sequential, Behavior::Random]);
            let mut flags = EntryFlags::EMPTY;
            if rng.below(4) == 0 {
                flags = flags | EntryFlags::NOCOREDUMP;
            }
            if rng.below(40) == 0 {
                flags = flags | EntryFlags::SEALED;
            }
            Op::MapAt(hole, prot, inherit, behavior, flags)
        }
        14..=16 => Op::Map((hole.end - hole.start).min(4 * PS), prot),
        17..=28 => Op::Unmap(mapped),
        29..=43 => Op::Protect(mapped, prot),
        44..=46 => Op::ProtectMax(mapped, rng.pick(&[Prot::READ, Prot::RW, Prot::ALL])),
        47..=54 => Op::Inherit(mapped, rng.pick(&[Inherit::None, Inherit::Zero, Inherit::Copy])),
        55..=67 => Op::Madvise(
            mapped,
            rng.pick(&[
                Advice::Sequential,
                Advice::Random,
                Advice::Normal,
                Advice::NoCore,
                Advice::Core,
                Advice::NoSync,
                Advice::WillNeed,
                Advice::DontNeed,
            ]),
        ),
        68..=76 => Op::Wire(mapped),
        77..=82 => Op::Unwire(mapped),
        83..=89 => Op::Guard(mapped),
        90..=98 => Op::Unguard(mapped),
        _ => Op::Seal(mapped),
    }
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::MapAt(..) => "map_at",
            Op::Map(..) => "map",
            Op::Unmap(..) => "unmap",
            Op::Protect(..) => "protect",
            Op::ProtectMax(..) => "protect_max",
            Op::Inherit(..) => "inherit",
            Op::Madvise(..) => "madvise",
            Op::Wire(..) => "wire",
            Op::Unwire(..) => "unwire",
            Op::Guard(..) => "guard",
            Op::Unguard(..) => "unguard",
            Op::Seal(..) => "seal",
        }
    }
}

fn apply(s: &AddressSpace, op: &Op) -> Result<(), Error> {
    match op.clone() {
        Op::MapAt(r, prot, inherit, behavior, flags) => s.map_at(
            r,
            MapSpec::new(prot, Prot::ALL).with_inherit(inherit).with_behavior(behavior).with_flags(flags),
        ),
        Op::Map(len, prot) => s.map(len, MapSpec::new(prot, Prot::ALL)).map(|_| ()),
        Op::Unmap(r) => s.unmap(r),
        Op::Protect(r, p) => s.protect(r, p),
        Op::ProtectMax(r, p) => s.protect_max(r, p),
        Op::Inherit(r, i) => s.inherit(r, i),
        Op::Madvise(r, a) => s.madvise(r, a),
        Op::Wire(r) => s.wire(r),
        Op::Unwire(r) => s.unwire(r),
        Op::Guard(r) => s.guard(r),
        Op::Unguard(r) => s.unguard(r),
        Op::Seal(r) => s.seal(r),
    }
}

/// The range whose contents `op` may destroy (guard markers drop pages; DontNeed and Free too).
fn destroys(op: &Op) -> Option<Range<u64>> {
    match op {
        Op::Guard(r) | Op::Madvise(r, Advice::DontNeed | Advice::Free) => Some(r.clone()),
        _ => None,
    }
}

/// What the random sequence knows of each page's contents.
struct Contents {
    /// Expected value of mapped pages whose contents are known (readable or not).
    known: std::collections::HashMap<u64, u64>,
}

impl Contents {
    /// After `op` (step `step`) on `s`: pages that were mapped keep their value unless `op` may have
    /// destroyed them; pages that were holes read zero; then readable pages are read (and writable
    /// ones sometimes written) for the next step.
    fn check(
        &mut self,
        s: &AddressSpace,
        window: Range<u64>,
        was_mapped: &[bool],
        op: &Op,
        rng: &mut Rng,
        what: &str,
    ) {
        let destroyed = destroys(op);
        for (i, page) in window.step_by(PS as usize).enumerate() {
            let Some(e) = s.lookup_entry(page) else {
                self.known.remove(&page);
                continue;
            };
            let expect = if !was_mapped[i] {
                Some(0)
            } else if destroyed.as_ref().is_some_and(|d| d.contains(&page)) {
                None
            } else {
                self.known.get(&page).copied()
            };
            if readable(&e) {
                let v = read(page);
                if let Some(x) = expect {
                    assert_eq!(v, x, "{what}: page {page:#x} holds {v:#x}, not {x:#x}\n{s}");
                }
                self.known.insert(page, v);
                if e.prot().contains(Prot::WRITE) && rng.below(2) == 0 {
                    let t = tag(page) ^ rng.next() << 8;
                    write(page, t);
                    self.known.insert(page, t);
                }
            } else {
                match expect {
                    Some(x) => self.known.insert(page, x),
                    None => self.known.remove(&page),
                };
            }
        }
    }
}

/// Scenario 1c: a few hundred random calls on two spaces (guard markers and the `PROT_NONE`
/// fallback) with the process held at the limit (or one or two VMAs below it) before each; after
/// each call the map and the kernel agree and contents are what they should be. The filler lies above
/// the spaces, so a read of smaps over a space stops before it.
fn map_count_random() {
    let max = max_map_count();
    let seed = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = Rng::new(seed);
    warm_up();
    let mut maps = Maps::new(max);
    // The spaces go below the filler: smaps lists VMAs in address order, so a read of smaps over a
    // space stops before the filler.
    let mut filler = Filler::new(max, None);
    let spaces = [
        reserve_under(filler.base, 1 << 24, Options::default()),
        reserve_under(filler.base, 1 << 24, Options { guard_fallback: true, ..Options::default() }),
    ];
    // A patchwork to start from: the window mapped in runs of a few pages with varied attributes.
    for s in &spaces {
        let w = s.range().start;
        for run in 0..WINDOW / 16 {
            let r = w + run * 16 * PS..w + (run * 16 + 14) * PS;
            s.map_at(r.clone(), rw()).unwrap();
            s.protect(r.start + 5 * PS..r.start + 6 * PS, [Prot::READ, Prot::NONE][(run % 2) as usize])
                .unwrap();
            s.madvise(r.start + 9 * PS..r.end, [Advice::Random, Advice::NoSync][(run % 2) as usize]).unwrap();
        }
    }
    eprintln!(
        "limits child map_count_random: seed {seed}, max_map_count {max}, filler {:#x?}, spaces {:#x?} {:#x?}",
        filler.range(),
        spaces[0].range(),
        spaces[1].range()
    );
    calibrate(&mut filler, &mut maps, max);
    let mut contents = [Contents { known: Default::default() }, Contents { known: Default::default() }];
    for (s, c) in spaces.iter().zip(&mut contents) {
        let w = s.range().start..s.range().start + WINDOW * PS;
        c.check(s, w, &[false; WINDOW as usize], &Op::Unmap(0..0), &mut rng, "the patchwork");
    }
    // Per kind of call: succeeded, refused by the map, refused by the kernel and put back, kept in
    // part by the kernel.
    let mut tally: std::collections::BTreeMap<&str, [u64; 4]> = Default::default();
    for step in 0..RANDOM_STEPS {
        let which = rng.below(2) as usize;
        let s = &spaces[which];
        let base = s.range().start;
        let window = base..base + WINDOW * PS;
        let op = random_op(&mut rng, s, &window);
        let was_mapped: Vec<bool> =
            window.clone().step_by(PS as usize).map(|p| s.lookup_entry(p).is_some()).collect();
        let headroom = rng.pick(&[0, 0, 0, 0, 0, 1, 1, 1, 2, 2]);
        if step % 25 == 0 {
            // Now and then a full count, which also checks the fast one.
            let fast = maps.count_below(filler.base) + filler.vmas() + filler.above;
            assert_eq!(fast, maps.count(), "step {step}: counting only below the filler was off");
            filler.hold(&mut maps, max - headroom);
        } else {
            filler.hold_fast(&mut maps, max - headroom);
        }
        let got = apply(s, &op);
        let what =
            format!("seed {seed} step {step}: space {which}, {op:x?} at max_map_count - {headroom}: {got:?}");
        let outcome = match &got {
            Ok(()) => 0,
            Err(Error::Vm(_)) => 1,
            Err(e) => match kernel_error(e) {
                Some((_, k)) if k.is_empty() => 2,
                Some(_) => 3,
                None => panic!("{what}: unexpected error"),
            },
        };
        tally.entry(op.name()).or_default()[outcome] += 1;
        agree(s, &what);
        contents[which].check(s, window, &was_mapped, &op, &mut rng, &what);
    }
    eprintln!(
        "limits child map_count_random: calls: succeeded / refused by the map / refused by the kernel \
         and put back / kept in part by the kernel"
    );
    for (name, t) in &tally {
        eprintln!(
            "limits child map_count_random:   {name:<12} {:>4} {:>4} {:>4} {:>4}",
            t[0], t[1], t[2], t[3]
        );
    }
    let at_limit: u64 = tally.values().map(|t| t[2] + t[3]).sum();
    assert!(
        at_limit >= RANDOM_STEPS / 8,
        "only {at_limit} of {RANDOM_STEPS} calls met the kernel's limit: the sequence did not test it"
    );
    drop(filler);
    let [a, b] = spaces;
    drop_and_check(a, &mut maps, "the space with guard markers");
    drop_and_check(b, &mut maps, "the space with PROT_NONE guards");
}

/// Scenario 2: RLIMIT_MEMLOCK as an unprivileged user. The parent dropped to nobody and set the
/// limit before exec; the child checks it got there, then a wire beyond the limit (whole, and after
/// two pieces that fit) and a sealed `map_at` under `wire_future` whose lock fails must leave
/// nothing locked, nothing sealed, and no reservation behind.
fn memlock() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) }, 0);
    assert_eq!(lim.rlim_cur, MEMLOCK_LIMIT, "the parent should have set RLIMIT_MEMLOCK");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff in /proc/self/status");
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        cap_eff & (1 << CAP_IPC_LOCK) == 0,
        "the child (euid {euid}) still has CAP_IPC_LOCK (CapEff {cap_eff:#x}): RLIMIT_MEMLOCK does not bind it"
    );
    eprintln!(
        "limits child memlock: euid {euid}, RLIMIT_MEMLOCK {} KiB, CapEff {cap_eff:#x}",
        lim.rlim_cur >> 10
    );
    assert!(vmspace::os::features().mseal, "the kernel lacks mseal (6.10): the sealed map_at cannot run");
    let locked = || status_kib(&std::fs::read_to_string("/proc/self/status").unwrap(), "VmLck:");
    let mut maps = Maps::new(1 << 16);
    let s = AddressSpace::reserve(1 << 30).unwrap();
    let a = s.range().start;
    let limit_pages = MEMLOCK_LIMIT / PS;

    // A wire of twice the limit in one piece.
    s.map_at(a..a + 4 * limit_pages * PS, rw()).unwrap();
    for p in 0..4 * limit_pages {
        write(a + p * PS, tag(a + p * PS));
    }
    let got = s.wire(a..a + 2 * limit_pages * PS);
    eprintln!("limits child memlock: wire of twice the limit: {got:?}");
    let e = got.expect_err("a wire beyond RLIMIT_MEMLOCK should fail");
    assert_eq!(kernel_error(&e).map(|k| k.0), Some(libc::ENOMEM), "{e}");
    agree(&s, "wire beyond the limit");
    intact(&s, a..a + 4 * limit_pages * PS, "wire beyond the limit");
    assert_eq!(locked(), 0, "nothing should be locked");

    // The same over three entries: the first two fit the limit exactly and are locked, the third
    // fails; recovery must unlock the two.
    let b = a + 8 * limit_pages * PS;
    let half = limit_pages / 2;
    s.map_at(b..b + 4 * limit_pages * PS, rw()).unwrap();
    s.protect(b + half * PS..b + 2 * half * PS, Prot::READ).unwrap();
    for p in 0..4 * limit_pages {
        if !(half..2 * half).contains(&p) {
            write(b + p * PS, tag(b + p * PS));
        }
    }
    let got = s.wire(b..b + 4 * limit_pages * PS);
    eprintln!("limits child memlock: wire of three entries, the third beyond the limit: {got:?}");
    let e = got.expect_err("a wire beyond RLIMIT_MEMLOCK should fail");
    assert_eq!(kernel_error(&e).map(|k| k.0), Some(libc::ENOMEM), "{e}");
    agree(&s, "wire of three entries beyond the limit");
    assert_eq!(locked(), 0, "recovery should have unlocked the pieces that fit");
    // The whole limit is free again.
    s.wire(a..a + limit_pages * PS).expect("a wire of exactly the limit, with nothing else locked");
    agree(&s, "wire of exactly the limit");
    s.unwire(a..a + limit_pages * PS).unwrap();
    s.unmap(b..b + 4 * limit_pages * PS).unwrap();

    // wire_future, then a sealed map_at larger than the limit: the implied lock fails. Sealing is
    // irrevocable, so it must not have happened.
    let r = a + 16 * limit_pages * PS..a + 18 * limit_pages * PS;
    s.set_wire_future(true).unwrap();
    let got = s.map_at(r.clone(), rw().with_flags(EntryFlags::SEALED));
    eprintln!("limits child memlock: sealed map_at under wire_future beyond the limit: {got:?}");
    let e = got.expect_err("the lock implied by wire_future is beyond RLIMIT_MEMLOCK");
    assert_eq!(kernel_error(&e).map(|k| k.0), Some(libc::ENOMEM), "{e}");
    agree(&s, "sealed map_at under wire_future beyond the limit");
    assert!(s.lookup_entry(r.start).is_none(), "the failed map_at left an entry:\n{s}");
    let sealed = sealed_in_kernel(&outer(&s));
    assert!(sealed.is_empty(), "the kernel holds sealed memory {sealed:#x?} after the map_at failed:\n{s}");
    assert_eq!(locked(), 0, "nothing should be locked");
    s.set_wire_future(false).unwrap();
    s.map_at(r.clone(), rw()).expect("the range of the failed map_at can be mapped again");
    write(r.start, 7);
    assert_eq!(read(r.start), 7);
    agree(&s, "map_at again");
    let range = outer(&s);
    drop(s);
    let (n, bytes) = maps.over(&range);
    assert_eq!((n, bytes), (0, 0), "the dropped space left {n} VMAs, {bytes} bytes of {range:#x?}");
}

/// Probes first asked with no address space left (RLIMIT_AS at what is in use), then with room again.
fn probe_at_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given; setrlimit changes only this process's limit.
    let saved = unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut lim), 0);
        let saved = lim;
        lim.rlim_cur = vm_size();
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &lim), 0, "{}", std::io::Error::last_os_error());
        saved
    };
    let refused = vmspace::os::features();
    assert!(
        !refused.mseal && !refused.guard_install,
        "with no room to probe, nothing is taken as there: {refused:?}"
    );
    // SAFETY: as above, back to the limit the process started with.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &saved), 0) };
    let f = vmspace::os::features();
    assert!(f.mseal && f.guard_install && f.wipe_on_fork, "probed again once there is room: {f:?}");
    let s = AddressSpace::reserve(1 << 20).unwrap();
    let a = s.map(2 * PS, rw()).unwrap();
    s.seal(a..a + PS).unwrap();
    agree(&s, "after the probe at the limit");
}

/// Scenario 3: RLIMIT_AS a little above what the process uses. Reserving more fails with a typed
/// error; the reclaim ring and the scratch space fail with theirs when they cannot get memory; none
/// leaks a byte. A space reserved before the limit keeps mapping, protecting and unmapping inside its
/// reservation, which does not grow the address space.
fn address_space() {
    let mut maps = Maps::new(1 << 16);
    let space = Arc::new(AddressSpace::reserve(256 << 20).unwrap());
    warm_up();
    let headroom = 16u64 << 20;
    let limit = vm_size() + headroom;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given; setrlimit only lowers this process's limit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut lim), 0);
        lim.rlim_cur = limit;
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &lim), 0, "{}", std::io::Error::last_os_error());
    }
    eprintln!("limits child address_space: RLIMIT_AS {} MiB, {} MiB in use", limit >> 20, vm_size() >> 20);
    let before = maps.coverage();
    let leaked = |maps: &mut Maps, what: &str| {
        let g = grown(&before, &maps.coverage());
        assert!(g.is_empty(), "{what}: the process maps {g:#x?} it did not map before");
    };

    for len in [1u64 << 30, 64 << 20] {
        let got = AddressSpace::reserve(len);
        eprintln!("limits child address_space: reserve({} MiB): {:?}", len >> 20, got.as_ref().err());
        match got {
            Err(Error::Os { call: "mmap", source }) if source.raw_os_error() == Some(libc::ENOMEM) => {}
            other => panic!("reserve of {len} bytes beyond RLIMIT_AS: {other:?}"),
        }
        leaked(&mut maps, "a failed reserve");
    }

    // Inside the space reserved before: mapping replaces reservation, so 200 MiB fit where 16 do not.
    let a = space.range().start;
    let big = 200u64 << 20;
    space.map_at(a..a + big, rw()).expect("mapping over the space's own reservation");
    for off in (0..big).step_by(1 << 20) {
        write(a + off, tag(a + off));
    }
    space.protect(a..a + (64 << 20), Prot::READ).unwrap();
    space.unmap(a + (64 << 20)..a + (128 << 20)).unwrap();
    space.map_at(a + (64 << 20)..a + (96 << 20), rw()).unwrap();
    space.guard(a + (160 << 20)..a + (160 << 20) + PS).unwrap();
    space.wire(a + (170 << 20)..a + (170 << 20) + 4 * PS).unwrap();
    agree(&space, "calls inside a space reserved before RLIMIT_AS was lowered");
    for off in (0..64u64 << 20).chain(128 << 20..160 << 20).step_by(1 << 20) {
        assert_eq!(read(a + off), tag(a + off), "page {:#x} lost its contents", a + off);
    }
    space.unmap(a..a + big).unwrap();
    agree(&space, "unmapping it all again");
    leaked(&mut maps, "calls inside the space");

    // The reclaim ring: the largest ring needs 128 MiB of address space it cannot get.
    for bound in [false, true] {
        let got = if bound {
            ReclaimRing::bound(&space, MAX_CAPACITY, MAX_CAPACITY)
        } else {
            ReclaimRing::allocate(MAX_CAPACITY, MAX_CAPACITY)
        };
        eprintln!(
            "limits child address_space: ring of MAX_CAPACITY (bound {bound}): {:?}",
            got.as_ref().err()
        );
        assert!(matches!(got, Err(ReclaimError::ResourceShortage)), "{got:?}");
        leaked(&mut maps, "a failed ring");
    }
    // A small ring fits, and the failed process-wide ring gave its slot back.
    let small = ReclaimRing::round_capacity(512);
    drop(ReclaimRing::allocate(small, small).expect("a small process-wide ring after the failed one"));

    // The scratch space: its own address space of 4096 pages of each view is 32 MiB.
    let got = ScratchSpace::new();
    eprintln!("limits child address_space: ScratchSpace::new(): {:?}", got.as_ref().err());
    match got {
        Err(ScratchError::Space(e)) if kernel_error(&e).is_some_and(|k| k.0 == libc::ENOMEM) => {}
        other => panic!("ScratchSpace::new beyond RLIMIT_AS: {other:?}"),
    }
    let got = ScratchSpace::builder().max_pages(1 << 20).build();
    match got {
        Err(ScratchError::Space(e)) if kernel_error(&e).is_some_and(|k| k.0 == libc::ENOMEM) => {}
        other => panic!("a scratch space of 2^20 pages beyond RLIMIT_AS: {other:?}"),
    }
    leaked(&mut maps, "a failed scratch space");
    // In the space reserved before, scratch pages are mapped over its reservation and fit.
    {
        let scratch = ScratchSpace::enable(&space).expect("a scratch space in the existing space");
        let slot = scratch.claim().expect("a scratch slot inside the existing space");
        write(slot.write_addr(), 42);
        assert_eq!(read(slot.addr()), 42, "the two views share the page");
        scratch.release(slot).unwrap();
        agree(&space, "a scratch page in the existing space");
    }
    agree(&space, "the scratch space dropped");
    leaked(&mut maps, "the whole scenario");
    let range = outer(&space);
    drop(Arc::into_inner(space).expect("the only reference"));
    let (n, bytes) = maps.over(&range);
    assert_eq!((n, bytes), (0, 0), "the dropped space left {n} VMAs, {bytes} bytes of {range:#x?}");
}
