//! The allocator's side of the ring (libsyscall's `mach_vm_reclaim_*`): append, cancel, reuse, query.
//!
//! Invariant: outside a call, the shared `tail` equals the producer's own copy, `head <= busy <= tail`
//! and `tail - head <= capacity`; the only id slots the producer writes are `tail` (never claimed: the
//! reclaimer only claims below a `tail` it has read) and an id it has won with the handshake — store
//! `tail = id`, `fence(SeqCst)`, load `busy`, and touch the slot only if `id >= busy`. The reclaimer does
//! the mirror image (store `busy`, `fence(SeqCst)`, load `tail`), so of two parties claiming one id at
//! most one sees its claim succeed. Every exit path restores `tail`. Slot writes are published by a
//! release fence before the `tail` store that covers them (the reclaimer's acquire fence after it
//! reads `tail` pairs with it); only the handshake needs `SeqCst`.
//!
//! The producer never waits: every call is straight-line code without a loop, so no value another
//! party writes into the header can keep it. It checks what it can of the reclaimer's indices —
//! `head <= tail`, and `head <= busy <= tail` wherever it reads `busy` — and answers `InvalidRing`
//! (with `tail` restored) when they cannot come from the protocol.

use super::layout::{REGION_SIZE_MAX, RawEntry, RingMemory, RingView};
use super::primitive::{Ordering, RELAXED, fence};
use super::types::{Action, Cancelled, Entered, ReclaimError, ReclaimId, ReclaimState};

/// The producing half of a ring: what an allocator holds (xnu's libsyscall side of `vm_reclaim.h`).
///
/// There is one producer per ring; its operations take `&mut self` (the seed's "not thread-safe w.r.t.
/// itself": wrap it in a lock to share it). It runs concurrently with the reclaimer
/// ([`Consumer`](super::Consumer)), in another thread or another process.
#[derive(Debug)]
pub struct Producer<M: RingMemory> {
    mem: M,
    capacity: u64,
    /// Our own copy of `tail`: we are its only writer, so we never read it back from shared memory.
    tail: u64,
    /// `kAccountingThreshold`: report accounting when it has moved by more than this (one page).
    threshold: u64,
}

impl<M: RingMemory> Producer<M> {
    /// Attach to an [initialized](RingView::initialize) ring (the allocator's half of
    /// `mach_vm_reclaim_ring_allocate`; also how a forked child takes over its inherited copy).
    ///
    /// `page_size` is the accounting threshold (xnu's `kAccountingThreshold = vm_page_size`). Fails with
    /// `InvalidRing` when the header's magic, version, capacity or indices are not a ring's.
    pub fn attach(mem: M, page_size: u64) -> Result<Self, ReclaimError> {
        let v = mem.view();
        let h = v.header();
        let capacity = h.capacity.load(RELAXED);
        if !v.header_is_valid() || capacity == 0 || capacity > v.max_capacity() {
            return Err(ReclaimError::InvalidRing);
        }
        let (head, busy, tail) = (h.head.load(RELAXED), h.busy.load(RELAXED), h.tail.load(RELAXED));
        if head > busy || busy > tail || tail - head > capacity as u64 || tail == u64::MAX {
            return Err(ReclaimError::InvalidRing);
        }
        Ok(Producer { mem, capacity: capacity as u64, tail, threshold: page_size })
    }

    /// `mach_vm_reclaim_ring_capacity`: the number of entries the ring holds.
    pub fn capacity(&self) -> u32 {
        self.capacity as u32
    }

    /// The id the next append will get (the shared `tail`).
    pub fn next_id(&self) -> ReclaimId {
        ReclaimId(self.tail)
    }

    /// The ring's memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Give the memory back.
    pub fn into_memory(self) -> M {
        self.mem
    }

