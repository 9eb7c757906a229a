//! `fork()` while other threads are anywhere (DESIGN.md, "Failure paths"): reading a space, changing
//! one, growing a stack in the fault handler, forking themselves. Every child must finish within a
//! bound (a hang is a failure, reported with the child's state, never a hung suite), find each space's
//! map equal to its kernel, use each space and make a new one; the parent's reservations hold exactly
//! the VMAs they held before, and none once the spaces are dropped.
//!
//! Helpers shared by the fork tests under load (`fork_load.rs`, `fork_readers.rs`, `fork_stacks.rs`,
//! `fork_setup.rs`).
//!
//! The tests of these files take `SERIAL`, so only one of them forks at a time and its figures are its
//! own; the harness's own threads may still run (printing results), so a child calls nothing that may
//! take a lock a parent thread held — no stdout/stderr, no `std::env`, no panic hook — besides
//! vmspace's own calls and malloc (which glibc resets in a child): it reports through `write(2)` on a
//! pipe and leaves with `_exit`. The tests with threads on vmspace stacks run in a fresh process of
//! this binary (`subprocess`): a stack that cannot grow dies of SIGSEGV, and must fail its own test,
//! not take the binary down.
//!
//! Knobs, read by the parent only (defaults are the suite's): `VMSPACE_FORK_BOUND_MS` (how long a
//! child, or a `fork()` call in the parent, may take: 20000), `VMSPACE_FORK_MAX_HANGS` (hung
//! children after which a test stops, 3), `VMSPACE_FORK_ROUNDS` (forks of
//! `fork_while_other_threads_read`, 600), `VMSPACE_FORK_SEED`, and `VMSPACE_FORK_GDB=1` (a
//! backtrace of a hung child before it is killed).

#![allow(dead_code, unused_imports)]

pub use std::fmt::Write as _;
pub use std::ops::Range;
pub use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
pub use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
pub use std::sync::{Arc, Mutex, MutexGuard, mpsc};
pub use std::time::{Duration, Instant};

pub use vmspace::fault::spawn_on_stack;
pub use vmspace::fork::{Forked, fork};
pub use vmspace::{AddressSpace, Backing, Inherit, MapSpec, Prot};

pub const PS: u64 = 4096;

/// One forking test at a time in this binary.
pub static SERIAL: Mutex<()> = Mutex::new(());
/// Children not yet reaped, for the watchdog to kill before it aborts.
pub static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Forks made with other threads running, over the whole binary.
pub static TOTAL_FORKS: AtomicU64 = AtomicU64::new(0);
/// Threads of this process inside a `fork()` call now.
pub static FORKING: AtomicU32 = AtomicU32::new(0);

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn live() -> MutexGuard<'static, Vec<i32>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The parent's settings, read before any fork.
#[derive(Clone, Copy)]
pub struct Knobs {
    pub bound: Duration,
    pub max_hangs: u64,
    pub gdb: bool,
}

pub fn knobs() -> Knobs {
    Knobs {
        bound: Duration::from_millis(knob("VMSPACE_FORK_BOUND_MS", 20_000)),
        max_hangs: knob("VMSPACE_FORK_MAX_HANGS", 3),
        gdb: knob("VMSPACE_FORK_GDB", 0) == 1,
    }
}

/// xorshift64*: the moments of the forks and the mutator's choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
    knob("VMSPACE_FORK_SEED", t as u64)
}

pub fn rw() -> MapSpec<Backing> {
    MapSpec::new(Prot::RW, Prot::ALL)
}

