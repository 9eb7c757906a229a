//! `vmspace bench alloc`: issue 8's allocator comparison. Large-block churn (64 live blocks per
//! thread of 64 KiB, 256 KiB, 1 MiB or 4 MiB, every page touched, random replacement) and a
//! busy–idle–busy phase run, through glibc malloc, jemalloc and mimalloc (`LD_PRELOAD`), a bare
//! mmap/munmap allocator, a keep-everything free list, and `vmspace::alloc::LargeAlloc`.
//!
//! Every (allocator, workload, thread count) runs in a fresh child process (the `vmspace` binary
//! re-executed with the hidden `alloc-child` command), so each is measured from the same starting
//! point: no allocator inherits another's heap, faults or resident set, and preloading an allocator
//! affects only its own run. The child prints one `result k=v …` line the parent parses.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::mm::{self, MapFlags, ProtFlags};
use vmspace::alloc::LargeAlloc;

use crate::out::{grouped, json_str};

/// The allocators compared, in table order.
pub const ALLOCATORS: [&str; 6] = ["glibc", "jemalloc", "mimalloc", "mmap", "keep", "vmspace"];
/// Block sizes, drawn uniformly.
const SIZES: [usize; 4] = [64 << 10, 256 << 10, 1 << 20, 4 << 20];
/// Live blocks per thread.
const LIVE: usize = 64;
/// One write per this many bytes: a 4 KiB page.
const TOUCH_STRIDE: usize = 4096;
/// The layout's alignment (what `malloc` guarantees on 64-bit Linux).
const ALIGN: usize = 16;
/// Thread counts of the churn workload.
const THREADS: [usize; 2] = [1, 2];
/// How often the churn workload samples the resident set.
const CHURN_SAMPLE: Duration = Duration::from_millis(10);
/// How often the phases workload samples the resident set.
const PHASES_SAMPLE: Duration = Duration::from_millis(100);
/// The phases workload: busy, idle, busy.
const BUSY: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(3);
/// When, into the idle phase, the resident set is read ("has memory gone back yet").
const IDLE_PROBE: Duration = Duration::from_secs(2);
/// The start of the second busy phase compared with the first's average ("does memory come back fast").
const EARLY: Duration = Duration::from_millis(200);
/// Where Debian and Ubuntu put shared libraries (multiarch first), then the generic places.
const LIB_DIRS: [&str; 6] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/local/lib",
];

const MIB: f64 = (1u64 << 20) as f64;

/// Which workloads to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Large-block churn, 1 and 2 threads.
    Churn,
    /// Busy 2 s, idle 3 s, busy 2 s (1 thread).
    Phases,
    /// Both.
    #[default]
    Both,
}

/// `vmspace bench alloc`'s options (flattened into `vmspace bench`).
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct Options {
    /// (alloc) Seconds each churn run lasts.
    #[arg(long, value_name = "F", default_value_t = 4.0)]
    pub secs: f64,
    /// (alloc) Only these allocators: glibc, jemalloc, mimalloc, mmap, keep, vmspace.
    #[arg(long, value_name = "A,B,..", value_delimiter = ',')]
    pub allocators: Vec<String>,
    /// (alloc) Which workload: churn, phases or both.
    #[arg(long, value_enum, default_value_t = Workload::Both)]
    pub workload: Workload,
    /// (alloc) Seconds between the end of the load (live blocks still held) and reading the resident
    /// set ("RSS +2s").
    #[arg(long, value_name = "F", default_value_t = 2.0, hide = true)]
    pub settle: f64,
    /// (alloc) Also print each allocator's own counters (vmspace's `stats()`).
    #[arg(long, short)]
    pub verbose: bool,
}

/// The hidden `vmspace alloc-child` command: one measured run in this process.
#[derive(clap::Args, Clone, Debug)]
pub struct ChildArgs {
    /// glibc, jemalloc, mimalloc, mmap, keep or vmspace.
    #[arg(long)]
    pub allocator: String,
    /// churn or phases.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Churn threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Churn seconds.
    #[arg(long, default_value_t = 4.0)]
    pub secs: f64,
    /// Seconds between the end of the load (live blocks still held) and reading the resident set.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
}

// ---------------------------------------------------------------------------------------------
// The two allocators written here for comparison.

/// A fresh anonymous read-write mapping of `len` bytes, or null.
fn map_anon(len: usize) -> *mut u8 {
    // SAFETY: a new private anonymous mapping at an address the kernel chooses aliases nothing.
    let p = unsafe {
        mm::mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE)
    };
    p.map_or(std::ptr::null_mut(), |p| p.cast())
}

/// Unmaps `len` bytes at `p`.
///
/// # Safety
///
/// `[p, p + len)` is a mapping from [`map_anon`] that nothing refers to any more.
unsafe fn unmap_anon(p: *mut u8, len: usize) {
    // SAFETY: forwarded from our caller. A failure would only leak the mapping: nothing to do.
    let _ = unsafe { mm::munmap(p.cast(), len) };
}

/// `size` rounded up to whole pages.
fn page_round(size: usize) -> usize {
    size.next_multiple_of(vmspace::os::page_size() as usize)
}

/// One mmap per block, munmap on free: what large blocks cost with no user-space cache at all
/// (every block faults in every page, every free returns memory at once).
#[derive(Debug, Default)]
pub struct MmapAlloc;

