//! `AddressSpace` against the bare system calls, with 100, 10,000 and 60,000 entries in the space:
//! protect one page in the middle of an entry and back (split + merge, two `mprotect` calls), and map +
//! unmap of one page. The alternatives run on a layout in the same kernel state as the space's
//! ([`vmspace_bench::layouts`]: the same reservation, the same VMAs around the target): the bare
//! calls, and the bare calls plus the simplest record of the change (the `BTreeMap` range map); map +
//! unmap is also measured against `mmap(NULL)` + `munmap`, which needs no reservation.
//! `cargo bench -p vmspace-bench --bench space`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use vmspace_bench::layouts::{BareLayout, SpaceLayout, fresh_map_unmap, same_state};
use vmspace_bench::timing::{SHORT_ITERS, SHORT_ROUNDS, interleaved};

/// Lets the process hold two populated spaces of 60,000 VMAs each (root only; otherwise the largest
/// size is skipped).
fn raise_map_count() -> bool {
    std::fs::write("/proc/sys/vm/max_map_count", "1048576").is_ok()
        || std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .is_ok_and(|v| v.trim().parse::<u64>().unwrap_or(0) > 200_000)
}

fn sizes(big: bool) -> impl Iterator<Item = u64> {
    [100u64, 10_000, 60_000].into_iter().filter(move |n| *n <= 10_000 || big)
}

/// Both layouts of `n` entries, checked to be in the same kernel state.
fn layouts(n: u64) -> (SpaceLayout, BareLayout) {
    let (s, b) = (SpaceLayout::new(n).unwrap(), BareLayout::new(n).unwrap());
    assert_eq!(s.space.regions().len() as u64, n);
    let vmas = same_state(&s, &b).unwrap();
    println!("{n} entries: {vmas} VMAs in each layout's range");
    (s, b)
}

/// Prints the interleaved comparisons, with the ratios the target is about.
fn print_interleaved(n: u64) {
    let (s, b) = layouts(n);
    let (sp, bp, free) = (s.middle_page(), b.middle_page(), b.free_page());
    let (mut bt, mut bt_map) = (b.record(), b.record());
    let m = interleaved(
        SHORT_ROUNDS,
        SHORT_ITERS,
        &mut [
            &mut || s.flip(sp),
            &mut || b.flip(bp),
            &mut || b.flip_recorded(&mut bt, bp),
            &mut || s.map_unmap(),
            &mut || b.map_unmap(free),
            &mut || fresh_map_unmap(),
            &mut || b.map_unmap_recorded(&mut bt_map, free),
        ],
    );
    same_state(&s, &b).unwrap();
    println!(
        "ratio protect split+merge/{n}: AddressSpace {:.0} ns, mprotect same state {:.0} ns ({:.2}x), mprotect + record {:.0} ns ({:.2}x; itself {:.2}x mprotect)",
        m[0],
        m[1],
        m[0] / m[1],
        m[2],
        m[0] / m[2],
        m[2] / m[1]
    );
    println!(
        "ratio map+unmap/{n}: AddressSpace {:.0} ns, mmap fixed+reserve same state {:.0} ns ({:.2}x), mmap+munmap {:.0} ns ({:.2}x), fixed+reserve + record {:.0} ns ({:.2}x; itself {:.2}x fixed+reserve)",
        m[3],
        m[4],
        m[3] / m[4],
        m[5],
        m[3] / m[5],
        m[6],
        m[3] / m[6],
        m[6] / m[4]
    );
}

fn bench(c: &mut Criterion) {
    let big = raise_map_count();
    for n in sizes(big) {
        print_interleaved(n);
    }

    let mut g = c.benchmark_group("protect split+merge");
    for n in sizes(big) {
        let (s, b) = layouts(n);
        let (sp, bp) = (s.middle_page(), b.middle_page());
        g.bench_with_input(BenchmarkId::new("AddressSpace", n), &n, |x, _| x.iter(|| s.flip(sp)));
        g.bench_with_input(BenchmarkId::new("mprotect", n), &n, |x, _| x.iter(|| b.flip(bp)));
        let mut bt = b.record();
        g.bench_with_input(BenchmarkId::new("mprotect + record", n), &n, |x, _| {
            x.iter(|| b.flip_recorded(&mut bt, bp))
        });
        assert_eq!(bt, b.record(), "split and merged back");
    }
    g.finish();

    let mut g = c.benchmark_group("map+unmap one page");
    for n in sizes(big) {
        let (s, b) = layouts(n);
        let free = b.free_page();
        g.bench_with_input(BenchmarkId::new("AddressSpace", n), &n, |x, _| x.iter(|| s.map_unmap()));
        g.bench_with_input(BenchmarkId::new("mmap fixed+reserve", n), &n, |x, _| {
            x.iter(|| b.map_unmap(free))
        });
        let mut bt = b.record();
        g.bench_with_input(BenchmarkId::new("mmap fixed+reserve + record", n), &n, |x, _| {
            x.iter(|| b.map_unmap_recorded(&mut bt, free))
        });
        g.bench_with_input(BenchmarkId::new("mmap+munmap", n), &n, |x, _| x.iter(fresh_map_unmap));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
