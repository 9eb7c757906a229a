//! Large-block churn through `LargeAlloc` against the system allocator (glibc malloc): 64 live blocks of
//! 64 KiB, 256 KiB, 1 MiB or 4 MiB per thread (issue 8's workload), every page touched, random
//! replacement; ops/s, minor faults per op, and
//! resident memory two seconds after the load stops. `ALLOC_OPS` sets the operations per thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::{Duration, Instant};

use vmspace::alloc::LargeAlloc;
use vmspace::os;

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * os::page_size()
}

fn churn<A: GlobalAlloc + Sync>(a: &A, threads: u64, ops: u64) -> (f64, f64) {
    let (f0, _) = os::rusage();
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for t in 0..threads {
            sc.spawn(move || {
                let mut x = 0x1234_5678u64 + t;
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let mut size = || [64 << 10, 256 << 10, 1 << 20, 4 << 20][(next() % 4) as usize];
                let touch = |p: *mut u8, n: usize| {
                    for o in (0..n).step_by(4096) {
                        // SAFETY: `p` has `n` bytes.
                        unsafe { p.add(o).write_volatile(1) };
                    }
                };
                let mut live: Vec<(*mut u8, usize)> = (0..64)
                    .map(|_| {
                        let n = size();
                        // SAFETY: non-zero layout.
                        let p = unsafe { a.alloc(Layout::from_size_align(n, 8).unwrap()) };
                        touch(p, n);
                        (p, n)
                    })
                    .collect();
                for i in 0..ops {
                    let k = ((i * 2_654_435_761) % 64) as usize;
                    let (p, n) = live[k];
                    // SAFETY: allocated by `a` with this layout.
                    unsafe { a.dealloc(p, Layout::from_size_align(n, 8).unwrap()) };
                    let n = size();
                    // SAFETY: non-zero layout.
                    let p = unsafe { a.alloc(Layout::from_size_align(n, 8).unwrap()) };
                    touch(p, n);
                    live[k] = (p, n);
                }
                for (p, n) in live {
                    // SAFETY: as above.
                    unsafe { a.dealloc(p, Layout::from_size_align(n, 8).unwrap()) };
                }
            });
        }
    });
    let el = t0.elapsed().as_secs_f64();
    let (f1, _) = os::rusage();
    let n = (threads * ops) as f64;
    (n / el, (f1 - f0) as f64 / n)
}

fn main() {
    if std::env::args().skip(1).any(|a| a == "--list" || a == "--test") {
        return;
    }
    let ops = std::env::var("ALLOC_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000u64);
    let large = LargeAlloc::new();
    println!(
        "alloc churn: 64 live blocks of 64 KiB/256 KiB/1 MiB/4 MiB per thread, every page touched, {ops} ops/thread"
    );
    println!(
        "{:<12} {:>8} {:>12} {:>10} {:>16}",
        "allocator", "threads", "ops/s", "faults/op", "RSS +2s (MiB)"
    );
    for threads in [1, 2] {
        let base = rss();
        let (o, f) = churn(&System, threads, ops);
        std::thread::sleep(Duration::from_secs(2));
        let r = rss().saturating_sub(base) as f64 / (1 << 20) as f64;
        println!("{:<12} {threads:>8} {o:>12.0} {f:>10.2} {r:>16.1}", "glibc");
        let base = rss();
        let (o, f) = churn(&large, threads, ops);
        std::thread::sleep(Duration::from_secs(2));
        let r = rss().saturating_sub(base) as f64 / (1 << 20) as f64;
        println!("{:<12} {threads:>8} {o:>12.0} {f:>10.2} {r:>16.1}", "LargeAlloc");
    }
    println!("{:?}", large.stats());
}
