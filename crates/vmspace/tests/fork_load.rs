//! `fork()` while other threads are anywhere (DESIGN.md, "Failure paths"): reading a space, changing
//! one, growing a stack in the fault handler, forking themselves. Every child must finish within a
//! bound (a hang is a failure, reported with the child's state, never a hung suite), find each space's
//! map equal to its kernel, use each space and make a new one; the parent's reservations hold exactly
//! the VMAs they held before, and none once the spaces are dropped.
//!
//! The tests of this file take `SERIAL`, so only one of them forks at a time and its figures are its
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

use std::fmt::Write as _;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use vmspace::fault::spawn_on_stack;
use vmspace::fork::{Forked, fork};
use vmspace::{AddressSpace, Backing, Inherit, MapSpec, Prot};

const PS: u64 = 4096;

/// One forking test at a time in this binary.
static SERIAL: Mutex<()> = Mutex::new(());
/// Children not yet reaped, for the watchdog to kill before it aborts.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Forks made with other threads running, over the whole binary.
static TOTAL_FORKS: AtomicU64 = AtomicU64::new(0);
/// Threads of this process inside a `fork()` call now.
static FORKING: AtomicU32 = AtomicU32::new(0);

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn live() -> MutexGuard<'static, Vec<i32>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The parent's settings, read before any fork.
#[derive(Clone, Copy)]
struct Knobs {
    bound: Duration,
    max_hangs: u64,
    gdb: bool,
}

fn knobs() -> Knobs {
    Knobs {
        bound: Duration::from_millis(knob("VMSPACE_FORK_BOUND_MS", 20_000)),
        max_hangs: knob("VMSPACE_FORK_MAX_HANGS", 3),
        gdb: knob("VMSPACE_FORK_GDB", 0) == 1,
    }
}

/// xorshift64*: the moments of the forks and the mutator's choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
    knob("VMSPACE_FORK_SEED", t as u64)
}

fn rw() -> MapSpec<Backing> {
    MapSpec::new(Prot::RW, Prot::ALL)
}