pub fn write(addr: u64, v: u64) {
    // SAFETY: only pages of the test's own spaces that are mapped read-write.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

pub fn read(addr: u64) -> u64 {
    // SAFETY: only pages of the test's own spaces that are mapped readable.
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

/// The whole reservation of a space: its range and one guard page either side.
pub fn outer(s: &AddressSpace) -> Range<u64> {
    let r = s.range();
    r.start - PS..r.end + PS
}

/// The VMAs of this process (from `/proc/self/maps`) inside `outer`, clipped to it: (start, end,
/// permissions).
pub fn vmas_in(outer: &Range<u64>) -> Result<Vec<(u64, u64, String)>, String> {
    let text =
        std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("read /proc/self/maps: {e}"))?;
    let mut v = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms)) = (it.next(), it.next()) else { continue };
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
        if a < outer.end && b > outer.start {
            v.push((a.max(outer.start), b.min(outer.end), perms.to_string()));
        }
    }
    Ok(v)
}

pub fn show_vmas(v: &[(u64, u64, String)]) -> String {
    v.iter().map(|(a, b, p)| format!("{a:#x}-{b:#x} {p}")).collect::<Vec<_>>().join(", ")
}

/// `kernel_differences` must be empty.
pub fn agree(s: &AddressSpace, name: &str, when: &str) -> Result<(), String> {
    let d = s.kernel_differences().map_err(|e| format!("{name} {when}: kernel_differences: {e}"))?;
    if d.is_empty() {
        Ok(())
    } else {
        Err(format!("{name} {when}: map and kernel disagree:\n  {}\n{s}", d.join("\n  ")))
    }
}

// ---- children ----------------------------------------------------------------------------------

/// A pipe: the child writes its report to the write end; the parent reads it, without blocking, once
/// the child is gone (a sibling forked meanwhile may hold the write end too, so EOF cannot be waited
/// for).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
    // SAFETY: both descriptors were just created and are owned by these values alone.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// In the child: runs `work`, writes `P<note>` or `F<message>` to `tx` and leaves with `_exit` (0 pass,
/// 1 fail, 2 panicked). Never returns, never unwinds into the parent's code.
pub fn child_main(tx: &OwnedFd, work: impl FnOnce() -> Result<String, String>) -> ! {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    let (code, msg) = match r {
        Ok(Ok(note)) => (0, format!("P{note}")),
        Ok(Err(m)) => (1, format!("F{m}")),
        Err(_) => (2, "Fpanicked".to_string()),
    };
    // A pipe takes up to PIPE_BUF bytes in one write whole; more is cut.
    let n = msg.len().min(libc::PIPE_BUF);
    // SAFETY: write(2) of a valid buffer to our own pipe, then _exit: nothing of the parent's runs.
    unsafe {
        libc::write(tx.as_raw_fd(), msg.as_ptr().cast(), n);
        libc::_exit(code)
    }
}

/// How a child ended.
#[derive(Debug)]
pub enum Outcome {
    /// Exit 0; the child's note.
    Passed(String),
    /// A failure the child reported, a signal, or an exit code.
    Failed(String),
    /// Not finished within the bound: killed; what the child was doing.
    Hung(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Passed(note) => write!(f, "passed {note}"),
            Outcome::Failed(m) => write!(f, "FAILED {m}"),
            Outcome::Hung(m) => write!(f, "HUNG {m}"),
        }
    }
}

/// One fork as the parent saw it.
pub struct Fork {
    pub out: Outcome,
    /// Another thread of this process was inside `fork()` at the same time.
    pub overlapped: bool,
    /// How long the `fork()` call took in the parent (the locks it waits for included).
    pub call: Duration,
}

