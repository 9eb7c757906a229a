//! The reclaiming side of the ring (xnu's `reclaim_chunk` and its wrappers): claim, reclaim, publish.
//!
//! Invariant: the reclaimer never trusts the shared header. It keeps its own `head`, `busy` and capacity;
//! between calls `own head == own busy` and the shared `head`/`busy` must equal them (only the reclaimer
//! writes them), the magic must be intact, and the shared `tail` must lie within `capacity` of `head` on
//! either side (a producer's pulled-back `tail` is never more than `capacity` below `head`). Any other
//! value poisons the ring: from then on every call answers `InvalidRing` and nothing in the ring is read
//! or written again. It claims `[head, head + n)` only by storing `busy = head + n`, `fence(SeqCst)`, and
//! seeing `tail >= head + n` — the mirror of the producer's handshake — and then finishes every entry it
//! claimed (no early stop inside a claim). Both sides may back off in the same round (the producer sees
//! `busy`, the reclaimer sees the pulled-back `tail`); the entry then stays in the ring, so an id whose
//! cancel answered `Busy` is always reclaimed by this pass or a later one. Processed slots are
//! zeroed before `head` moves past them, so a stale slot can never be reclaimed twice.
//!
//! Nothing here waits on the producer for long: a claim takes at most `CHUNK_SIZE + 1` rounds, a chunk
//! aborted by a pulled-back `tail` is retried at most `ABORT_RETRIES` times, and a flush passes at most
//! `capacity` ids, whatever values the shared header takes meanwhile.

use super::layout::{Entry, RING_MAGIC, RingMemory, RingView};
use super::primitive::{Ordering, RELAXED, fence, spin_loop};
use super::types::{Action, ReclaimError};

/// `kReclaimChunkSize`: the most entries the reclaimer holds busy at once.
pub const CHUNK_SIZE: u32 = 16;

/// How many times [`Consumer::flush`] retries a chunk that a concurrent cancel made it give up.
const ABORT_RETRIES: u32 = 1024;

/// What one or more reclaim passes did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct ReclaimReport<E> {
    /// Entries handed to the callback that it reclaimed (`Ok`).
    pub reclaimed: u64,
    /// The entered sizes of those entries, in bytes (what the producer's accounting counts).
    pub bytes: u64,
    /// Bytes actually given to the callback (whole pages inside each entry).
    pub trimmed_bytes: u64,
    /// Holes passed (cancelled entries).
    pub holes: u64,
    /// Entries skipped as malformed: unknown action, failed check, zero size, a range that wraps, or no
    /// whole page inside the region. They are passed, never retried, and never wedge the ring.
    pub skipped: u64,
    /// Entries whose callback returned an error; they are passed as well (reported, not retried).
    pub failed: u64,
    /// The last error a callback returned.
    pub last_error: Option<E>,
    /// The pass gave up because the producer was in the middle of a cancel or reuse (xnu's
    /// `KERN_ABORTED`); nothing was claimed. Try again.
    pub aborted: bool,
}

/// A report of nothing done (what every pass starts from).
impl<E> Default for ReclaimReport<E> {
    fn default() -> Self {
        ReclaimReport {
            reclaimed: 0,
            bytes: 0,
            trimmed_bytes: 0,
            holes: 0,
            skipped: 0,
            failed: 0,
            last_error: None,
            aborted: false,
        }
    }
}

impl<E> ReclaimReport<E> {
    /// Entries the pass moved `head` over: reclaimed, failed, skipped and holes.
    pub fn processed(&self) -> u64 {
        self.reclaimed + self.failed + self.skipped + self.holes
    }

    fn empty() -> Self {
        Self::default()
    }

    fn add(&mut self, other: ReclaimReport<E>) {
        self.reclaimed += other.reclaimed;
        self.bytes += other.bytes;
        self.trimmed_bytes += other.trimmed_bytes;
        self.holes += other.holes;
        self.skipped += other.skipped;
        self.failed += other.failed;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
        self.aborted = other.aborted;
    }
}