// SAFETY: each block is its own fresh page-aligned mapping of at least `layout.size()` bytes (so any
// alignment up to a page holds), unmapped only by `dealloc` with the same layout.
unsafe impl GlobalAlloc for MmapAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > vmspace::os::page_size() as usize {
            return std::ptr::null_mut();
        }
        map_anon(page_round(layout.size()))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with `layout`, so it is a whole mapping of this length.
        unsafe { unmap_anon(ptr, page_round(layout.size())) }
    }
}

/// A mapped block: its address and the length it was mapped (or allocated) with.
#[derive(Debug)]
struct Block {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: a block is plain memory owned by exactly one holder at a time (a worker's live set, a free
// list, or the thread freeing it); moving that ownership between threads is sound.
unsafe impl Send for Block {}

/// Keeps every freed block on a per-size free list and reuses it; never returns memory. The
/// opposite bound to [`MmapAlloc`]: no faults after warm-up, and the resident set never shrinks.
#[derive(Debug)]
pub struct KeepAlloc {
    /// Free blocks by size class: index `k` holds blocks of `2^k` bytes.
    lists: [Mutex<Vec<Block>>; 64],
}

impl Default for KeepAlloc {
    fn default() -> Self {
        KeepAlloc { lists: std::array::from_fn(|_| Mutex::new(Vec::new())) }
    }
}

impl KeepAlloc {
    /// The class length of a request: a power of two of at least a page (the workload's sizes are
    /// powers of two, so nothing is wasted on them).
    fn class(size: usize) -> Option<usize> {
        size.max(vmspace::os::page_size() as usize).checked_next_power_of_two()
    }

    fn list(&self, len: usize) -> &Mutex<Vec<Block>> {
        &self.lists[len.trailing_zeros() as usize]
    }
}

// SAFETY: a block handed out is either fresh (a page-aligned mapping of the class length, at least
// `layout.size()`) or was freed with a layout of the same class and is no longer used by anyone.
unsafe impl GlobalAlloc for KeepAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(len) = Self::class(layout.size()) else { return std::ptr::null_mut() };
        if layout.align() > vmspace::os::page_size() as usize {
            return std::ptr::null_mut();
        }
        let reused = self.list(len).lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.map_or_else(|| map_anon(len), |b| b.ptr.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let (Some(len), Some(ptr)) = (Self::class(layout.size()), NonNull::new(ptr)) else { return };
        self.list(len).lock().unwrap_or_else(|e| e.into_inner()).push(Block { ptr, size: len });
    }
}

impl Drop for KeepAlloc {
    fn drop(&mut self) {
        for l in &mut self.lists {
            for b in l.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
                // SAFETY: a listed block is a whole mapping of `b.size` bytes that nobody uses.
                unsafe { unmap_anon(b.ptr.as_ptr(), b.size) };
            }
        }
    }
}

/// The allocator a child measures, made from its name.
#[allow(clippy::large_enum_variant, reason = "one per process, never moved after it is made")]
enum Local {
    /// `System` (malloc/free): glibc, or jemalloc/mimalloc when preloaded.
    System,
    Mmap(MmapAlloc),
    Keep(KeepAlloc),
    Vmspace(LargeAlloc),
}

impl Local {
    fn new(name: &str) -> Result<Local, String> {
        Ok(match name {
            "glibc" => Local::System,
            "jemalloc" | "mimalloc" => {
                check_preloaded(name)?;
                Local::System
            }
            "mmap" => Local::Mmap(MmapAlloc),
            "keep" => Local::Keep(KeepAlloc::default()),
            "vmspace" => Local::Vmspace(LargeAlloc::new()),
            _ => return Err(unknown_allocator(name)),
        })
    }

    fn get(&self) -> &(dyn GlobalAlloc + Sync) {
        match self {
            Local::System => &System,
            Local::Mmap(a) => a,
            Local::Keep(a) => a,
            Local::Vmspace(a) => a,
        }
    }

    /// The allocator's own counters, for `--verbose`.
    fn stats(&self) -> Option<String> {
        match self {
            Local::Vmspace(a) => Some(format!("{:?}", a.stats())),
            _ => None,
        }
    }
}

fn unknown_allocator(name: &str) -> String {
    format!("unknown allocator {name:?}: {}", ALLOCATORS.join(", "))
}

/// The shared library and the Debian package of a preloaded allocator.
fn preload_lib(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "jemalloc" => Some(("libjemalloc.so.2", "libjemalloc2")),
        "mimalloc" => Some(("libmimalloc.so.2", "libmimalloc2.0")),
        _ => None,
    }
}

fn find_lib(file: &str) -> Option<PathBuf> {
    LIB_DIRS.iter().map(|d| PathBuf::from(d).join(file)).find(|p| p.exists())
}

