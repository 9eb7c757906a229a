//! The deferred reclamation ring of xnu's `vm_reclaim.h` on Linux: an allocator hands freed regions to
//! a reclaimer through a ring in memory and takes one back with a cancel that costs no system call.
//!
//! Invariant: the protocol is `vmspace_core::reclaim`'s (one [`Producer`] here, one [`Consumer`]
//! behind the ring's reclaim lock); this module adds the memory, the system calls and the policy. A
//! region is given back to the kernel only after the reclaimer has claimed its id through the
//! handshake, and [`ReclaimRing`] reports an id `Freed` or `Deallocated` only once that system call has
//! been made — so a cancel that answers [`ReclaimState::Unreclaimed`] leaves the region untouched,
//! and one that answers `Freed` leaves it safe to reuse at once.
//!
//! # Who reclaims
//!
//! - [`ReclaimRing::allocate`] (`mach_vm_reclaim_ring_allocate`): the **process-wide** ring, one at a
//!   time (a second gets `ResourceShortage`; dropping it releases the slot). It is **unbound**: its
//!   regions are plain process memory, `VM_RECLAIM_DEALLOCATE` is `munmap` and `VM_RECLAIM_FREE` is
//!   `MADV_FREE`, straight through `os.rs`. Never enter memory of an [`AddressSpace`] into an unbound
//!   ring: the space's map would no longer match the kernel.
//! - [`ReclaimRing::bound`] or [`RingBuilder::space`]: a ring for the memory of one `AddressSpace`;
//!   deallocation goes through [`AddressSpace::unmap`], so the map stays equal to the kernel, and a
//!   region outside the space is refused (counted as failed, never touched). Any number may exist.
//! - [`RingBuilder::reclaimer`]: an unbound ring that is not the process-wide one, served by an explicit
//!   [`Reclaimer`] thread; for those who want more than one ring.
//!
//! Every ring is reclaimed synchronously by [`flush`](ReclaimRing::flush),
//! [`resize`](ReclaimRing::resize), [`update_kernel_accounting`](ReclaimRing::update_kernel_accounting)
//! (which runs the ring's [`Policy`], as xnu trims inside the accounting call) and by dropping it (the
//! rest of the ring is drained: nobody else can take those regions back). A ring attached to a
//! [`Reclaimer`] is also reclaimed in the background: its policy every tick, and a drain under memory
//! pressure ([`pressure`]).
//!
//! # Fork
//!
//! The ring's memory is private and inherited by copy (xnu's `VM_INHERIT_COPY`), so a child gets the
//! ring and its entries, which name the child's copies of the regions. The child can cancel inherited
//! ids and its next `try_enter` gets the id after the parent's last; its first reclaiming call (flush,
//! resize, accounting, attach or drop) gives it a reclaiming state of its own. The process-wide slot is
//! inherited too (the child cannot allocate a second ring). A parent's [`Reclaimer`] thread does not
//! exist in the child and never acts on the child's memory: the child spawns its own if it wants one.
//! Fork only from a thread that is not inside a call on the ring (as with [`crate::fork::fork`]).
//!
//! # Hostile rings
//!
//! The ring's memory is ordinary memory of the process, so a stray write can change it. No call waits
//! on it without a bound: the protocol's loops are bounded by the capacity (see
//! `vmspace_core::reclaim`), a pass passes at most `capacity` ids and retries a pulled-back `tail` a
//! bounded number of times, and a `Freed` / `Deallocated` answer waits for this process's reclaimer
//! with a bounded spin and then its lock, after which a header that claims a reclaim nobody made is
//! `InvalidRing`. The reclaimer never follows a header that fails validation, and a bound ring never
//! acts outside its space.

mod policy;
pub mod pressure;
mod reclaimer;
mod ring;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub use policy::{AUTOTRIM_PERCENT, Policy, WorkingSet};
pub use reclaimer::{Reclaimer, ReclaimerConfig, ReclaimerStats};
pub use ring::{FreeAdvice, Report};
pub use vmspace_core::reclaim::{
    Action, CHUNK_SIZE, Cancelled, Consumer, Entered, MAX_CAPACITY, Producer, REGION_SIZE_MAX, ReclaimError,
    ReclaimId, ReclaimReport, ReclaimState, ResizeReport, ring_bytes,
};