/// Forks with `fork()`; the child runs `work` (see [`child_main`]); the parent waits for it, at most
/// `k.bound`, and kills it after that. A `fork()` call that itself took longer than the bound in the
/// parent counts as hung too (one that never returns is the watchdog's).
pub fn fork_child(k: Knobs, work: impl FnOnce() -> Result<String, String>) -> Fork {
    let (rx, tx) = pipe();
    let others = FORKING.fetch_add(1, Ordering::SeqCst);
    let start = Instant::now();
    // SAFETY: the child runs only vmspace's calls, malloc and raw system calls (see the module doc),
    // and leaves with _exit.
    let forked = unsafe { fork() };
    let call = start.elapsed();
    match forked {
        Ok(Forked::Child) => child_main(&tx, work),
        Ok(Forked::Parent(pid)) => {
            let overlapped = others > 0 || FORKING.fetch_sub(1, Ordering::SeqCst) > 1;
            if others > 0 {
                FORKING.fetch_sub(1, Ordering::SeqCst);
            }
            live().push(pid);
            drop(tx);
            let mut out = wait_bounded(pid, k, &rx);
            live().retain(|p| *p != pid);
            if call > k.bound {
                out = Outcome::Hung(format!("fork() took {call:.1?} to return in the parent (child: {out})"));
            }
            Fork { out, overlapped, call }
        }
        Err(e) => {
            FORKING.fetch_sub(1, Ordering::SeqCst);
            Fork { out: Outcome::Failed(format!("fork() refused: {e}")), overlapped: false, call }
        }
    }
}

/// Reads what the child wrote (it has exited or been killed).
pub fn report(rx: &OwnedFd) -> String {
    let mut buf = vec![0u8; libc::PIPE_BUF];
    // SAFETY: read(2) into a valid buffer from our own non-blocking pipe.
    let n = unsafe { libc::read(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.max(0) as usize);
    String::from_utf8_lossy(&buf).into_owned()
}

pub fn wait_bounded(pid: i32, k: Knobs, rx: &OwnedFd) -> Outcome {
    let start = Instant::now();
    let mut nap = Duration::from_micros(20);
    loop {
        let mut status = 0;
        // SAFETY: polling our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            let msg = report(rx);
            return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Outcome::Passed(msg.strip_prefix('P').unwrap_or(&msg).to_string())
            } else if libc::WIFSIGNALED(status) {
                Outcome::Failed(format!("child {pid} died of signal {} ({msg})", libc::WTERMSIG(status)))
            } else {
                let why = msg.strip_prefix('F').unwrap_or(&msg);
                Outcome::Failed(format!("child {pid} exited {}: {why}", libc::WEXITSTATUS(status)))
            };
        }
        if r < 0 {
            return Outcome::Failed(format!("waitpid({pid}): {}", std::io::Error::last_os_error()));
        }
        if start.elapsed() > k.bound {
            let what = hung_state(pid, k.gdb);
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Outcome::Hung(what);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(2));
    }
}

/// What a hung child is doing: its scheduler state and CPU time (R and growing: spinning), where it
/// sleeps in the kernel, its system call, and with `gdb` a backtrace.
pub fn hung_state(pid: i32, gdb: bool) -> String {
    let rd = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
    let stat = rd("stat");
    // Fields after the command: state is the 1st, utime the 12th, stime the 13th.
    let after: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, r)| r.split_whitespace().collect());
    let field = |i: usize| after.get(i).copied().unwrap_or("?");
    let mut s = format!(
        "child {pid}: state {} utime {} stime {} (ticks), wchan {:?}, syscall {:?}",
        field(0),
        field(11),
        field(12),
        rd("wchan"),
        rd("syscall").trim()
    );
    if gdb {
        let out = std::process::Command::new("gdb")
            .args(["-p", &pid.to_string(), "-batch", "-ex", "bt"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("gdb: {e}"));
        let bt: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).take(12).collect();
        let _ = write!(s, "\n  backtrace:\n    {}", bt.join("\n    "));
    }
    s
}

/// Tallies of one test's forks.
#[derive(Default)]
pub struct Tally {
    pub forks: u64,
    pub passed: u64,
    pub hung: Vec<String>,
    pub failed: Vec<String>,
    /// Forks whose child found a reader inside a `with_map` of some space at the fork.
    pub caught_reading: u64,
    /// `fork()` calls while another thread of this process was inside one too.
    pub overlapped: u64,
    /// The longest a `fork()` call took in the parent.
    pub slowest: Duration,
    /// `fork()` calls that took over 100 ms in the parent (waiting for the spaces' locks).
    pub slow: u64,
}

