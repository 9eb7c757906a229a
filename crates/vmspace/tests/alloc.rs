//! `vmspace::alloc::LargeAlloc`: a randomized multi-threaded workload that checks every block's
//! contents, the reclaimer racing reuse under an aggressive policy, failure paths, and misuse
//! detection through the Allocator-style API.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::Duration;

use vmspace::alloc::{AllocError, LargeAlloc};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Log-uniform in `[lo, hi)`.
    fn size(&mut self, lo: u64, hi: u64) -> usize {
        let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
        let f = (self.next() % 1_000_000) as f64 / 1e6;
        ((a + (b - a) * f).exp() as usize).clamp(lo as usize, hi as usize - 1)
    }
}

/// Offsets the pattern covers in a block of `n` bytes (n ≥ 16): every 4 KiB and the last word, disjoint.
fn offsets(n: usize) -> impl Iterator<Item = usize> {
    (0..n - 15).step_by(4096).chain(std::iter::once(n - 8))
}

fn fill(p: *mut u8, n: usize, tag: u64) {
    for o in offsets(n) {
        // SAFETY: `o + 8 <= n` and the block is ours; unaligned write allowed.
        unsafe { (p.add(o) as *mut u64).write_unaligned(tag ^ o as u64) };
    }
}

/// Check the pattern of a block of `n` written with `tag`, limited to the first `upto` bytes.
fn check(p: *const u8, n: usize, tag: u64, upto: usize) {
    for o in offsets(n).filter(|o| o + 8 <= upto) {
        // SAFETY: as in `fill`.
        let v = unsafe { (p.add(o) as *const u64).read_unaligned() };
        assert_eq!(v, tag ^ o as u64, "block {p:p} (len {n}) corrupted at {o}");
    }
}

/// Live ranges across all threads: a block handed out twice would overlap.
struct Registry(Mutex<BTreeMap<usize, usize>>);
impl Registry {
    fn add(&self, p: *mut u8, n: usize) {
        let a = p as usize;
        let mut m = self.0.lock().unwrap();
        if let Some((&s, &l)) = m.range(..a + n).next_back() {
            assert!(s + l <= a, "block {a:#x}+{n} overlaps live {s:#x}+{l}");
        }
        m.insert(a, n);
    }
    fn remove(&self, p: *mut u8) {
        assert!(self.0.lock().unwrap().remove(&(p as usize)).is_some());
    }
}

fn workload(al: &LargeAlloc, threads: u64, ops: u64, lo: u64, hi: u64, seed: u64) {
    let reg = Registry(Mutex::new(BTreeMap::new()));
    std::thread::scope(|sc| {
        for t in 0..threads {
            let (al, reg) = (al, &reg);
            sc.spawn(move || {
                let mut rng = Rng(seed + t * 0x9e37_79b9);
                let mut live: Vec<(*mut u8, usize, u64)> = Vec::new();
                for i in 0..ops {
                    let tag = (t << 48) | i;
                    let r = rng.next() % 10;
                    if live.len() < 24 && (r < 5 || live.is_empty()) {
                        let n = rng.size(lo, hi);
                        let layout = Layout::from_size_align(n, 8).unwrap();
                        // SAFETY: non-zero size.
                        let p = unsafe { al.alloc(layout) };
                        assert!(!p.is_null());
                        reg.add(p, n);
                        fill(p, n, tag);
                        live.push((p, n, tag));
                    } else if r < 7 {
                        let k = (rng.next() as usize) % live.len();
                        let (p, n, old) = live[k];
                        let m = rng.size(lo, hi);
                        check(p, n, old, n);
                        reg.remove(p);
                        // SAFETY: `p` was allocated by `al` with this layout.
                        let q = unsafe { al.realloc(p, Layout::from_size_align(n, 8).unwrap(), m) };
                        assert!(!q.is_null());
                        reg.add(q, m);
                        // No data lost across realloc: the common prefix kept its pattern.
                        check(q, n, old, m.min(n));
                        fill(q, m, tag);
                        live[k] = (q, m, tag);
                    } else {
                        let k = (rng.next() as usize) % live.len();
                        let (p, n, tag) = live.swap_remove(k);
                        check(p, n, tag, n);
                        reg.remove(p);
                        // SAFETY: allocated by `al` with this layout.
                        unsafe { al.dealloc(p, Layout::from_size_align(n, 8).unwrap()) };
                    }
                }
                for (p, n, tag) in live {
                    check(p, n, tag, n);
                    reg.remove(p);
                    // SAFETY: as above.
                    unsafe { al.dealloc(p, Layout::from_size_align(n, 8).unwrap()) };
                }
            });
        }
    });
}