/// A preloaded allocator must really be in this process: a wrong `LD_PRELOAD` is silently ignored by
/// the loader and would measure glibc under another name.
fn check_preloaded(name: &str) -> Result<(), String> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
    if maps.lines().any(|l| l.contains(&format!("lib{name}"))) {
        Ok(())
    } else {
        Err(format!(
            "{name} is not loaded in this process (LD_PRELOAD={:?})",
            std::env::var("LD_PRELOAD").unwrap_or_default()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring: resident set, faults, a sampler thread.

/// (`VmRSS`, `VmHWM`) in bytes, read without allocating (the sampler runs beside the allocator under
/// test and must not use it).
fn rss_hwm() -> (u64, u64) {
    let mut buf = [0u8; 8192];
    let mut n = 0;
    if let Ok(mut f) = std::fs::File::open("/proc/self/status") {
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    }
    let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
    let kb = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

fn rss() -> u64 {
    rss_hwm().0
}

/// Minor + major page faults of this process so far (`getrusage(RUSAGE_SELF)`).
fn faults() -> u64 {
    // SAFETY: a zeroed `rusage` is a valid value, and `getrusage` only writes the struct we pass. It
    // cannot fail for `RUSAGE_SELF` with a valid pointer, so its result is not checked.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    (u.ru_minflt + u.ru_majflt) as u64
}

/// What a [`Sampler`] saw.
struct Samples {
    peak: u64,
    /// (seconds since the start, resident bytes).
    series: Vec<(f64, u64)>,
}

/// Reads the resident set every interval on its own thread until [`finish`](Sampler::finish).
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Samples>,
}

impl Sampler {
    fn start(every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let t0 = Instant::now();
            // Room for 40 s of 10 ms samples or 400 s of 100 ms ones, so the loop does not allocate
            // beside the allocator under test (beyond that only the peak is kept).
            let mut s = Samples { peak: 0, series: Vec::with_capacity(4096) };
            while !flag.load(Ordering::Relaxed) {
                let r = rss();
                s.peak = s.peak.max(r);
                if s.series.len() < s.series.capacity() {
                    s.series.push((t0.elapsed().as_secs_f64(), r));
                }
                thread::park_timeout(every);
            }
            s
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.thread().unpark();
        let mut s = self.handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        // One last reading: the end of the load may fall between two samples.
        s.peak = s.peak.max(rss());
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The workload.

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("the workload's sizes are valid layouts")
}

/// One thread's live blocks and random stream, over the allocator under test.
struct Worker<'a> {
    a: &'a (dyn GlobalAlloc + Sync),
    blocks: Vec<Block>,
    rng: u64,
}

impl<'a> Worker<'a> {
    fn new(a: &'a (dyn GlobalAlloc + Sync), thread: usize) -> Self {
        // The same streams for every allocator: the runs differ only in the allocator.
        let rng = 0x9e37_79b9_7f4a_7c15u64 ^ (thread as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        Worker { a, blocks: Vec::with_capacity(LIVE), rng }
    }

    fn next(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng as usize
    }

    /// A block of a random size with every page written (so the allocator's memory is really used).
    fn new_block(&mut self) -> Block {
        let size = SIZES[self.next() % SIZES.len()];
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { self.a.alloc(layout(size)) };
        let Some(ptr) = NonNull::new(p) else { std::alloc::handle_alloc_error(layout(size)) };
        for off in (0..size).step_by(TOUCH_STRIDE) {
            // SAFETY: `off < size` and the block has `size` writable bytes, ours alone.
            unsafe { ptr.as_ptr().add(off).write_volatile(1) };
        }
        Block { ptr, size }
    }

    fn free(&self, b: Block) {
        // SAFETY: `b` came from `new_block` through the same allocator with this layout and is
        // dropped from the live set here.
        unsafe { self.a.dealloc(b.ptr.as_ptr(), layout(b.size)) };
    }

    /// One operation: fill up to [`LIVE`] blocks, then replace a random live one (free, allocate,
    /// touch, store).
    fn step(&mut self) {
        if self.blocks.len() < LIVE {
            let b = self.new_block();
            self.blocks.push(b);
            return;
        }
        // The live set's order means nothing, so the victim's slot is refilled by a swap.
        let i = self.next() % LIVE;
        let old = self.blocks.swap_remove(i);
        self.free(old);
        let b = self.new_block();
        self.blocks.push(b);
    }

    fn fill(&mut self) {
        while self.blocks.len() < LIVE {
            self.step();
        }
    }

    fn free_all(&mut self) {
        for b in std::mem::take(&mut self.blocks) {
            self.free(b);
        }
    }

    fn live_bytes(&self) -> u64 {
        self.blocks.iter().map(|b| b.size as u64).sum()
    }

    /// Steps for `dur`; also counts the operations done in the first [`EARLY`].
    fn run_for(&mut self, dur: Duration) -> Busy {
        let t0 = Instant::now();
        let (mut ops, mut early) = (0u64, None);
        loop {
            let el = t0.elapsed();
            if early.is_none() && el >= EARLY {
                early = Some((ops, el.as_secs_f64()));
            }
            if el >= dur {
                let (early_ops, early_secs) = early.unwrap_or((ops, el.as_secs_f64()));
                return Busy { ops, secs: el.as_secs_f64(), early_ops, early_secs };
            }
            self.step();
            ops += 1;
        }
    }
}

/// Operations done in a timed stretch, and in its first [`EARLY`].
struct Busy {
    ops: u64,
    secs: f64,
    early_ops: u64,
    early_secs: f64,
}

/// One churn thread: fill untimed, wait for the start, churn for `dur`, hand back the live blocks.
fn churn_thread<'a>(
    a: &'a (dyn GlobalAlloc + Sync),
    t: usize,
    ready: &Barrier,
    go: &Barrier,
    dur: Duration,
) -> (u64, Worker<'a>) {
    let mut w = Worker::new(a, t);
    w.fill();
    ready.wait();
    go.wait();
    let b = w.run_for(dur);
    (b.ops, w)
}

/// The churn workload in this process; the `result` line.
fn churn_child(a: &(dyn GlobalAlloc + Sync), threads: usize, secs: f64, settle: f64) -> String {
    let dur = Duration::from_secs_f64(secs);
    let (ready, go) = (&Barrier::new(threads + 1), &Barrier::new(threads + 1));
    let (ops, mut workers, elapsed, faulted, peak) = thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|t| s.spawn(move || churn_thread(a, t, ready, go, dur))).collect();
        ready.wait();
        // The fill is done: from here on it is the timed part.
        let f0 = faults();
        let sampler = Sampler::start(CHURN_SAMPLE);
        let t0 = Instant::now();
        go.wait();
        let done: Vec<_> =
            hs.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect();
        let elapsed = t0.elapsed().as_secs_f64();
        let faulted = faults() - f0;
        let peak = sampler.finish().peak;
        let ops: u64 = done.iter().map(|d| d.0).sum();
        (ops, done.into_iter().map(|d| d.1).collect::<Vec<_>>(), elapsed, faulted, peak)
    });
    let live: u64 = workers.iter().map(Worker::live_bytes).sum();
    let hwm = rss_hwm().1;
    // The load has stopped but the program still holds its live blocks: what the allocator keeps
    // beyond them after `settle` is memory it could have given back.
    thread::sleep(Duration::from_secs_f64(settle));
    let after = rss();
    workers.iter_mut().for_each(Worker::free_all);
    format!(
        "result ops={ops} secs={elapsed} faults={faulted} peak_rss={peak} hwm={hwm} rss_after={after} live={live}"
    )
}

