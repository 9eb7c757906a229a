//! The reclaim ring on real memory (ports of xnu's `vm_reclaim` tests as far as they apply to a process,
//! plus the Linux crate's own: process-wide ring, bound rings, policies, pressure, batching, stress).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vmspace::reclaim::{
    Action, FreeAdvice, MAX_CAPACITY, Policy, ReclaimError, ReclaimId, ReclaimRing, ReclaimState, Reclaimer,
    ReclaimerConfig, WorkingSet,
};
use vmspace::{AddressSpace, MapSpec, Prot, os};

const PS: u64 = 4096;

/// Tests that use the process-wide ring take turns.
static PROCESS: Mutex<()> = Mutex::new(());

fn process_lock() -> MutexGuard<'static, ()> {
    PROCESS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-write private memory of `len` bytes (outside any AddressSpace: for unbound rings).
fn arena(len: u64) -> u64 {
    let a = os::reserve(len).unwrap();
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::map_fixed(a, len, Prot::RW, os::Fixed::Anonymous) }.unwrap();
    a
}

/// `len` bytes of a fresh memfd called `name`, mapped shared read-write: `/proc/self/maps` names the
/// mapping, so a test can tell it from one another thread places in its hole after an unmap.
fn named_arena(name: &str, len: u64) -> u64 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: memfd_create with a NUL-terminated name; ftruncate and mmap on the descriptor it gave,
    // which is closed after the mapping holds its own reference to the file.
    unsafe {
        let fd = libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
        let p = libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        libc::close(fd);
        p as u64
    }
}

/// Whether `/proc/self/maps` shows the memfd `name` (from [`named_arena`]) mapped at `addr`.
fn named_mapping_at(addr: u64, name: &str) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().any(|l| {
        let (range, rest) = l.split_once(' ').unwrap_or((l, ""));
        let (s, e) = range.split_once('-').unwrap();
        let (s, e) = (u64::from_str_radix(s, 16).unwrap(), u64::from_str_radix(e, 16).unwrap());
        (s..e).contains(&addr) && rest.contains(&format!("/memfd:{name}"))
    })
}

