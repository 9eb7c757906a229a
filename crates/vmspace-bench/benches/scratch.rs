//! The scratch space's claim + release against the usual alternatives for a pool of slot indices, in
//! the same run: `Mutex<Vec<u32>>`, crossbeam's `ArrayQueue` (bounded, lock-free) and `SegQueue`
//! (unbounded, lock-free); from one thread, and per thread with two threads hammering the same pool;
//! plus the per-thread `current()` path. `scratch` is the default (with the one-slot thread cache),
//! `scratch_no_thread_cache` sends every release to the shared tagged free list. `cargo bench -p vmspace-bench --bench scratch`.
//!
//! Two-thread figures are wall time per operation while both threads run (each does the same number
//! of operations), i.e. the cost per thread under contention.

use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam_queue::{ArrayQueue, SegQueue};
use vmspace::AddressSpace;
use vmspace::scratch::ScratchSpace;

/// Free slots each pool starts with (one page of 64-byte slots).
const SLOTS: u32 = 64;

/// One pool under test: claim a slot and give it back.
trait Pool: Sync {
    fn claim_release(&self);
}

impl Pool for ScratchSpace<'_> {
    #[inline]
    fn claim_release(&self) {
        let s = self.claim().unwrap();
        black_box(s.write_addr());
        self.release(s).unwrap();
    }
}

struct Current<'a>(ScratchSpace<'a>);

impl Pool for Current<'_> {
    #[inline]
    fn claim_release(&self) {
        black_box(self.0.current().unwrap().write_addr());
    }
}

impl Pool for Mutex<Vec<u32>> {
    #[inline]
    fn claim_release(&self) {
        let i = self.lock().unwrap().pop().unwrap();
        black_box(i);
        self.lock().unwrap().push(i);
    }
}

impl Pool for ArrayQueue<u32> {
    #[inline]
    fn claim_release(&self) {
        let i = self.pop().unwrap();
        black_box(i);
        self.push(i).unwrap();
    }
}

impl Pool for SegQueue<u32> {
    #[inline]
    fn claim_release(&self) {
        let i = self.pop().unwrap();
        black_box(i);
        self.push(i);
    }
}

/// `iters` operations on each of `threads` threads started together; the wall time of the slowest.
fn run(pool: &dyn Pool, threads: usize, iters: u64) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    pool.claim_release(); // this thread's warm-up (and its current() slot)
                    barrier.wait();
                    let t = Instant::now();
                    for _ in 0..iters {
                        pool.claim_release();
                    }
                    t.elapsed()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    })
}

fn bench(c: &mut Criterion) {
    let space = AddressSpace::reserve(1 << 24).unwrap();
    let scratch = ScratchSpace::enable(&space).unwrap();
    // Allocate the first page outside the measurement.
    scratch.release(scratch.claim().unwrap()).unwrap();
    let shared = ScratchSpace::builder().thread_cache(false).enable(&space).unwrap();
    shared.release(shared.claim().unwrap()).unwrap();
    let current = Current(ScratchSpace::enable(&space).unwrap());
    let mutex = Mutex::new((0..SLOTS).collect::<Vec<u32>>());
    let array = ArrayQueue::new(SLOTS as usize);
    let seg = SegQueue::new();
    for i in 0..SLOTS {
        array.push(i).unwrap();
        seg.push(i);
    }
    let pools: [(&str, &dyn Pool); 6] = [
        ("scratch", &scratch),
        ("scratch_no_thread_cache", &shared),
        ("mutex_vec", &mutex),
        ("array_queue", &array),
        ("seg_queue", &seg),
        ("scratch_current", &current),
    ];
    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("claim_release_{threads}t"));
        g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(40);
        for (name, pool) in pools {
            if threads == 1 {
                g.bench_function(name, |b| b.iter(|| pool.claim_release()));
            } else {
                g.bench_function(name, |b| b.iter_custom(|iters| run(pool, threads, iters)));
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
