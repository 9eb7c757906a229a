//! The workloads, defined once: large-block churn ([`churn`]: [`LIVE`](super) live blocks per thread
//! of 64 KiB, 256 KiB, 1 MiB or 4 MiB, every page touched, a random one replaced per operation) and
//! busy–idle–busy [`phases`]. `vmspace bench alloc` runs them in a child process per allocator;
//! `cargo bench -p vmspace-bench --bench alloc` runs the churn in-process.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use super::allocators::Block;
use super::measure::{Sampler, faults, rss, rss_hwm};
use super::{ALIGN, BUSY, CHURN_SAMPLE, EARLY, IDLE, IDLE_PROBE, LIVE, PHASES_SAMPLE, SIZES, TOUCH_STRIDE};

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

/// Operations done in a timed stretch, and in its first [`EARLY`](super).
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

/// One churn run in this process: what the parent's [`Churn`](super::Churn) row is made from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChurnRun {
    /// Operations (one free + one allocation) done by all threads in the timed part.
    pub ops: u64,
    /// The timed part's length, seconds.
    pub secs: f64,
    /// Minor + major page faults in the timed part.
    pub faults: u64,
    /// The largest resident set sampled in the timed part, bytes.
    pub peak_rss: u64,
    /// `VmHWM` at the end of the load, bytes.
    pub hwm: u64,
    /// The resident set `settle` seconds after the load stopped, the live blocks still held, bytes.
    pub rss_after: u64,
    /// The bytes of the blocks live at the end of the load.
    pub live: u64,
}

/// The churn workload in this process through `a`: `threads` threads each fill their live set
/// (untimed), then replace random blocks for `secs`; the resident set is read `settle` seconds after
/// the load stops, the live blocks still held, and then they are freed.
pub fn churn(a: &(dyn GlobalAlloc + Sync), threads: usize, secs: f64, settle: f64) -> ChurnRun {
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
    let rss_after = rss();
    workers.iter_mut().for_each(Worker::free_all);
    ChurnRun { ops, secs: elapsed, faults: faulted, peak_rss: peak, hwm, rss_after, live }
}

/// The phases run in this process: what the parent's [`Phases`](super::Phases) row is made from.
#[derive(Clone, Debug, PartialEq)]
pub struct PhasesRun {
    /// First busy phase: operations, seconds, faults.
    pub busy1: (u64, f64, u64),
    /// Second busy phase: operations, seconds, faults.
    pub busy2: (u64, f64, u64),
    /// Operations and seconds of the second busy phase's first 200 ms.
    pub busy2_early: (u64, f64),
    /// The resident set at the end of the first busy phase, two seconds into the idle phase, and at
    /// its end, bytes.
    pub rss: (u64, u64, u64),
    /// The resident set every 100 ms: (seconds since the start, bytes).
    pub series: Vec<(f64, u64)>,
}

/// The phases workload in this process through `a` (one thread): busy, everything freed and idle,
/// busy again.
pub fn phases(a: &(dyn GlobalAlloc + Sync)) -> PhasesRun {
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
    PhasesRun {
        busy1: (b1.ops, b1.secs, f1 - f0),
        busy2: (b2.ops, b2.secs, f3 - f2),
        busy2_early: (b2.early_ops, b2.early_secs),
        rss: (rss_busy1, rss_idle_probe, rss_idle_end),
        series: samples.series,
    }
}