use ring::{Mapping, PROCESS_RING, RawRing, RingCore, Settled, Target, add_report, empty_report};

use crate::{AddressSpace, os};

/// A reclaim ring in this process: the allocator's handle (`mach_vm_reclaim_ring_t`) with the reclaiming
/// side attached.
///
/// The entry calls (`try_enter`, `try_cancel`, `query_state`) take `&mut self` / `&self` and make no
/// system call; share a ring between threads behind a lock, as libmalloc does with
/// `reclaim_buffer_lock`. `Send`, so it can move between threads.
pub struct ReclaimRing {
    producer: Producer<RawRing>,
    core: Arc<RingCore>,
    /// Our copy of the policy, for a fork child whose inherited reclaim lock may be held.
    policy: Policy,
}

impl std::fmt::Debug for ReclaimRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReclaimRing")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("reclaimable", &self.reclaimable_bytes())
            .field("bound", &self.is_bound())
            .finish()
    }
}

/// How to build a [`ReclaimRing`] beyond [`ReclaimRing::allocate`]'s defaults.
#[derive(Default)]
pub struct RingBuilder<'a> {
    initial: Option<u32>,
    max: Option<u32>,
    space: Option<Arc<AddressSpace>>,
    reclaimer: Option<&'a Reclaimer>,
    advice: FreeAdvice,
    policy: Policy,
    no_batching: bool,
    process_wide: bool,
}

impl std::fmt::Debug for RingBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBuilder")
            .field("initial", &self.initial)
            .field("max", &self.max)
            .field("bound", &self.space.is_some())
            .field("advice", &self.advice)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<'a> RingBuilder<'a> {
    /// The initial and maximum capacity (`mach_vm_reclaim_ring_allocate`'s `initial_capacity` and
    /// `max_capacity`); default `round_capacity(512)` for both, as libmalloc uses.
    pub fn capacity(mut self, initial: u32, max: u32) -> Self {
        (self.initial, self.max) = (Some(initial), Some(max));
        self
    }

    /// Bind the ring to `space`: deallocation through [`AddressSpace::unmap`]. The ring is then not
    /// the process-wide one.
    pub fn space(mut self, space: &Arc<AddressSpace>) -> Self {
        self.space = Some(Arc::clone(space));
        self
    }

    /// Serve the ring from `reclaimer`'s thread. The ring is then not the process-wide one.
    pub fn reclaimer(mut self, reclaimer: &'a Reclaimer) -> Self {
        self.reclaimer = Some(reclaimer);
        self
    }

    /// How `VM_RECLAIM_FREE` regions are given back (default `MADV_FREE`).
    pub fn free_advice(mut self, advice: FreeAdvice) -> Self {
        self.advice = advice;
        self
    }

    /// The ring's reclaim policy (default: none).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether `madvise` calls are batched with `process_madvise` where the kernel has it (default on).
    pub fn batching(mut self, on: bool) -> Self {
        self.no_batching = !on;
        self
    }

    /// Make it the process-wide ring (the one `mach_vm_reclaim_ring_allocate` allows per task) even
    /// when a [`reclaimer`](Self::reclaimer) serves it: the C interface's ring, whose kernel side is a
    /// reclaimer thread. Not with a [`space`](Self::space) (`InvalidArgument`).
    pub fn process_wide(mut self) -> Self {
        self.process_wide = true;
        self
    }

    /// Make the ring (`mach_vm_reclaim_ring_allocate`).
    ///
    /// Errors: `initial == 0`, `max == 0` or `initial > max` → `InvalidArgument`; `max > MAX_CAPACITY`
    /// → `InvalidCapacity`; no memory for the ring, or (for the process-wide ring: neither `space` nor
    /// `reclaimer` given) a process-wide ring already exists → `ResourceShortage`; attaching to a fork
    /// child's inherited reclaimer → `NotSupported`.
    pub fn build(self) -> Result<ReclaimRing, ReclaimError> {
        let default = ReclaimRing::round_capacity(512);
        let (initial, max) = (self.initial.unwrap_or(default), self.max.unwrap_or(default));
        if initial == 0 || max == 0 || initial > max {
            return Err(ReclaimError::InvalidArgument);
        }
        if max > MAX_CAPACITY {
            return Err(ReclaimError::InvalidCapacity);
        }
        if self.reclaimer.is_some_and(|r| r.is_inherited()) {
            return Err(ReclaimError::NotSupported);
        }
        if self.process_wide && self.space.is_some() {
            return Err(ReclaimError::InvalidArgument);
        }
        let process_wide = self.process_wide || (self.space.is_none() && self.reclaimer.is_none());
        if process_wide && PROCESS_RING.swap(true, Ordering::AcqRel) {
            return Err(ReclaimError::ResourceShortage);
        }
        let release = |e| {
            if process_wide {
                PROCESS_RING.store(false, Ordering::Release);
            }
            e
        };
        let mapping = Mapping::new(initial, max).map_err(release)?;
        let ps = os::page_size();
        let producer = Producer::attach(mapping.raw, ps).map_err(release)?;
        let consumer = Consumer::attach(mapping.raw, ps).map_err(release)?;
        let target = self.space.map_or(Target::Unbound, Target::Space);
        let core = Arc::new(RingCore::new(
            mapping,
            consumer,
            target,
            self.advice,
            !self.no_batching,
            self.policy,
            0,
            process_wide,
        ));
        if let Some(r) = self.reclaimer {
            r.add(&core);
        }
        Ok(ReclaimRing { producer, core, policy: self.policy })
    }
}