/// The reclaiming half of a ring: what the kernel (or the std crate's reclaimer thread) holds.
///
/// Its operations take `&mut self`: one reclaimer at a time per ring (xnu's per-ring ownership gate;
/// share it behind a lock). It runs concurrently with the [`Producer`](super::Producer).
#[derive(Debug)]
pub struct Consumer<M: RingMemory> {
    mem: M,
    capacity: u64,
    head: u64,
    page_size: u64,
    poisoned: bool,
    reclaimed_bytes: u64,
}

impl<M: RingMemory> Consumer<M> {
    /// Start reclaiming an [initialized](RingView::initialize) ring (the kernel's half of
    /// `mach_vm_reclaim_ring_allocate`). The capacity is read once here and never again from shared
    /// memory. `page_size` (a power of two) decides which whole pages of a region are reclaimed.
    ///
    /// A `busy` left above `head` (a reclaimer that stopped mid-chunk, or a fork taken during one) is
    /// reset to `head`: those entries will be reclaimed again by this reclaimer.
    ///
    /// Errors: `page_size` not a power of two → `InvalidArgument`; magic, version, capacity or indices
    /// that are not a ring's → `InvalidRing`.
    pub fn attach(mem: M, page_size: u64) -> Result<Self, ReclaimError> {
        if !page_size.is_power_of_two() {
            return Err(ReclaimError::InvalidArgument);
        }
        let v = mem.view();
        let h = v.header();
        let capacity = h.capacity.load(RELAXED);
        if !v.header_is_valid() || capacity == 0 || capacity > v.max_capacity() {
            return Err(ReclaimError::InvalidRing);
        }
        let (head, busy, tail) = (h.head.load(RELAXED), h.busy.load(RELAXED), h.tail.load(RELAXED));
        if busy < head || busy - head > CHUNK_SIZE as u64 || tail < head || tail - head > capacity as u64 {
            return Err(ReclaimError::InvalidRing);
        }
        h.busy.store(head, RELAXED);
        Ok(Consumer { mem, capacity: capacity as u64, head, page_size, poisoned: false, reclaimed_bytes: 0 })
    }

    /// The capacity this reclaimer uses (its own copy).
    pub fn capacity(&self) -> u32 {
        self.capacity as u32
    }

    /// This reclaimer's `head`: every id below it is reclaimed.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Whether a failed validation has poisoned the ring (every call then answers `InvalidRing`).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The ring's memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Bytes reclaimed over the ring's life by this reclaimer (xnu v2's `cumulative_reclaimed`): the entered
    /// sizes of every entry passed that was not a hole or malformed.
    pub fn reclaimed_bytes(&self) -> u64 {
        self.reclaimed_bytes
    }

    /// xnu v2's kernel-side estimate of the bytes still in the ring from a producer's report
    /// ([`Producer::accounting_report`](super::Producer::accounting_report)): `reported − reclaimed`,
    /// saturating at zero (a stale report, older than reclaims it does not know of, reads as zero).
    pub fn estimate_reclaimable(&self, reported_uncancelled: u64) -> u64 {
        reported_uncancelled.saturating_sub(self.reclaimed_bytes)
    }

    /// `reclaim_chunk`: claim up to `min(max_entries, CHUNK_SIZE)` of the oldest ids, reclaim each claimed
    /// entry through `reclaim(start, len, action)`, then publish the new `head`.
    ///
    /// `start..start + len` is the whole pages inside the entered region (an unaligned region gives back
    /// only the pages it covers entirely; a region without a whole page is skipped). A callback error is
    /// counted in the report and the entry is passed: the ring never wedges on one entry. The report is
    /// `aborted` when a concurrent cancel made the claim give up (retry later).
    ///
    /// Errors: `InvalidRing` when the shared header disagrees with this reclaimer's own copies or is out of
    /// the protocol's range; the ring is then poisoned and never read again.
    pub fn reclaim_chunk<E, F>(
        &mut self,
        max_entries: u32,
        mut reclaim: F,
    ) -> Result<ReclaimReport<E>, ReclaimError>
    where
        F: FnMut(u64, u64, Action) -> Result<(), E>,
    {
        self.chunk(max_entries, &mut reclaim)
    }