fn write(addr: u64, v: u64) {
    // SAFETY: only pages the test mapped read-write and has not entered into a ring.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: only pages the test mapped readable (still mapped: Free keeps the mapping).
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

fn no_pressure() -> ReclaimerConfig {
    ReclaimerConfig { tick: Duration::from_millis(5), pressure: None, ..ReclaimerConfig::default() }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    f()
}

#[test]
fn round_capacity_table() {
    if os::page_size() != PS {
        return;
    }
    for (n, want) in [
        (0, 252),
        (1, 252),
        (252, 252),
        (253, 508),
        (512, 764),
        (1000, 1020),
        (MAX_CAPACITY - 1, MAX_CAPACITY),
        (MAX_CAPACITY, MAX_CAPACITY),
        (u32::MAX, MAX_CAPACITY),
    ] {
        assert_eq!(ReclaimRing::round_capacity(n), want, "round_capacity({n})");
    }
}

#[test]
fn initial_state_and_one_process_wide_ring() {
    let _g = process_lock();
    let cap = ReclaimRing::round_capacity(1);
    let ring = ReclaimRing::allocate(cap, cap).unwrap();
    assert_eq!((ring.capacity(), ring.max_capacity(), ring.len()), (cap, cap, 0));
    assert!(ring.is_empty() && ring.is_process_wide() && !ring.is_bound());
    assert_eq!(ring.reclaimable_bytes(), 0);
    assert_eq!(ring.ring_range().end - ring.ring_range().start, PS.max(os::page_size()));
    // One per process: a second is refused until the first is dropped.
    assert_eq!(ReclaimRing::allocate(cap, cap).unwrap_err(), ReclaimError::ResourceShortage);
    // Rings bound to a space or to an explicit reclaimer do not count.
    let r = Reclaimer::spawn(no_pressure()).unwrap();
    let other = ReclaimRing::builder().reclaimer(&r).build().unwrap();
    assert!(!other.is_process_wide());
    drop(ring);
    let again = ReclaimRing::allocate(cap, 2 * cap).unwrap();
    assert_eq!(again.max_capacity(), 2 * cap);
    drop(again);
    drop(other);
}

#[test]
fn argument_matrix() {
    let r = Reclaimer::spawn(no_pressure()).unwrap();
    let b = || ReclaimRing::builder().reclaimer(&r);
    use ReclaimError::*;
    assert_eq!(b().capacity(0, 10).build().unwrap_err(), InvalidArgument);
    assert_eq!(b().capacity(10, 0).build().unwrap_err(), InvalidArgument);
    assert_eq!(b().capacity(11, 10).build().unwrap_err(), InvalidArgument);
    assert_eq!(b().capacity(1, MAX_CAPACITY + 1).build().unwrap_err(), InvalidCapacity);
    assert_eq!(InvalidArgument.code(), 0x2000_4001);

    // Fake regions inside a reservation nobody else uses (PROT_NONE): reclaiming them is harmless.
    let big = os::reserve(3 << 32).unwrap();
    let mut ring = b().capacity(16, 64).build().unwrap();
    let a = Action::Deallocate;
    assert_eq!(ring.try_enter(big, 0, a, None).unwrap_err(), InvalidArgument);
    assert_eq!(ring.try_enter(u64::MAX - PS + 1, 2 * PS, a, None).unwrap_err(), InvalidArgument);
    assert_eq!(ring.try_enter(big, u32::MAX as u64 + 1, a, None).unwrap_err(), InvalidRegionSize);
    // The largest region: u32::MAX bytes (not page-aligned at the end: whole pages only).
    let e = ring.try_enter(big, u32::MAX as u64, Action::Free, None).unwrap();
    let id = e.id.unwrap();
    assert!(e.update_accounting);
    assert_eq!(ring.query_state(id, Action::Free).unwrap(), ReclaimState::Unreclaimed);
    assert_eq!(ring.try_cancel(id, big, u32::MAX as u64 + 1, Action::Free).unwrap_err(), InvalidRegionSize);
    assert_eq!(ring.try_cancel(id, big, PS, Action::Free).unwrap_err(), InvalidArgument);
    assert_eq!(ring.try_cancel(id, big, u32::MAX as u64, Action::Deallocate).unwrap_err(), InvalidArgument);
    assert_eq!(ring.try_cancel(id, big + PS, u32::MAX as u64, Action::Free).unwrap_err(), InvalidArgument);
    assert_eq!(ring.try_cancel(ReclaimId(7), big, PS, a).unwrap_err(), InvalidId);
    assert_eq!(ring.try_cancel(ReclaimId::NULL, big, PS, a).unwrap_err(), InvalidId);
    assert_eq!(ring.query_state(ReclaimId(7), a).unwrap_err(), InvalidId);
    let c = ring.try_cancel(id, big, u32::MAX as u64, Action::Free).unwrap();
    assert_eq!(c.state, ReclaimState::Unreclaimed);
    assert!(c.update_accounting);
    assert_eq!(ring.try_cancel(id, big, u32::MAX as u64, Action::Free).unwrap_err(), InvalidId); // double cancel
    // Reuse the hole; a reuse of a live slot is refused.
    let e = ring.try_enter(big, 2 * PS, a, Some(id)).unwrap();
    assert_eq!(e.id, Some(id));
    assert_eq!(ring.try_enter(big, 2 * PS, a, Some(id)).unwrap_err(), InvalidId);
    assert_eq!(ring.flush(0).unwrap_err(), InvalidArgument);
    assert_eq!(ring.resize(0).unwrap_err(), InvalidCapacity);
    assert_eq!(ring.resize(65).unwrap_err(), InvalidCapacity);
    let rep = ring.flush(1).unwrap();
    assert_eq!((rep.reclaimed, rep.failed), (1, 0));
    assert_eq!(ring.try_cancel(id, big, 2 * PS, a).unwrap().state, ReclaimState::Deallocated);
    drop(ring);
    // The flush unmapped `big..big + 2 * PS`; unmapping it again could hit another thread's new mapping.
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(big + 2 * PS, (3 << 32) - 2 * PS) }.unwrap();
}