impl ReclaimRing {
    /// `mach_vm_reclaim_ring_allocate(&ring, initial_capacity, max_capacity)`: the process-wide ring,
    /// unbound (see the [module docs](self)), with room for `max` entries and `initial` in use. One at a
    /// time per process: a second call while one lives answers `ResourceShortage`.
    ///
    /// The ring's memory is `ring_bytes(max)` rounded up to pages, private anonymous read-write. Errors
    /// as [`RingBuilder::build`].
    pub fn allocate(initial: u32, max: u32) -> Result<ReclaimRing, ReclaimError> {
        Self::builder().capacity(initial, max).build()
    }

    /// A ring for the memory of `space` (not the process-wide one; any number may exist):
    /// `VM_RECLAIM_DEALLOCATE` is `space.unmap(range)`.
    pub fn bound(space: &Arc<AddressSpace>, initial: u32, max: u32) -> Result<ReclaimRing, ReclaimError> {
        Self::builder().capacity(initial, max).space(space).build()
    }

    /// A builder for rings with a space, a reclaimer, a policy or other advice.
    pub fn builder<'a>() -> RingBuilder<'a> {
        RingBuilder::default()
    }

    /// `mach_vm_reclaim_round_capacity(n)`: the largest capacity whose ring fills the same whole pages
    /// as `n` entries need, clamped at `VM_RECLAIM_MAX_CAPACITY` ([`MAX_CAPACITY`]).
    pub fn round_capacity(n: u32) -> u32 {
        vmspace_core::reclaim::round_capacity(n, os::page_size(), MAX_CAPACITY)
    }

    /// `mach_vm_reclaim_ring_capacity`: the entries the ring holds now.
    pub fn capacity(&self) -> u32 {
        self.producer.capacity()
    }

    /// The most entries the ring can be [resized](Self::resize) to (`max_capacity` at allocation).
    pub fn max_capacity(&self) -> u32 {
        self.core.view().max_capacity()
    }

    /// Ids not yet reclaimed (entries and holes): `tail − head`.
    pub fn len(&self) -> u64 {
        self.producer.len()
    }

    /// Whether every id entered so far has been reclaimed.
    pub fn is_empty(&self) -> bool {
        self.producer.is_empty()
    }

    /// Bytes entered and neither cancelled nor reclaimed (xnu's `estimated` reclaimable bytes).
    pub fn reclaimable_bytes(&self) -> u64 {
        self.core.reclaimable()
    }

    /// Whether the ring is bound to an [`AddressSpace`].
    pub fn is_bound(&self) -> bool {
        matches!(self.core.target, Target::Space(_))
    }

    /// Whether this is the process-wide ring of [`allocate`](Self::allocate).
    pub fn is_process_wide(&self) -> bool {
        self.core.process_wide
    }

    /// The ring's own memory (header and entries, page-rounded).
    pub fn ring_range(&self) -> std::ops::Range<u64> {
        self.core.mapping.range()
    }

