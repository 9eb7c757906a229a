//! The fault path's costs: lookups from 1 and 2 threads while a writer keeps changing the map,
//! AddressSpace's left-right read path against a `RwLock<VmMap>` whose writer holds the lock across
//! its system call (as a locked map must); and one stack growth (fault, handler, map change, retry)
//! against a plain page fault on memory already mapped. `cargo bench -p vmspace-bench --bench fault`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vmspace::{AddressSpace, MapSpec, Prot, VmMap};

const PS: u64 = 4096;
const ENTRIES: u64 = 1000;

fn rw() -> MapSpec<vmspace::Backing> {
    MapSpec::new(Prot::RW, Prot::ALL)
}

/// A space of ENTRIES alternating entries, and the same layout in a plain map behind a RwLock with a
/// real mapping for its writer's mprotect.
fn setups() -> (Arc<AddressSpace>, u64, Arc<RwLock<VmMap>>, u64) {
    let s = Arc::new(AddressSpace::reserve((ENTRIES + 64) * 2 * PS).unwrap());
    let a = s.map(ENTRIES * 2 * PS, rw()).unwrap();
    for i in (0..ENTRIES).step_by(2) {
        s.protect(a + i * 2 * PS..a + (i + 1) * 2 * PS, Prot::READ).unwrap();
    }
    let mut m: VmMap = VmMap::new(a, a + (ENTRIES + 64) * 2 * PS).unwrap();
    m.insert(a..a + ENTRIES * 2 * PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
    for i in (0..ENTRIES).step_by(2) {
        m.protect(a + i * 2 * PS..a + (i + 1) * 2 * PS, Prot::READ).unwrap();
    }
    let raw = AddressSpace::reserve(4 * PS).unwrap();
    let r = raw.map(2 * PS, rw()).unwrap();
    std::mem::forget(raw);
    (s, a, Arc::new(RwLock::new(m)), r)
}

fn lookups(c: &mut Criterion) {
    let (space, a, locked, raw) = setups();
    let stop = Arc::new(AtomicBool::new(false));
    let target = a + (ENTRIES / 2) * 2 * PS;
    // The writers: each keeps splitting and merging one page, the system call included.
    let w1 = {
        let (space, stop) = (Arc::clone(&space), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                space.protect(target..target + PS, Prot::NONE).unwrap();
                space.protect(target..target + PS, Prot::READ).unwrap();
            }
        })
    };
    let w2 = {
        let (locked, stop) = (Arc::clone(&locked), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for p in [Prot::NONE, Prot::READ] {
                    let mut m = locked.write().unwrap();
                    m.protect(target..target + PS, p).unwrap();
                    // SAFETY: the test's own memory; nothing holds a reference into it.
                    unsafe { vmspace::os::protect(raw, PS, p) }.unwrap();
                }
            }
        })
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        a + (seed % (ENTRIES * 2)) * PS
    };
    for readers in [1usize, 2] {
        let extra_stop = Arc::new(AtomicBool::new(false));
        let extra: Vec<_> = (1..readers)
            .map(|_| {
                let (space, locked, stop) =
                    (Arc::clone(&space), Arc::clone(&locked), Arc::clone(&extra_stop));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        black_box(space.lookup_entry(a));
                        black_box(locked.read().unwrap().lookup_entry(a).map(|e| e.prot()));
                    }
                })
            })
            .collect();
        let mut g = c.benchmark_group(format!("lookup while a writer mutates/{readers} readers"));
        g.bench_function("AddressSpace (left-right)", |b| {
            b.iter(|| black_box(space.lookup_entry(next()).map(|e| e.prot())))
        });
        g.bench_function("RwLock<VmMap>", |b| {
            b.iter(|| black_box(locked.read().unwrap().lookup_entry(next()).map(|e| e.prot())))
        });
        g.finish();
        extra_stop.store(true, Ordering::Relaxed);
        for t in extra {
            t.join().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    w1.join().unwrap();
    w2.join().unwrap();
}

fn growth(c: &mut Criterion) {
    let space = AddressSpace::reserve(1 << 30).unwrap();
    space.set_stack_growth(PS).unwrap();
    let mut g = c.benchmark_group("one page: stack growth vs page fault");
    g.bench_function("stack growth (SIGSEGV + handler + map + retry + fault)", |b| {
        b.iter_custom(|iters| {
            let stack = space.stack(iters * PS + PS, PS, rw()).unwrap();
            let t = Instant::now();
            let mut p = stack.end - PS;
            for _ in 0..iters {
                p -= PS;
                // SAFETY: a page of this stack's reservation: the handler grows the stack into it.
                unsafe { std::ptr::write_volatile(p as *mut u8, 1) };
            }
            let d = t.elapsed();
            space.unmap(stack).unwrap();
            d
        })
    });
    g.bench_function("page fault on mapped memory", |b| {
        b.iter_custom(|iters| {
            let a = space.map(iters * PS, rw()).unwrap();
            let t = Instant::now();
            for i in 0..iters {
                // SAFETY: a page of a fresh read-write mapping of this space.
                unsafe { std::ptr::write_volatile((a + i * PS) as *mut u8, 1) };
            }
            let d = t.elapsed();
            space.unmap(a..a + iters * PS).unwrap();
            d
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = lookups, growth
}
criterion_main!(benches);
