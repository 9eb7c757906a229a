//! Reclaim ring benchmarks: the `try_enter` + `try_cancel` pair (no system call), reclaim throughput
//! with `process_madvise` batching against one `madvise` per region, and the large-block churn workload
//! (64 KiB–4 MiB blocks, 64 live, every page touched, random replacement) with a ring-backed cache
//! against munmap-per-free and keep-everything. The churn prints ops/s, minor faults per op and
//! resident memory after the load stops (medians of 3 runs) and their ratios.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use vmspace::reclaim::{
    Action, FreeAdvice, Policy, ReclaimId, ReclaimRing, Reclaimer, ReclaimerConfig, WorkingSet,
};
use vmspace::{Prot, os};

fn quiet_reclaimer() -> Reclaimer {
    Reclaimer::spawn(ReclaimerConfig {
        tick: Duration::from_secs(3600),
        pressure: None,
        ..Default::default()
    })
    .unwrap()
}

fn map(len: u64) -> u64 {
    let a = os::reserve(len).unwrap();
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::map_fixed(a, len, Prot::RW, os::Fixed::Anonymous) }.unwrap();
    a
}

fn touch(addr: u64, len: u64) {
    let ps = os::page_size();
    let mut p = addr;
    while p < addr + len {
        // SAFETY: the benchmark only touches memory it mapped read-write and owns.
        unsafe { std::ptr::write_volatile(p as *mut u8, 1) };
        p += ps;
    }
}

fn pair(c: &mut Criterion) {
    let r = quiet_reclaimer();
    let mut ring = ReclaimRing::builder().reclaimer(&r).build().unwrap();
    let a = map(1 << 16);
    // Cancelled entries leave holes that only the reclaimer passes: a full ring of holes is flushed
    // (no system call: holes are skipped), amortized over the capacity.
    c.bench_function("reclaim/try_enter+try_cancel", |b| {
        b.iter(|| match ring.try_enter(black_box(a), 1 << 16, Action::Deallocate, None).unwrap().id {
            Some(id) => {
                let _ = black_box(ring.try_cancel(id, a, 1 << 16, Action::Deallocate).unwrap());
            }
            None => {
                let _ = ring.flush(u64::MAX).unwrap();
            }
        })
    });
    // The reuse path: cancel, then re-enter into the same slot.
    let mut id = ring.try_enter(a, 1 << 16, Action::Deallocate, None).unwrap().id.unwrap();
    c.bench_function("reclaim/try_cancel+try_enter(reuse)", |b| {
        b.iter(|| {
            let _ = ring.try_cancel(id, a, 1 << 16, Action::Deallocate).unwrap();
            id = ring.try_enter(black_box(a), 1 << 16, Action::Deallocate, Some(id)).unwrap().id.unwrap();
        })
    });
    let _ = ring.try_cancel(id, a, 1 << 16, Action::Deallocate).unwrap();
    drop(ring);
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, 1 << 16) }.unwrap();
}

fn throughput(c: &mut Criterion) {
    const N: u64 = 1024;
    let ps = os::page_size();
    let r = quiet_reclaimer();
    let a = map(2 * N * ps);
    let mut g = c.benchmark_group("reclaim/drain-1024-regions");
    g.throughput(Throughput::Elements(N));
    g.sample_size(30);
    for (name, batching) in [("process_madvise-batched", true), ("madvise-per-region", false)] {
        let mut ring = ReclaimRing::builder()
            .reclaimer(&r)
            .capacity(N as u32, N as u32)
            .batching(batching)
            .free_advice(FreeAdvice::DontNeed)
            .build()
            .unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    for i in 0..N {
                        touch(a + 2 * i * ps, ps);
                        let _ = ring.try_enter(a + 2 * i * ps, ps, Action::Free, None).unwrap();
                    }
                    let s = Instant::now();
                    let _ = black_box(ring.drain().unwrap());
                    t += s.elapsed();
                }
                t
            })
        });
    }
    g.finish();
    eprintln!("process_madvise batching on this kernel: {:?}", os::madvise_batching());
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, 2 * N * ps) }.unwrap();
}

criterion_group!(benches, pair, throughput);

/// Resident bytes of the process now (`/proc/self/statm`).
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * os::page_size()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    Munmap,
    Keep,
    Ring,
}

/// A freed block kept by the cache: (address, length, ring id when entered).
type Cached = (u64, u64, Option<ReclaimId>);

struct Allocator {
    strategy: Strategy,
    cache: Vec<Cached>,
    ring: Option<ReclaimRing>,
}

impl Allocator {
    fn alloc(&mut self, len: u64) -> u64 {
        if self.strategy != Strategy::Munmap {
            // Best fit among cached blocks of exactly the size class (page-rounded length).
            while let Some(i) = self.cache.iter().position(|c| c.1 == len) {
                let (a, l, id) = self.cache.swap_remove(i);
                match (id, self.ring.as_mut()) {
                    (Some(id), Some(ring)) => {
                        let c = ring.try_cancel(id, a, l, Action::Deallocate).unwrap();
                        if c.update_accounting {
                            let _ = ring.update_kernel_accounting();
                        }
                        if c.state.is_reusable() {
                            return a;
                        }
                    }
                    _ => return a,
                }
            }
        }
        map(len)
    }

