//! `AddressSpace` against the bare system calls, with 100, 10,000 and 60,000 entries in the space:
//! protect one page in the middle of an entry and back (split + merge, two `mprotect` calls), and map +
//! unmap of one page (`mmap` + `munmap`). `cargo bench -p vmspace --bench space`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rustix::mm::{self, MapFlags, MprotectFlags, ProtFlags};
use vmspace::{AddressSpace, MapSpec, Prot};

const PS: u64 = 4096;
/// Pages per entry: protecting the second page splits an entry into three.
const ENTRY: u64 = 4;

/// Lets the process hold two populated spaces of 60,000 VMAs each (root only; otherwise the largest
/// size is skipped).
fn raise_map_count() -> bool {
    std::fs::write("/proc/sys/vm/max_map_count", "1048576").is_ok()
        || std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .is_ok_and(|v| v.trim().parse::<u64>().unwrap_or(0) > 200_000)
}

/// A space with `n` entries of `ENTRY` pages, alternating read-write and read-only.
fn space(n: u64) -> (AddressSpace, u64) {
    let s = AddressSpace::reserve((n + 8) * ENTRY * PS).unwrap();
    let a = s.map(n * ENTRY * PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
    for i in (1..n).step_by(2) {
        s.protect(a + i * ENTRY * PS..a + (i + 1) * ENTRY * PS, Prot::READ).unwrap();
    }
    assert_eq!(s.regions().len() as u64, n);
    (s, a)
}

/// The same layout made with bare system calls.
fn raw(n: u64) -> u64 {
    // SAFETY: a fresh private anonymous mapping at an address the kernel picks.
    let a = unsafe {
        mm::mmap_anonymous(
            core::ptr::null_mut(),
            (n * ENTRY * PS) as usize,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }
    .unwrap() as u64;
    for i in (1..n).step_by(2) {
        // SAFETY: protection change inside the mapping made above.
        unsafe { mm::mprotect((a + i * ENTRY * PS) as *mut _, (ENTRY * PS) as usize, MprotectFlags::READ) }
            .unwrap();
    }
    a
}

fn bench(c: &mut Criterion) {
    let big = raise_map_count();
    let mut g = c.benchmark_group("protect split+merge");
    for n in [100u64, 10_000, 60_000] {
        if n > 10_000 && !big {
            continue;
        }
        let mid = (n / 2) & !1; // a read-write entry
        {
            let (s, a) = space(n);
            let p = a + mid * ENTRY * PS + PS;
            g.bench_with_input(BenchmarkId::new("AddressSpace", n), &n, |b, _| {
                b.iter(|| {
                    s.protect(black_box(p..p + PS), Prot::READ).unwrap();
                    s.protect(p..p + PS, Prot::RW).unwrap();
                })
            });
        }
        let a = raw(n);
        let p = (a + mid * ENTRY * PS + PS) as *mut core::ffi::c_void;
        g.bench_with_input(BenchmarkId::new("mprotect", n), &n, |b, _| {
            b.iter(|| {
                // SAFETY: protection changes inside the raw mapping.
                unsafe {
                    mm::mprotect(black_box(p), PS as usize, MprotectFlags::READ).unwrap();
                    mm::mprotect(p, PS as usize, MprotectFlags::READ | MprotectFlags::WRITE).unwrap();
                }
            })
        });
        // SAFETY: the raw mapping is no longer used.
        unsafe { mm::munmap(a as *mut _, (n * ENTRY * PS) as usize) }.unwrap();
    }
    g.finish();

    let mut g = c.benchmark_group("map+unmap one page");
    for n in [100u64, 10_000, 60_000] {
        if n > 10_000 && !big {
            continue;
        }
        {
            let (s, _) = space(n);
            g.bench_with_input(BenchmarkId::new("AddressSpace", n), &n, |b, _| {
                b.iter(|| {
                    let a = s.map(PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
                    s.unmap(black_box(a..a + PS)).unwrap();
                })
            });
        }
        let a = raw(n);
        g.bench_with_input(BenchmarkId::new("mmap+munmap", n), &n, |b, _| {
            b.iter(|| {
                // SAFETY: a fresh mapping, unmapped at once.
                unsafe {
                    let p = mm::mmap_anonymous(
                        core::ptr::null_mut(),
                        PS as usize,
                        ProtFlags::READ | ProtFlags::WRITE,
                        MapFlags::PRIVATE,
                    )
                    .unwrap();
                    mm::munmap(black_box(p), PS as usize).unwrap();
                }
            })
        });
        // SAFETY: the raw mapping is no longer used.
        unsafe { mm::munmap(a as *mut _, (n * ENTRY * PS) as usize) }.unwrap();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