/// The phases workload in this process: busy, everything freed and idle, busy again; the `result`
/// and `series` lines.
fn phases_child(a: &(dyn GlobalAlloc + Sync)) -> String {
    let sampler = Sampler::start(PHASES_SAMPLE);
    let mut w = Worker::new(a, 0);
    let f0 = faults();
    let b1 = w.run_for(BUSY);
    let f1 = faults();
    let rss_busy1 = rss();
    w.free_all();
    thread::sleep(IDLE_PROBE);
    let rss_idle_probe = rss();
    thread::sleep(IDLE - IDLE_PROBE);
    let rss_idle_end = rss();
    let f2 = faults();
    let b2 = w.run_for(BUSY);
    let f3 = faults();
    w.free_all();
    let samples = sampler.finish();
    let mut out = format!(
        "result busy1_ops={} busy1_secs={} busy1_faults={} rss_busy1_end={rss_busy1} rss_idle_probe={rss_idle_probe} \
         rss_idle_end={rss_idle_end} busy2_ops={} busy2_secs={} busy2_faults={} busy2_early_ops={} busy2_early_secs={}\nseries",
        b1.ops,
        b1.secs,
        f1 - f0,
        b2.ops,
        b2.secs,
        f3 - f2,
        b2.early_ops,
        b2.early_secs,
    );
    for (t, r) in samples.series {
        let _ = write!(out, " {t:.3}:{r}");
    }
    out
}

fn check_times(secs: f64, settle: f64) -> Result<(), String> {
    if !(secs.is_finite() && secs > 0.0 && secs < 1e6) {
        return Err(format!("--secs {secs}: a positive number of seconds"));
    }
    if !(settle.is_finite() && (0.0..1e6).contains(&settle)) {
        return Err(format!("--settle {settle}: zero or more seconds"));
    }
    Ok(())
}