#[test]
fn single_entry_deallocate_then_cancel_is_not_reusable() {
    let r = Reclaimer::spawn(no_pressure()).unwrap();
    let mut ring = ReclaimRing::builder().reclaimer(&r).capacity(8, 8).build().unwrap();
    let a = named_arena("vmspace-dealloc-not-reusable", 4 * PS);
    write(a, 42);
    assert!(named_mapping_at(a, "vmspace-dealloc-not-reusable"));
    let id = ring.try_enter(a, 4 * PS, Action::Deallocate, None).unwrap().id.unwrap();
    assert_eq!(id, ReclaimId(0));
    assert_eq!((ring.len(), ring.reclaimable_bytes()), (1, 4 * PS));
    let rep = ring.flush(1).unwrap();
    assert_eq!((rep.reclaimed, rep.bytes, rep.trimmed_bytes), (1, 4 * PS, 4 * PS));
    let c = ring.try_cancel(id, a, 4 * PS, Action::Deallocate).unwrap();
    assert_eq!(c.state, ReclaimState::Deallocated);
    assert!(!c.state.is_reusable());
    assert_eq!(ring.query_state(id, Action::Deallocate).unwrap(), ReclaimState::Deallocated);
    // Another test's thread may map the hole at once, so the proof is that our mapping is gone.
    assert!(!named_mapping_at(a, "vmspace-dealloc-not-reusable"), "still mapped");
    assert_eq!(ring.reclaimable_bytes(), 0);
}

#[test]
fn free_then_cancel_is_reusable_and_readable() {
    let r = Reclaimer::spawn(no_pressure()).unwrap();
    let mut ring = ReclaimRing::builder().reclaimer(&r).build().unwrap();
    let a = arena(8 * PS);
    for i in 0..8 {
        write(a + i * PS, 7);
    }
    let id = ring.try_enter(a, 8 * PS, Action::Free, None).unwrap().id.unwrap();
    let _ = ring.flush(1).unwrap();
    let c = ring.try_cancel(id, a, 8 * PS, Action::Free).unwrap();
    assert_eq!(c.state, ReclaimState::Freed);
    assert!(c.state.is_reusable());
    // MADV_FREE keeps the data until the kernel needs the pages; either way it reads.
    for i in 0..8 {
        let v = read(a + i * PS);
        assert!(v == 7 || v == 0, "{v}");
        write(a + i * PS, 9);
        assert_eq!(read(a + i * PS), 9);
    }
    // With DONTNEED the pages read as zero.
    let mut ring = ReclaimRing::builder().reclaimer(&r).free_advice(FreeAdvice::DontNeed).build().unwrap();
    let id = ring.try_enter(a, 8 * PS, Action::Free, None).unwrap().id.unwrap();
    let _ = ring.flush(8).unwrap();
    assert!(ring.try_cancel(id, a, 8 * PS, Action::Free).unwrap().state.is_reusable());
    assert_eq!(read(a + 3 * PS), 0);
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, 8 * PS) }.unwrap();
}

#[test]
fn fill_to_capacity_then_no_id() {
    let r = Reclaimer::spawn(no_pressure()).unwrap();
    let cap = ReclaimRing::round_capacity(1);
    let mut ring = ReclaimRing::builder().reclaimer(&r).capacity(cap, cap).build().unwrap();
    let a = arena(PS);
    for i in 0..cap as u64 {
        assert_eq!(ring.try_enter(a, PS, Action::Free, None).unwrap().id, Some(ReclaimId(i)));
    }
    let e = ring.try_enter(a, PS, Action::Free, None).unwrap();
    assert_eq!(e.id, None);
    assert!(!e.update_accounting);
    let _ = ring.flush(1).unwrap();
    assert_eq!(ring.try_enter(a, PS, Action::Free, None).unwrap().id, Some(ReclaimId(cap as u64)));
    // Flush more than the ring holds: everything, and success.
    let rep = ring.flush(10 * cap as u64).unwrap();
    assert_eq!(rep.reclaimed, cap as u64, "{rep:?} {:?}", ring.stats());
    assert!(ring.is_empty());
    // Flush an empty ring: success, nothing.
    assert_eq!(ring.flush(5).unwrap().processed(), 0);
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, PS) }.unwrap();
}

