//! The ring's memory and its reclaiming half in this process: the mapping, the [`Consumer`] behind a
//! lock, the batch of system calls a pass makes, and the bookkeeping a fork child needs.
//!
//! Invariant: `applied <= head` (the consumer's), and every id below `applied` has had its system call
//! made (or its failure counted). The protocol publishes `head` as soon as a chunk's slots are read, so
//! a producer can see an id reclaimed before this process has issued its `munmap` or `madvise`;
//! [`ReclaimRing`](super::ReclaimRing) therefore waits for `applied` to pass an id before it reports
//! `Freed` or `Deallocated`, and a caller who reuses a `Freed` region never races the `MADV_FREE` that
//! reclaims it. That wait is bounded ([`RingCore::settle`], then the reclaim lock, which every pass
//! releases only after publishing `applied`), and so is every pass ([`RingCore::reclaim`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rustix::io::Errno;

use vmspace_core::Prot;
use vmspace_core::reclaim::{
    Action, CHUNK_SIZE, Consumer, ReclaimError, ReclaimId, ReclaimReport, RingMemory, RingView, ring_bytes,
};

use super::policy::{AUTOTRIM_PERCENT, AgeLog, Estimator, Policy};
use crate::AddressSpace;
use crate::os::{self, Fixed};

/// What a reclaim pass reports: the core's report with the `errno` of the last failed system call.
pub type Report = ReclaimReport<i32>;

/// An empty report.
pub(crate) fn empty_report() -> Report {
    ReclaimReport::default()
}

pub(crate) fn add_report(total: &mut Report, r: &Report) {
    total.reclaimed += r.reclaimed;
    total.bytes = total.bytes.saturating_add(r.bytes);
    total.trimmed_bytes = total.trimmed_bytes.saturating_add(r.trimmed_bytes);
    total.holes += r.holes;
    total.skipped += r.skipped;
    total.failed += r.failed;
    if r.last_error.is_some() {
        total.last_error = r.last_error;
    }
    total.aborted |= r.aborted;
}

/// How `VM_RECLAIM_FREE` gives memory back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FreeAdvice {
    /// `MADV_FREE` (xnu's `MADV_FREE_REUSABLE`): the kernel takes the pages only under memory pressure,
    /// and until then they keep their contents.
    #[default]
    Free,
    /// `MADV_DONTNEED`: the pages go at once and read as zero afterwards.
    DontNeed,
}

/// Where a ring's regions live, which decides how `VM_RECLAIM_DEALLOCATE` is done.
#[derive(Clone)]
pub(crate) enum Target {
    /// Plain process memory: `munmap` and `madvise` through `os.rs`.
    Unbound,
    /// Memory of an [`AddressSpace`]: deallocation is `space.unmap(range)` so the map stays equal to
    /// the kernel; ranges outside the space are refused (counted as failed, `EFAULT`).
    Space(Arc<AddressSpace>),
}

/// The ring's memory: `ring_bytes(max)` bytes, page-rounded, private anonymous read-write (inherited
/// by copy at fork, as xnu's `VM_INHERIT_COPY` ring).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawRing {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the pointer names shared memory every access to which is atomic (`RingView`'s contract); the
// mapping outlives every `RawRing` copy (held by `RingCore`, which both halves keep alive).
unsafe impl Send for RawRing {}
// SAFETY: as above: all accesses through the view are atomic.
unsafe impl Sync for RawRing {}

impl RingMemory for RawRing {
    #[inline]
    fn view(&self) -> RingView<'_> {
        // SAFETY: `ptr..ptr + len` is the read-write mapping made in `Mapping::new`, alive while any
        // `RawRing` of it is (see `RingCore`), and only ever accessed through `RingView`s (atomics).
        match unsafe { RingView::from_raw_parts(self.ptr, self.len) } {
            Ok(v) => v,
            // `Mapping::new` checked this exact call succeeds; pointer and length never change.
            Err(_) => unreachable!("ring mapping validated at allocation"),
        }
    }
}