/// Runs one measurement in this process (the hidden `alloc-child` command) and returns its output:
/// a `result k=v …` line, for phases a `series t:rss …` line, and a `stats …` line when the
/// allocator keeps counters.
pub fn child(args: &ChildArgs) -> Result<String, String> {
    check_times(args.secs, args.settle)?;
    if !(1..=256).contains(&args.threads) {
        return Err(format!("--threads {}: 1 to 256", args.threads));
    }
    let local = Local::new(&args.allocator)?;
    let mut out = match args.workload {
        Workload::Churn => churn_child(local.get(), args.threads, args.secs, args.settle),
        Workload::Phases => phases_child(local.get()),
        Workload::Both => return Err("a child runs one workload: churn or phases".into()),
    };
    out.push('\n');
    if let Some(s) = local.stats() {
        out += &format!("stats {s}\n");
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The parent: one child per run, parsed into rows.

/// A run's result, or why there is none.
#[derive(Clone, Debug)]
pub enum Outcome<T> {
    /// Measured.
    Done(T),
    /// A preloaded allocator whose library is missing: the Debian package to install.
    NotInstalled(&'static str),
    /// The child failed: its last line of error output, or how it died.
    Failed(String),
}

impl<T> Outcome<T> {
    /// The result, if measured.
    pub fn done(&self) -> Option<&T> {
        match self {
            Outcome::Done(t) => Some(t),
            _ => None,
        }
    }

    /// Why there is no result (for the table and JSON), if there is none.
    pub fn why_not(&self) -> Option<String> {
        match self {
            Outcome::Done(_) => None,
            Outcome::NotInstalled(pkg) => Some(format!("not installed (apt-get install {pkg})")),
            Outcome::Failed(e) => Some(format!("failed: {e}")),
        }
    }

    fn map<U>(self, f: impl FnOnce(T) -> Result<U, String>) -> Outcome<U> {
        match self {
            Outcome::Done(t) => f(t).map_or_else(Outcome::Failed, Outcome::Done),
            Outcome::NotInstalled(p) => Outcome::NotInstalled(p),
            Outcome::Failed(e) => Outcome::Failed(e),
        }
    }
}

/// One churn run.
#[derive(Clone, Debug)]
pub struct Churn {
    /// Threads, each with its own 64 blocks.
    pub threads: usize,
    /// Operations (one free + one allocation) per second, all threads together.
    pub ops_per_sec: f64,
    /// Minor + major page faults per operation over the timed part.
    pub faults_per_op: f64,
    /// The largest resident set sampled during the timed part, bytes.
    pub peak_rss: u64,
    /// `VmHWM` at the end (includes the untimed fill), bytes.
    pub hwm: u64,
    /// The resident set `settle` seconds after the load stopped, the live blocks still held, bytes.
    pub rss_after: u64,
    /// The bytes of the blocks live at the end of the load.
    pub live: u64,
    /// The allocator's own counters, when it has them.
    pub stats: Option<String>,
}

/// The phases run.
#[derive(Clone, Debug)]
pub struct Phases {
    /// The first busy phase's operations per second.
    pub busy1_ops_per_sec: f64,
    /// The second busy phase's operations per second over its first 200 ms.
    pub busy2_early_ops_per_sec: f64,
    /// The second busy phase's operations per second over all of it.
    pub busy2_ops_per_sec: f64,
    /// Faults per operation in the first busy phase.
    pub busy1_faults_per_op: f64,
    /// Faults per operation in the second busy phase.
    pub busy2_faults_per_op: f64,
    /// The resident set at the end of the first busy phase (blocks still live), bytes.
    pub rss_busy1_end: u64,
    /// The resident set two seconds into the idle phase, bytes.
    pub rss_idle_2s: u64,
    /// The resident set at the end of the idle phase, bytes.
    pub rss_idle_end: u64,
    /// The resident set every 100 ms: (seconds since the start, bytes).
    pub series: Vec<(f64, u64)>,
    /// The allocator's own counters, when it has them.
    pub stats: Option<String>,
}

/// One allocator's runs.
#[derive(Clone, Debug)]
pub struct Row {
    /// The allocator's name.
    pub allocator: String,
    /// Churn runs, one per thread count (empty when churn was not asked for).
    pub churn: Vec<(usize, Outcome<Churn>)>,
    /// The phases run, when asked for.
    pub phases: Option<Outcome<Phases>>,
}

impl Row {
    /// The churn run with `threads` threads, if measured.
    pub fn churn(&self, threads: usize) -> Option<&Churn> {
        self.churn.iter().find(|(t, _)| *t == threads).and_then(|(_, o)| o.done())
    }
}

/// Every allocator's runs, with the settings they ran with.
#[derive(Clone, Debug)]
pub struct Report {
    /// Seconds per churn run.
    pub secs: f64,
    /// Seconds between the end of the load (live blocks still held) and the "RSS after" reading.
    pub settle: f64,
    /// One row per allocator, in the order asked for.
    pub rows: Vec<Row>,
}

/// A child's output: the numbers of its `result` line, its `series`, its `stats`.
struct ChildOut {
    nums: HashMap<String, f64>,
    series: Vec<(f64, u64)>,
    stats: Option<String>,
}

impl ChildOut {
    fn parse(text: &str) -> Result<ChildOut, String> {
        let mut c = ChildOut { nums: HashMap::new(), series: Vec::new(), stats: None };
        for line in text.lines() {
            if let Some(r) = line.strip_prefix("result ") {
                for kv in r.split_whitespace() {
                    let (k, v) = kv.split_once('=').ok_or_else(|| format!("bad child field {kv:?}"))?;
                    let v = v.parse::<f64>().map_err(|_| format!("bad child number {kv:?}"))?;
                    c.nums.insert(k.to_string(), v);
                }
            } else if let Some(s) = line.strip_prefix("series") {
                c.series = s
                    .split_whitespace()
                    .filter_map(|p| p.split_once(':'))
                    .filter_map(|(t, r)| Some((t.parse().ok()?, r.parse().ok()?)))
                    .collect();
            } else if let Some(s) = line.strip_prefix("stats ") {
                c.stats = Some(s.to_string());
            }
        }
        if c.nums.is_empty() { Err("the child printed no result".into()) } else { Ok(c) }
    }

    fn num(&self, k: &str) -> Result<f64, String> {
        self.nums.get(k).copied().ok_or_else(|| format!("the child's result lacks {k}"))
    }

    fn bytes(&self, k: &str) -> Result<u64, String> {
        self.num(k).map(|v| v as u64)
    }

    fn churn(self, threads: usize) -> Result<Churn, String> {
        let ops = self.num("ops")?;
        Ok(Churn {
            threads,
            ops_per_sec: ops / self.num("secs")?,
            faults_per_op: self.num("faults")? / ops.max(1.0),
            peak_rss: self.bytes("peak_rss")?,
            hwm: self.bytes("hwm")?,
            rss_after: self.bytes("rss_after")?,
            live: self.bytes("live")?,
            stats: self.stats,
        })
    }

    fn phases(self) -> Result<Phases, String> {
        let (b1, b2) = (self.num("busy1_ops")?, self.num("busy2_ops")?);
        Ok(Phases {
            busy1_ops_per_sec: b1 / self.num("busy1_secs")?,
            busy2_early_ops_per_sec: self.num("busy2_early_ops")? / self.num("busy2_early_secs")?,
            busy2_ops_per_sec: b2 / self.num("busy2_secs")?,
            busy1_faults_per_op: self.num("busy1_faults")? / b1.max(1.0),
            busy2_faults_per_op: self.num("busy2_faults")? / b2.max(1.0),
            rss_busy1_end: self.bytes("rss_busy1_end")?,
            rss_idle_2s: self.bytes("rss_idle_probe")?,
            rss_idle_end: self.bytes("rss_idle_end")?,
            series: self.series,
            stats: self.stats,
        })
    }
}

/// Runs `vmspace alloc-child` for one measurement and returns its standard output.
fn spawn_child(name: &str, workload: &str, threads: usize, o: &Options) -> Outcome<String> {
    let mut cmd = match std::env::current_exe() {
        Ok(exe) => Command::new(exe),
        Err(e) => return Outcome::Failed(format!("cannot find this program: {e}")),
    };
    cmd.args(["alloc-child", "--allocator", name, "--workload", workload])
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--secs")
        .arg(o.secs.to_string())
        .arg("--settle")
        .arg(o.settle.to_string())
        // Only the allocator under test is preloaded, never one from the caller's environment.
        .env_remove("LD_PRELOAD");
    if let Some((file, pkg)) = preload_lib(name) {
        match find_lib(file) {
            Some(p) => cmd.env("LD_PRELOAD", p),
            None => return Outcome::NotInstalled(pkg),
        };
    }
    match cmd.output() {
        Ok(out) if out.status.success() => Outcome::Done(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            Outcome::Failed(if last.is_empty() { out.status.to_string() } else { last.to_string() })
        }
        Err(e) => Outcome::Failed(format!("cannot start the child: {e}")),
    }
}

/// The allocators asked for, checked, in the order given (all of them when none are named).
fn chosen(o: &Options) -> Result<Vec<String>, String> {
    if o.allocators.is_empty() {
        return Ok(ALLOCATORS.iter().map(|s| s.to_string()).collect());
    }
    let mut v: Vec<String> = Vec::new();
    for a in &o.allocators {
        let a = a.trim();
        if !ALLOCATORS.contains(&a) {
            return Err(unknown_allocator(a));
        }
        if !v.iter().any(|x| x == a) {
            v.push(a.to_string());
        }
    }
    Ok(v)
}

/// A progress line on stderr while the runs go (a terminal only: each run takes seconds).
fn progress(total: usize) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    })
}

