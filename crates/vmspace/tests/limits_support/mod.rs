//! Helpers shared by the limits tests (`limits*.rs`): running a scenario in a child process of its
//! own — the test binary run again with `VMSPACE_LIMITS_CHILD` naming the scenario (the
//! `child_entry` pattern of `tests/fault.rs`) — and the kernel's view read back.
//!
//! The parent gives each child [`CHILD_TIME_LIMIT`], kills it after that and fails (a hang is a
//! failure, never a hung suite), and passes only on a zero exit status with the scenario's `done`
//! line on stderr, so a child that ran nothing cannot pass.
#![allow(dead_code, unused_imports)]

pub use std::io::{BufRead, Read};
pub use std::ops::Range;
pub use std::os::unix::fs::PermissionsExt;
pub use std::os::unix::process::CommandExt;
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, ExitStatus, Stdio};
pub use std::sync::Arc;
pub use std::time::{Duration, Instant};

pub use vmspace::reclaim::{MAX_CAPACITY, ReclaimError, ReclaimRing};
pub use vmspace::scratch::{ScratchError, ScratchSpace};
pub use vmspace::{
    AddressSpace, Advice, Backing, Behavior, Entry, EntryFlags, Error, Inherit, MapSpec, Options, Prot,
};

pub const PS: u64 = 4096;
/// The variable that turns `child_entry` into a scenario.
pub const CHILD_ENV: &str = "VMSPACE_LIMITS_CHILD";
/// Overrides the random sequence's seed.
pub const SEED_ENV: &str = "VMSPACE_LIMITS_SEED";
/// How long a child may run before the parent kills it and fails.
pub const CHILD_TIME_LIMIT: Duration = Duration::from_secs(60);
/// The RLIMIT_MEMLOCK the unprivileged child runs with.
pub const MEMLOCK_LIMIT: u64 = 64 << 10;
/// `CAP_IPC_LOCK`, the capability that lifts RLIMIT_MEMLOCK.
pub const CAP_IPC_LOCK: u32 = 14;
/// uid and gid `nobody`.
pub const NOBODY: u32 = 65534;
/// The largest `vm.max_map_count` the scenarios fill up to (Linux's default is 65530; some
/// distributions raise it to 1048576).
pub const MAX_MAP_COUNT_REACHABLE: u64 = 1 << 20;
/// Up to this `vm.max_map_count` the refused-calls scenario puts the filler below its spaces, so that
/// every read of smaps over a space (in the calls and in recovery) goes through all the filler's VMAs
/// first; above it that would not fit the time bound, and the filler goes above them.
pub const FILLER_BELOW_UP_TO: u64 = 1 << 17;
/// Random calls made at the map-count limit.
pub const RANDOM_STEPS: u64 = 400;

// ---------------------------------------------------------------------------------------------
// The parent side.