#[test]
fn ids_wrap_across_capacities() {
    let r = Reclaimer::spawn(no_pressure()).unwrap();
    let a = arena(PS);
    for cap in [1u32, 2, 3, 16, 17, 252] {
        let mut ring = ReclaimRing::builder().reclaimer(&r).capacity(cap, cap).build().unwrap();
        for round in 0..5 * cap as u64 + 3 {
            let e = ring.try_enter(a, PS, Action::Free, None).unwrap();
            let id = match e.id {
                Some(id) => id,
                None => {
                    let _ = ring.flush(1).unwrap();
                    ring.try_enter(a, PS, Action::Free, None).unwrap().id.unwrap()
                }
            };
            assert_eq!(id, ReclaimId(round), "cap {cap} round {round}");
            if round % 3 == 0 {
                assert_eq!(
                    ring.try_cancel(id, a, PS, Action::Free).unwrap().state,
                    ReclaimState::Unreclaimed
                );
            }
        }
        let _ = ring.drain().unwrap();
        assert!(ring.is_empty());
    }
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, PS) }.unwrap();
}

#[test]
fn resize_keeps_live_entries_or_drains_only_the_overflow() {
    let r = Reclaimer::spawn(no_pressure()).unwrap();
    let max = ReclaimRing::round_capacity(1000);
    let mut ring = ReclaimRing::builder().reclaimer(&r).capacity(16, max).build().unwrap();
    let a = arena(16 * PS);
    let ids: Vec<ReclaimId> =
        (0..16).map(|i| ring.try_enter(a + i * PS, PS, Action::Free, None).unwrap().id.unwrap()).collect();
    assert_eq!(ring.try_enter(a, PS, Action::Free, None).unwrap().id, None);
    // Grow to the maximum: every entry stays, with its id.
    let rep = ring.resize(max).unwrap();
    assert_eq!((rep.moved, rep.drained.processed()), (16, 0));
    assert_eq!(ring.capacity(), max);
    assert_eq!(ring.query_state(ids[5], Action::Free).unwrap(), ReclaimState::Unreclaimed);
    assert_eq!(ring.try_enter(a, PS, Action::Free, None).unwrap().id, Some(ReclaimId(16)));
    // Shrink below the live count (17): only the 7 oldest go.
    let rep = ring.resize(10).unwrap();
    assert_eq!((rep.drained.reclaimed, rep.moved), (7, 10));
    assert_eq!(ring.query_state(ids[6], Action::Free).unwrap(), ReclaimState::Freed);
    assert_eq!(
        ring.try_cancel(ids[7], a + 7 * PS, PS, Action::Free).unwrap().state,
        ReclaimState::Unreclaimed
    );
    drop(ring);
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, 16 * PS) }.unwrap();
}

#[test]
fn byte_budget_trims_on_accounting_update() {
    let r = Reclaimer::spawn(ReclaimerConfig { tick: Duration::from_secs(3600), ..no_pressure() }).unwrap();
    let budget = 64 * 1024;
    let policy = Policy { budget: Some(budget), ..Policy::default() };
    let mut ring = ReclaimRing::builder().reclaimer(&r).policy(policy).build().unwrap();
    let a = arena(32 * 4 * PS);
    let mut ids = Vec::new();
    for i in 0..32 {
        ids.push(ring.try_enter(a + i * 4 * PS, 4 * PS, Action::Deallocate, None).unwrap().id.unwrap());
    }
    assert_eq!(ring.reclaimable_bytes(), 32 * 4 * PS);
    let rep = ring.update_kernel_accounting().unwrap();
    assert_eq!(rep.reclaimed, 32 - budget / (4 * PS));
    assert!(ring.reclaimable_bytes() <= budget);
    // The oldest went, the newest stayed.
    assert_eq!(ring.query_state(ids[0], Action::Deallocate).unwrap(), ReclaimState::Deallocated);
    assert_eq!(ring.query_state(ids[31], Action::Deallocate).unwrap(), ReclaimState::Unreclaimed);
    // Dropping the ring drains the rest: every region is unmapped, so the arena must not be unmapped
    // again (another thread may already have a new mapping there).
    drop(ring);
}

#[test]
fn working_set_trims_after_idle_periods() {
    let r = Reclaimer::spawn(ReclaimerConfig { tick: Duration::from_millis(5), ..no_pressure() }).unwrap();
    let ws = WorkingSet { period: Duration::from_millis(20), abandon_periods: 512, min_trim: Some(0) };
    let policy = Policy { working_set: Some(ws), ..Policy::default() };
    let mut ring = ReclaimRing::builder().reclaimer(&r).policy(policy).build().unwrap();
    let a = arena(64 * PS);
    for i in 0..64 {
        let _ = ring.try_enter(a + i * PS, PS, Action::Free, None).unwrap();
    }
    let start = ring.reclaimable_bytes();
    assert_eq!(start, 64 * PS);
    // Idle periods: the estimate of the working set falls and the idle bytes go, a share per period.
    assert!(wait_until(Duration::from_secs(5), || ring.reclaimable_bytes() <= 8 * PS), "{:?}", ring.stats());
    assert!(ring.stats().passes > 1);
    drop(ring);
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, 64 * PS) }.unwrap();
}