/// The mapping itself; unmapped on drop.
pub(crate) struct Mapping {
    addr: u64,
    map_len: u64,
    pub(crate) raw: RawRing,
}

impl Mapping {
    /// Map a ring that can hold `max` entries and initialize it with `initial` (the kernel's half of
    /// `mach_vm_reclaim_ring_allocate`).
    pub(crate) fn new(initial: u32, max: u32) -> Result<Mapping, ReclaimError> {
        let bytes = ring_bytes(max) as u64;
        let map_len = bytes.next_multiple_of(os::page_size());
        let addr = os::reserve(map_len).map_err(|_| ReclaimError::ResourceShortage)?;
        let m =
            Mapping { addr, map_len, raw: RawRing { ptr: addr as usize as *mut u8, len: bytes as usize } };
        // SAFETY: the reservation just made for the ring, known to no one else.
        unsafe { os::map_fixed(addr, map_len, Prot::RW, Fixed::Anonymous) }
            .map_err(|_| ReclaimError::ResourceShortage)?;
        // SAFETY: the range was just mapped read-write for `map_len >= bytes` bytes and nothing else
        // refers to it yet.
        let v = unsafe { RingView::from_raw_parts(m.raw.ptr, m.raw.len) }?;
        v.initialize(initial)?;
        Ok(m)
    }

    /// A fork child's ownership of its inherited copy of a mapping at `range` (the parent's `Mapping`
    /// value is leaked in the child, so the range is unmapped once).
    pub(crate) fn adopt(range: std::ops::Range<u64>, raw: RawRing) -> Mapping {
        Mapping { addr: range.start, map_len: range.end - range.start, raw }
    }

    /// The mapped range.
    pub(crate) fn range(&self) -> std::ops::Range<u64> {
        self.addr..self.addr + self.map_len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the ring's own mapping; dropping the `Mapping` ends every use of it.
        let _ = unsafe { os::unmap(self.addr, self.map_len) };
    }
}

/// The reclaimer's private state, behind `RingCore::state`.
pub(crate) struct Reclaiming {
    pub(crate) consumer: Consumer<RawRing>,
    pub(crate) policy: Policy,
    pub(crate) ws: Estimator,
    pub(crate) ages: AgeLog,
    /// Bytes reclaimed by reclaimers before this consumer (a fork child's inheritance).
    pub(crate) base: u64,
    batch: Vec<(u64, u64, Action)>,
}

/// Counters over the ring's life (all relaxed; for statistics).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) passes: AtomicU64,
    pub(crate) reclaimed: AtomicU64,
    pub(crate) holes: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) syscalls: AtomicU64,
}

/// Everything of one ring that the producer, synchronous calls and reclaimer threads share.
pub(crate) struct RingCore {
    pub(crate) mapping: Mapping,
    pub(crate) state: Mutex<Reclaiming>,
    pub(crate) target: Target,
    pub(crate) advice: FreeAdvice,
    pub(crate) batching: bool,
    /// Ids below this are reclaimed with their system calls done (see the module invariant).
    pub(crate) applied: AtomicU64,
    /// Entered bytes reclaimed over the ring's life (mirror of `base + consumer.reclaimed_bytes()`).
    pub(crate) reclaimed_bytes: AtomicU64,
    pub(crate) counters: Counters,
    /// The process this core belongs to (a fork child adopts the ring with a core of its own).
    pub(crate) pid: u32,
    /// The process-wide ring of `ReclaimRing::allocate` (releases `PROCESS_RING` when dropped).
    pub(crate) process_wide: bool,
}

/// Whether the process-wide ring exists (`mach_vm_reclaim_ring_allocate` allows one per task).
pub(crate) static PROCESS_RING: AtomicBool = AtomicBool::new(false);

/// The most ranges gathered before the system calls of a pass go out.
const BATCH_MAX: usize = os::MADVISE_BATCH_MAX;
/// How many aborted chunks (a concurrent cancel) a pass retries, yielding every 16th time. A cancel
/// holds `tail` pulled back for a few instructions, so an honest ring needs a try or two; if the
/// producer was preempted mid-cancel (or the header is scribbled so), the pass gives up with `aborted`
/// and nothing is lost: the entries stay for the next pass.
const ABORT_RETRIES: u32 = 4096;
/// How long [`RingCore::settle`] spins (yielding every 64th round) before it takes the reclaim lock.
const SETTLE_SPINS: u32 = 1024;