    /// `mach_vm_reclaim_ring_flush`: reclaim up to `n` of the oldest ids (chunk by chunk), stopping early when
    /// the ring is empty; an empty ring is success. A chunk that a concurrent cancel aborts is retried (a
    /// bounded number of times, spinning; the report says `aborted` if it still could not get through).
    /// One call passes at most `capacity` ids — every id in the ring when it starts — so a producer that
    /// keeps appending (or a header that keeps changing) cannot keep it running.
    ///
    /// Errors: `n == 0` → `InvalidArgument`; a corrupted ring → `InvalidRing` (see
    /// [`reclaim_chunk`](Consumer::reclaim_chunk)); entries reclaimed before the corruption was found stay
    /// reclaimed.
    pub fn flush<E, F>(&mut self, n: u64, mut reclaim: F) -> Result<ReclaimReport<E>, ReclaimError>
    where
        F: FnMut(u64, u64, Action) -> Result<(), E>,
    {
        if n == 0 {
            return Err(ReclaimError::InvalidArgument);
        }
        // Bounded whatever the producer (or anyone) writes: every round either processes at least one
        // id, stops, or is one of at most `ABORT_RETRIES` aborted rounds; and the ids processed stop at
        // the capacity, which covers every id in the ring when the flush starts (`tail - head <=
        // capacity`). A producer appending all the while cannot keep one flush going.
        let n = n.min(self.capacity);
        let mut total = ReclaimReport::empty();
        let mut retries = 0;
        while total.processed() < n {
            let want = (n - total.processed()).min(CHUNK_SIZE as u64) as u32;
            let r = self.chunk(want, &mut reclaim)?;
            let (aborted, progress) = (r.aborted, r.processed());
            total.add(r);
            if aborted {
                if retries == ABORT_RETRIES {
                    break;
                }
                retries += 1;
                spin_loop();
                continue;
            }
            if progress == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// `drain`: reclaim everything in the ring now (xnu's `RECLAIM_GC_DRAIN`), as [`flush`](Consumer::flush)
    /// with no limit.
    pub fn drain<E, F>(&mut self, reclaim: F) -> Result<ReclaimReport<E>, ReclaimError>
    where
        F: FnMut(u64, u64, Action) -> Result<(), E>,
    {
        self.flush(u64::MAX, reclaim)
    }

    pub(crate) fn set_capacity(&mut self, capacity: u32) {
        self.capacity = capacity as u64;
    }

    /// Check the ring (poisoning it if corrupted) and give back the shared tail.
    pub(crate) fn validated_tail(&mut self) -> Result<u64, ReclaimError> {
        let v = self.mem.view();
        let h = v.header();
        if self.poisoned {
            return Err(ReclaimError::InvalidRing);
        }
        let ok = h.magic.load(RELAXED) == RING_MAGIC
            && h.head.load(RELAXED) == self.head
            && h.busy.load(RELAXED) == self.head;
        let tail = h.tail.load(RELAXED);
        if !ok || !self.tail_plausible(tail) {
            return Err(self.poison());
        }
        Ok(tail)
    }

    /// A `tail` the protocol can produce: at most `capacity` above `head`, and (while a producer has it
    /// pulled back) at most `capacity` below.
    fn tail_plausible(&self, tail: u64) -> bool {
        tail.abs_diff(self.head) <= self.capacity
    }

    fn poison(&mut self) -> ReclaimError {
        self.poisoned = true;
        ReclaimError::InvalidRing
    }

    fn chunk<E>(
        &mut self,
        max_entries: u32,
        reclaim: &mut dyn FnMut(u64, u64, Action) -> Result<(), E>,
    ) -> Result<ReclaimReport<E>, ReclaimError> {
        let mut report = ReclaimReport::empty();
        let tail = self.validated_tail()?;
        let v = self.mem.view();
        let h = v.header();
        let head = self.head;
        if tail < head {
            report.aborted = true; // a cancel or reuse is in progress
            return Ok(report);
        }
        let mut n = (tail - head).min(max_entries.min(CHUNK_SIZE) as u64);
        // Claim [head, head + n): busy, fence, tail — shrinking while the producer pulls tail back.
        // Bounded whatever `tail` reads: every round that does not end the claim shrinks `n` (to a
        // `tail - head` below the `busy - head = n` it was tested against), so there are at most
        // `CHUNK_SIZE + 1` rounds; the count below only makes that visible.
        let mut rounds = 0;
        loop {
            if n == 0 {
                return Ok(report);
            }
            rounds += 1;
            if rounds > CHUNK_SIZE + 1 {
                h.busy.store(head, RELAXED);
                return Err(self.poison());
            }
            let busy = head + n;
            h.busy.store(busy, RELAXED);
            fence(Ordering::SeqCst);
            let tail = h.tail.load(RELAXED);
            if !self.tail_plausible(tail) {
                h.busy.store(head, RELAXED);
                return Err(self.poison());
            }
            if tail >= busy {
                break;
            }
            if tail < head {
                h.busy.store(head, RELAXED);
                report.aborted = true;
                return Ok(report);
            }
            n = tail - head;
            if n == 0 {
                h.busy.store(head, RELAXED);
                return Ok(report);
            }
        }
        // The entries below the tail we saw were written before it was stored.
        fence(Ordering::Acquire);
        for id in head..head + n {
            let slot = v.slot(id, self.capacity);
            reclaim_one(slot, self.page_size, &mut self.reclaimed_bytes, &mut report, reclaim);
        }
        // Our reads and clears of the slots happen before a producer that sees the new head reuses them.
        fence(Ordering::Release);
        self.head = head + n;
        h.head.store(self.head, RELAXED);
        Ok(report)
    }

    pub(crate) fn view(&self) -> RingView<'_> {
        self.mem.view()
    }
}

/// Reclaim one claimed slot (and clear it): a hole is counted, a malformed entry skipped, a good one
/// trimmed to its whole pages and handed to the callback.
fn reclaim_one<E>(
    slot: &Entry,
    page_size: u64,
    reclaimed_bytes: &mut u64,
    report: &mut ReclaimReport<E>,
    reclaim: &mut dyn FnMut(u64, u64, Action) -> Result<(), E>,
) {
    let e = slot.read();
    slot.clear();
    if e.is_hole() {
        report.holes += 1;
        return;
    }
    let action = match Action::from_raw(e.action) {
        Some(a) if e.is_intact() && e.size != 0 => a,
        _ => {
            report.skipped += 1;
            return;
        }
    };
    let Some(end) = e.address.checked_add(e.size as u64) else {
        report.skipped += 1;
        return;
    };
    let mask = page_size - 1;
    let start = match e.address.checked_add(mask) {
        Some(s) => s & !mask,
        None => end, // no page starts inside the region
    };
    let end = end & !mask;
    *reclaimed_bytes = reclaimed_bytes.saturating_add(e.size as u64);
    if start >= end {
        report.skipped += 1;
        return;
    }
    match reclaim(start, end - start, action) {
        Ok(()) => {
            report.reclaimed += 1;
            report.bytes += e.size as u64;
            report.trimmed_bytes += end - start;
        }
        Err(err) => {
            report.failed += 1;
            report.last_error = Some(err);
        }
    }
}