    fn free(&mut self, a: u64, len: u64) {
        match self.strategy {
            // SAFETY: the test's own memory; nothing holds a reference into it.
            Strategy::Munmap => unsafe { os::unmap(a, len) }.unwrap(),
            Strategy::Keep => self.cache.push((a, len, None)),
            Strategy::Ring => {
                let ring = self.ring.as_mut().unwrap();
                let mut e = ring.try_enter(a, len, Action::Deallocate, None).unwrap();
                if e.id.is_none() {
                    // Full: flush the whole capacity and retry (libmalloc's loop), then drop stale cache slots.
                    let _ = ring.flush(ring.capacity() as u64).unwrap();
                    e = ring.try_enter(a, len, Action::Deallocate, None).unwrap();
                }
                if e.update_accounting {
                    let _ = ring.update_kernel_accounting();
                }
                match e.id {
                    Some(id) => self.cache.push((a, len, Some(id))),
                    // SAFETY: the test's own memory; nothing holds a reference into it.
                    None => unsafe { os::unmap(a, len) }.unwrap(),
                }
                // Entries the reclaimer already took are useless in the cache.
                if self.cache.len() > 2 * ring.capacity() as usize {
                    self.cache.retain(|c| {
                        c.2.is_some_and(|id| {
                            ring.query_state(id, Action::Deallocate).is_ok_and(|s| s.is_reusable())
                        })
                    });
                }
            }
        }
    }
}

struct ChurnResult {
    ops_per_s: f64,
    faults_per_op: f64,
    rss_after: u64,
}

fn churn_once(strategy: Strategy, ops: u64, seed: u64, reclaimer: &Reclaimer) -> ChurnResult {
    let ps = os::page_size();
    let ring = (strategy == Strategy::Ring).then(|| {
        let ws = WorkingSet { period: Duration::from_millis(100), abandon_periods: 512, min_trim: Some(0) };
        ReclaimRing::builder()
            .reclaimer(reclaimer)
            .capacity(ReclaimRing::round_capacity(512), ReclaimRing::round_capacity(512))
            .policy(Policy { working_set: Some(ws), ..Policy::default() })
            .build()
            .unwrap()
    });
    let mut al = Allocator { strategy, cache: Vec::new(), ring };
    let mut rng = Rng(seed);
    let size = |rng: &mut Rng| ((64 << 10) + rng.next() % ((4 << 20) - (64 << 10))).next_multiple_of(ps);
    // Size classes, so blocks can be reused: round to a power-of-two-ish class (16 per octave is what
    // real large-block caches do; 4 keeps this short).
    let class = |len: u64| {
        let top = 63 - len.leading_zeros() as u64;
        let step = (1u64 << top) / 4;
        len.next_multiple_of(step.max(ps))
    };
    let base_rss = rss();
    let mut live: Vec<(u64, u64)> = (0..64)
        .map(|_| {
            let l = class(size(&mut rng));
            let a = al.alloc(l);
            touch(a, l);
            (a, l)
        })
        .collect();
    let (f0, _) = os::rusage();
    let t0 = Instant::now();
    for _ in 0..ops {
        let i = (rng.next() % 64) as usize;
        let (a, l) = live[i];
        al.free(a, l);
        let l = class(size(&mut rng));
        let a = al.alloc(l);
        touch(a, l);
        live[i] = (a, l);
    }
    let el = t0.elapsed();
    let (f1, _) = os::rusage();
    for (a, l) in live {
        al.free(a, l);
    }
    // The load has stopped: give the policy idle periods to act.
    std::thread::sleep(Duration::from_millis(1500));
    let rss_after = rss().saturating_sub(base_rss);
    // Clean up.
    if let Some(mut ring) = al.ring.take() {
        let _ = ring.drain();
    }
    for (a, l, id) in al.cache.drain(..) {
        if id.is_none() {
            // SAFETY: the test's own memory; nothing holds a reference into it.
            unsafe { os::unmap(a, l) }.unwrap();
        }
    }
    ChurnResult {
        ops_per_s: ops as f64 / el.as_secs_f64(),
        faults_per_op: (f1 - f0) as f64 / ops as f64,
        rss_after,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn churn() {
    let reclaimer =
        Reclaimer::spawn(ReclaimerConfig { tick: Duration::from_millis(20), ..Default::default() }).unwrap();
    let ops = std::env::var("CHURN_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000u64);
    println!(
        "\nchurn: 64 live blocks of 64 KiB-4 MiB, every page touched, {ops} random replacements, median of 3"
    );
    println!("{:<10} {:>12} {:>14} {:>16}", "strategy", "ops/s", "faults/op", "RSS after (MiB)");
    let mut rows = Vec::new();
    for (name, s) in [("munmap", Strategy::Munmap), ("keep", Strategy::Keep), ("ring", Strategy::Ring)] {
        let runs: Vec<ChurnResult> =
            (0..3).map(|k| churn_once(s, ops, 0x1234_5678 + k, &reclaimer)).collect();
        let o = median(runs.iter().map(|r| r.ops_per_s).collect());
        let f = median(runs.iter().map(|r| r.faults_per_op).collect());
        let m = median(runs.iter().map(|r| r.rss_after as f64).collect()) / (1 << 20) as f64;
        println!("{name:<10} {o:>12.0} {f:>14.1} {m:>16.1}");
        rows.push((o, f, m));
    }
    let (mu, ke, ri) = (rows[0], rows[1], rows[2]);
    println!(
        "ratios: ring/munmap ops {:.1}x, faults {:.3}x; ring/keep ops {:.2}x, RSS after {:.3}x (keep {:.1} MiB)",
        ri.0 / mu.0,
        ri.1 / mu.1.max(1e-9),
        ri.0 / ke.0,
        ri.2 / ke.2.max(1e-9),
        ke.2
    );
}

fn main() {
    // `cargo bench --bench reclaim -- churn` runs only the churn; `RECLAIM_SKIP_CHURN=1` only criterion.
    let only_churn = std::env::args().skip(1).any(|a| a == "churn");
    if std::env::var_os("RECLAIM_SKIP_CHURN").is_none() {
        churn();
    }
    if !only_churn {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
