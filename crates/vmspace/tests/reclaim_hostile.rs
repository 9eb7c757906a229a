//! Hostile rings on real memory: the ring's shared header scribbled in chosen ways, and the ring must
//! neither wait unboundedly nor follow it.
//!
//! Invariant checked: every call on a scribbled ring returns (a bounded thread fails the test instead
//! of hanging it) with the typed `InvalidRing`, and the region the header lies about is never reclaimed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use vmspace::reclaim::{Action, FreeAdvice, ReclaimError, ReclaimRing, Reclaimer, ReclaimerConfig};
use vmspace::{Prot, os};

/// How long one call may take before the test calls it hung. Generous: this detects a wait that never
/// ends, it does not measure anything.
const HANG: Duration = Duration::from_secs(10);

const PS: u64 = 4096;

/// Header offsets (the layout table in `vmspace_core::reclaim`'s `layout.rs`).
const HEAD: u64 = 24;
const TAIL: u64 = 32;
const BUSY: u64 = 40;

/// Read-write private memory of `len` bytes, outside any `AddressSpace` (for unbound rings).
// `os`'s calls are becoming `unsafe fn`s; the block is needed with them and harmless without.
#[allow(unused_unsafe)]
fn arena(len: u64) -> u64 {
    let a = os::reserve(len).unwrap();
    // SAFETY: the reservation just made, the test's own; nothing holds a reference into it.
    unsafe { os::map_fixed(a, len, Prot::RW, os::Fixed::Anonymous) }.unwrap();
    a
}

#[allow(unused_unsafe)]
fn unmap(addr: u64, len: u64) {
    // SAFETY: memory `arena` mapped for this test, with no reference into it left.
    unsafe { os::unmap(addr, len) }.unwrap();
}

fn write(addr: u64, v: u64) {
    // SAFETY: only pages the test mapped read-write.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: only pages the test mapped read-write (checked still mapped where it matters).
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

/// The 64-bit header word of `ring` at `off`, as the atomic every party accesses it through.
fn header_word(ring: &ReclaimRing, off: u64) -> &'static AtomicU64 {
    let addr = ring.ring_range().start + off;
    // SAFETY: `off` is one of the header's 8-aligned u64 fields inside the ring's read-write mapping,
    // which every party accesses atomically; the callers use the reference only while the ring lives
    // (the `'static` is a convenience of this test, not a promise).
    unsafe { AtomicU64::from_ptr(addr as *mut u64) }
}

fn quiet_reclaimer() -> Reclaimer {
    Reclaimer::spawn(ReclaimerConfig {
        tick: Duration::from_secs(3600),
        pressure: None,
        ..Default::default()
    })
    .unwrap()
}

/// Run `f` on another thread; fail the test (without waiting for it) if it does not return within
/// [`HANG`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not return within {HANG:?}: an unbounded wait on the ring"),
    }
}

/// Defect 12: `head` scribbled up to `tail` makes every entered id look reclaimed; `try_cancel` then
/// waited for this process's reclaimer to finish a system call it will never make.
fn scribbled_head_cancel(also_busy: bool, query: bool) {
    let r = quiet_reclaimer();
    let mut ring = ReclaimRing::builder()
        .reclaimer(&r)
        .capacity(8, 8)
        .free_advice(FreeAdvice::DontNeed)
        .build()
        .unwrap();
    let len = 4 * PS;
    let a = arena(len);
    write(a, 0x5eed);
    let id = ring
        .try_enter(a, len, Action::Deallocate, None)
        .unwrap()
        .id
        .unwrap();
    let tail = header_word(&ring, TAIL).load(Ordering::Relaxed);
    assert_eq!(tail, id.0 + 1);
    header_word(&ring, HEAD).store(tail, Ordering::Relaxed);
    if also_busy {
        header_word(&ring, BUSY).store(tail, Ordering::Relaxed);
    }
    let (res, mut ring) = bounded("try_cancel on a ring with head == tail", move || {
        let res = if query {
            ring.query_state(id, Action::Deallocate)
        } else {
            ring.try_cancel(id, a, len, Action::Deallocate)
                .map(|c| c.state)
        };
        (res, ring)
    });
    assert_eq!(
        res,
        Err(ReclaimError::InvalidRing),
        "a reclaimed answer the reclaimer never made"
    );
    // The ring is not followed: the region is never reclaimed.
    let flushed = bounded("flush of a scribbled ring", move || {
        (ring.flush(8).map(|r| r.reclaimed), ring)
    });
    assert_eq!(flushed.0, Err(ReclaimError::InvalidRing));
    drop(flushed.1);
    assert!(
        os::resident_pages(a, len).is_ok(),
        "the region was unmapped"
    );
    assert_eq!(read(a), 0x5eed, "the region was reclaimed");
    unmap(a, len);
}

#[test]
fn try_cancel_with_head_scribbled_to_tail_returns_invalid_ring() {
    scribbled_head_cancel(false, false);
}

#[test]
fn try_cancel_with_head_and_busy_scribbled_to_tail_returns_invalid_ring() {
    scribbled_head_cancel(true, false);
}

#[test]
fn query_state_with_head_and_busy_scribbled_to_tail_returns_invalid_ring() {
    scribbled_head_cancel(true, true);
}

#[test]
fn query_state_with_head_scribbled_to_tail_returns_invalid_ring() {
    scribbled_head_cancel(false, true);
}
