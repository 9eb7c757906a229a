//! A loop to profile the space rows under `perf record` or `valgrind --tool=callgrind`, and the user
//! and system time per operation (`getrusage`) of the space and of its bare-call twin in the same
//! kernel state.
//!
//! `cargo run --release -p vmspace-bench --example space_profile -- protect|map [space|bare|record|both] [SECS]`
//! (`both`, the default, times the space and the bare calls in turn, 5 rounds each).

use std::time::{Duration, Instant};

use vmspace_bench::layouts::{BareLayout, SpaceLayout, same_state};

/// (user, system) CPU time of this process so far.
fn cpu() -> (Duration, Duration) {
    // SAFETY: a zeroed `rusage` is a valid value, and `getrusage` only writes the struct we pass.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let d = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (d(u.ru_utime), d(u.ru_stime))
}

/// Runs `f` for `secs`; (ops, user ns per op, system ns per op, wall ns per op).
fn timed(secs: f64, mut f: impl FnMut()) -> (u64, f64, f64, f64) {
    let (u0, s0) = cpu();
    let t0 = Instant::now();
    let mut ops = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        for _ in 0..1000 {
            f();
        }
        ops += 1000;
    }
    let wall = t0.elapsed();
    let (u1, s1) = cpu();
    let per = |d: Duration| d.as_nanos() as f64 / ops as f64;
    (ops, per(u1 - u0), per(s1 - s0), per(wall))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let op = args.first().map_or("protect", String::as_str);
    let who = args.get(1).map_or("both", String::as_str);
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let (s, b) = (SpaceLayout::new(10_000).unwrap(), BareLayout::new(10_000).unwrap());
    println!("{} VMAs in each layout's range", same_state(&s, &b).unwrap());
    let (sp, bp, free) = (s.middle_page(), b.middle_page(), b.free_page());
    let mut bt = b.record();
    let mut run = |name: &str| -> (u64, f64, f64, f64) {
        match (op, name) {
            ("protect", "space") => timed(secs, || s.flip(sp)),
            ("protect", "bare") => timed(secs, || b.flip(bp)),
            ("protect", "record") => timed(secs, || b.flip_recorded(&mut bt, bp)),
            ("map", "space") => timed(secs, || s.map_unmap()),
            ("map", "bare") => timed(secs, || b.map_unmap(free)),
            ("map", "record") => timed(secs, || b.map_unmap_recorded(&mut bt, free)),
            _ => panic!("usage: space_profile protect|map [space|bare|record|both] [SECS]"),
        }
    };
    let names: Vec<&str> = if who == "both" { vec!["space", "bare", "record"] } else { vec![who] };
    let rounds = if who == "both" { 5 } else { 1 };
    let mut results: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        for (i, n) in names.iter().enumerate() {
            let (_, u, sy, w) = run(n);
            results[i].push((u, sy, w));
        }
    }
    for (n, mut r) in names.iter().zip(results) {
        let med = |r: &mut Vec<(f64, f64, f64)>, k: fn(&(f64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = r.iter().map(k).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{op} {n:<7} user {:>7.0} ns/op  system {:>7.0} ns/op  wall {:>7.0} ns/op (medians of {rounds})",
            med(&mut r, |x| x.0),
            med(&mut r, |x| x.1),
            med(&mut r, |x| x.2)
        );
    }
}