fn write(addr: u64, v: u64) {
    // SAFETY: only pages of the test's own spaces that are mapped read-write.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: only pages of the test's own spaces that are mapped readable.
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

/// The whole reservation of a space: its range and one guard page either side.
fn outer(s: &AddressSpace) -> Range<u64> {
    let r = s.range();
    r.start - PS..r.end + PS
}

/// The VMAs of this process (from `/proc/self/maps`) inside `outer`, clipped to it: (start, end,
/// permissions).
fn vmas_in(outer: &Range<u64>) -> Result<Vec<(u64, u64, String)>, String> {
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

fn show_vmas(v: &[(u64, u64, String)]) -> String {
    v.iter().map(|(a, b, p)| format!("{a:#x}-{b:#x} {p}")).collect::<Vec<_>>().join(", ")
}

/// `kernel_differences` must be empty.
fn agree(s: &AddressSpace, name: &str, when: &str) -> Result<(), String> {
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
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
    // SAFETY: both descriptors were just created and are owned by these values alone.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// In the child: runs `work`, writes `P<note>` or `F<message>` to `tx` and leaves with `_exit` (0 pass,
/// 1 fail, 2 panicked). Never returns, never unwinds into the parent's code.
fn child_main(tx: &OwnedFd, work: impl FnOnce() -> Result<String, String>) -> ! {
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
enum Outcome {
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
struct Fork {
    out: Outcome,
    /// Another thread of this process was inside `fork()` at the same time.
    overlapped: bool,
    /// How long the `fork()` call took in the parent (the locks it waits for included).
    call: Duration,
}

/// Forks with `fork()`; the child runs `work` (see [`child_main`]); the parent waits for it, at most
/// `k.bound`, and kills it after that. A `fork()` call that itself took longer than the bound in the
/// parent counts as hung too (one that never returns is the watchdog's).
fn fork_child(k: Knobs, work: impl FnOnce() -> Result<String, String>) -> Fork {
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
fn report(rx: &OwnedFd) -> String {
    let mut buf = vec![0u8; libc::PIPE_BUF];
    // SAFETY: read(2) into a valid buffer from our own non-blocking pipe.
    let n = unsafe { libc::read(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.max(0) as usize);
    String::from_utf8_lossy(&buf).into_owned()
}

fn wait_bounded(pid: i32, k: Knobs, rx: &OwnedFd) -> Outcome {
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
fn hung_state(pid: i32, gdb: bool) -> String {
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
struct Tally {
    forks: u64,
    passed: u64,
    hung: Vec<String>,
    failed: Vec<String>,
    /// Forks whose child found a reader inside a `with_map` of some space at the fork.
    caught_reading: u64,
    /// `fork()` calls while another thread of this process was inside one too.
    overlapped: u64,
    /// The longest a `fork()` call took in the parent.
    slowest: Duration,
    /// `fork()` calls that took over 100 ms in the parent (waiting for the spaces' locks).
    slow: u64,
}

impl Tally {
    fn add(&mut self, Fork { out, overlapped, call }: Fork) {
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

    fn merge(&mut self, o: Tally) {
        self.forks += o.forks;
        self.passed += o.passed;
        self.caught_reading += o.caught_reading;
        self.overlapped += o.overlapped;
        self.slowest = self.slowest.max(o.slowest);
        self.slow += o.slow;
        self.hung.extend(o.hung);
        self.failed.extend(o.failed);
    }

    fn summary(&self) -> String {
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

    fn check(&self, test: &str) {
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
struct Watchdog(Option<mpsc::Sender<()>>, Option<std::thread::JoinHandle<()>>);

fn watchdog(test: &'static str, limit: Duration) -> Watchdog {
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
struct Stop {
    stop: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Stop {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn fail(&self, e: String) {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
        self.stop.store(true, Ordering::Relaxed);
    }
    fn check(&self) {
        if let Some(e) = self.error.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            panic!("a worker thread failed: {e}");
        }
    }
}

// ---- what a child does with a space ------------------------------------------------------------

/// In the child: the space agrees with its kernel as inherited; a map, a write, a protect and an unmap
/// work and keep it so; its reservation holds the same VMAs afterwards.
fn use_space(s: &AddressSpace, name: &str) -> Result<(), String> {
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
fn grow_a_stack(s: &AddressSpace, name: &str) -> Result<(), String> {
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
fn new_space() -> Result<(), String> {
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
fn striped_space(pages: u64) -> AddressSpace {
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
fn inside<R>(marks: &[AtomicU32], i: usize, f: impl FnOnce() -> R) -> R {
    marks[i].fetch_add(1, Ordering::SeqCst);
    let r = f();
    marks[i].fetch_sub(1, Ordering::SeqCst);
    r
}

/// One round of every read a space has: `lookup_entry`, `regions`, `with_map`, `stats`, `Display`.
fn read_round(s: &AddressSpace, i: usize, marks: &[AtomicU32], round: u64) -> Result<(), String> {
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

// ---- 1. fork while other threads read -----------------------------------------------------------

/// The main thread forks hundreds of times while two threads loop on every read of two spaces; each
/// child uses every space and finds map and kernel equal. Before the fix, a child that inherited a
/// reader's mark waited for it forever in its first change.
#[test]
fn fork_while_other_threads_read() {
    let _serial = serial();
    let k = knobs();
    let rounds = knob("VMSPACE_FORK_ROUNDS", 600);
    let _dog = watchdog("fork_while_other_threads_read", k.bound * 4 + Duration::from_secs(240));
    let spaces: Arc<Vec<AddressSpace>> = Arc::new(vec![striped_space(64), striped_space(24)]);
    for (i, s) in spaces.iter().enumerate() {
        agree(s, &format!("space {i}"), "at the start").unwrap();
    }
    let before: Vec<_> = spaces.iter().map(|s| vmas_in(&outer(s)).unwrap()).collect();
    let marks: Arc<[AtomicU32; 2]> = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
    let stop = Arc::new(Stop::default());
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (spaces, marks, stop, reads) =
                (Arc::clone(&spaces), Arc::clone(&marks), Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                let mut round = t as u64;
                while !stop.stopped() {
                    for (i, s) in spaces.iter().enumerate() {
                        if let Err(e) = read_round(s, i, &marks[..], round) {
                            stop.fail(e);
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    round += 1;
                }
            })
        })
        .collect();
    // The readers are under way before the first fork.
    while reads.load(Ordering::Relaxed) < 4 && !stop.stopped() {
        std::thread::yield_now();
    }
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let started = Instant::now();
    for round in 0..rounds {
        if stop.stopped() || tally.hung.len() as u64 >= k.max_hangs {
            break;
        }
        std::thread::sleep(Duration::from_micros(rng.below(300)));
        let (sp, mk) = (&spaces, &marks);
        tally.add(fork_child(k, || {
            // Whether a reader was inside a `with_map` at the fork: the marks are in the memory the
            // child inherited.
            let caught = mk.iter().any(|m| m.load(Ordering::SeqCst) > 0);
            for (i, s) in sp.iter().enumerate() {
                use_space(s, &format!("space {i}"))?;
            }
            Ok(if caught { "reading".into() } else { String::new() })
        }));
        if round % 25 == 0 {
            for (i, s) in spaces.iter().enumerate() {
                if let Err(e) = agree(s, &format!("space {i}"), "in the parent") {
                    stop.fail(e);
                }
            }
        }
    }
    let elapsed = started.elapsed();
    stop.stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    eprintln!(
        "fork_load: fork_while_other_threads_read: {} in {elapsed:.1?}, {} read rounds by 2 readers, \
         seed {seed} (binary total so far {} forks)",
        tally.summary(),
        reads.load(Ordering::Relaxed),
        TOTAL_FORKS.load(Ordering::Relaxed)
    );
    stop.check();
    tally.check("fork_while_other_threads_read");
    assert_eq!(tally.forks, rounds, "every round forked");
    assert!(tally.caught_reading > 0, "no fork caught a reader inside a read: the test did not test");
    finish(spaces, before);
}

/// The end of a test: every space agrees with its kernel and holds the VMAs it held at the start;
/// dropped, they leave no VMA in their reservations.
fn finish(spaces: Arc<Vec<AddressSpace>>, before: Vec<Vec<(u64, u64, String)>>) {
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

// ---- 2. fork under load -------------------------------------------------------------------------

/// Recurses `depth` times with a 1 KiB frame, reading `space` at the bottom (from deep in a stack of
/// that space: the headroom path); returns a checksum of every frame.
#[inline(never)]
fn recurse(depth: u64, space: &AddressSpace) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let below = if depth == 0 {
        // 0 when the map has the frame's page, as the checksum expects.
        let sp = std::hint::black_box(&frame) as *const _ as u64;
        u64::from(space.lookup_entry(sp).is_none())
    } else {
        recurse(depth - 1, space)
    };
    std::hint::black_box(&frame);
    below.wrapping_mul(31).wrapping_add(u64::from(frame[(depth % 1024) as usize]))
}

fn expected(depth: u64) -> u64 {
    (0..=depth).fold(0u64, |acc, d| acc.wrapping_mul(31).wrapping_add(u64::from(d as u8)))
}

/// The mutator: mappings come and go with every attribute a fork treats specially (copy, zero, none,
/// shared, wired, guarded), are re-protected and wired/unwired and guarded/unguarded, until `stop`.
/// Leaves the space as it found it.
fn mutate(s: &AddressSpace, stop: &Stop, seed: u64) -> Result<u64, String> {
    let mut rng = Rng::new(seed);
    let mut held: Vec<u64> = Vec::new();
    let mut ops = 0u64;
    let e = |what: &'static str| move |e: vmspace::Error| format!("mutator: {what}: {e}");
    while !stop.stopped() {
        if held.len() < 6 && (held.is_empty() || rng.below(2) == 0) {
            let spec = match rng.below(4) {
                0 => rw().with_inherit(Inherit::Zero),
                1 => rw().with_inherit(Inherit::None),
                2 => {
                    rw().with_object(Backing::shared_anonymous(8 * PS).map_err(|e| format!("memfd: {e}"))?, 0)
                }
                _ => rw(),
            };
            let a = s.map(8 * PS, spec).map_err(e("map"))?;
            for p in 0..8 {
                write(a + p * PS, p);
            }
            held.push(a);
        } else {
            let a = held.swap_remove(rng.below(held.len() as u64) as usize);
            s.unmap(a..a + 8 * PS).map_err(e("unmap"))?;
        }
        if let Some(&a) = held.get(rng.below(held.len().max(1) as u64) as usize) {
            // Pages 6 and 7 are wired and guarded below; the protect stays off them.
            let p = a + rng.below(6) * PS;
            s.protect(p..p + PS, Prot::READ).map_err(e("protect"))?;
            s.wire(a + 6 * PS..a + 7 * PS).map_err(e("wire"))?;
            s.guard(a + 7 * PS..a + 8 * PS).map_err(e("guard"))?;
            std::hint::black_box(s.lookup_entry(p));
            s.unguard(a + 7 * PS..a + 8 * PS).map_err(e("unguard"))?;
            s.unwire(a + 6 * PS..a + 7 * PS).map_err(e("unwire"))?;
            s.protect(p..p + PS, Prot::RW).map_err(e("protect back"))?;
            if rng.below(2) == 0 {
                s.guard(a + 7 * PS..a + 8 * PS).map_err(e("guard"))?;
            }
        }
        ops += 1;
    }
    for a in held {
        s.unmap(a..a + 8 * PS).map_err(e("unmap at the end"))?;
    }
    Ok(ops)
}

/// The stack grower: threads on stacks of `s`, each recursing about 1.5 MiB deep (two dozen growths
/// by the fault handler), one after another until `stop`.
fn grow_stacks(s: &Arc<AddressSpace>, stop: &Stop) -> Result<u64, String> {
    const DEPTH: u64 = 1500;
    let mut threads = 0;
    while !stop.stopped() {
        let s2 = Arc::clone(s);
        let t = spawn_on_stack(s, 4 << 20, 64 << 10, move || recurse(DEPTH, &s2))
            .map_err(|e| format!("spawn_on_stack: {e}"))?;
        let sum = t.join().map_err(|_| "a stack thread panicked".to_string())?;
        if sum != expected(DEPTH) {
            return Err(format!("a grown stack lost frames: checksum {sum:#x}"));
        }
        threads += 1;
    }
    Ok(threads)
}

/// Everything a child under load checks: each space is usable and agrees with its kernel, a stack
/// grows in it, a new space works.
fn child_under_load(spaces: &[Arc<AddressSpace>], marks: &[AtomicU32]) -> Result<String, String> {
    let caught = marks.iter().any(|m| m.load(Ordering::SeqCst) > 0);
    for (i, s) in spaces.iter().enumerate() {
        use_space(s, &format!("space {i}"))?;
    }
    grow_a_stack(&spaces[1], "space 1")?;
    new_space()?;
    Ok(if caught { "reading".into() } else { String::new() })
}

/// The body of `fork_under_load` (run in a process of its own).
fn load_scenario(k: Knobs) {
    let _dog = watchdog("fork_under_load", k.bound * 4 + Duration::from_secs(240));
    vmspace::fault::install();
    let seed = seed();
    // 0: mutated; 1: stacks; 2: steady, with every inheritance and a wired page and a guard.
    let steady = striped_space(16);
    let r = steady.range();
    let zero = steady.map(4 * PS, rw().with_inherit(Inherit::Zero)).unwrap();
    steady.guard(zero + PS..zero + 2 * PS).unwrap();
    let none = steady.map(2 * PS, rw().with_inherit(Inherit::None)).unwrap();
    let wired = steady.map(PS, rw()).unwrap();
    steady.wire(wired..wired + PS).unwrap();
    write(none, 1);
    assert!(r.contains(&none));
    let spaces: Vec<Arc<AddressSpace>> = vec![
        Arc::new(AddressSpace::reserve(16 << 20).unwrap()),
        Arc::new(AddressSpace::reserve(64 << 20).unwrap()),
        Arc::new(steady),
    ];
    // Every space has an entry at all times, so a reader always sees one.
    spaces[0].map(PS, rw()).unwrap();
    spaces[1].map(PS, rw()).unwrap();
    for (i, s) in spaces.iter().enumerate() {
        agree(s, &format!("space {i}"), "at the start").unwrap();
    }
    let before: Vec<_> = spaces.iter().map(|s| vmas_in(&outer(s)).unwrap()).collect();
    let stop = Arc::new(Stop::default());
    let marks: Arc<[AtomicU32; 3]> = Arc::new([const { AtomicU32::new(0) }; 3]);
    let reads = Arc::new(AtomicU64::new(0));

    let reader = {
        let (spaces, stop, marks, reads) =
            (spaces.clone(), Arc::clone(&stop), Arc::clone(&marks), Arc::clone(&reads));
        std::thread::spawn(move || {
            let mut round = 0;
            while !stop.stopped() {
                for (i, s) in spaces.iter().enumerate() {
                    if let Err(e) = read_round(s, i, &marks[..], round) {
                        stop.fail(e);
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
                round += 1;
            }
        })
    };
    let mutator = {
        let (s, stop) = (Arc::clone(&spaces[0]), Arc::clone(&stop));
        std::thread::spawn(move || {
            mutate(&s, &stop, seed ^ 0x9e37).unwrap_or_else(|e| {
                stop.fail(e);
                0
            })
        })
    };
    let grower = {
        let (s, stop) = (Arc::clone(&spaces[1]), Arc::clone(&stop));
        std::thread::spawn(move || {
            grow_stacks(&s, &stop).unwrap_or_else(|e| {
                stop.fail(e);
                0
            })
        })
    };
    // The second forker runs on a stack of space 1 (fork() from a vmspace stack, with its headroom).
    let second_forks = 150;
    let forker = {
        let (sp, stop, mk) = (spaces.clone(), Arc::clone(&stop), Arc::clone(&marks));
        spawn_on_stack(&spaces[1], 8 << 20, 256 << 10, move || {
            let mut rng = Rng::new(seed ^ 0x51);
            let mut tally = Tally::default();
            for _ in 0..second_forks {
                if stop.stopped() || tally.hung.len() as u64 >= k.max_hangs {
                    break;
                }
                std::thread::sleep(Duration::from_micros(rng.below(2000)));
                tally.add(fork_child(k, || child_under_load(&sp, &mk[..])));
            }
            tally
        })
        .unwrap()
    };

    let main_forks = 400;
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let started = Instant::now();
    for round in 0..main_forks {
        if stop.stopped() || tally.hung.len() as u64 >= k.max_hangs {
            break;
        }
        std::thread::sleep(Duration::from_micros(rng.below(1000)));
        tally.add(fork_child(k, || child_under_load(&spaces, &marks[..])));
        if round % 50 == 0 {
            for (i, s) in spaces.iter().enumerate() {
                if let Err(e) = agree(s, &format!("space {i}"), "in the parent") {
                    stop.fail(e);
                }
            }
        }
    }
    let second = forker.join().expect("the forker on a vmspace stack panicked");
    let elapsed = started.elapsed();
    stop.stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let ops = mutator.join().unwrap();
    let stacks = grower.join().unwrap();
    eprintln!(
        "fork_load: fork_under_load: main thread {}; thread on a vmspace stack {}; in {elapsed:.1?}, \
         with {} read rounds, {ops} mutator rounds, {stacks} grown stack threads, seed {seed}",
        tally.summary(),
        second.summary(),
        reads.load(Ordering::Relaxed),
    );
    // For the parent process's count.
    eprintln!("FORKS {}", TOTAL_FORKS.load(Ordering::Relaxed));
    stop.check();
    let (main_n, second_n) = (tally.forks, second.forks);
    tally.merge(second);
    tally.check("fork_under_load");
    assert_eq!((main_n, second_n), (main_forks, second_forks), "every round forked");
    assert!(ops > 0 && stacks > 0, "the mutator ({ops}) and the stack grower ({stacks}) ran");
    assert!(tally.overlapped > 0, "no two fork() calls overlapped: the test did not test that");
    // The spaces' Arcs: the workers' clones are gone with them.
    let spaces =
        Arc::new(spaces.into_iter().map(|s| Arc::try_unwrap(s).expect("workers let go")).collect::<Vec<_>>());
    finish(spaces, before);
}

/// 1–4 threads read, map and unmap, protect, wire, guard and grow stacks (threads of
/// `spawn_on_stack` taking faults), while the main thread forks at random moments and a thread on a
/// vmspace stack forks too (two `fork()`s at once). Every child finishes, agrees with its kernel in
/// every space, uses each and makes a new one. It runs in a fresh process of this binary, so that a
/// stack that cannot grow (SIGSEGV) fails this test and not every test of the binary.
#[test]
fn fork_under_load() {
    let _serial = serial();
    let k = knobs();
    let limit = k.bound * 5 + Duration::from_secs(300);
    let (ok, err) = subprocess("load", limit);
    for line in err.lines() {
        if let Some(n) = line.strip_prefix("FORKS ") {
            TOTAL_FORKS.fetch_add(n.trim().parse().unwrap_or(0), Ordering::Relaxed);
        }
    }
    for line in err.lines().filter(|l| l.starts_with("fork_load:")) {
        eprintln!("{line}");
    }
    eprintln!("fork_load: binary total so far {} forks", TOTAL_FORKS.load(Ordering::Relaxed));
    assert!(ok, "fork_under_load, in its own process: {err}");
}

// ---- 3. a stack grows on either side of a fork --------------------------------------------------

/// Recurses `depth` times with a 1 KiB frame and runs `f` at the bottom; returns `f`'s result.
#[inline(never)]
fn recurse_then<R>(depth: u64, f: &mut dyn FnMut() -> R) -> R {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let r = if depth == 0 { f() } else { recurse_then(depth - 1, f) };
    std::hint::black_box(&frame);
    r
}

/// Recurses `depth` times with a 1 KiB frame; a checksum of every frame (see [`expected`]).
#[inline(never)]
fn recurse_plain(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let below = if depth == 0 { 0 } else { recurse_plain(depth - 1) };
    std::hint::black_box(&frame);
    below.wrapping_mul(31).wrapping_add(u64::from(frame[(depth % 1024) as usize]))
}

/// In a process of its own: a thread on a vmspace stack is half-way down a deep recursion (its stack
/// grown by the fault handler a few times) when another thread forks; the child uses the spaces;
/// afterwards the thread recurses on, and its stack must go on growing in the parent.
fn parent_stack_grows_after_a_fork(k: Knobs) {
    let s = Arc::new(AddressSpace::reserve(64 << 20).unwrap());
    s.map(PS, rw()).unwrap();
    let phase = Arc::new(AtomicU32::new(0));
    let p2 = Arc::clone(&phase);
    let t = spawn_on_stack(&s, 4 << 20, 64 << 10, move || {
        recurse_then(700, &mut || {
            p2.store(1, Ordering::SeqCst);
            while p2.load(Ordering::SeqCst) != 2 {
                std::thread::yield_now();
            }
            // About 1.5 MiB below the top now, the thread goes 1 MiB deeper.
            recurse_plain(1000)
        })
    })
    .unwrap();
    while phase.load(Ordering::SeqCst) != 1 {
        std::thread::yield_now();
    }
    let out = fork_child(k, || use_space(&s, "space").map(|()| String::new())).out;
    assert!(matches!(out, Outcome::Passed(_)), "the child: {out}");
    phase.store(2, Ordering::SeqCst);
    let sum = t.join().expect("the thread on the stack");
    assert_eq!(sum, expected(1000));
    agree(&s, "space", "after the thread went").unwrap();
}

/// In a process of its own: a thread on a vmspace stack forks half-way down a recursion; in the child
/// (whose one thread runs on that stack) and in the parent it recurses 1 MiB deeper, and the stack
/// must grow on both sides.
fn child_stack_grows_after_a_fork(k: Knobs) {
    let s = Arc::new(AddressSpace::reserve(64 << 20).unwrap());
    s.map(PS, rw()).unwrap();
    let s2 = Arc::clone(&s);
    let t = spawn_on_stack(&s, 4 << 20, 64 << 10, move || {
        recurse_then(500, &mut || {
            let out = fork_child(k, || {
                let sum = recurse_plain(1000);
                if sum != expected(1000) {
                    return Err(format!("the child's stack lost frames: {sum:#x}"));
                }
                use_space(&s2, "space").map(|()| String::new())
            })
            .out;
            (out, recurse_plain(1000))
        })
    })
    .unwrap();
    let (out, sum) = t.join().expect("the thread on the stack");
    assert!(matches!(out, Outcome::Passed(_)), "the child: {out}");
    assert_eq!(sum, expected(1000), "the parent's stack lost frames");
    agree(&s, "space", "after the thread went").unwrap();
}

// ---- 4. fork while another thread is inside a once-only setup -----------------------------------

/// What a thread does first in [`fork_during_a_first_time_setup`], and the system call of that
/// setup at which it is held (`seccomp` user notification) while another thread forks.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// The first `map` with `Inherit::Zero` probes the kernel's features (`os::features`, outside
    /// any lock); held at the probe's `madvise(MADV_GUARD_INSTALL)`.
    Features,
    /// The first `fault::install` installs the handler (a `Once`); held at its first `sigaction`
    /// (the query of SIGSEGV's action).
    Install,
}

/// `MADV_GUARD_INSTALL` (Linux 6.13; older kernels refuse it, but the probe still makes the call).
const MADV_GUARD_INSTALL: u32 = 102;

/// The offset of the low 32 bits of argument `i` in `struct seccomp_data`.
fn arg_lo(i: u32) -> u32 {
    let at = 16 + 8 * i;
    if cfg!(target_endian = "little") { at } else { at + 4 }
}

/// The offset of the high 32 bits of argument `i` in `struct seccomp_data`.
fn arg_hi(i: u32) -> u32 {
    arg_lo(i) ^ 4
}

/// Installs, on the calling thread only, a seccomp filter that holds the system call `nr` whose
/// 32-bit argument words at the given offsets have the given values until a supervisor answers
/// (`SECCOMP_RET_USER_NOTIF`); every other call is allowed. Returns the listener.
fn hold_call(nr: i64, words: &[(u32, u32)]) -> OwnedFd {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jeq = |k: u32, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: 0,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    // ld nr; jeq nr; (ld word; jeq value)*; ret notify; ret allow — every mismatch jumps to allow.
    let n = words.len();
    let mut prog = vec![stmt(ld, 0), jeq(nr as u32, (2 * n + 1) as u8)];
    for (i, &(off, val)) in words.iter().enumerate() {
        prog.push(stmt(ld, off));
        prog.push(jeq(val, (2 * (n - i) - 1) as u8));
    }
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_USER_NOTIF));
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    // SAFETY: no_new_privs for this thread (required for an unprivileged filter), then a filter
    // program that lives across the call; the kernel copies it.
    let fd = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    };
    assert!(fd >= 0, "seccomp(NEW_LISTENER): {}", std::io::Error::last_os_error());
    // SAFETY: the listener was just created and is owned here alone.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Waits up to `bound` for a held call on `listener`; its id.
fn held_call(listener: &OwnedFd, bound: Duration) -> Option<u64> {
    let mut p = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: poll(2) on one valid pollfd.
    let ready = unsafe { libc::poll(&mut p, 1, bound.as_millis() as i32) };
    if ready != 1 || p.revents & libc::POLLIN == 0 {
        return None;
    }
    // SAFETY: an all-zero seccomp_notif is what NOTIF_RECV expects; the ioctl fills it.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: NOTIF_RECV on our listener into a seccomp_notif of the kernel's layout.
    let r = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
    (r == 0).then_some(req.id)
}

/// Lets the held call `id` go on as if it had not been held.
fn release_call(listener: &OwnedFd, id: u64) {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: NOTIF_SEND on our listener of a response to a call it reported.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
}

/// In a process of its own: a thread is held inside vmspace's once-only setup `setup` (its first
/// call of the kind) when the main thread forks; the child must not wait for that setup, which no
/// thread of it will finish. The held thread is let go once `fork()` has returned in the parent, or
/// after a second (should `fork()` itself wait for the setup to finish, which is a fix too).
fn fork_during_a_first_time_setup(k: Knobs, setup: Setup) {
    let s = Arc::new(AddressSpace::reserve(16 << 20).unwrap());
    let (tx, rx) = mpsc::channel::<OwnedFd>();
    let s2 = Arc::clone(&s);
    let t = std::thread::spawn(move || {
        let listener = match setup {
            Setup::Features => hold_call(libc::SYS_madvise, &[(arg_lo(2), MADV_GUARD_INSTALL)]),
            Setup::Install => hold_call(
                libc::SYS_rt_sigaction,
                &[(arg_lo(0), libc::SIGSEGV as u32), (arg_lo(1), 0), (arg_hi(1), 0)],
            ),
        };
        tx.send(listener).unwrap();
        match setup {
            Setup::Features => {
                s2.map(PS, rw().with_inherit(Inherit::Zero)).map(drop).map_err(|e| e.to_string())
            }
            Setup::Install => {
                vmspace::fault::install();
                Ok(())
            }
        }
    });
    let listener = rx.recv().unwrap();
    let id =
        held_call(&listener, k.bound).unwrap_or_else(|| panic!("{setup:?}: the setup's call was never held"));
    // The main thread lets the held call go once fork() has returned here, or after 1 s.
    let (forked_tx, forked_rx) = mpsc::channel::<()>();
    let releaser = std::thread::spawn(move || {
        let _ = forked_rx.recv_timeout(Duration::from_secs(1));
        release_call(&listener, id);
        listener
    });
    let sp = Arc::clone(&s);
    let out = {
        let (rx_pipe, tx_pipe) = pipe();
        // SAFETY: as in `fork_child`: the child runs vmspace's calls and raw system calls only.
        match unsafe { fork() } {
            Ok(Forked::Child) => child_main(&tx_pipe, || {
                match setup {
                    Setup::Features => use_space(&sp, "space")?,
                    Setup::Install => grow_a_stack(&sp, "space")?,
                }
                Ok(String::new())
            }),
            Ok(Forked::Parent(pid)) => {
                let _ = forked_tx.send(());
                drop(tx_pipe);
                wait_bounded(pid, Knobs { bound: k.bound / 4, ..k }, &rx_pipe)
            }
            Err(e) => Outcome::Failed(format!("fork() refused: {e}")),
        }
    };
    drop(releaser.join().unwrap());
    t.join().unwrap().unwrap();
    assert!(matches!(out, Outcome::Passed(_)), "{setup:?}: the child forked during the setup: {out}");
}

/// A thread inside one of vmspace's once-only setups (the kernel feature probe of its first
/// `map(Inherit::Zero)`; the first `fault::install`) when another thread forks: the child inherits
/// the setup half-done, as it inherits a lock half-held, and must not wait for it. The setup thread
/// is held at one of the setup's system calls with a seccomp user notification, so the fork lands
/// inside it every time. Each case runs in a fresh process of this binary (the setups are once per
/// process).
#[test]
fn fork_during_a_first_time_setup_in_another_thread() {
    let _serial = serial();
    let k = knobs();
    let mut failures = Vec::new();
    for which in ["setup-features", "setup-install"] {
        let (ok, err) = subprocess(which, k.bound + Duration::from_secs(10));
        if !ok {
            failures.push(err);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Where `fork_under_load` and the scenarios above run, in a process of their own (see
/// [`subprocess`]): a stack that cannot grow kills its process with SIGSEGV, which would take every
/// test of this binary with it. Not a test: ignored, and a no-op unless [`subprocess`] started it.
#[test]
#[ignore = "the entry of this file's subprocesses, started by the tests"]
fn subprocess_entry() {
    let Ok(which) = std::env::var("VMSPACE_FORK_LOAD_SUBPROCESS") else { return };
    let k = knobs();
    match which.as_str() {
        "load" => load_scenario(k),
        "parent" => parent_stack_grows_after_a_fork(k),
        "setup-features" => fork_during_a_first_time_setup(k, Setup::Features),
        "setup-install" => fork_during_a_first_time_setup(k, Setup::Install),
        "child" => child_stack_grows_after_a_fork(k),
        other => panic!("unknown scenario {other}"),
    }
}

/// Runs `subprocess_entry` with `scenario` in a fresh process of this binary, killed after `limit`:
/// whether it passed, and its stderr (with the reason when it did not).
fn subprocess(scenario: &str, limit: Duration) -> (bool, String) {
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

/// A thread's vmspace stack goes on growing on demand after a fork: in the parent, when another
/// thread forked while it was half-way down a recursion; in the child, when the thread forked from
/// that stack. Each scenario runs in a fresh process of this binary, with a bound.
#[test]
fn a_stack_grows_on_either_side_of_a_fork() {
    let _serial = serial();
    let k = knobs();
    let mut failures = Vec::new();
    for which in ["parent", "child"] {
        let (ok, err) = subprocess(which, k.bound);
        if !ok {
            failures.push(err);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