    /// `mach_vm_reclaim_try_enter`: hand the region `[address, address + size)` to the reclaimer.
    ///
    /// With `reuse == None` the entry is appended and gets the next id; a full ring is not an error — the
    /// result has `id: None` and the caller still owns the region (flush, resize, or keep it). With
    /// `reuse == Some(id)` the entry goes into the slot of `id`, which the caller cancelled earlier (xnu's
    /// compact reuse path); `id: None` comes back when the reclaimer has already passed or claimed that
    /// hole.
    ///
    /// Errors (the ring is unchanged): `size > u32::MAX` → `InvalidRegionSize`; `size == 0` or
    /// `address + size` overflowing → `InvalidArgument`; a reuse id that was never entered, is
    /// `ReclaimId::NULL`, or whose slot is not a hole → `InvalidId`; indices that cannot come from the
    /// protocol → `InvalidRing`.
    ///
    /// `update_accounting` follows xnu v2: it is set when the net bytes in the ring have moved by more than
    /// the threshold since the last report, and the new value counts as reported from then on.
    pub fn try_enter(
        &mut self,
        address: u64,
        size: u64,
        action: Action,
        reuse: Option<ReclaimId>,
    ) -> Result<Entered, ReclaimError> {
        if size > REGION_SIZE_MAX {
            return Err(ReclaimError::InvalidRegionSize);
        }
        if size == 0 || address.checked_add(size).is_none() {
            return Err(ReclaimError::InvalidArgument);
        }
        let entry = RawEntry::new(address, size as u32, action);
        let v = self.mem.view();
        let h = v.header();
        let head = self.load_head(&v)?;
        let id = match reuse {
            None => {
                // Full (or, absurdly, out of ids): success without an id, as the seed says.
                if self.tail - head >= self.capacity || self.tail >= ReclaimId::NULL.0 - 1 {
                    return Ok(Entered { id: None, update_accounting: false });
                }
                // The slot of `tail` held `tail - capacity < head`, which the reclaimer has finished
                // with (the acquire fence in `load_head` orders its reads before our write).
                v.slot(self.tail, self.capacity).write(entry);
                fence(Ordering::Release); // publish the entry before the tail that covers it
                h.tail.store(self.tail + 1, RELAXED);
                self.tail += 1;
                self.tail - 1
            }
            Some(ReclaimId(id)) => {
                if id == ReclaimId::NULL.0 {
                    return Err(ReclaimError::InvalidId);
                }
                if id < head {
                    return Ok(Entered { id: None, update_accounting: false }); // hole already passed
                }
                if id >= self.tail {
                    return Err(ReclaimError::InvalidId);
                }
                match self.pull_back(&v, id, head)? {
                    Won::Lost => return Ok(Entered { id: None, update_accounting: false }),
                    Won::Slot => {}
                }
                let slot = v.slot(id, self.capacity);
                if !slot.read().is_hole() {
                    self.restore_tail(&v);
                    return Err(ReclaimError::InvalidId);
                }
                slot.write(entry);
                fence(Ordering::Release); // the entry is visible before the restored tail covers it again
                self.restore_tail(&v);
                id
            }
        };
        let update_accounting = self.account(&v, size, true);
        Ok(Entered { id: Some(ReclaimId(id)), update_accounting })
    }