impl Tally {
    pub fn add(&mut self, Fork { out, overlapped, call }: Fork) {
        self.forks += 1;
        self.overlapped += u64::from(overlapped);
        self.slowest = self.slowest.max(call);
        self.slow += u64::from(call > Duration::from_millis(100));
        TOTAL_FORKS.fetch_add(1, Ordering::Relaxed);
        match out {
            Outcome::Passed(note) => {
                self.passed += 1;
                if note.contains("reading") {
                    self.caught_reading += 1;
                }
            }
            Outcome::Failed(m) => self.failed.push(m),
            Outcome::Hung(m) => self.hung.push(m),
        }
    }

    pub fn merge(&mut self, o: Tally) {
        self.forks += o.forks;
        self.passed += o.passed;
        self.caught_reading += o.caught_reading;
        self.overlapped += o.overlapped;
        self.slowest = self.slowest.max(o.slowest);
        self.slow += o.slow;
        self.hung.extend(o.hung);
        self.failed.extend(o.failed);
    }

    pub fn summary(&self) -> String {
        format!(
            "{} forks: {} passed, {} hung, {} failed ({} caught a reader inside a read, {} overlapped \
             another thread's fork(); slowest fork() call {:.1?}, {} over 100 ms)",
            self.forks,
            self.passed,
            self.hung.len(),
            self.failed.len(),
            self.caught_reading,
            self.overlapped,
            self.slowest,
            self.slow
        )
    }

    pub fn check(&self, test: &str) {
        let mut msg = format!("{test}: {}", self.summary());
        for h in self.hung.iter().take(5) {
            let _ = write!(msg, "\n  HUNG {h}");
        }
        for f in self.failed.iter().take(5) {
            let _ = write!(msg, "\n  FAILED {f}");
        }
        assert!(self.hung.is_empty() && self.failed.is_empty(), "{msg}");
    }
}

/// Aborts the test binary (after killing the children) if the test is not over in `limit`: a parent
/// stuck in `fork()` or in a join must fail the suite, not hang it.
pub struct Watchdog(pub Option<mpsc::Sender<()>>, Option<std::thread::JoinHandle<()>>);

pub fn watchdog(test: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            for pid in live().iter() {
                // SAFETY: killing our own children.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            eprintln!("{test}: not finished in {limit:?} (a parent thread hangs): aborting");
            std::process::abort();
        }
    });
    Watchdog(Some(tx), Some(t))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take());
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

/// The first error a worker thread met; it stops every worker.
#[derive(Default)]
pub struct Stop {
    pub stop: AtomicBool,
    pub error: Mutex<Option<String>>,
}

impl Stop {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    pub fn fail(&self, e: String) {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
        self.stop.store(true, Ordering::Relaxed);
    }
    pub fn check(&self) {
        if let Some(e) = self.error.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            panic!("a worker thread failed: {e}");
        }
    }
}

// ---- what a child does with a space ------------------------------------------------------------

/// In the child: the space agrees with its kernel as inherited; a map, a write, a protect and an unmap
/// work and keep it so; its reservation holds the same VMAs afterwards.
pub fn use_space(s: &AddressSpace, name: &str) -> Result<(), String> {
    let o = outer(s);
    let before = vmas_in(&o)?;
    agree(s, name, "as inherited")?;
    let a = s.map(4 * PS, rw()).map_err(|e| format!("{name}: map in the child: {e}"))?;
    for p in 0..4 {
        write(a + p * PS, 0x5eed + p);
    }
    for p in 0..4 {
        if read(a + p * PS) != 0x5eed + p {
            return Err(format!("{name}: page {p} of a child's mapping reads {:#x}", read(a + p * PS)));
        }
    }
    s.protect(a + PS..a + 2 * PS, Prot::READ).map_err(|e| format!("{name}: protect in the child: {e}"))?;
    match s.lookup_entry(a + PS) {
        Some(e) if e.prot() == Prot::READ => {}
        other => return Err(format!("{name}: after protect the child's map has {other:?}")),
    }
    agree(s, name, "after map + write + protect")?;
    s.unmap(a..a + 4 * PS).map_err(|e| format!("{name}: unmap in the child: {e}"))?;
    if s.lookup_entry(a).is_some() {
        return Err(format!("{name}: the child's unmap left an entry"));
    }
    agree(s, name, "after unmap")?;
    let after = vmas_in(&o)?;
    if before != after {
        return Err(format!(
            "{name}: the child's reservation changed\n  before: {}\n  after:  {}",
            show_vmas(&before),
            show_vmas(&after)
        ));
    }
    Ok(())
}