/// The raw `errno` values reports carry, from rustix (only `os` talks to the C library directly).
pub(crate) const EAGAIN: i32 = Errno::AGAIN.raw_os_error();
const EFAULT: i32 = Errno::FAULT.raw_os_error();
const EIO: i32 = Errno::IO.raw_os_error();
const EINVAL: i32 = Errno::INVAL.raw_os_error();

/// How [`RingCore::settle`] ended.
pub(crate) enum Settled {
    /// `applied` passed the id: its system call is done.
    Applied,
    /// This core is a fork parent's: its pass never finishes here.
    Forked,
    /// Not yet after the bounded spin: take the reclaim lock and look again.
    Pending,
}

impl RingCore {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        mapping: Mapping,
        consumer: Consumer<RawRing>,
        target: Target,
        advice: FreeAdvice,
        batching: bool,
        policy: Policy,
        base: u64,
        process_wide: bool,
    ) -> RingCore {
        let head = consumer.head();
        RingCore {
            mapping,
            state: Mutex::new(Reclaiming {
                consumer,
                policy,
                ws: Estimator::new(),
                ages: AgeLog::default(),
                base,
                batch: Vec::new(),
            }),
            target,
            advice,
            batching,
            applied: AtomicU64::new(head),
            reclaimed_bytes: AtomicU64::new(base),
            counters: Counters::default(),
            pid: std::process::id(),
            process_wide,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Reclaiming> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub(crate) fn view(&self) -> RingView<'_> {
        self.mapping.raw.view()
    }

    /// Whether this core was made by another process (we are a fork child holding the parent's copy).
    pub(crate) fn forked(&self) -> bool {
        self.pid != std::process::id()
    }

    /// Spin (a bounded number of rounds, yielding now and then) until `applied` passes `id`: the
    /// common case of a pass that has published `head` and is issuing its system calls. Never waits
    /// longer than [`SETTLE_SPINS`] rounds, whatever the ring says.
    pub(crate) fn settle(&self, id: ReclaimId) -> Settled {
        for spins in 0..SETTLE_SPINS {
            if self.applied.load(Ordering::Acquire) > id.0 {
                return Settled::Applied;
            }
            if spins % 64 == 63 {
                if self.forked() {
                    return Settled::Forked;
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if self.applied.load(Ordering::Acquire) > id.0 {
            Settled::Applied
        } else if self.forked() {
            Settled::Forked
        } else {
            Settled::Pending
        }
    }

    /// Publish what the consumer has passed: `applied` and the reclaimed bytes (every system call of
    /// those ids made, or its failure counted).
    pub(crate) fn publish(&self, st: &Reclaiming) {
        self.reclaimed_bytes.store(st.base.saturating_add(st.consumer.reclaimed_bytes()), Ordering::Release);
        self.applied.store(st.consumer.head(), Ordering::Release);
    }

    /// The producer's uncancelled bytes (`va_in_buffer`, the header's first field), read live: the
    /// reclaimer is in the same process, so it needs no report to know it.
    pub(crate) fn uncancelled(&self) -> u64 {
        let ptr = self.mapping.raw.ptr as *const AtomicU64;
        // SAFETY: offset 0 of the ring mapping is the header's `va_in_buffer` (`RingHeader` is
        // `repr(C)` with it first; `HEADER_SIZE` asserted by the core), an 8-aligned u64 that every
        // party accesses atomically; the mapping is alive while `self` is.
        unsafe { &*ptr }.load(Ordering::Relaxed)
    }

    /// Bytes in the ring now (xnu's `estimated = uncancelled − reclaimed`, saturating).
    pub(crate) fn reclaimable(&self) -> u64 {
        self.uncancelled().saturating_sub(self.reclaimed_bytes.load(Ordering::Acquire))
    }

    /// Reclaim the oldest entries until `max_entries` ids are passed, `max_bytes` entered bytes are
    /// reclaimed, or the ring is empty. System calls are gathered and issued in batches (at most
    /// `BATCH_MAX` ranges, and always before the pass returns).
    ///
    /// Bounded whatever the shared header says: a pass passes at most `capacity` ids (every id in the
    /// ring when it starts, since `tail - head <= capacity`; a producer appending meanwhile waits for
    /// the next pass) and retries at most `ABORT_RETRIES` aborted chunks; every other round passes at
    /// least one id or ends the pass.
    pub(crate) fn reclaim(
        &self,
        st: &mut Reclaiming,
        max_entries: u64,
        max_bytes: u64,
    ) -> Result<Report, ReclaimError> {
        let max_entries = max_entries.min(st.consumer.capacity() as u64);
        let mut total = empty_report();
        let mut aborts = 0u32;
        // With a byte limit, claim one entry at a time so the trim stops close to the limit.
        let per_chunk = if max_bytes == u64::MAX { CHUNK_SIZE as u64 } else { 1 };
        while total.processed() < max_entries && total.bytes < max_bytes {
            let want = (max_entries - total.processed()).min(per_chunk) as u32;
            let Reclaiming { consumer, batch, .. } = &mut *st;
            let r = consumer.reclaim_chunk(want, |start, len, action| {
                batch.push((start, len, action));
                Ok::<(), i32>(())
            });
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    self.apply(st, &mut total);
                    return Err(e);
                }
            };
            add_report(&mut total, &r);
            if r.aborted {
                // A cancel holds `tail` pulled back for a moment: let it finish.
                aborts += 1;
                if aborts > ABORT_RETRIES {
                    break;
                }
                if aborts.is_multiple_of(16) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            total.aborted = false;
            if r.processed() == 0 {
                break;
            }
            if st.batch.len() >= BATCH_MAX {
                self.apply(st, &mut total);
            }
        }
        self.apply(st, &mut total);
        let c = &self.counters;
        c.passes.fetch_add(1, Ordering::Relaxed);
        c.reclaimed.fetch_add(total.reclaimed, Ordering::Relaxed);
        c.holes.fetch_add(total.holes, Ordering::Relaxed);
        c.skipped.fetch_add(total.skipped, Ordering::Relaxed);
        c.failed.fetch_add(total.failed, Ordering::Relaxed);
        Ok(total)
    }

    /// Issue the gathered system calls, then publish `applied` and the reclaimed bytes.
    fn apply(&self, st: &mut Reclaiming, total: &mut Report) {
        if !st.batch.is_empty() {
            let (calls, failures) = self.target.apply(&st.batch, self.advice, self.batching);
            self.counters.syscalls.fetch_add(calls, Ordering::Relaxed);
            let n = failures.len() as u64;
            total.reclaimed = total.reclaimed.saturating_sub(n);
            total.failed += n;
            if let Some(&(_, errno)) = failures.last() {
                total.last_error = Some(errno);
            }
            st.batch.clear();
        }
        self.publish(st);
    }

    /// One pass of the ring's [`Policy`] at `now` (xnu's `RECLAIM_GC_TRIM` for one ring, and the trim
    /// inside `update_kernel_accounting`): the age limit, then the budget, then the working-set estimate.
    pub(crate) fn run_policy(&self, st: &mut Reclaiming, now: Instant) -> Result<Report, ReclaimError> {
        let mut total = empty_report();
        let policy = st.policy;
        if let Some(age) = policy.max_age {
            // The shared tail as far as it can be true (the reclaimer never claims beyond a capacity
            // past its head): one scribbled far ahead must not stop the log for good.
            let most = st.consumer.head().saturating_add(st.consumer.capacity() as u64);
            st.ages.record(now, self.view().indices().tail.min(most));
            if let Some(below) = st.ages.expired_below(now, age) {
                let head = st.consumer.head();
                if below > head {
                    let r = self.reclaim(st, below - head, u64::MAX)?;
                    add_report(&mut total, &r);
                }
            }
        }
        if let Some(budget) = policy.budget {
            let have = self.reclaimable();
            if have > budget {
                let r = self.reclaim(st, u64::MAX, have - budget)?;
                add_report(&mut total, &r);
            }
        }
        if let Some(ws) = policy.working_set {
            let page = os::page_size();
            let threshold = ws.min_trim.unwrap_or_else(|| os::rusage().1 / 100 * AUTOTRIM_PERCENT);
            let trim = st.ws.sample(now, self.reclaimable(), &ws, page, threshold);
            if trim > 0 {
                let r = self.reclaim(st, u64::MAX, trim)?;
                add_report(&mut total, &r);
            }
        }
        Ok(total)
    }

    /// Reclaim down to `floor` reclaimable bytes (memory pressure: xnu's `RECLAIM_GC_DRAIN` when 0).
    pub(crate) fn trim_to(&self, st: &mut Reclaiming, floor: u64) -> Result<Report, ReclaimError> {
        let have = self.reclaimable();
        if floor == 0 {
            return self.reclaim(st, u64::MAX, u64::MAX);
        }
        if have <= floor {
            return Ok(empty_report());
        }
        self.reclaim(st, u64::MAX, have - floor)
    }
}

impl Target {
    /// Give the gathered ranges back: `Free` ones with one advice over all of them (batched), then
    /// `Deallocate` ones with `munmap` (adjacent ranges merged) or `space.unmap`. Returns the system
    /// calls made and the failed ranges (index, errno).
    fn apply(
        &self,
        batch: &[(u64, u64, Action)],
        advice: FreeAdvice,
        batching: bool,
    ) -> (u64, Vec<(usize, i32)>) {
        let mut failed = Vec::new();
        let mut calls = 0;
        let inside = |start: u64, len: u64| match self {
            Target::Unbound => true,
            Target::Space(s) => {
                let r = s.range();
                start >= r.start && start.checked_add(len).is_some_and(|e| e <= r.end)
            }
        };
        let mut frees = Vec::new();
        let mut free_idx = Vec::new();
        for (i, &(start, len, action)) in batch.iter().enumerate() {
            if !inside(start, len) {
                failed.push((i, EFAULT));
            } else if action == Action::Free {
                frees.push((start, len));
                free_idx.push(i);
            }
        }
        if !frees.is_empty() {
            // SAFETY: ranges the producer entered: by `try_enter`'s contract it holds no reference into
            // them until it cancels, and a cancel waits for this pass.
            let (c, f) = unsafe { os::advise_many(&frees, advice == FreeAdvice::Free, batching) };
            calls += c;
            failed.extend(f.into_iter().map(|(j, e)| (free_idx[j], e)));
        }
        // Deallocations: merge runs of adjacent ranges into one call.
        let mut run: Option<(u64, u64, Vec<usize>)> = None;
        let mut flush_run = |run: Option<(u64, u64, Vec<usize>)>, failed: &mut Vec<(usize, i32)>| {
            if let Some((start, end, idx)) = run {
                calls += 1;
                let r = match self {
                    Target::Unbound => {
                        // SAFETY: as for the frees above.
                        unsafe { os::unmap(start, end - start) }.map_err(|e| e.raw_os_error().unwrap_or(EIO))
                    }
                    Target::Space(s) => s.unmap(start..end).map_err(|e| match e {
                        crate::Error::Os { source, .. } => source.raw_os_error().unwrap_or(EIO),
                        _ => EINVAL,
                    }),
                };
                if let Err(e) = r {
                    failed.extend(idx.into_iter().map(|i| (i, e)));
                }
            }
        };
        for (i, &(start, len, action)) in batch.iter().enumerate() {
            if action != Action::Deallocate || !inside(start, len) {
                continue;
            }
            match &mut run {
                Some((_, end, idx)) if *end == start => {
                    *end = start + len;
                    idx.push(i);
                }
                _ => {
                    let prev = run.replace((start, start + len, vec![i]));
                    flush_run(prev, &mut failed);
                }
            }
        }
        flush_run(run, &mut failed);
        (calls, failed)
    }
}
