//! Resizing a ring (`mach_vm_reclaim_ring_resize`) without losing the entries it need not lose.
//!
//! Invariant: ids keep their meaning across a resize. Every live id (`head <= id < tail`, entries and
//! holes alike) moves from slot `id % old` to slot `id % new`, and `head`, `busy` and `tail` do not change,
//! so an id the allocator holds still names its region afterwards and can be cancelled or reused. This
//! is possible whenever the live ids fit (`tail - head <= new`): `tail - head` consecutive ids have
//! distinct residues modulo any capacity at least that large. When they do not fit (a shrink below the
//! live count), the oldest `tail - head - new` ids are reclaimed first — exactly those, no more — and
//! then the rest move. xnu instead drains the whole ring on every resize.
//!
//! The move loops over `tail - head` ids, which the validation has bounded by the old capacity.

use alloc::vec::Vec;

use super::consumer::{Consumer, ReclaimReport};
use super::layout::{RawEntry, RingMemory};
use super::primitive::{Ordering, RELAXED, fence};
use super::producer::Producer;
use super::types::{Action, ReclaimError};

/// What a resize did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct ResizeReport<E> {
    /// The oldest entries reclaimed because the live ids did not fit the new capacity (empty when they did).
    pub drained: ReclaimReport<E>,
    /// Live ids (entries and holes) moved to their slot under the new capacity.
    pub moved: u64,
}

/// `mach_vm_reclaim_ring_resize`: change the ring's capacity to `capacity`, keeping every live entry and
/// its id when they fit and otherwise reclaiming (through `reclaim`, as
/// [`Consumer::reclaim_chunk`] does) only the oldest entries that do not.
///
/// Both halves must be quiescent: the `&mut` borrows make sure no other call runs on these handles, and
/// the caller must make sure nobody else (another process) works the same ring meanwhile — the seed's
/// "not thread-safe w.r.t. other reclamation operations". The new capacity must be `1..=max_capacity` of
/// the ring's memory.
///
/// Errors (the ring unchanged): producer and consumer on different memory → `InvalidArgument`; a bad
/// capacity → `InvalidCapacity`; a corrupted ring, or a shared `tail` that differs from the producer's
/// (a producer call in flight elsewhere) → `InvalidRing`; no memory for the move → `ResourceShortage`.
/// If reclaiming the overflow fails with `InvalidRing`, the entries reclaimed before stay reclaimed.
pub fn resize<M1, M2, E, F>(
    producer: &mut Producer<M1>,
    consumer: &mut Consumer<M2>,
    capacity: u32,
    reclaim: F,
) -> Result<ResizeReport<E>, ReclaimError>
where
    M1: RingMemory,
    M2: RingMemory,
    F: FnMut(u64, u64, Action) -> Result<(), E>,
{
    if !producer.memory().view().same_memory(&consumer.view()) {
        return Err(ReclaimError::InvalidArgument);
    }
    if capacity == 0 || capacity > consumer.view().max_capacity() {
        return Err(ReclaimError::InvalidCapacity);
    }
    let tail = consumer.validated_tail()?;
    if tail != producer.tail() || producer.capacity() != consumer.capacity() {
        return Err(ReclaimError::InvalidRing);
    }
    let mut drained = ReclaimReport::default();
    // `validated_tail` allows a `tail` up to a capacity below `head` (a cancel in flight); here the
    // producer is quiescent, so a `tail` below `head` means the reclaimer once followed a scribbled one.
    let live = tail.checked_sub(consumer.head()).ok_or(ReclaimError::InvalidRing)?;
    if live > capacity as u64 {
        drained = consumer.flush(live - capacity as u64, reclaim)?;
        match tail.checked_sub(consumer.head()) {
            Some(left) if left <= capacity as u64 => {}
            _ => return Err(ReclaimError::InvalidRing), // someone else is working the ring
        }
    }
    let head = consumer.head();
    let old = consumer.capacity() as u64;
    let mut saved: Vec<RawEntry> = Vec::new();
    saved.try_reserve_exact((tail - head) as usize).map_err(|_| ReclaimError::ResourceShortage)?;
    let v = consumer.view();
    for id in head..tail {
        let slot = v.slot(id, old);
        saved.push(slot.read());
        slot.clear();
    }
    for (id, e) in (head..tail).zip(saved) {
        v.slot(id, capacity as u64).write(e);
    }
    v.header().capacity.store(capacity, RELAXED);
    fence(Ordering::SeqCst);
    consumer.set_capacity(capacity);
    producer.set_capacity(capacity);
    Ok(ResizeReport { drained, moved: tail - head })
}