/// In the child: a stack made there grows when the child touches deep into it (the fault handler in
/// a child whose parent had handlers in flight), and goes away whole.
pub fn grow_a_stack(s: &AddressSpace, name: &str) -> Result<(), String> {
    let st = s.stack(1 << 20, 64 << 10, rw()).map_err(|e| format!("{name}: stack in the child: {e}"))?;
    let deep = st.end - (512 << 10);
    if s.lookup_entry(deep).is_some() {
        return Err(format!("{name}: a new stack is mapped 512 KiB down already"));
    }
    // A fault in the stack's reservation: the handler grows the stack, then the write is retried.
    write(deep, 0xdeed);
    if read(deep) != 0xdeed || s.lookup_entry(deep).is_none() {
        return Err(format!("{name}: the child's stack did not grow to {deep:#x}"));
    }
    agree(s, name, "after a stack grew in the child")?;
    s.unmap(st.clone()).map_err(|e| format!("{name}: unmap of the child's stack: {e}"))?;
    agree(s, name, "after the child's stack went")
}

/// In the child: a new space works and leaves nothing behind when dropped (its drop waits for fault
/// handlers in flight: the parent's count of them must not have come along).
pub fn new_space() -> Result<(), String> {
    let n = AddressSpace::reserve(1 << 20).map_err(|e| format!("reserve in the child: {e}"))?;
    let o = outer(&n);
    let a = n.map(2 * PS, rw()).map_err(|e| format!("new space: map: {e}"))?;
    write(a, 7);
    n.wire(a..a + PS).map_err(|e| format!("new space: wire: {e}"))?;
    agree(&n, "new space", "in the child")?;
    drop(n);
    let left = vmas_in(&o)?;
    if !left.is_empty() {
        return Err(format!("a new space dropped in the child left {}", show_vmas(&left)));
    }
    Ok(())
}

// ---- the spaces ---------------------------------------------------------------------------------

/// A space of `pages` pages mapped, every other one read-only (so the map has many entries and a read
/// takes a while), plus a shared page.
pub fn striped_space(pages: u64) -> AddressSpace {
    let s = AddressSpace::reserve(16 << 20).unwrap();
    let a = s.map(pages * PS, rw()).unwrap();
    for p in 0..pages {
        write(a + p * PS, p);
    }
    for p in (0..pages).step_by(2) {
        s.protect(a + p * PS..a + (p + 1) * PS, Prot::READ).unwrap();
    }
    s.map(PS, rw().with_object(Backing::shared_anonymous(PS).unwrap(), 0)).unwrap();
    s
}

/// Counts a thread as inside a `with_map` of space `i` while `f` runs: the count is in the memory a
/// child inherits, so a child can tell that its fork caught a reader mid-read.
pub fn inside<R>(marks: &[AtomicU32], i: usize, f: impl FnOnce() -> R) -> R {
    marks[i].fetch_add(1, Ordering::SeqCst);
    let r = f();
    marks[i].fetch_sub(1, Ordering::SeqCst);
    r
}

