//! Interleaved timing, shared by the map bench and `vmspace`'s space bench (included with `#[path]`).

/// Median ns per call of each closure over `rounds` rounds of `iters` calls, the closures taking turns
/// within every round: on a noisy 2-core machine the ratios of interleaved medians are steadier than
/// criterion's back-to-back groups.
pub fn interleaved(rounds: usize, iters: u64, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        for (f, out) in fs.iter_mut().zip(samples.iter_mut()) {
            let t = std::time::Instant::now();
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
