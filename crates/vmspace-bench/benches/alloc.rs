//! Large-block churn through `LargeAlloc` against the system allocator (glibc malloc), in this
//! process: the churn workload of `vmspace bench alloc` ([`vmspace_bench::alloc::workload::churn`]: 64
//! live blocks per thread of 64 KiB, 256 KiB, 1 MiB or 4 MiB, every page touched, random
//! replacement), one and two threads; ops/s, faults per op, and the resident set two seconds after
//! the load stops (the live blocks still held) against the live set. `ALLOC_SECS` sets the seconds
//! per run (default 2). `vmspace bench alloc` runs the same workload for more allocators, each in a
//! process of its own. `cargo bench -p vmspace-bench --bench alloc`.

use std::alloc::{GlobalAlloc, System};

use vmspace::alloc::LargeAlloc;
use vmspace_bench::alloc::workload::churn;

const MIB: f64 = (1u64 << 20) as f64;

fn main() {
    if std::env::args().skip(1).any(|a| a == "--list" || a == "--test") {
        return;
    }
    let secs = std::env::var("ALLOC_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(2.0f64);
    let large = LargeAlloc::new();
    println!(
        "alloc churn: 64 live blocks of 64 KiB/256 KiB/1 MiB/4 MiB per thread, every page touched, {secs} s per run"
    );
    println!(
        "{:<12} {:>8} {:>12} {:>10} {:>14} {:>14}",
        "allocator", "threads", "ops/s", "faults/op", "RSS +2s (MiB)", "live (MiB)"
    );
    for threads in [1, 2] {
        let runs: [(&str, &(dyn GlobalAlloc + Sync)); 2] = [("glibc", &System), ("LargeAlloc", &large)];
        for (name, a) in runs {
            let r = churn(a, threads, secs, 2.0);
            println!(
                "{name:<12} {threads:>8} {:>12.0} {:>10.2} {:>14.1} {:>14.1}",
                r.ops as f64 / r.secs,
                r.faults as f64 / r.ops.max(1) as f64,
                r.rss_after as f64 / MIB,
                r.live as f64 / MIB
            );
        }
    }
    println!("{:?}", large.stats());
}