/// Runs this test binary as `exe` again as the child `scenario`, `setup` adjusting the command; kills
/// it after [`CHILD_TIME_LIMIT`]. Returns its status and its output (stdout, then stderr).
pub fn run_child(scenario: &str, exe: &Path, setup: impl FnOnce(&mut Command)) -> (ExitStatus, String) {
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
pub fn expect_done(scenario: &str, exe: &Path, setup: impl FnOnce(&mut Command)) {
    let (status, output) = run_child(scenario, exe, setup);
    let done = format!("limits child {scenario}: done");
    assert!(
        status.success() && output.contains(&done),
        "scenario {scenario}: the child exited with {status}; its output:\n{output}"
    );
}

pub fn this_exe() -> PathBuf {
    std::env::current_exe().expect("the test binary's path")
}

/// Whether a user other than the owner can reach and execute `exe` (every directory above it `o+x`,
/// the file `o+rx`).
pub fn runnable_by_others(exe: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    mode(exe) & 0o005 == 0o005 && exe.ancestors().skip(1).all(|d| mode(d) & 0o001 != 0)
}

pub fn rw() -> MapSpec<Backing> {
    MapSpec::new(Prot::RW, Prot::ALL)
}

/// What each page of the tests holds: a value that names the page.
pub fn tag(page: u64) -> u64 {
    page ^ 0x5eed_0000_0000_0000
}

pub fn write(addr: u64, v: u64) {
    // SAFETY: the tests write only pages that a space of their own maps read-write (its map says so,
    // the space keeps the kernel equal to its map, and the tests check that it does); nothing else
    // in the process refers to those pages.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

pub fn read(addr: u64) -> u64 {
    // SAFETY: the tests read only pages that a space of their own maps readable and not guard (as for
    // `write`).
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

/// Readable memory, not a guard region (whose markers fault on any access).
pub fn readable(e: &Entry<Backing>) -> bool {
    e.prot().contains(Prot::READ) && !e.flags().contains(EntryFlags::GUARD)
}

/// The kernel's error number and the ranges it kept, for an error of a system call; `None` for the
/// map's refusals and missing features.
pub fn kernel_error(e: &Error) -> Option<(i32, Vec<Range<u64>>)> {
    match e {
        Error::Os { source, .. } => Some((source.raw_os_error()?, Vec::new())),
        Error::Incomplete { source, kept, .. } => Some((source.raw_os_error()?, kept.clone())),
        _ => None,
    }
}

/// Asserts that the map and the kernel agree over the whole space (`kernel_differences` empty) and
/// that the map keeps its invariants.
pub fn agree(s: &AddressSpace, what: &str) {
    let d = s.kernel_differences().unwrap_or_else(|e| panic!("{what}: kernel_differences failed: {e}"));
    assert!(d.is_empty(), "{what}: map and kernel disagree:\n{}\nthe map:\n{s}", d.join("\n"));
    s.with_map(|m| m.check_invariants()).unwrap_or_else(|e| panic!("{what}: map invariant broken: {e}"));
}

/// Every page of `window` the map says is mapped readable holds [`tag`].
pub fn intact(s: &AddressSpace, window: Range<u64>, what: &str) {
    for page in window.step_by(PS as usize) {
        if s.lookup_entry(page).is_some_and(|e| readable(&e)) {
            assert_eq!(read(page), tag(page), "{what}: page {page:#x} lost its contents\n{s}");
        }
    }
}

/// The whole reservation of `s`: its range and the guard page on each side.
pub fn outer(s: &AddressSpace) -> Range<u64> {
    let r = s.range();
    r.start - PS..r.end + PS
}

pub fn parse_hex(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    b.iter().try_fold(0u64, |v, c| Some(v << 4 | u64::from((*c as char).to_digit(16)?)))
}

/// `start-end` at the head of a maps or smaps line.
pub fn line_range(line: &[u8]) -> Option<Range<u64>> {
    let first = line.split(|c| *c == b' ').next()?;
    let dash = first.iter().position(|c| *c == b'-')?;
    Some(parse_hex(&first[..dash])?..parse_hex(&first[dash + 1..])?)
}

/// `/proc/self/maps` read into a buffer allocated once: counting VMAs allocates nothing, so it
/// neither needs a new VMA at the limit nor lands a heap mapping in a range being checked.
pub struct Maps {
    pub buf: Vec<u8>,
}

impl Maps {
    /// Room for `vmas` lines (at most 73 bytes each without a path; a few have one).
    pub fn new(vmas: u64) -> Maps {
        Maps { buf: Vec::with_capacity((vmas * 96 + (1 << 20)) as usize) }
    }

    pub fn lines(&mut self) -> impl Iterator<Item = &[u8]> {
        self.buf.clear();
        let room = self.buf.capacity();
        let mut f = std::fs::File::open("/proc/self/maps").expect("open /proc/self/maps");
        f.read_to_end(&mut self.buf).expect("read /proc/self/maps");
        assert_eq!(self.buf.capacity(), room, "/proc/self/maps outgrew its buffer");
        self.buf.split(|c| *c == b'\n').filter(|l| !l.is_empty())
    }

    /// The process's VMAs (`mm->map_count`): the lines of maps but the `[vsyscall]` gate, which is no
    /// VMA.
    pub fn count(&mut self) -> u64 {
        self.lines().filter(|l| !l.ends_with(b"[vsyscall]")).count() as u64
    }

    /// The VMAs that start below `addr`, read only that far (the kernel formats maps as it is read).
    pub fn count_below(&mut self, addr: u64) -> u64 {
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
    pub fn over(&mut self, r: &Range<u64>) -> (u64, u64) {
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
    pub fn inside(&mut self, r: &Range<u64>) -> Vec<Range<u64>> {
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
    pub fn coverage(&mut self) -> Vec<Range<u64>> {
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
pub fn push_joined(out: &mut Vec<Range<u64>>, r: Range<u64>) {
    match out.last_mut() {
        Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
        _ => out.push(r),
    }
}

/// The bytes of `after` that `before` does not cover.
pub fn grown(before: &[Range<u64>], after: &[Range<u64>]) -> Vec<Range<u64>> {
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
pub struct KernelVma {
    pub range: Range<u64>,
    pub flags: Vec<String>,
}

/// The VMAs of `/proc/self/smaps` over `r`, read a line at a time (never the whole file at once:
/// at the map-count limit it is tens of megabytes) and only up to `r`'s end.
pub fn kernel_vmas(r: &Range<u64>) -> Vec<KernelVma> {
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
pub fn sealed_in_kernel(r: &Range<u64>) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for v in kernel_vmas(r).into_iter().filter(|v| v.flags.iter().any(|f| f == "sl")) {
        push_joined(&mut out, v.range.start.max(r.start)..v.range.end.min(r.end));
    }
    out
}

/// The entries of `s` carrying `flag`, joined.
pub fn entries_with(s: &AddressSpace, flag: EntryFlags) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for e in s.regions().into_iter().filter(|e| e.flags().contains(flag)) {
        push_joined(&mut out, e.range());
    }
    out
}

/// Drops `s` and asserts its reservation left nothing in the process but its sealed entries, which
/// by definition cannot be unmapped.
pub fn drop_and_check(s: AddressSpace, maps: &mut Maps, what: &str) {
    let (range, sealed) = (outer(&s), entries_with(&s, EntryFlags::SEALED));
    drop(s);
    let left = maps.inside(&range);
    assert_eq!(
        left, sealed,
        "{what}: after the drop the former reservation {range:#x?} still holds {left:#x?} (sealed \
         entries: {sealed:#x?})"
    );
}

pub fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status_kib(&status, "VmSize:") * 1024
}

/// A `kB` field of /proc/self/status.
pub fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

pub fn mprotect(addr: u64, len: u64, prot: i32) -> Result<(), i32> {
    // SAFETY: only called on the filler and probe mappings this file made with libc::mmap, which no
    // Rust reference points into; changing their protection affects nothing else.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len as usize, prot) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) }
}

/// A fresh private anonymous mapping of `pages` pages, outside every space.
pub fn mmap_pages(pages: u64, prot: i32) -> u64 {
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
pub fn mmap_pages_at(addr: u64, pages: u64) -> Option<u64> {
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
pub fn max_map_count() -> u64 {
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
pub struct Filler {
    pub base: u64,
    pub pages: u64,
    pub raised: u64,
    pub tail: bool,
    /// The process's VMAs above the filler when last counted in full (see [`Filler::hold_fast`]).
    pub above: u64,
}

impl Filler {
    /// A filler that can reach `max` VMAs on its own; at `below` (its end there) if that is free.
    pub fn new(max: u64, below: Option<u64>) -> Filler {
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

    pub fn range(&self) -> Range<u64> {
        self.base..self.base + self.pages * PS
    }

    pub fn vmas(&self) -> u64 {
        3 + 2 * self.raised + u64::from(self.tail)
    }

    /// Makes the filler `vmas` VMAs: lowering first, then raising, so no step ever needs more VMAs
    /// than the end state has.
    pub fn set(&mut self, vmas: u64) {
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
    pub fn hold(&mut self, maps: &mut Maps, target: u64) {
        let now = maps.count();
        let want = (self.vmas() + target).checked_sub(now).expect("the process has too many VMAs");
        self.set(want);
        let now = maps.count();
        assert_eq!(now, target, "the process should hold {target} VMAs");
        self.above = now - maps.count_below(self.base) - self.vmas();
    }

    /// [`Filler::hold`] counting only the VMAs below the filler, for a process whose changes all
    /// happen there: those above are taken from the last full count.
    pub fn hold_fast(&mut self, maps: &mut Maps, target: u64) {
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
pub fn calibrate(filler: &mut Filler, maps: &mut Maps, max: u64) {
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
pub fn warm_up() {
    let s = AddressSpace::reserve(1 << 20).unwrap();
    let a = s.map(2 * PS, rw()).unwrap();
    s.guard(a..a + PS).unwrap();
    agree(&s, "warm-up");
}

/// A space of `len` bytes whose reservation lies below `limit`; reservations that land in a gap above
/// it are kept aside until one does, then dropped.
pub fn reserve_under(limit: u64, len: u64, opts: Options) -> AddressSpace {
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
pub type Case<'s> =
    (&'static str, &'s AddressSpace, Box<dyn Fn(&AddressSpace, u64) -> Result<(), Error> + 's>);

/// Regions of each space in the refused-calls scenario.
pub const REGIONS: u64 = 32;

/// Region `i` of space `s`: 64 pages, with an entry at pages 16..32 (holes on both sides).
pub fn region(s: &AddressSpace, i: u64) -> u64 {
    s.range().start + i * 64 * PS
}

/// The children's side of a limits test binary: does nothing unless run by [`run_child`]; runs the
/// scenario the environment names, one of `scenarios`.
pub fn child_entry(scenarios: &[(&str, fn())]) {
    let Ok(scenario) = std::env::var(CHILD_ENV) else { return };
    assert_eq!(vmspace::os::page_size(), PS, "these scenarios count in 4 KiB pages");
    let started = Instant::now();
    match scenarios.iter().find(|(name, _)| *name == scenario) {
        Some((_, run)) => run(),
        None => panic!("unknown scenario {scenario}"),
    }
    eprintln!("limits child {scenario}: done in {:.1?}", started.elapsed());
}