    /// `mach_vm_reclaim_try_cancel`: take the region entered as `id` back from the reclaimer.
    ///
    /// The state tells what happened: `Unreclaimed` — the entry is now a hole and the region is the
    /// caller's again, contents intact; `Busy` — the reclaimer holds it right now and will finish it (the
    /// region is lost to the caller, it ends `Freed` or `Deallocated`); `Freed` / `Deallocated` — it was
    /// reclaimed already (decided by the `action` the caller passes, as in xnu). Reuse the memory only if
    /// [`ReclaimState::is_reusable`].
    ///
    /// Misuse is an error, never a trap (xnu traps), and leaves the ring unchanged: `size > u32::MAX` →
    /// `InvalidRegionSize`; an id never entered or `ReclaimId::NULL` → `InvalidId`; an id whose slot is a
    /// hole (a double cancel) → `InvalidId`; an entry whose address, size or action differ →
    /// `InvalidArgument`; impossible indices → `InvalidRing`. A second cancel of an id the reclaimer has
    /// already passed cannot be told from the first and answers `Freed` / `Deallocated` again.
    pub fn try_cancel(
        &mut self,
        id: ReclaimId,
        address: u64,
        size: u64,
        action: Action,
    ) -> Result<Cancelled, ReclaimError> {
        if size > REGION_SIZE_MAX {
            return Err(ReclaimError::InvalidRegionSize);
        }
        let ReclaimId(id) = id;
        if id == ReclaimId::NULL.0 {
            return Err(ReclaimError::InvalidId);
        }
        let v = self.mem.view();
        let head = self.load_head(&v)?;
        if id < head {
            Self::check_passed(&v, head)?;
            // The reclaimer counted these bytes as reclaimed: no accounting change.
            return Ok(Cancelled { state: action.reclaimed_state(), update_accounting: false });
        }
        if id >= self.tail {
            return Err(ReclaimError::InvalidId);
        }
        match self.pull_back(&v, id, head)? {
            Won::Lost => return Ok(Cancelled { state: ReclaimState::Busy, update_accounting: false }),
            Won::Slot => {}
        }
        let slot = v.slot(id, self.capacity);
        let found = slot.read();
        let verdict = if found.is_hole() {
            Err(ReclaimError::InvalidId)
        } else if found != RawEntry::new(address, size as u32, action) {
            Err(ReclaimError::InvalidArgument)
        } else {
            Ok(())
        };
        if let Err(e) = verdict {
            self.restore_tail(&v);
            return Err(e);
        }
        slot.clear();
        fence(Ordering::Release); // the hole is visible before the restored tail covers it again
        self.restore_tail(&v);
        let update_accounting = self.account(&v, size, false);
        Ok(Cancelled { state: ReclaimState::Unreclaimed, update_accounting })
    }

    /// `mach_vm_reclaim_query_state`: the state of `id` now, without changing anything (racy by nature:
    /// `Unreclaimed` may become `Busy` at once). `Freed` / `Deallocated` are told apart by the caller's
    /// `action`, as in xnu; unlike xnu, an id at or beyond `tail` is `InvalidId` rather than
    /// `Unreclaimed`.
    pub fn query_state(&self, id: ReclaimId, action: Action) -> Result<ReclaimState, ReclaimError> {
        let ReclaimId(id) = id;
        if id == ReclaimId::NULL.0 {
            return Err(ReclaimError::InvalidId);
        }
        let v = self.mem.view();
        let head = self.load_head(&v)?;
        if id < head {
            Self::check_passed(&v, head)?;
            return Ok(action.reclaimed_state());
        }
        if id >= self.tail {
            return Err(ReclaimError::InvalidId);
        }
        fence(Ordering::SeqCst);
        let busy = v.header().busy.load(RELAXED);
        if busy > self.tail || busy < head {
            return Err(ReclaimError::InvalidRing);
        }
        Ok(if id < busy { ReclaimState::Busy } else { ReclaimState::Unreclaimed })
    }

    /// The ring's uncancelled bytes (xnu v2's `va_in_buffer`): bytes entered minus bytes cancelled, over
    /// the ring's life. Reclaimed bytes are not subtracted here; the reclaimer counts them
    /// ([`Consumer::reclaimed_bytes`](super::Consumer::reclaimed_bytes)), and the bytes still in the ring
    /// are the difference ([`Consumer::estimate_reclaimable`](super::Consumer::estimate_reclaimable)).
    /// Saturating: a misbehaving cancel cannot drive it below zero.
    pub fn uncancelled_bytes(&self) -> u64 {
        self.mem.view().header().va_in_buffer.load(RELAXED)
    }

    /// The value `mach_vm_reclaim_update_kernel_accounting` sends: the uncancelled bytes, which from now on
    /// count as reported (`last_accounting_given_to_kernel`).
    pub fn accounting_report(&self) -> u64 {
        let h = self.mem.view().header();
        let va = h.va_in_buffer.load(RELAXED);
        h.last_accounting.store(va, RELAXED);
        va
    }