    /// The ring's policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Change the ring's policy (takes effect at the next pass or accounting update).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
        // A fork child whose inherited ring cannot be adopted reclaims nothing: only our copy matters.
        if let Ok(core) = self.core() {
            core.lock().policy = policy;
        }
    }

    /// Counters over the ring's life.
    pub fn stats(&self) -> RingStats {
        let c = &self.core.counters;
        RingStats {
            reclaimable_bytes: self.core.reclaimable(),
            uncancelled_bytes: self.core.uncancelled(),
            reclaimed_bytes: self.core.reclaimed_bytes.load(Ordering::Acquire),
            passes: c.passes.load(Ordering::Relaxed),
            reclaimed: c.reclaimed.load(Ordering::Relaxed),
            holes: c.holes.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            syscalls: c.syscalls.load(Ordering::Relaxed),
        }
    }

    /// `mach_vm_reclaim_try_enter(ring, address, size, action, &id, &should_update_kernel_accounting)`:
    /// hand `[address, address + size)` to the reclaimer. No system call.
    ///
    /// `reuse == None` appends (a full ring answers `Ok` with `id: None`: the caller keeps the region);
    /// `reuse == Some(id)` puts the region into the slot of an id the caller cancelled (`id: None` when
    /// the reclaimer already passed that hole). Errors (the ring unchanged): `size > u32::MAX` →
    /// `InvalidRegionSize` (`VM_RECLAIM_REGION_SIZE_MAX`); `size == 0` or a wrapping range →
    /// `InvalidArgument`; a bad reuse id → `InvalidId`; a corrupted ring → `InvalidRing`.
    ///
    /// From the call on, the reclaimer may take the region at any time: hold no reference into it.
    pub fn try_enter(
        &mut self,
        address: u64,
        size: u64,
        action: Action,
        reuse: Option<ReclaimId>,
    ) -> Result<Entered, ReclaimError> {
        self.producer.try_enter(address, size, action, reuse)
    }

    /// `mach_vm_reclaim_try_cancel(ring, id, address, size, action, &state, &should_update)`: take the
    /// region entered as `id` back. Reuse it only if `state.is_reusable()`: `Unreclaimed` (contents
    /// intact) or `Freed` (mapped, contents undefined); `Busy` and `Deallocated` mean it is gone. No
    /// system call, except that an answer of `Freed`/`Deallocated` waits until this process's reclaimer
    /// has finished the `madvise`/`munmap` of that id (microseconds at most; at the longest, until the
    /// reclaim pass in progress ends).
    ///
    /// Misuse is an error, not a trap: an id never entered, `ReclaimId::NULL` or a double cancel →
    /// `InvalidId`; address, size or action that differ from the entry → `InvalidArgument`;
    /// `size > u32::MAX` → `InvalidRegionSize`. A shared header that says the id was reclaimed when
    /// this process's reclaimer never reclaimed it (a scribbled `head`) → `InvalidRing`: the region's
    /// state is then unknown, so do not reuse it.
    pub fn try_cancel(
        &mut self,
        id: ReclaimId,
        address: u64,
        size: u64,
        action: Action,
    ) -> Result<Cancelled, ReclaimError> {
        let c = self.producer.try_cancel(id, address, size, action)?;
        if matches!(c.state, ReclaimState::Freed | ReclaimState::Deallocated) {
            self.wait_applied(id)?;
        }
        Ok(c)
    }

    /// `mach_vm_reclaim_query_state(ring, id, action, &state)`: the state of `id` now (racy by nature:
    /// `Unreclaimed` may turn `Busy` at once). `Freed`/`Deallocated` are told apart by `action`, as in
    /// xnu; an id never entered is `InvalidId`; a header that claims a reclaim this process's reclaimer
    /// never made is `InvalidRing` (as for [`try_cancel`](Self::try_cancel)). Use
    /// [`ReclaimState::is_reusable`] (`mach_vm_reclaim_is_reusable`) on the answer.
    pub fn query_state(&self, id: ReclaimId, action: Action) -> Result<ReclaimState, ReclaimError> {
        let s = self.producer.query_state(id, action)?;
        if matches!(s, ReclaimState::Freed | ReclaimState::Deallocated) {
            self.wait_applied_shared(id)?;
        }
        Ok(s)
    }

    /// `mach_vm_reclaim_ring_flush(ring, n)`: reclaim the `n` oldest ids now (or until the ring is empty;
    /// an empty ring is success). `n` may exceed the capacity; one call passes at most `capacity` ids,
    /// which is every id in the ring. A chunk a concurrent cancel aborts is retried a bounded number of
    /// times, yielding (then the report says `aborted`). Errors: `n == 0` → `InvalidArgument`; a
    /// corrupted ring → `InvalidRing`.
    pub fn flush(&mut self, n: u64) -> Result<Report, ReclaimError> {
        if n == 0 {
            return Err(ReclaimError::InvalidArgument);
        }
        let core = self.core()?;
        let mut st = core.lock();
        core.reclaim(&mut st, n, u64::MAX)
    }

    /// Reclaim everything in the ring now (xnu's `RECLAIM_GC_DRAIN` for this ring).
    pub fn drain(&mut self) -> Result<Report, ReclaimError> {
        self.flush(u64::MAX)
    }

    /// `mach_vm_reclaim_ring_resize(ring, capacity)`: change the capacity within `1..=max_capacity()`.
    ///
    /// Unlike xnu (which drains the whole ring), live entries keep their ids and stay in the ring when
    /// they fit the new capacity; when they do not, only the oldest that do not fit are reclaimed first
    /// (reported in `drained`). Errors: a bad capacity → `InvalidCapacity`; a corrupted ring →
    /// `InvalidRing`; no memory for the move → `ResourceShortage`.
    pub fn resize(&mut self, capacity: u32) -> Result<ResizeReport<i32>, ReclaimError> {
        let core = self.core()?;
        let mut st = core.lock();
        if capacity == 0 || capacity > self.max_capacity() {
            return Err(ReclaimError::InvalidCapacity);
        }
        // Reclaim the overflow through the batched path first; then the move drains nothing.
        let live = self.producer.len();
        let mut drained = empty_report();
        if live > capacity as u64 {
            drained = core.reclaim(&mut st, live - capacity as u64, u64::MAX)?;
        }
        let r = vmspace_core::reclaim::resize(&mut self.producer, &mut st.consumer, capacity, |_, _, _| {
            Err::<(), i32>(ring::EAGAIN)
        });
        // Whatever the core's own overflow flush passed (normally nothing) counts as done: it made no
        // system call, and its failures are in the report.
        core.publish(&st);
        let r = r?;
        add_report(&mut drained, &r.drained);
        Ok(ResizeReport { drained, moved: r.moved })
    }

    /// `mach_vm_reclaim_update_kernel_accounting(ring)`: report the ring's bytes to the reclaimer and run
    /// the ring's [`Policy`] synchronously in the caller (xnu trims inside this call when its sample says
    /// the ring holds idle memory). Call it when `try_enter`/`try_cancel` set `update_accounting`, after
    /// dropping your own locks. Returns what the trim reclaimed.
    pub fn update_kernel_accounting(&mut self) -> Result<Report, ReclaimError> {
        let _reported = self.producer.accounting_report();
        let core = self.core()?;
        let mut st = core.lock();
        core.run_policy(&mut st, Instant::now())
    }

    /// Serve this ring from `reclaimer`'s thread as well (a ring may be attached to several).
    /// `NotSupported` for a fork child's inherited reclaimer (its thread does not exist here).
    pub fn attach(&mut self, reclaimer: &Reclaimer) -> Result<(), ReclaimError> {
        if reclaimer.is_inherited() {
            return Err(ReclaimError::NotSupported);
        }
        let core = self.core()?;
        if reclaimer.add(&core) { Ok(()) } else { Err(ReclaimError::NotSupported) }
    }

    /// The core, after adopting the ring if we are a fork child holding the parent's. `InvalidRing` when
    /// we are a fork child and the inherited ring fails validation: the inherited core's reclaim lock
    /// may be held by a parent thread that does not exist here, so it must not be taken.
    fn core(&mut self) -> Result<Arc<RingCore>, ReclaimError> {
        if self.core.forked() && !self.adopt() {
            return Err(ReclaimError::InvalidRing);
        }
        Ok(Arc::clone(&self.core))
    }

    /// In a fork child: a reclaiming state of our own over the inherited copy of the ring. The parent's
    /// core (whose lock a parent thread may have held at the fork) is leaked, never touched again.
    /// Returns whether we have a core of our own now.
    fn adopt(&mut self) -> bool {
        let old = &self.core;
        let ps = os::page_size();
        let raw = old.mapping.raw;
        let base = old.reclaimed_bytes.load(Ordering::Acquire);
        let target = old.target.clone();
        let (advice, batching, process_wide) = (old.advice, old.batching, old.process_wide);
        // The fork may have caught a pass mid-chunk: attaching resets `busy` to `head`, and those entries
        // are reclaimed again here. A ring that fails validation keeps the inherited state, which is
        // never locked (it was corrupted before the fork; every reclaiming call answers InvalidRing).
        let Ok(consumer) = Consumer::attach(raw, ps) else { return false };
        // The child's mapping: same address and length; the parent's `Mapping` value is leaked with its core.
        let range = old.mapping.range();
        let mapping = ring::Mapping::adopt(range, raw);
        let core = Arc::new(RingCore::new(
            mapping,
            consumer,
            target,
            advice,
            batching,
            self.policy,
            base,
            process_wide,
        ));
        let old = std::mem::replace(&mut self.core, core);
        std::mem::forget(old);
        true
    }

    /// Wait until the reclaimer's system call for `id` (which the shared `head` reports reclaimed) is
    /// done: a bounded spin on `applied`, then the reclaim lock — the pass that published that `head`
    /// publishes `applied` before it lets the lock go, so once we hold the lock `applied` has passed every
    /// id this process's reclaimer has reclaimed. If it still has not passed `id`, the `head` we were
    /// shown did not come from our reclaimer: `InvalidRing`. A fork child adopts the ring instead (the
    /// pass it inherited never finishes here).
    fn wait_applied(&mut self, id: ReclaimId) -> Result<(), ReclaimError> {
        match self.core.settle(id) {
            Settled::Applied => return Ok(()),
            Settled::Forked | Settled::Pending => {}
        }
        let core = self.core()?;
        let _st = core.lock();
        if core.applied.load(Ordering::Acquire) > id.0 { Ok(()) } else { Err(ReclaimError::InvalidRing) }
    }

    /// [`wait_applied`](Self::wait_applied) for `&self`: a fork child cannot adopt here, and keeps the
    /// answer (its inherited pass never finishes, and the inherited lock must not be taken).
    fn wait_applied_shared(&self, id: ReclaimId) -> Result<(), ReclaimError> {
        match self.core.settle(id) {
            Settled::Applied | Settled::Forked => return Ok(()),
            Settled::Pending => {}
        }
        let _st = self.core.lock();
        if self.core.applied.load(Ordering::Acquire) > id.0 { Ok(()) } else { Err(ReclaimError::InvalidRing) }
    }
}