/// One round of every read a space has: `lookup_entry`, `regions`, `with_map`, `stats`, `Display`.
pub fn read_round(s: &AddressSpace, i: usize, marks: &[AtomicU32], round: u64) -> Result<(), String> {
    let r = s.range();
    let probe = r.start + (round % 64) * PS;
    let e = s.lookup_entry(probe);
    let regions = s.regions();
    let (n, hit) = s.with_map(|m| {
        inside(marks, i, || {
            let mut text = String::new();
            let mut n = 0;
            for e in m.entries() {
                let _ = write!(text, "{:#x}-{:#x} {} ", e.start, e.end, e.prot());
                n += 1;
            }
            std::hint::black_box(&text);
            (n, m.lookup_entry(probe).map(|e| e.start))
        })
    });
    if n == 0 || regions.is_empty() {
        return Err(format!("a reader saw an empty map of space {i}"));
    }
    std::hint::black_box((e, hit));
    if round.is_multiple_of(16) {
        let st = s.stats().map_err(|e| format!("stats of space {i}: {e}"))?;
        if st.entries == 0 {
            return Err(format!("stats of space {i} say no entries"));
        }
    }
    if round.is_multiple_of(4) {
        let shown = format!("{s}");
        if shown.is_empty() {
            return Err(format!("space {i} displays as nothing"));
        }
    }
    Ok(())
}

/// Runs `subprocess_entry` with `scenario` in a fresh process of this binary, killed after `limit`:
/// whether it passed, and its stderr (with the reason when it did not).
pub fn subprocess(scenario: &str, limit: Duration) -> (bool, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "subprocess_entry", "--ignored", "--nocapture", "--test-threads=1"])
        .env("VMSPACE_FORK_LOAD_SUBPROCESS", scenario)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = pipe.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::from_utf8_lossy(&drain.join().unwrap()).into_owned();
    match status {
        Some(st) if st.success() => (true, err),
        Some(st) => {
            let _ = write!(err, "\nscenario {scenario}: {st}");
            (false, err)
        }
        None => {
            let _ = write!(err, "\nscenario {scenario}: not finished in {limit:?}: killed");
            (false, err)
        }
    }
}

/// A subprocess scenario: its name and what runs it.
pub type Scenario = (&'static str, fn(Knobs));

/// The entry of a fork test binary's subprocesses ([`subprocess`]): runs the scenario the environment
/// names, one of `scenarios`; a no-op unless [`subprocess`] started it.
pub fn subprocess_entry(scenarios: &[Scenario]) {
    let Ok(which) = std::env::var("VMSPACE_FORK_LOAD_SUBPROCESS") else { return };
    let k = knobs();
    match scenarios.iter().find(|(name, _)| *name == which) {
        Some((_, run)) => run(k),
        None => panic!("unknown scenario {which}"),
    }
}

/// What `recurse(depth, _)` returns: the checksum of the frames it wrote.
pub fn expected(depth: u64) -> u64 {
    (0..=depth).fold(0u64, |acc, d| acc.wrapping_mul(31).wrapping_add(u64::from(d as u8)))
}

/// The end of a test: every space agrees with its kernel and holds the VMAs it held at the start;
/// dropped, they leave no VMA in their reservations.
pub fn finish(spaces: Arc<Vec<AddressSpace>>, before: Vec<Vec<(u64, u64, String)>>) {
    let spaces = Arc::try_unwrap(spaces).expect("every worker has let go of the spaces");
    let outers: Vec<Range<u64>> = spaces.iter().map(outer).collect();
    for (i, (s, b)) in spaces.iter().zip(&before).enumerate() {
        agree(s, &format!("space {i}"), "at the end").unwrap();
        let now = vmas_in(&outers[i]).unwrap();
        assert_eq!(
            &now,
            b,
            "space {i}: the reservation's VMAs changed\n  before: {}\n  after:  {}",
            show_vmas(b),
            show_vmas(&now)
        );
    }
    drop(spaces);
    for (i, o) in outers.iter().enumerate() {
        let left = vmas_in(o).unwrap();
        assert!(left.is_empty(), "space {i} dropped left {}", show_vmas(&left));
    }
}