    /// Number of ids in the ring not yet reclaimed (live entries and holes), `tail - head`.
    pub fn len(&self) -> u64 {
        let head = self.mem.view().header().head.load(RELAXED);
        self.tail.saturating_sub(head)
    }

    /// Whether every id entered so far has been reclaimed (`head == tail`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn set_capacity(&mut self, capacity: u32) {
        self.capacity = capacity as u64;
    }

    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// Load `head` and order the reclaimer's work on every id below it before what we do next.
    fn load_head(&self, v: &RingView<'_>) -> Result<u64, ReclaimError> {
        let head = v.header().head.load(RELAXED);
        fence(Ordering::Acquire);
        if head > self.tail { Err(ReclaimError::InvalidRing) } else { Ok(head) }
    }

    /// Before answering `Freed` / `Deallocated` for an id below `head` (read by [`load_head`]): check
    /// that `busy` has reached `head` as well. The reclaimer stores `busy = head + n` before its release
    /// fence and `head = head + n` after it, and never stores a `busy` below its `head` afterwards, so
    /// once we have acquired a `head` every `busy` we can read is at least that `head`. A `head` above
    /// `busy` (for instance one scribbled up to `tail`) did not come from the reclaimer: the ids it
    /// claims are reclaimed were not, and the answer is `InvalidRing` instead of a state nobody made.
    /// Only this slow path pays the extra load (the acquire fence in `load_head` is all the ordering
    /// it needs).
    ///
    /// [`load_head`]: Producer::load_head
    fn check_passed(v: &RingView<'_>, head: u64) -> Result<(), ReclaimError> {
        if v.header().busy.load(RELAXED) < head { Err(ReclaimError::InvalidRing) } else { Ok(()) }
    }

    /// The handshake: pull `tail` back to `id`, `fence(SeqCst)`, read `busy`. `Slot` — the reclaimer
    /// cannot claim `id` until we restore `tail`, and `tail` stays pulled back; `Lost` — it claimed `id`
    /// first, `tail` is restored. A `busy` outside `[head, tail]` (`head` as read by
    /// [`load_head`](Producer::load_head) before) cannot come from the reclaimer (see
    /// [`check_passed`](Producer::check_passed)): `InvalidRing`, `tail` restored.
    fn pull_back(&self, v: &RingView<'_>, id: u64, head: u64) -> Result<Won, ReclaimError> {
        let h = v.header();
        h.tail.store(id, RELAXED);
        fence(Ordering::SeqCst);
        let busy = h.busy.load(RELAXED);
        if busy > self.tail || busy < head {
            self.restore_tail(v);
            return Err(ReclaimError::InvalidRing);
        }
        if id < busy {
            self.restore_tail(v);
            return Ok(Won::Lost);
        }
        Ok(Won::Slot)
    }

    fn restore_tail(&self, v: &RingView<'_>) {
        v.header().tail.store(self.tail, RELAXED);
    }

    /// xnu v2's `update_accounting`: move `va_in_buffer` (saturating) and say whether the reclaimer
    /// should hear about it; the value counts as reported at once so concurrent callers do not all rush.
    fn account(&self, v: &RingView<'_>, size: u64, add: bool) -> bool {
        let h = v.header();
        let va = h.va_in_buffer.load(RELAXED);
        let va = if add { va.saturating_add(size) } else { va.saturating_sub(size) };
        h.va_in_buffer.store(va, RELAXED);
        if va.abs_diff(h.last_accounting.load(RELAXED)) > self.threshold {
            h.last_accounting.store(va, RELAXED);
            true
        } else {
            false
        }
    }
}

/// Who won the handshake for one id.
enum Won {
    /// We hold the slot; `tail` is pulled back and must be restored.
    Slot,
    /// The reclaimer holds it; `tail` is already restored.
    Lost,
}