impl Drop for ReclaimRing {
    /// The ring goes away (xnu: with the task): what is left in it is drained first, since nobody can
    /// take those regions back any more; then the memory is unmapped and the process-wide slot freed.
    fn drop(&mut self) {
        let _ = self.drain();
        if self.core.process_wide {
            PROCESS_RING.store(false, Ordering::Release);
        }
    }
}

/// Counters of a ring ([`ReclaimRing::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Bytes in the ring now (entered, not cancelled, not reclaimed).
    pub reclaimable_bytes: u64,
    /// The producer's `va_in_buffer`: bytes entered minus bytes cancelled, over the ring's life.
    pub uncancelled_bytes: u64,
    /// Entered bytes reclaimed over the ring's life (xnu's `cumulative_reclaimed`).
    pub reclaimed_bytes: u64,
    /// Reclaim passes run (synchronous and background).
    pub passes: u64,
    /// Entries reclaimed (system call succeeded).
    pub reclaimed: u64,
    /// Holes passed (cancelled entries).
    pub holes: u64,
    /// Malformed entries skipped.
    pub skipped: u64,
    /// Entries whose system call failed (or that lay outside a bound ring's space).
    pub failed: u64,
    /// System calls made (`process_madvise`, `madvise`, `munmap`, `space.unmap`).
    pub syscalls: u64,
}
