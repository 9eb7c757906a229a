//! Timing: medians of repeated samples, and interleaved medians (the alternatives take turns within
//! every round, so a slow stretch of this noisy 2-core machine falls on all of them alike).

use std::time::Instant;

/// Median ns per call of `f` over 7 samples of `iters` calls.
pub fn median_ns(iters: u64, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[3]
}

/// Rounds for [`interleaved`] when the closures are system-call-bound and the machine is shared:
/// many short rounds ([`SHORT_ITERS`] calls, about half a millisecond, less than a time slice), so a
/// round another process preempts is one of many, and the median drops it.
pub const SHORT_ROUNDS: usize = 41;
/// Calls per round with [`SHORT_ROUNDS`].
pub const SHORT_ITERS: u64 = 250;

/// Median ns per call of each closure over `rounds` rounds of `iters` calls, the closures taking turns
/// within every round: on a noisy 2-core machine the ratios of interleaved medians are steadier than
/// criterion's back-to-back groups.
pub fn interleaved(rounds: usize, iters: u64, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        for (f, out) in fs.iter_mut().zip(samples.iter_mut()) {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            out.push(t.elapsed().as_nanos() as f64 / iters as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// The next number of a xorshift64 stream (`seed` must not be zero): the benches' random input,
/// the same on every run.
pub fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_gives_one_median_per_closure() {
        let (mut a, mut b) = (0u64, 0u64);
        let m = interleaved(3, 10, &mut [&mut || a += 1, &mut || b += 2]);
        assert_eq!((m.len(), a, b), (2, 30, 60));
        assert!(m.iter().all(|v| v.is_finite() && *v >= 0.0));
        let mut s = 1;
        assert_ne!(xorshift(&mut s), xorshift(&mut s));
    }
}