#[test]
fn randomized_multithreaded_blocks_keep_their_contents() {
    let al = LargeAlloc::builder().reserve(16 << 30).max_age(Duration::from_millis(50)).build();
    workload(&al, 4, 3000, 1 << 10, 4 << 20, 1);
    let s = al.stats();
    assert_eq!(s.live, 0, "{s:?}");
    assert!(s.mapped > 0 && s.reused > 0, "{s:?}");
    assert!(s.realloc_in_place > 0, "{s:?}");
}

#[test]
fn reclaimer_racing_reuse_never_corrupts() {
    let al = LargeAlloc::builder()
        .threshold(16 << 10)
        .reserve(8 << 30)
        .max_age(Duration::ZERO)
        .budget(0)
        .tick(Duration::from_millis(1))
        .ring_capacity(64)
        .build();
    workload(&al, 4, 3000, 16 << 10, 1 << 20, 7);
    let s = al.stats();
    assert_eq!(s.live, 0, "{s:?}");
    assert!(s.reclaimed_bytes > 0, "{s:?}");
    assert!(s.reused + s.lost > 0, "{s:?}");
}

#[test]
fn small_requests_go_to_the_wrapped_allocator() {
    let al = LargeAlloc::builder().threshold(64 << 10).build();
    let l = Layout::from_size_align(1000, 8).unwrap();
    let p = al.allocate(l).unwrap();
    assert!(!al.owns(p.as_ptr() as *const u8));
    let big = Layout::from_size_align(64 << 10, 8).unwrap();
    let q = al.allocate(big).unwrap();
    assert!(al.owns(q.as_ptr() as *const u8));
    // SAFETY: both from `al` with these layouts.
    unsafe {
        al.deallocate(p.cast(), l).unwrap();
        al.deallocate(q.cast(), big).unwrap();
    }
}

#[test]
fn a_tiny_space_fails_cleanly() {
    let al = LargeAlloc::builder().reserve(1 << 20).build();
    let l = Layout::from_size_align(4 << 20, 8).unwrap();
    assert_eq!(al.allocate(l).unwrap_err(), AllocError::OutOfMemory);
    // SAFETY: non-zero layout.
    assert!(unsafe { al.alloc(l) }.is_null());
    // The space fills up, then fails, then works again after a free.
    let m = Layout::from_size_align(512 << 10, 8).unwrap();
    let a = al.allocate(m).unwrap();
    let b = al.allocate(m).unwrap();
    assert_eq!(al.allocate(m).unwrap_err(), AllocError::OutOfMemory);
    // SAFETY: from `al` with `m`.
    unsafe { al.deallocate(b.cast(), m).unwrap() };
    let c = al.allocate(m).unwrap();
    assert_eq!(c.cast::<u8>(), b.cast::<u8>(), "the cached block is reused");
    // Growth that cannot fit: null, the old block intact.
    // SAFETY: `a` from `al` with `m`.
    let r = unsafe { al.reallocate(a.cast(), m, 4 << 20) };
    assert_eq!(r.unwrap_err(), AllocError::OutOfMemory);
    // SAFETY: as above.
    unsafe {
        al.deallocate(a.cast(), m).unwrap();
        al.deallocate(c.cast(), m).unwrap();
    }
    assert_eq!(al.stats().live, 0);
}

#[test]
fn double_free_foreign_and_mismatched_frees_are_errors() {
    let al = LargeAlloc::builder().build();
    let l = Layout::from_size_align(256 << 10, 8).unwrap();
    let p: NonNull<u8> = al.allocate(l).unwrap().cast();
    // SAFETY: every call passes a large layout, which the allocator checks before touching anything.
    unsafe {
        assert_eq!(
            al.deallocate(p, Layout::from_size_align(128 << 10, 8).unwrap()),
            Err(AllocError::LayoutMismatch)
        );
        assert_eq!(al.deallocate(p.add(4096), l), Err(AllocError::NotAllocated));
        al.deallocate(p, l).unwrap();
        assert_eq!(al.deallocate(p, l), Err(AllocError::NotAllocated));
        let mut v = vec![0u8; 256 << 10];
        let foreign = NonNull::new(v.as_mut_ptr()).unwrap();
        assert_eq!(al.deallocate(foreign, l), Err(AllocError::Foreign));
        let mut local = [0u8; 16];
        assert_eq!(al.deallocate(NonNull::new(local.as_mut_ptr()).unwrap(), l), Err(AllocError::Foreign));
    }
    // Before any large allocation, a large pointer cannot be ours either.
    let fresh = LargeAlloc::builder().build();
    let mut v = vec![0u8; 256 << 10];
    // SAFETY: checked before use.
    let r = unsafe { fresh.deallocate(NonNull::new(v.as_mut_ptr()).unwrap(), l) };
    assert_eq!(r, Err(AllocError::Foreign));
}