#[test]
fn max_age_reclaims_old_entries_only() {
    let r = Reclaimer::spawn(ReclaimerConfig { tick: Duration::from_millis(5), ..no_pressure() }).unwrap();
    let policy = Policy { max_age: Some(Duration::from_millis(100)), ..Policy::default() };
    let mut ring = ReclaimRing::builder().reclaimer(&r).policy(policy).build().unwrap();
    let a = arena(2 * PS);
    let old = ring.try_enter(a, PS, Action::Free, None).unwrap().id.unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        ring.query_state(old, Action::Free).unwrap() == ReclaimState::Freed
    }));
    let young = ring.try_enter(a + PS, PS, Action::Free, None).unwrap().id.unwrap();
    assert!(r.wait_pass(Duration::from_secs(1)));
    assert_eq!(ring.query_state(young, Action::Free).unwrap(), ReclaimState::Unreclaimed);
    drop(ring);
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, 2 * PS) }.unwrap();
}

#[test]
fn pressure_drains_through_an_injected_source() {
    let level = Arc::new(AtomicU64::new(0f64.to_bits()));
    let l = Arc::clone(&level);
    let source = move || Some(f64::from_bits(l.load(Ordering::Relaxed)));
    let r = Reclaimer::spawn(ReclaimerConfig {
        tick: Duration::from_millis(5),
        pressure: Some(Box::new(source)),
        pressure_threshold: 20.0,
        pressure_floor: 0,
    })
    .unwrap();
    let mut ring = ReclaimRing::builder().reclaimer(&r).build().unwrap();
    let a = arena(16 * PS);
    for i in 0..16 {
        let _ = ring.try_enter(a + i * PS, PS, Action::Free, None).unwrap();
    }
    assert!(r.wait_pass(Duration::from_secs(2)));
    assert_eq!(ring.reclaimable_bytes(), 16 * PS, "no pressure, no policy: nothing goes");
    level.store(55f64.to_bits(), Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(5), || ring.reclaimable_bytes() == 0));
    assert!(r.stats().pressure_passes > 0);
    // A floor keeps some.
    drop(r);
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, 16 * PS) }.unwrap();
}

#[test]
fn bound_ring_keeps_the_space_equal_to_the_kernel() {
    let space = Arc::new(AddressSpace::reserve(1 << 24).unwrap());
    let mut ring = ReclaimRing::bound(&space, 64, 64).unwrap();
    assert!(ring.is_bound() && !ring.is_process_wide());
    let mut regions = Vec::new();
    for i in 0..16u64 {
        let len = (1 + i % 4) * PS;
        let a = space.map(len, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
        write(a, i);
        regions.push((a, len));
    }
    let ids: Vec<_> = regions
        .iter()
        .enumerate()
        .map(|(i, &(a, l))| {
            let action = if i % 2 == 0 { Action::Deallocate } else { Action::Free };
            (ring.try_enter(a, l, action, None).unwrap().id.unwrap(), action)
        })
        .collect();
    // Take one back before the reclaimer runs.
    let (a3, l3) = regions[3];
    assert_eq!(ring.try_cancel(ids[3].0, a3, l3, ids[3].1).unwrap().state, ReclaimState::Unreclaimed);
    assert_eq!(read(a3), 3);
    // A region outside the space is refused, never touched.
    let outside = arena(PS);
    write(outside, 5);
    let _ = ring.try_enter(outside, PS, Action::Deallocate, None).unwrap();
    let rep = ring.drain().unwrap();
    assert_eq!((rep.reclaimed, rep.holes, rep.failed, rep.last_error), (15, 1, 1, Some(libc::EFAULT)));
    assert_eq!(read(outside), 5);
    let d = space.kernel_differences().unwrap();
    assert!(d.is_empty(), "{}", d.join("\n"));
    for (i, &(a, _)) in regions.iter().enumerate() {
        let mapped = space.lookup_entry(a).is_some();
        assert_eq!(mapped, i % 2 == 1, "region {i}");
    }
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(outside, PS) }.unwrap();
}

