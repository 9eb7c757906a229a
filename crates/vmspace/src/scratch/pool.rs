//! The slot pool: page descriptors (the seed's `struct dtrace_ptss_page`), per-slot metadata (the
//! seed's `struct dtrace_ptss_page_entry`) and the free list, independent of how pages are mapped, so
//! the loom model can run it as it ships.
//!
//! Slot index `i` is slot `i & mask` of page `i >> shift`. Page descriptors sit in a table allocated
//! up front (`max_pages` pointers) and are freed only when the pool is dropped, so a reader holding any
//! index, even a stale one, always reads valid metadata. Page numbers are never reused: `retire` (exec
//! or exit, or the child of a fork) marks every live page dead, and later pages take fresh numbers.
//!
//! Per-slot state word: an even number means free, odd means claimed; each claim and each release adds
//! one, so a handle remembers the odd value it was claimed with (`seq`). A release is a CAS from that
//! value to the next: a second release of the same handle, or of a copy of it, finds another value and
//! fails. The claimer owns a slot it has popped (the stack never holds an index twice), so it marks the
//! slot claimed with a plain store.
//!
//! Invariants, with the grow lock held by the caller of `add_page` and `retire`: an index of a live
//! page is either in the stack exactly once (state even), or claimed (state odd), or free and owned by
//! exactly one thread outside the stack (in transit inside one `claim`/`release` call, or kept in
//! that thread's one-slot cache between `mark_free_ref` and `claim_owned_ref`/`push`); an index of a dead
//! page may be in the stack at most once, pushed by a release that raced with `retire`, and is
//! dropped by the `claim` that pops it. A handle and a thread's cache also carry the slot's metadata
//! address ([`SlotRef`]), so the hot paths skip the table; the metadata lives as long as the pool.

use super::stack::{EMPTY, Links, TaggedStack};
use crate::primitive::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// One slot's bookkeeping, on its own pair of cache lines so that threads using neighbouring slots
/// share neither a line nor a prefetch pair (measured: 13–15 ns per claim + release with two threads
/// at 64-byte alignment, against 9 ns alone). It repeats what a claim hands out (index, addresses)
/// and whether the page is alive, so that a claim from a thread's cache and a release through a
/// handle read this line and nothing else (each pointer hop of `pool → table → page` is a dependent
/// load, four cycles even from L1).
#[repr(align(128))]
pub(crate) struct SlotMeta {
    /// Even: free; odd: claimed. Bumped by each claim and each release.
    state: AtomicU64,
    /// The next index in the free list (the seed's `next`).
    link: AtomicU32,
    /// Cleared by `retire` with the page's: the page is unmapped (or was never given to this process).
    alive: AtomicBool,
    index: u32,
    addr: u64,
    write_addr: u64,
}

/// The address of a slot's [`SlotMeta`], as a handle carries it: a plain number (so handles stay
/// `Send`), dereferenced only by the pool that made it, whose metadata lives as long as it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotRef(usize);

impl SlotRef {
    /// No slot (an empty cache).
    pub(crate) const NULL: SlotRef = SlotRef(0);

    fn of(meta: &SlotMeta) -> SlotRef {
        SlotRef(meta as *const SlotMeta as usize)
    }
}

/// A page of slots (the seed's `struct dtrace_ptss_page`): where its two views are, whether it is
/// still mapped, and its slots' metadata (the seed's `entries[DTRACE_PTSS_ENTRIES_PER_PAGE]`).
pub(crate) struct Page {
    /// The executable view (the entries' `addr`).
    pub(crate) addr: u64,
    /// The writable alias (the entries' `write_addr`).
    pub(crate) write_addr: u64,
    slots: Box<[SlotMeta]>,
}

/// A slot taken off the free list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Claimed {
    /// Its index in the pool.
    pub(crate) index: u32,
    /// The (odd) state value its claim set: the release must present it.
    pub(crate) seq: u64,
    /// Its executable address.
    pub(crate) addr: u64,
    /// Its writable address.
    pub(crate) write_addr: u64,
    /// Its metadata, for a release or a cached re-claim without the table walk.
    pub(crate) slot: SlotRef,
}

/// Why a release was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolError {
    /// The slot's page was retired (exec/exit, or a fork made this process).
    Stale,
    /// The slot is not claimed under this handle: it was released already.
    DoubleRelease,
}

/// The pool: free list, page table, counts.
pub(crate) struct Pool {
    stack: TaggedStack,
    /// log2 of the slots per page.
    shift: u32,
    slot_size: u64,
    /// Page descriptors by page number; null until published.
    table: Box<[AtomicPtr<Page>]>,
    /// Pages published so far (page numbers `0..allocated`).
    allocated: AtomicU32,
    /// Pages `live_from..allocated` are alive.
    live_from: AtomicU32,
}