#[test]
fn alignment_zeroing_and_in_place_realloc() {
    let al = LargeAlloc::builder().build();
    for align in [1usize << 16, 1 << 20, 1 << 22] {
        let l = Layout::from_size_align(100 << 10, align).unwrap();
        let p = al.allocate(l).unwrap();
        assert_eq!(p.cast::<u8>().as_ptr() as usize % align, 0);
        // SAFETY: from `al` with `l`.
        unsafe { al.deallocate(p.cast(), l).unwrap() };
    }
    // A reused block handed out zeroed is zero.
    let l = Layout::from_size_align(192 << 10, 8).unwrap();
    let p = al.allocate(l).unwrap().cast::<u8>();
    // SAFETY: `p` has `l.size()` bytes.
    unsafe { std::ptr::write_bytes(p.as_ptr(), 0xff, l.size()) };
    // SAFETY: from `al` with `l`.
    unsafe { al.deallocate(p, l).unwrap() };
    let q = al.allocate_zeroed(l).unwrap().cast::<u8>();
    assert_eq!(q, p);
    // SAFETY: `q` has `l.size()` bytes.
    assert!(unsafe { std::slice::from_raw_parts(q.as_ptr(), l.size()) }.iter().all(|&b| b == 0));
    // Growth within the class and into adjacent free space stays in place.
    let before = al.stats().realloc_in_place;
    // SAFETY: from `al` with `l`.
    let r = unsafe { al.reallocate(q, l, 200 << 10) }.unwrap().cast::<u8>();
    assert_eq!(r, q);
    assert!(al.stats().realloc_in_place > before);
    // SAFETY: from `al`, now 200 KiB.
    unsafe { al.deallocate(r, Layout::from_size_align(200 << 10, 8).unwrap()).unwrap() };
}

#[test]
fn idle_blocks_go_back_and_release_cached_drains() {
    let al = LargeAlloc::builder().max_age(Duration::from_millis(20)).pressure(false).build();
    let l = Layout::from_size_align(1 << 20, 8).unwrap();
    let ps: Vec<_> = (0..8).map(|_| al.allocate(l).unwrap()).collect();
    for p in ps {
        // SAFETY: from `al` with `l`.
        unsafe { al.deallocate(p.cast(), l).unwrap() };
    }
    assert_eq!(al.stats().reclaimable_bytes, 8 << 20);
    let t0 = std::time::Instant::now();
    while al.stats().reclaimable_bytes > 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", al.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let p = al.allocate(l).unwrap();
    assert!(al.stats().lost > 0);
    // SAFETY: from `al` with `l`.
    unsafe { al.deallocate(p.cast(), l).unwrap() };
    al.release_cached();
    assert_eq!(al.stats().reclaimable_bytes, 0);
}

/// A block cycling between use and the cache keeps its ring slot (the cancelled id is refilled on the
/// next free), so a tiny ring never fills and nothing is flushed or mapped again; and a request finds
/// a cached block of a larger class (up to twice its size) before mapping a fresh one.
#[test]
fn reuse_refills_the_ring_slot_and_fits_across_classes() {
    let al = LargeAlloc::builder().ring_capacity(16).max_age(None).build();
    let mb = Layout::from_size_align(1 << 20, 8).unwrap();
    for round in 0..10_000u64 {
        // Three blocks at once: more than one slot is in play, each cycling through its own.
        // SAFETY: non-zero layouts; each block is freed once with its layout.
        let ps: Vec<*mut u8> = (0..3).map(|_| unsafe { al.alloc(mb) }).collect();
        for &p in &ps {
            assert!(!p.is_null());
            fill(p, 1 << 20, round);
        }
        for &p in &ps {
            check(p, 1 << 20, round, 1 << 20);
            // SAFETY: as above.
            unsafe { al.dealloc(p, mb) };
        }
    }
    let s = al.stats();
    assert_eq!((s.mapped, s.flushes, s.unmapped, s.lost), (3, 0, 0, 0), "{s:?}");
    assert_eq!(s.reused, 3 * 10_000 - 3, "{s:?}");

    // 768 KiB finds a cached 1 MiB block; 400 KiB (less than half of it) does not.
    let three_quarters = Layout::from_size_align(768 << 10, 8).unwrap();
    // SAFETY: non-zero layout, freed below with it.
    let p = unsafe { al.alloc(three_quarters) };
    assert_eq!(al.stats().mapped, 3, "served from the cache: {:?}", al.stats());
    let small = Layout::from_size_align(400 << 10, 8).unwrap();
    // SAFETY: as above.
    let q = unsafe { al.alloc(small) };
    assert_eq!(al.stats().mapped, 4, "a fresh block: {:?}", al.stats());
    // SAFETY: allocated above with these layouts.
    unsafe {
        al.dealloc(p, three_quarters);
        al.dealloc(q, small);
    }
}