/// Runs the allocator comparison: every chosen allocator through the chosen workloads, each run in
/// its own child process.
pub fn run(o: &Options) -> Result<Report, String> {
    check_times(o.secs, o.settle)?;
    let names = chosen(o)?;
    let (do_churn, do_phases) = (o.workload != Workload::Phases, o.workload != Workload::Churn);
    let per = if do_churn { THREADS.len() } else { 0 } + usize::from(do_phases);
    let bar = progress(names.len() * per);
    // Counts the run that just finished and names the next one.
    let step = |msg: String| {
        if let Some(b) = &bar {
            if !b.message().is_empty() {
                b.inc(1);
            }
            b.set_message(msg);
        }
    };
    let mut rows = Vec::new();
    for name in names {
        let mut row = Row { allocator: name.clone(), churn: Vec::new(), phases: None };
        if do_churn {
            for t in THREADS {
                step(format!("{name}: churn, {t} thread(s)"));
                let out = spawn_child(&name, "churn", t, o);
                row.churn.push((t, out.map(|s| ChildOut::parse(&s)?.churn(t))));
            }
        }
        if do_phases {
            step(format!("{name}: phases"));
            let out = spawn_child(&name, "phases", 1, o);
            row.phases = Some(out.map(|s| ChildOut::parse(&s)?.phases()));
        }
        rows.push(row);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(Report { secs: o.secs, settle: o.settle, rows })
}

// ---------------------------------------------------------------------------------------------
// Output.

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// `a / b` as `1.23x`, or `-` when either is missing or `b` is zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// `v` with the formatter, or `-` when the run has no result.
fn cell<T>(v: Option<&T>, f: impl Fn(&T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn churn_table(r: &Report, verbose: bool) -> String {
    let mut s = format!(
        "churn: {LIVE} live blocks per thread of 64 KiB/256 KiB/1 MiB/4 MiB, every page touched, random \
         replacement, {} s per run\n{:<10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10} {:>12}\n",
        r.secs,
        "ALLOCATOR",
        "OPS/S 1T",
        "OPS/S 2T",
        "FAULTS/OP",
        "PEAK RSS",
        format!("RSS +{}s", r.settle),
        "LIVE SET",
        "RSS+/LIVE"
    );
    for row in &r.rows {
        if row.churn.iter().all(|(_, o)| o.done().is_none()) {
            // Not installed, or every run failed: one line says why.
            let why = row.churn.first().and_then(|(_, o)| o.why_not()).unwrap_or_default();
            let _ = writeln!(s, "{:<10} {why}", row.allocator);
            continue;
        }
        let (one, two) = (row.churn(1), row.churn(2));
        let _ = writeln!(
            s,
            "{:<10} {:>10} {:>10} {:>10} {:>8} MiB {:>8} MiB {:>6} MiB {:>12}",
            row.allocator,
            cell(one, |c| grouped(c.ops_per_sec as u64)),
            cell(two, |c| grouped(c.ops_per_sec as u64)),
            cell(one, |c| format!("{:.2}", c.faults_per_op)),
            cell(one, |c| format!("{:.1}", mib(c.peak_rss))),
            cell(one, |c| format!("{:.1}", mib(c.rss_after))),
            cell(one, |c| format!("{:.1}", mib(c.live))),
            cell(one, |c| format!("{:.2}", c.rss_after as f64 / c.live.max(1) as f64)),
        );
        for (t, o) in &row.churn {
            if let Some(why) = o.why_not() {
                let _ = writeln!(s, "{:<10}   {t} thread(s): {why}", "");
            }
            if let (true, Some(st)) = (verbose, o.done().and_then(|c| c.stats.as_ref())) {
                let _ = writeln!(s, "{:<10}   {t} thread(s): {st}", "");
            }
        }
    }
    s + "faults/op, peak RSS, RSS after and live set are of the 1-thread run; one op = one free + one \
         allocation\n"
}

fn churn_ratios(r: &Report) -> String {
    let find = |name: &str| r.rows.iter().find(|x| x.allocator == name);
    let (v, m) = (find("vmspace"), find("mimalloc"));
    let get = |row: Option<&Row>, t: usize, f: fn(&Churn) -> f64| row.and_then(|x| x.churn(t)).map(f);
    if v.is_none() || m.is_none() {
        return String::new();
    }
    let mut s = String::from("vmspace / mimalloc:");
    for t in THREADS {
        let _ =
            write!(s, " ops/s {t}T {},", ratio(get(v, t, |c| c.ops_per_sec), get(m, t, |c| c.ops_per_sec)));
    }
    let _ = writeln!(
        s,
        " faults/op {} (ops/s above 1x: vmspace is faster)",
        ratio(get(v, 1, |c| c.faults_per_op), get(m, 1, |c| c.faults_per_op))
    );
    let kept = |row| ratio(get(row, 1, |c| c.rss_after as f64), get(row, 1, |c| c.live as f64));
    let _ = writeln!(
        s,
        "RSS +{}s / live set (resident beyond the live blocks once the load stops, 1 thread): vmspace {}, mimalloc {}",
        r.settle,
        kept(v),
        kept(m)
    );
    s
}

fn phases_table(r: &Report, verbose: bool) -> String {
    let mut s = format!(
        "phases (1 thread): busy {} s, idle {} s (every block freed), busy {} s; RSS sampled every {} ms\n\
         {:<10} {:>11} {:>13} {:>13} {:>13} {:>14} {:>9} {:>12}\n",
        BUSY.as_secs(),
        IDLE.as_secs(),
        BUSY.as_secs(),
        PHASES_SAMPLE.as_millis(),
        "ALLOCATOR",
        "BUSY1 OPS/S",
        "RSS BUSY1",
        "RSS IDLE+2s",
        "RSS IDLE END",
        "BUSY2 0.2s OPS",
        "VS BUSY1",
        "BUSY2 FLT/OP"
    );
    for row in &r.rows {
        let Some(o) = &row.phases else { continue };
        let Some(p) = o.done() else {
            let _ = writeln!(s, "{:<10} {}", row.allocator, o.why_not().unwrap_or_default());
            continue;
        };
        let _ = writeln!(
            s,
            "{:<10} {:>11} {:>9.1} MiB {:>9.1} MiB {:>9.1} MiB {:>14} {:>9} {:>12.2}",
            row.allocator,
            grouped(p.busy1_ops_per_sec as u64),
            mib(p.rss_busy1_end),
            mib(p.rss_idle_2s),
            mib(p.rss_idle_end),
            grouped(p.busy2_early_ops_per_sec as u64),
            ratio(Some(p.busy2_early_ops_per_sec), Some(p.busy1_ops_per_sec)),
            p.busy2_faults_per_op,
        );
        if let (true, Some(st)) = (verbose, &p.stats) {
            let _ = writeln!(s, "{:<10}   {st}", "");
        }
    }
    s + "BUSY2 0.2s OPS: ops/s over the second busy phase's first 200 ms; VS BUSY1: against the first \
         busy phase's average. Each busy phase starts with no live block: its first 64 operations refill \
         them (allocations only)\n"
}

/// The report as tables: churn, the vmspace / mimalloc ratios, phases.
pub fn table(r: &Report, verbose: bool) -> String {
    let mut s = String::new();
    if r.rows.iter().any(|x| !x.churn.is_empty()) {
        s += &churn_table(r, verbose);
        s += &churn_ratios(r);
    }
    if r.rows.iter().any(|x| x.phases.is_some()) {
        if !s.is_empty() {
            s.push('\n');
        }
        s += &phases_table(r, verbose);
    }
    s
}

/// A JSON number, `null` when not finite.
fn jnum(v: f64) -> String {
    if v.is_finite() { format!("{v:.3}") } else { "null".into() }
}

/// The `"status"` and, when not measured, `"error"` members of a run.
fn jstatus<T>(o: &Outcome<T>) -> String {
    match o.why_not() {
        None => "\"status\":\"ok\"".into(),
        Some(w) => format!(
            "\"status\":\"{}\",\"error\":{}",
            if matches!(o, Outcome::NotInstalled(_)) { "not_installed" } else { "failed" },
            json_str(&w)
        ),
    }
}

fn jstats(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "null".into(), json_str)
}

fn churn_json(name: &str, t: usize, o: &Outcome<Churn>) -> String {
    let mut s = format!("{{\"allocator\":{},\"threads\":{t},{}", json_str(name), jstatus(o));
    if let Some(c) = o.done() {
        let _ = write!(
            s,
            ",\"ops_per_sec\":{},\"faults_per_op\":{},\"peak_rss_mib\":{},\"hwm_mib\":{},\"rss_after_mib\":{},\
             \"live_mib\":{},\"stats\":{}",
            jnum(c.ops_per_sec),
            jnum(c.faults_per_op),
            jnum(mib(c.peak_rss)),
            jnum(mib(c.hwm)),
            jnum(mib(c.rss_after)),
            jnum(mib(c.live)),
            jstats(&c.stats)
        );
    }
    s + "}"
}

fn phases_json(name: &str, o: &Outcome<Phases>) -> String {
    let mut s = format!("{{\"allocator\":{},{}", json_str(name), jstatus(o));
    if let Some(p) = o.done() {
        let series: Vec<String> =
            p.series.iter().map(|(t, r)| format!("[{},{}]", jnum(*t), jnum(mib(*r)))).collect();
        let _ = write!(
            s,
            ",\"busy1_ops_per_sec\":{},\"busy1_faults_per_op\":{},\"rss_busy1_end_mib\":{},\"rss_idle_2s_mib\":{},\
             \"rss_idle_end_mib\":{},\"busy2_early_ops_per_sec\":{},\"busy2_ops_per_sec\":{},\
             \"busy2_faults_per_op\":{},\"rss_series_mib\":[{}],\"stats\":{}",
            jnum(p.busy1_ops_per_sec),
            jnum(p.busy1_faults_per_op),
            jnum(mib(p.rss_busy1_end)),
            jnum(mib(p.rss_idle_2s)),
            jnum(mib(p.rss_idle_end)),
            jnum(p.busy2_early_ops_per_sec),
            jnum(p.busy2_ops_per_sec),
            jnum(p.busy2_faults_per_op),
            series.join(","),
            jstats(&p.stats)
        );
    }
    s + "}"
}

/// The report as JSON: `{"secs", "settle", "churn": [one object per allocator and thread count],
/// "phases": [one object per allocator]}`; RSS figures in MiB.
pub fn json(r: &Report) -> String {
    let churn: Vec<String> =
        r.rows.iter().flat_map(|x| x.churn.iter().map(|(t, o)| churn_json(&x.allocator, *t, o))).collect();
    let phases: Vec<String> =
        r.rows.iter().filter_map(|x| x.phases.as_ref().map(|o| phases_json(&x.allocator, o))).collect();
    format!(
        "{{\"secs\":{},\"settle\":{},\"churn\":{},\"phases\":{}}}\n",
        jnum(r.secs),
        jnum(r.settle),
        jarray(&churn),
        jarray(&phases)
    )
}

/// A JSON array with one item per line (`[]` when empty).
fn jarray(items: &[String]) -> String {
    if items.is_empty() { "[]".into() } else { format!("[\n{}\n]", items.join(",\n")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_row_that_says_what_to_install() {
        let missing = |name: &str, pkg| Row {
            allocator: name.into(),
            churn: THREADS.iter().map(|&t| (t, Outcome::NotInstalled(pkg))).collect(),
            phases: Some(Outcome::NotInstalled(pkg)),
        };
        let r = Report { secs: 4.0, settle: 2.0, rows: vec![missing("jemalloc", "libjemalloc2")] };
        let t = table(&r, false);
        assert!(
            t.lines().any(|l| l.starts_with("jemalloc") && l.ends_with("(apt-get install libjemalloc2)")),
            "{t}"
        );
        let j = json(&r);
        assert!(j.contains("\"status\":\"not_installed\"") && !j.contains("ops_per_sec"), "{j}");
    }

    #[test]
    fn a_childs_result_line_becomes_a_churn_row() {
        let out = "result ops=200 secs=2 faults=600 peak_rss=4194304 hwm=8388608 rss_after=1048576 live=2097152\n\
                   stats AllocStats { mapped: 1 }\n";
        let c = ChildOut::parse(out).unwrap().churn(2).unwrap();
        assert_eq!((c.ops_per_sec, c.faults_per_op, c.peak_rss, c.live), (100.0, 3.0, 4 << 20, 2 << 20));
        assert_eq!(c.stats.as_deref(), Some("AllocStats { mapped: 1 }"));
        assert!(ChildOut::parse("nothing").is_err());
        assert!(ChildOut::parse("result ops=1").unwrap().churn(1).is_err(), "a missing field is an error");
    }
}
