//! `AddressSpace` against the bare system calls, with 100, 10,000 and 60,000 entries in the space:
//! protect one page in the middle of an entry and back (split + merge, two `mprotect` calls), and map +
//! unmap of one page, against `mmap` + `munmap` and against the same two calls an owner of a
//! reservation makes (`mmap(MAP_FIXED)` into it, then `mmap(PROT_NONE, MAP_FIXED | MAP_NORESERVE)` to
//! give the page back), which is what `AddressSpace` does. Protect is also measured with the simplest
//! user-space record of the change, the benches' `BTreeMap` range map, kept next to the bare calls.
//! `cargo bench -p vmspace --bench space`.

#[path = "../../vmspace-core/benches/shared/btree_range.rs"]
mod btree_range;
#[path = "../../vmspace-core/benches/shared/interleave.rs"]
mod interleave;
use btree_range::bt_protect;
use interleave::interleaved;
use std::collections::BTreeMap;
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
    alternate(a, n);
    a
}

/// The same layout inside a reservation with room above it, as `space` makes it, with bare system
/// calls; returns the reservation's start and the first free page after the entries.
fn raw_reserved(n: u64) -> (u64, u64) {
    let total = (n + 8) * ENTRY * PS;
    // SAFETY: a fresh PROT_NONE reservation at an address the kernel picks.
    let base = unsafe {
        mm::mmap_anonymous(
            core::ptr::null_mut(),
            total as usize,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    }
    .unwrap() as u64;
    // SAFETY: replaces the start of the reservation made above.
    unsafe {
        mm::mmap_anonymous(
            base as *mut _,
            (n * ENTRY * PS) as usize,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::FIXED,
        )
    }
    .unwrap();
    alternate(base, n);
    (base, base + n * ENTRY * PS)
}

/// Makes every odd entry of the `n` at `a` read-only.
fn alternate(a: u64, n: u64) {
    for i in (1..n).step_by(2) {
        // SAFETY: protection change inside the mapping made above.
        unsafe { mm::mprotect((a + i * ENTRY * PS) as *mut _, (ENTRY * PS) as usize, MprotectFlags::READ) }
            .unwrap();
    }
}

/// Protects the page at `p` read-only and back through the space: a split into three, then a merge.
fn space_flip(s: &AddressSpace, p: u64) {
    s.protect(black_box(p..p + PS), Prot::READ).unwrap();
    s.protect(p..p + PS, Prot::RW).unwrap();
}

/// The same two protection changes with bare `mprotect` calls.
fn raw_flip(p: u64) {
    let p = p as *mut core::ffi::c_void;
    // SAFETY: protection changes inside a mapping the caller made.
    unsafe {
        mm::mprotect(black_box(p), PS as usize, MprotectFlags::READ).unwrap();
        mm::mprotect(p, PS as usize, MprotectFlags::READ | MprotectFlags::WRITE).unwrap();
    }
}

/// The bare `mprotect` pair with the bookkeeping of the straightforward `BTreeMap` range map (one copy,
/// no validation, no lock): what the simplest user-space record of the same change costs.
fn raw_flip_tracked(bt: &mut BTreeMap<u64, (u64, u8)>, p: u64) {
    let ptr = p as *mut core::ffi::c_void;
    bt_protect(bt, black_box(p), p + PS, Prot::READ.bits());
    // SAFETY: protection changes inside a mapping the caller made.
    unsafe { mm::mprotect(black_box(ptr), PS as usize, MprotectFlags::READ) }.unwrap();
    bt_protect(bt, p, p + PS, Prot::RW.bits());
    // SAFETY: as above.
    unsafe { mm::mprotect(ptr, PS as usize, MprotectFlags::READ | MprotectFlags::WRITE) }.unwrap();
}

/// The `BTreeMap` record of the layout `raw(n)` makes at `a`.
fn tracked(a: u64, n: u64) -> BTreeMap<u64, (u64, u8)> {
    let prot = |i: u64| if i % 2 == 1 { Prot::READ } else { Prot::RW };
    (0..n).map(|i| (a + i * ENTRY * PS, (a + (i + 1) * ENTRY * PS, prot(i).bits()))).collect()
}

/// Maps one page anywhere in the space and unmaps it.
fn space_map_unmap(s: &AddressSpace) {
    let a = s.map(PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
    s.unmap(black_box(a..a + PS)).unwrap();
}

/// `mmap` of one page where the kernel likes, then `munmap`.
fn raw_map_unmap() {
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
}

/// [`fixed_map_unmap`] recording the page in the `BTreeMap` range map (at a known address: no search).
fn fixed_map_unmap_tracked(bt: &mut BTreeMap<u64, (u64, u8)>, free: u64) {
    bt.insert(black_box(free), (free + PS, Prot::RW.bits()));
    fixed_map_unmap(free);
    bt.remove(&free);
}

/// What an owner of a reservation does by hand: map the page `free` of it, then give it back.
fn fixed_map_unmap(free: u64) {
    // SAFETY: both calls replace the page `free`, inside a reservation the caller made.
    unsafe {
        mm::mmap_anonymous(
            black_box(free) as *mut _,
            PS as usize,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::FIXED,
        )
        .unwrap();
        mm::mmap_anonymous(
            black_box(free) as *mut _,
            PS as usize,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
        )
        .unwrap();
    }
}

fn sizes(big: bool) -> impl Iterator<Item = u64> {
    [100u64, 10_000, 60_000].into_iter().filter(move |n| *n <= 10_000 || big)
}

/// A read-write entry's second page, in the middle of the layout at `a`.
fn middle_page(a: u64, n: u64) -> u64 {
    a + ((n / 2) & !1) * ENTRY * PS + PS
}

/// Prints the interleaved comparisons, with the ratios the target is about.
fn print_interleaved(n: u64) {
    let (s, a) = space(n);
    let r = raw(n);
    let (base, free) = raw_reserved(n);
    let (sp, rp) = (middle_page(a, n), middle_page(r, n));
    let mut bt = tracked(r, n);
    let mut bt_top = tracked(base, n);
    let m = interleaved(
        15,
        2_000,
        &mut [
            &mut || space_flip(&s, sp),
            &mut || raw_flip(rp),
            &mut || raw_flip_tracked(&mut bt, rp),
            &mut || space_map_unmap(&s),
            &mut || fixed_map_unmap(free),
            &mut || raw_map_unmap(),
            &mut || fixed_map_unmap_tracked(&mut bt_top, free),
        ],
    );
    println!(
        "ratio protect split+merge/{n}: AddressSpace {:.0} ns, mprotect {:.0} ns ({:.2}x), mprotect + BTreeMap {:.0} ns ({:.2}x; itself {:.2}x mprotect)",
        m[0],
        m[1],
        m[0] / m[1],
        m[2],
        m[0] / m[2],
        m[2] / m[1]
    );
    println!(
        "ratio map+unmap/{n}: AddressSpace {:.0} ns, mmap fixed+reserve {:.0} ns ({:.2}x), mmap+munmap {:.0} ns ({:.2}x), fixed+reserve + BTreeMap {:.0} ns ({:.2}x; itself {:.2}x fixed+reserve)",
        m[3],
        m[4],
        m[3] / m[4],
        m[5],
        m[3] / m[5],
        m[6],
        m[3] / m[6],
        m[6] / m[4]
    );
    // SAFETY: the raw mappings are no longer used.
    unsafe {
        mm::munmap(r as *mut _, (n * ENTRY * PS) as usize).unwrap();
        mm::munmap(base as *mut _, ((n + 8) * ENTRY * PS) as usize).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let big = raise_map_count();
    for n in sizes(big) {
        print_interleaved(n);
    }

    let mut g = c.benchmark_group("protect split+merge");
    for n in sizes(big) {
        {
            let (s, a) = space(n);
            let p = middle_page(a, n);
            g.bench_with_input(BenchmarkId::new("AddressSpace", n), &n, |b, _| b.iter(|| space_flip(&s, p)));
        }
        let a = raw(n);
        let p = middle_page(a, n);
        g.bench_with_input(BenchmarkId::new("mprotect", n), &n, |b, _| b.iter(|| raw_flip(p)));
        let mut bt = tracked(a, n);
        g.bench_with_input(BenchmarkId::new("mprotect + BTreeMap", n), &n, |b, _| {
            b.iter(|| raw_flip_tracked(&mut bt, p))
        });
        assert_eq!(bt.len() as u64, n, "split and merged back");
        // SAFETY: the raw mapping is no longer used.
        unsafe { mm::munmap(a as *mut _, (n * ENTRY * PS) as usize) }.unwrap();
    }
    g.finish();

    let mut g = c.benchmark_group("map+unmap one page");
    for n in sizes(big) {
        {
            let (s, _) = space(n);
            g.bench_with_input(BenchmarkId::new("AddressSpace", n), &n, |b, _| {
                b.iter(|| space_map_unmap(&s))
            });
        }
        let a = raw(n);
        g.bench_with_input(BenchmarkId::new("mmap+munmap", n), &n, |b, _| b.iter(raw_map_unmap));
        // SAFETY: the raw mapping is no longer used.
        unsafe { mm::munmap(a as *mut _, (n * ENTRY * PS) as usize) }.unwrap();
        let (base, free) = raw_reserved(n);
        g.bench_with_input(BenchmarkId::new("mmap fixed+reserve", n), &n, |b, _| {
            b.iter(|| fixed_map_unmap(free))
        });
        // SAFETY: the reservation is no longer used.
        unsafe { mm::munmap(base as *mut _, ((n + 8) * ENTRY * PS) as usize) }.unwrap();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