#[test]
fn batching_makes_fewer_system_calls() {
    let r = Reclaimer::spawn(no_pressure()).unwrap();
    let n = 128;
    let a = arena(2 * n * PS);
    let mut calls = Vec::new();
    for batching in [true, false] {
        let mut ring = ReclaimRing::builder()
            .reclaimer(&r)
            .capacity(n as u32, n as u32)
            .batching(batching)
            .build()
            .unwrap();
        for i in 0..n {
            // Every other page, so no two regions merge.
            let _ = ring.try_enter(a + 2 * i * PS, PS, Action::Free, None).unwrap();
        }
        let rep = ring.drain().unwrap();
        assert_eq!(rep.reclaimed, n);
        calls.push(ring.stats().syscalls);
    }
    assert_eq!(calls[1], n);
    if os::madvise_batching() != os::Batching::None {
        assert!(calls[0] <= 2, "{calls:?}");
    }
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(a, 2 * n * PS) }.unwrap();
}

/// Threads with rings of their own and one real reclaimer thread trimming to a tiny budget. DONTNEED
/// makes a reclaim visible (the tag reads zero), so: an id answered `Unreclaimed` still has its tag (it
/// was never reclaimed), and one answered `Busy` ends `Freed` once the reclaimer has finished.
#[test]
fn stress_cancel_against_the_reclaimer_thread() {
    let r = Reclaimer::spawn(ReclaimerConfig { tick: Duration::from_micros(200), ..no_pressure() }).unwrap();
    let policy = Policy { budget: Some(8 * PS), ..Policy::default() };
    let deadline = Instant::now() + Duration::from_millis(1500);
    let (busy_seen, cancels) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u64)
            .map(|t| {
                let r = &r;
                s.spawn(move || {
                    let mut ring = ReclaimRing::builder()
                        .reclaimer(r)
                        .policy(policy)
                        .free_advice(FreeAdvice::DontNeed)
                        .build()
                        .unwrap();
                    const N: u64 = 64;
                    let a = arena(N * PS);
                    let mut live: Vec<Option<ReclaimId>> = vec![None; N as usize];
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                    let (mut busy, mut cancels) = (Vec::new(), 0u64);
                    let mut tag = 1u64;
                    while Instant::now() < deadline {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let i = (rng % N) as usize;
                        let page = a + i as u64 * PS;
                        match live[i] {
                            None => {
                                tag += 1;
                                write(page, tag);
                                if let Some(id) = ring.try_enter(page, PS, Action::Free, None).unwrap().id {
                                    live[i] = Some(id);
                                }
                            }
                            Some(id) => {
                                let c = ring.try_cancel(id, page, PS, Action::Free).unwrap();
                                cancels += 1;
                                match c.state {
                                    ReclaimState::Unreclaimed => {
                                        assert_ne!(
                                            read(page),
                                            0,
                                            "id {id} reclaimed but cancelled Unreclaimed"
                                        );
                                    }
                                    ReclaimState::Freed => assert_eq!(read(page), 0),
                                    ReclaimState::Busy => busy.push(id),
                                    ReclaimState::Deallocated => panic!("Free entry reported Deallocated"),
                                }
                                live[i] = None;
                                // A Busy page stays the reclaimer's until it is done; do not reuse it.
                                if c.state == ReclaimState::Busy {
                                    wait_until(Duration::from_secs(5), || {
                                        ring.query_state(id, Action::Free).unwrap() == ReclaimState::Freed
                                    });
                                    assert_eq!(
                                        ring.query_state(id, Action::Free).unwrap(),
                                        ReclaimState::Freed
                                    );
                                }
                            }
                        }
                        let _ = ring.update_kernel_accounting();
                    }
                    drop(ring);
                    // SAFETY: the test's own memory; nothing holds a reference into it.
                    unsafe { os::unmap(a, N * PS) }.unwrap();
                    (busy.len() as u64, cancels)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).fold((0, 0), |x, y| (x.0 + y.0, x.1 + y.1))
    });
    assert!(cancels > 1000, "{cancels}");
    eprintln!("stress: {cancels} cancels, {busy_seen} answered Busy, {:?}", r.stats());
}
