//! The random differential run: 20,000 calls with random and invalid arguments, each compared with the
//! live kernel (result and the whole maps list), in fresh children of 200 calls each.

mod support_kernel;

use support_kernel::{fuzz, memfds};

#[test]
fn twenty_thousand_random_calls_equal_the_kernel() {
    let seed = std::env::var("VMSPACE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let ops = std::env::var("VMSPACE_FUZZ_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let files = memfds(16);
    let report = fuzz::run(&files, seed, ops, |_| {});
    println!("seed {seed:#x}: {} calls, {} divergences", report.ops, report.divergences.len());
    assert!(report.ops >= ops);
    assert!(report.divergences.is_empty(), "{}", report.divergences.join("\n"));
}