impl Links for Pool {
    #[inline]
    fn link(&self, index: u32) -> &AtomicU32 {
        &self.meta(index).link
    }
}

impl Pool {
    /// A pool of pages of `1 << shift` slots of `slot_size` bytes, at most `max_pages` pages over its
    /// whole life. Panics if indices would not fit in 32 bits (the caller validates).
    pub(crate) fn new(shift: u32, slot_size: u64, max_pages: u32) -> Pool {
        assert!(shift < 32 && (u64::from(max_pages) << shift) < u64::from(EMPTY));
        Pool {
            stack: TaggedStack::new(),
            shift,
            slot_size,
            table: (0..max_pages).map(|_| AtomicPtr::new(core::ptr::null_mut())).collect(),
            allocated: AtomicU32::new(0),
            live_from: AtomicU32::new(0),
        }
    }

    fn mask(&self) -> u32 {
        (1 << self.shift) - 1
    }

    /// The page of an index known to be published (it came out of the stack or a claim).
    #[inline]
    fn page_of(&self, index: u32) -> &Page {
        let page = self.table[(index >> self.shift) as usize].load(Ordering::Acquire);
        debug_assert!(!page.is_null(), "index {index} of an unpublished page");
        // SAFETY: indices enter the stack only after their page was published (`add_page` stores the
        // pointer before pushing, and the push's release pairs with the pop's acquire), and pages are
        // freed only by `Drop`.
        unsafe { &*page }
    }

    #[inline]
    fn meta(&self, index: u32) -> &SlotMeta {
        &self.page_of(index).slots[(index & self.mask()) as usize]
    }

    /// Claims a free slot, or `None` when the free list is empty (`dtrace_ptss_claim_entry`, without
    /// its fallback to the locked path). Lock-free.
    #[inline]
    pub(crate) fn claim(&self) -> Option<Claimed> {
        loop {
            let index = self.stack.pop(self)?;
            if let Some(c) = self.claim_owned(index) {
                return Some(c);
            }
            // Pushed by a release that raced with `retire`: the page is gone; the index is dropped.
        }
    }

    /// Marks claimed a free slot that the caller owns exclusively (just popped, or kept in a
    /// thread's cache after `mark_free_ref`); `None` if its page was retired meanwhile (the index is then
    /// dropped for good).
    #[inline]
    pub(crate) fn claim_owned(&self, index: u32) -> Option<Claimed> {
        Self::claim_meta(self.meta(index))
    }

    /// [`Pool::claim_owned`] through the slot's metadata address.
    ///
    /// # Safety
    ///
    /// `slot` came from a [`Claimed`] of this pool.
    #[inline]
    pub(crate) unsafe fn claim_owned_ref(&self, slot: SlotRef) -> Option<Claimed> {
        // SAFETY: forwarded from our caller.
        Self::claim_meta(unsafe { self.meta_of_ref(slot) })
    }

    /// The metadata `slot` addresses (as [`Pool::meta`] does for an index).
    ///
    /// # Safety
    ///
    /// `slot` came from a [`Claimed`] of this pool.
    #[inline]
    unsafe fn meta_of_ref(&self, slot: SlotRef) -> &SlotMeta {
        // SAFETY: per the contract, `slot` is the address of one of this pool's `SlotMeta`s, which
        // are freed only when the pool is dropped, after `&self` ends.
        unsafe { &*(slot.0 as *const SlotMeta) }
    }

    #[inline]
    fn claim_meta(meta: &SlotMeta) -> Option<Claimed> {
        if !meta.alive.load(Ordering::Acquire) {
            return None;
        }
        let seq = meta.state.load(Ordering::Relaxed);
        debug_assert!(seq & 1 == 0, "slot {} owned while claimed", meta.index);
        // The caller is the slot's only owner: no one else stores to the state, and a stale release's
        // CAS expects an older odd value, which this even one is not.
        meta.state.store(seq + 1, Ordering::Relaxed);
        Some(Claimed {
            index: meta.index,
            seq: seq + 1,
            addr: meta.addr,
            write_addr: meta.write_addr,
            slot: SlotRef::of(meta),
        })
    }

    /// The first half of a release (`dtrace_ptss_release_entry`): checks the handle and marks the
    /// slot free (one CAS, which only one release of a claim can win), through the slot's metadata
    /// address. The caller then owns the free slot: it must `push` it or keep it (a thread's cache)
    /// for `claim_owned_ref`.
    ///
    /// # Safety
    ///
    /// `slot` came from a [`Claimed`] of this pool.
    #[inline]
    pub(crate) unsafe fn mark_free_ref(&self, slot: SlotRef, seq: u64) -> Result<(), PoolError> {
        // SAFETY: forwarded from our caller.
        Self::mark_free_meta(unsafe { self.meta_of_ref(slot) }, seq)
    }

    /// The index of the slot whose metadata `slot` addresses.
    ///
    /// # Safety
    ///
    /// `slot` came from a [`Claimed`] of this pool.
    pub(crate) unsafe fn index_of_ref(&self, slot: SlotRef) -> u32 {
        // SAFETY: forwarded from our caller.
        unsafe { self.meta_of_ref(slot) }.index
    }

    /// Why [`Pool::mark_free_ref`] refused `slot` (called after it did).
    ///
    /// # Safety
    ///
    /// As for [`Pool::mark_free_ref`].
    pub(crate) unsafe fn check_ref(&self, slot: SlotRef) -> PoolError {
        // SAFETY: forwarded from our caller.
        let meta = unsafe { self.meta_of_ref(slot) };
        if !meta.alive.load(Ordering::Acquire) { PoolError::Stale } else { PoolError::DoubleRelease }
    }

    #[inline]
    fn mark_free_meta(meta: &SlotMeta, seq: u64) -> Result<(), PoolError> {
        if !meta.alive.load(Ordering::Acquire) {
            return Err(PoolError::Stale);
        }
        meta.state
            .compare_exchange(seq, seq + 1, Ordering::Relaxed, Ordering::Relaxed)
            .map_err(|_| PoolError::DoubleRelease)?;
        Ok(())
    }

    /// Puts a free slot the caller owns (after `mark_free_ref`) on the free list.
    #[inline]
    pub(crate) fn push(&self, index: u32) {
        self.stack.push(self, index);
    }

    /// Whether another page may be added.
    pub(crate) fn has_room(&self) -> bool {
        (self.allocated.load(Ordering::Relaxed) as usize) < self.table.len()
    }

    /// Publishes a new page whose views are at `addr` and `write_addr` and splices its slots onto the
    /// free list (the second half of `dtrace_ptss_claim_entry_locked`: the page is linked into the page
    /// list, its chain pushed with one CAS). Returns the page number. The caller holds the grow lock
    /// and checked `has_room`.
    pub(crate) fn add_page(&self, addr: u64, write_addr: u64) -> u32 {
        let p = self.allocated.load(Ordering::Relaxed);
        assert!((p as usize) < self.table.len(), "add_page without room");
        let n = 1u32 << self.shift;
        let first = p << self.shift;
        let slots = (0..n)
            .map(|j| SlotMeta {
                state: AtomicU64::new(0),
                link: AtomicU32::new(if j + 1 < n { first + j + 1 } else { EMPTY }),
                alive: AtomicBool::new(true),
                index: first + j,
                addr: addr + u64::from(j) * self.slot_size,
                write_addr: write_addr + u64::from(j) * self.slot_size,
            })
            .collect();
        let page = Box::new(Page { addr, write_addr, slots });
        self.table[p as usize].store(Box::into_raw(page), Ordering::Release);
        self.allocated.store(p + 1, Ordering::Release);
        self.stack.push_chain(self, first, first + n - 1);
        p
    }

    /// Empties the free list and marks every live page dead (`dtrace_ptss_exec_exit`, and the child's
    /// side of `dtrace_ptss_fork`). Returns the dead pages' `(addr, write_addr)`, for the caller to
    /// unmap (or not, in a child that never had them). The caller holds the grow lock.
    pub(crate) fn retire(&self) -> Vec<(u64, u64)> {
        self.stack.clear();
        let from = self.live_from.load(Ordering::Relaxed);
        let to = self.allocated.load(Ordering::Relaxed);
        let mut out = Vec::with_capacity((to - from) as usize);
        for p in from..to {
            let page = self.page_of(p << self.shift);
            for meta in page.slots.iter() {
                meta.alive.store(false, Ordering::Release);
            }
            out.push((page.addr, page.write_addr));
        }
        self.live_from.store(to, Ordering::Release);
        out
    }

    /// Live pages (`p_dtrace_ptss_pages`' length).
    pub(crate) fn live_pages(&self) -> usize {
        let to = self.allocated.load(Ordering::Acquire);
        let from = self.live_from.load(Ordering::Acquire);
        to.saturating_sub(from) as usize
    }

    /// Pages published over the pool's life (live and retired).
    pub(crate) fn allocated_pages(&self) -> usize {
        self.allocated.load(Ordering::Acquire) as usize
    }

    /// Whether the free list looked empty.
    pub(crate) fn free_list_empty(&self) -> bool {
        self.stack.is_empty()
    }
}

impl Drop for Pool {
    /// Frees the page descriptors (`dtrace_ptss_free_page`'s kernel half, for every page).
    fn drop(&mut self) {
        for slot in self.table.iter() {
            let page = slot.load(Ordering::Relaxed);
            if !page.is_null() {
                // SAFETY: non-null entries came from `Box::into_raw` in `add_page`, each stored once;
                // `&mut self` means no reader is left.
                drop(unsafe { Box::from_raw(page) });
            }
        }
    }
}
