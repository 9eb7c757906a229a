//! Per-thread scratch space (the seed's `dtrace_ptss`, xnu `bsd/sys/dtrace_ptss.h`): small slots of
//! memory that a thread writes through one address and executes at another, for displaced
//! instructions, trampolines and thunks.
//!
//! Every page is a memfd mapped twice through an [`AddressSpace`]: read+execute at the slot's
//! [`addr`](SlotView::addr), read+write at its [`write_addr`](SlotView::write_addr). No address is
//! ever writable and executable: the executable view's max protection is R|X and the alias's R|W, so
//! not even `AddressSpace::protect` can add the missing right. Both views are `Inherit::None`
//! (`MADV_DONTFORK`): a forked child has neither, and the child's scratch space starts empty.
//!
//! Claim and release are lock-free and ABA-safe: a Treiber stack of slot indices whose head carries a
//! 32-bit tag bumped by every change (see `scratch/stack.rs` for the argument), plus a per-slot state
//! word (free/claimed and a generation) that turns a double release, a foreign slot or a release after
//! `exec_exit` into an error instead of a corrupted list. A claim that finds the list empty takes the
//! grow lock (the seed's `sprlock`), allocates one page, maps both views and splices the page's slots
//! in (`dtrace_ptss_claim_entry_locked`); a failure there unmaps whatever it mapped and returns the
//! error.
//!
//! Differences from the seed, all fixes of its known defects: the free list is tagged (the seed's
//! untagged CAS can hand one slot to two threads); a failed claim is a `Result`, never a null entry;
//! a failed page allocation leaks no mapping; `exec_exit` unmaps the pages (instead of leaving them to
//! the address space's teardown) and every thread's slot becomes invalid, so a later [`current`](ScratchSpace::current)
//! claims anew; a forked child never shares the writable alias (or the executable view) with the
//! parent; threads claim lazily on first use instead of `enable` claiming for every thread, which
//! closes the seed's enable-versus-thread-creation race.
//!
//! # Seed correspondence
//!
//! | seed (`dtrace_ptss.h`, xnu-8019 and the older form) | here |
//! | --- | --- |
//! | `DTRACE_PTSS_SCRATCH_SPACE_PER_THREAD` (64) | [`DEFAULT_SLOT_SIZE`], [`Builder::slot_size`] |
//! | `DTRACE_PTSS_ENTRIES_PER_PAGE` (`PAGE_MAX_SIZE` / `PAGE_SIZE` ÷ 64) | [`ScratchSpace::entries_per_page`] |
//! | `struct dtrace_ptss_page_entry` | [`ScratchSlot`] (handle) + private per-slot state in `scratch/pool.rs` |
//! | `dtrace_ptss_page_entry.next` | the free list's per-slot link (`scratch/stack.rs`) |
//! | `dtrace_ptss_page_entry.addr` | [`SlotView::addr`], [`ScratchSlot::addr`] |
//! | `dtrace_ptss_page_entry.write_addr` (newer form only) | [`SlotView::write_addr`], [`ScratchSlot::write_addr`] |
//! | `struct dtrace_ptss_page` (`next`, `entries[]`) | private page descriptor table (`scratch/pool.rs`) |
//! | `dtrace_ptss_claim_entry` | [`ScratchSpace::claim`] |
//! | `dtrace_ptss_claim_entry_locked` | the locked slow path of [`ScratchSpace::claim`] |
//! | `dtrace_ptss_release_entry` | [`ScratchSpace::release`] |
//! | `dtrace_ptss_allocate_page` | private `allocate_page_locked` (two views of one memfd) |
//! | `dtrace_ptss_free_page` | [`ScratchSpace::exec_exit`] and `Drop` (unmap both views) |
//! | `dtrace_ptss_enable` | [`ScratchSpace::enable`], [`ScratchSpace::new`], [`Builder`] |
//! | `dtrace_ptss_exec_exit` | [`ScratchSpace::exec_exit`] |
//! | `dtrace_ptss_fork` | `MADV_DONTFORK` on both views + the child's lazy reset (fork generation) |
//! | `uthread->t_dtrace_scratch` | [`ScratchSpace::current`] (thread-local, released at thread exit) |
//! | `p_dtrace_ptss_pages` | [`ScratchSpace::pages`] |
//! | `p_dtrace_sprlock` | the grow lock (fork-aware, `scratch/lock.rs`) |
//! | (arm64 `dtrace_flush_caches`) | [`SlotView::sync_icache`] |

mod current;
mod icache;
mod lock;
mod pool;
mod slot;
mod stack;

pub use slot::{MIN_SLOT_SIZE, ScratchError, ScratchSlot, SlotView};

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vmspace_core::{Inherit, MapSpec, Prot};

use crate::backing::Backing;
use crate::error::Error;
use crate::os;
use crate::space::AddressSpace;

use lock::{ForkLock, generation};
use pool::{Claimed, Pool, PoolError, SlotRef};

/// Bytes per slot unless the builder says otherwise (`DTRACE_PTSS_SCRATCH_SPACE_PER_THREAD`).
pub const DEFAULT_SLOT_SIZE: usize = 64;

/// Pages a scratch space may allocate over its whole life (live and retired by `exec_exit` or a
/// fork) unless the builder says otherwise: 4096 pages of 64-byte slots are 262,144 slots.
pub const DEFAULT_MAX_PAGES: u32 = 4096;

/// Settings of a scratch space, then [`Builder::enable`] or [`Builder::build`].
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    slot_size: usize,
    max_pages: u32,
    thread_cache: bool,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder { slot_size: DEFAULT_SLOT_SIZE, max_pages: DEFAULT_MAX_PAGES, thread_cache: true }
    }
}

impl Builder {
    /// Bytes per slot: a power of two from [`MIN_SLOT_SIZE`] to the page size
    /// (`DTRACE_PTSS_SCRATCH_SPACE_PER_THREAD`; checked when the space is made).
    pub fn slot_size(mut self, bytes: usize) -> Builder {
        self.slot_size = bytes;
        self
    }

    /// Pages the space may allocate over its whole life, live or retired ([`DEFAULT_MAX_PAGES`]); the
    /// page table (8 bytes a page) is allocated up front so that it never moves under a lock-free
    /// reader.
    pub fn max_pages(mut self, pages: u32) -> Builder {
        self.max_pages = pages;
        self
    }

    /// Whether a release keeps the freed slot in a one-slot cache of the releasing thread, for that
    /// thread's next claim (default on). On, a thread that claims and releases in turn touches no
    /// shared cache line but the slot's state word (one atomic operation per claim + release); the
    /// price is that up to one free slot per thread is out of other threads' reach until that thread
    /// claims it or exits, so other threads may allocate a page sooner. Off, every release goes to
    /// the shared free list (three atomic operations per claim + release).
    pub fn thread_cache(mut self, on: bool) -> Builder {
        self.thread_cache = on;
        self
    }

    /// A scratch space whose pages come from `space` (`dtrace_ptss_enable`).
    pub fn enable(self, space: &AddressSpace) -> Result<ScratchSpace<'_>, ScratchError> {
        self.make(SpaceRef::Borrowed(space))
    }

    /// A scratch space with an address space of its own, reserved large enough for `max_pages` pages
    /// (both views), and released when the scratch space is dropped.
    pub fn build(self) -> Result<ScratchSpace<'static>, ScratchError> {
        let ps = os::page_size();
        let len = u64::from(self.max_pages.max(1)) * 2 * ps;
        self.check()?;
        self.make(SpaceRef::Owned(AddressSpace::reserve(len)?))
    }

    fn check(&self) -> Result<u32, ScratchError> {
        let ps = os::page_size() as usize;
        let n = self.slot_size;
        if !n.is_power_of_two() || n < MIN_SLOT_SIZE || n > ps {
            return Err(ScratchError::InvalidSlotSize(n));
        }
        let shift = (ps / n).trailing_zeros();
        if self.max_pages == 0 || (u64::from(self.max_pages) << shift) >= u64::from(u32::MAX) {
            return Err(ScratchError::InvalidMaxPages(self.max_pages));
        }
        Ok(shift)
    }

    fn make(self, space: SpaceRef<'_>) -> Result<ScratchSpace<'_>, ScratchError> {
        let shift = self.check()?;
        lock::watch_forks().map_err(|errno| {
            ScratchError::Space(Error::Os {
                call: "pthread_atfork",
                source: std::io::Error::from_raw_os_error(errno),
            })
        })?;
        static IDS: AtomicU64 = AtomicU64::new(1);
        let inner = Inner {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            pool: Pool::new(shift, self.slot_size as u64, self.max_pages),
            lock: ForkLock::new(),
            fork_gen: AtomicU64::new(generation()),
            epoch: AtomicU64::new(0),
            slot_size: self.slot_size as u32,
            page_size: os::page_size(),
            thread_cache: self.thread_cache,
        };
        Ok(ScratchSpace { space, inner: Arc::new(inner) })
    }
}

enum SpaceRef<'a> {
    Borrowed(&'a AddressSpace),
    Owned(AddressSpace),
}

/// What a thread-local slot needs to outlive the `ScratchSpace` borrow: the pool and its checks, not
/// the address space.
pub(crate) struct Inner {
    /// Tells this space's slots from other spaces' (the seed's `proc` argument of `release_entry`).
    id: u64,
    pool: Pool,
    /// The grow lock (`p_dtrace_sprlock`).
    lock: ForkLock,
    /// The fork generation of the process the pool's pages belong to.
    fork_gen: AtomicU64,
    /// Bumped whenever the pool retires its pages (exec_exit, the child's reset).
    epoch: AtomicU64,
    slot_size: u32,
    page_size: u64,
    /// Releases go to the releasing thread's one-slot cache first.
    thread_cache: bool,
}

impl Inner {
    fn slot(&self, c: Claimed) -> ScratchSlot {
        ScratchSlot {
            addr: c.addr,
            write_addr: c.write_addr,
            space: self.id,
            index_len: u64::from(self.slot_size) << 32 | u64::from(c.index),
            seq: c.seq,
            slot: c.slot,
        }
    }

    /// `dtrace_ptss_release_entry`: check and mark free (one CAS), then keep the slot in this
    /// thread's cache if that is on and empty, else push it onto the free list.
    ///
    /// Small enough to inline into the caller, with the errors and the shared list out of line: a
    /// handle passed through memory costs a store-forwarding stall per call.
    #[inline]
    fn release(self: &Arc<Inner>, slot: ScratchSlot) -> Result<(), ScratchError> {
        self.mark_free(&slot)?;
        if !(self.thread_cache && current::put_cached(self, slot.slot)) {
            self.push_cold(slot.index());
        }
        Ok(())
    }

    /// The check and the CAS of [`Inner::release`].
    #[inline]
    fn mark_free(&self, slot: &ScratchSlot) -> Result<(), ScratchError> {
        let freed = slot.space == self.id
            && self.fork_gen.load(Ordering::Acquire) == generation()
            // SAFETY: the ids match, so `slot` was made by this space's pool (ids are unique in
            // the process, and a handle's fields cannot be forged).
            && unsafe { self.pool.mark_free_ref(slot.slot, slot.seq) }.is_ok();
        if freed { Ok(()) } else { Err(self.release_error(slot)) }
    }

    /// Why [`Inner::release`] refused `slot` (which it did not change).
    #[cold]
    #[inline(never)]
    fn release_error(&self, slot: &ScratchSlot) -> ScratchError {
        if slot.space != self.id {
            return ScratchError::ForeignSlot;
        }
        if self.fork_gen.load(Ordering::Acquire) != generation() {
            // This process was forked from the one that claimed the slot.
            return ScratchError::Stale;
        }
        // SAFETY: as in `release`.
        match unsafe { self.pool.check_ref(slot.slot) } {
            PoolError::Stale => ScratchError::Stale,
            PoolError::DoubleRelease => ScratchError::DoubleRelease,
        }
    }

    /// Puts a freed slot on the shared list (the cache was full or off).
    #[inline(never)]
    fn push_cold(&self, index: u32) {
        self.pool.push(index);
    }

    /// The child's half of `dtrace_ptss_fork`, with the grow lock held: if this process is a fork
    /// child of the one whose pages the pool holds, forget them (the kernel did not give them to the
    /// child, and `vmspace::fork` made their ranges reservation again) and start empty.
    fn reset_if_forked_locked(&self) {
        let now = generation();
        if self.fork_gen.load(Ordering::Acquire) != now {
            drop(self.pool.retire());
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.fork_gen.store(now, Ordering::Release);
        }
    }

    /// [`Inner::reset_if_forked_locked`], taking the lock only when a reset is due.
    fn reset_if_forked(&self) {
        if self.fork_gen.load(Ordering::Acquire) != generation() {
            let _g = self.lock.lock();
            self.reset_if_forked_locked();
        }
    }
}

impl current::Owner for Inner {
    fn id(&self) -> u64 {
        self.id
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn in_this_process(&self) -> bool {
        self.fork_gen.load(Ordering::Acquire) == generation()
    }

    fn push_ref(&self, slot: SlotRef) {
        // SAFETY: the callers (this thread's cache) hold only `SlotRef`s of the space whose id they
        // recorded, this one's.
        self.pool.push(unsafe { self.pool.index_of_ref(slot) });
    }

    fn release_uncached(&self, slot: ScratchSlot) -> Result<(), ScratchError> {
        self.mark_free(&slot)?;
        self.push_cold(slot.index());
        Ok(())
    }
}

/// A per-process scratch space (the seed's per-`proc` ptss state: `p_dtrace_ptss_pages`,
/// `p_dtrace_ptss_free_list`, `p_dtrace_sprlock`), drawing its pages from an [`AddressSpace`].
///
/// `Send + Sync`; share it by reference (scoped threads) or in an `Arc`. The lifetime is that of the
/// borrowed address space ([`ScratchSpace::enable`]); [`ScratchSpace::new`] owns its space and is
/// `'static`. Dropping the space unmaps its pages; slots still held (even thread-local ones) are then
/// dangling addresses, like after [`ScratchSpace::exec_exit`].
///
/// All addresses handed out are plain numbers: using them (writing through `write_addr`, calling into
/// `addr`) is the caller's `unsafe` business, valid while the slot is claimed and the space neither
/// dropped nor `exec_exit`ed.
pub struct ScratchSpace<'a> {
    space: SpaceRef<'a>,
    inner: Arc<Inner>,
}

impl ScratchSpace<'static> {
    /// A scratch space with default settings and an address space of its own (`dtrace_ptss_enable`
    /// on a fresh process image); see [`Builder::build`].
    pub fn new() -> Result<ScratchSpace<'static>, ScratchError> {
        Builder::default().build()
    }
}

impl<'a> ScratchSpace<'a> {
    /// Settings other than the defaults: [`Builder::slot_size`], [`Builder::max_pages`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A scratch space whose pages are mapped in `space` (`dtrace_ptss_enable`). No page is allocated
    /// until the first claim; threads claim their own slot on first [`current`](Self::current) rather
    /// than all at once here (the seed claims for every thread under the proc lock, racing with thread
    /// creation).
    pub fn enable(space: &'a AddressSpace) -> Result<ScratchSpace<'a>, ScratchError> {
        Builder::default().enable(space)
    }

    /// The address space the pages are mapped in.
    pub fn space(&self) -> &AddressSpace {
        match &self.space {
            SpaceRef::Borrowed(s) => s,
            SpaceRef::Owned(s) => s,
        }
    }

    /// Bytes per slot (`DTRACE_PTSS_SCRATCH_SPACE_PER_THREAD`).
    pub fn slot_size(&self) -> usize {
        self.inner.slot_size as usize
    }

    /// Slots per page: page size ÷ slot size (`DTRACE_PTSS_ENTRIES_PER_PAGE`; the seed divides
    /// `PAGE_MAX_SIZE`, or `PAGE_SIZE` in the older header, by 64).
    pub fn entries_per_page(&self) -> usize {
        (self.inner.page_size / u64::from(self.inner.slot_size)) as usize
    }

    /// Pages mapped now (the length of `p_dtrace_ptss_pages`); 0 after `exec_exit` and in a forked
    /// child until it claims.
    pub fn pages(&self) -> usize {
        if self.inner.fork_gen.load(Ordering::Acquire) != generation() {
            return 0;
        }
        self.inner.pool.live_pages()
    }

    /// Pages allocated over the space's life, live and retired (bounded by [`Builder::max_pages`]).
    pub fn pages_allocated(&self) -> usize {
        self.inner.pool.allocated_pages()
    }

    /// Claims a free slot (`dtrace_ptss_claim_entry`): this thread's cached slot if it has one (see
    /// [`Builder::thread_cache`]), else lock-free from the free list; if that is empty, takes the
    /// grow lock and allocates a page (`dtrace_ptss_claim_entry_locked`, `dtrace_ptss_allocate_page`). The slot is the caller's until [`release`](Self::release)d.
    #[inline]
    pub fn claim(&self) -> Result<ScratchSlot, ScratchError> {
        let inner = &self.inner;
        let mut cached = None;
        if inner.thread_cache && inner.fork_gen.load(Ordering::Acquire) == generation() {
            // SAFETY: the cache hands out only `SlotRef`s of the space whose id it records.
            cached = current::take_cached(inner).and_then(|r| unsafe { inner.pool.claim_owned_ref(r) });
        }
        // The handle is built here from either path's `Claimed`, not written by the slow path into
        // the caller's result: a result filled in two ways stays in memory, and copying it then stalls.
        let c = match cached {
            Some(c) => c,
            None => self.claim_shared()?,
        };
        Ok(inner.slot(c))
    }

    /// The rest of [`ScratchSpace::claim`], out of line: the shared free list, then the lock.
    #[inline(never)]
    fn claim_shared(&self) -> Result<Claimed, ScratchError> {
        let inner = &self.inner;
        if inner.fork_gen.load(Ordering::Acquire) == generation()
            && let Some(c) = inner.pool.claim()
        {
            return Ok(c);
        }
        self.claim_locked()
    }

    /// `dtrace_ptss_claim_entry_locked`: with the grow lock, reset after a fork if due, then retry the
    /// pop and allocate pages until one succeeds.
    #[cold]
    fn claim_locked(&self) -> Result<Claimed, ScratchError> {
        let inner = &*self.inner;
        let _g = inner.lock.lock();
        inner.reset_if_forked_locked();
        loop {
            if let Some(c) = inner.pool.claim() {
                return Ok(c);
            }
            self.allocate_page_locked()?;
        }
    }

    /// `dtrace_ptss_allocate_page`, with the grow lock held: one memfd page mapped read+execute (max
    /// R|X) and read+write (max R|W), both `Inherit::None`; its slots are pushed onto the free list.
    /// On failure every mapping made here is undone (the seed leaked them).
    fn allocate_page_locked(&self) -> Result<(), ScratchError> {
        let inner = &*self.inner;
        if !inner.pool.has_room() {
            return Err(ScratchError::Exhausted);
        }
        let ps = inner.page_size;
        let space = self.space();
        let backing =
            Backing::shared_anonymous(ps).map_err(|source| Error::Os { call: "memfd_create", source })?;
        // The memfd is kept open only by the two map entries: when a forked child's map drops them
        // (they are not inherited), the child loses the descriptor too.
        let view =
            |prot: Prot, b: Backing| MapSpec::new(prot, prot).with_object(b, 0).with_inherit(Inherit::None);
        let addr = space.map(ps, view(Prot::RX, backing.clone()))?;
        let write_addr = match space.map(ps, view(Prot::RW, backing)) {
            Ok(a) => a,
            Err(e) => {
                if space.unmap(addr..addr + ps).is_err() {
                    // A failing unmap leaves the map and kernel in step; try once more so that
                    // nothing stays mapped.
                    let _ = space.unmap(addr..addr + ps);
                }
                return Err(e.into());
            }
        };
        inner.pool.add_page(addr, write_addr);
        Ok(())
    }

    /// Gives a slot back (`dtrace_ptss_release_entry`): into this thread's one-slot cache if that is
    /// on and empty, else onto the free list. Lock-free. Errors, changing nothing: the slot
    /// was released already ([`ScratchError::DoubleRelease`]), belongs to another space
    /// ([`ScratchError::ForeignSlot`]), or its page was dropped by `exec_exit` or it was claimed
    /// before the fork that made this process ([`ScratchError::Stale`]; the seed silently ignores a
    /// release once its page list is gone).
    #[inline]
    pub fn release(&self, slot: ScratchSlot) -> Result<(), ScratchError> {
        self.inner.release(slot)
    }

    /// The calling thread's slot (`uthread->t_dtrace_scratch`): claimed on first use, released when
    /// the thread exits (a thread-local destructor), claimed anew after `exec_exit` or in a forked
    /// child. The fast path is a thread-local lookup and two loads. It hands out addresses only, so
    /// the thread's slot cannot be released by mistake.
    #[inline]
    pub fn current(&self) -> Result<SlotView, ScratchError> {
        match current::current(&self.inner)? {
            Some(view) => Ok(view),
            None => self.claim_current(),
        }
    }

    /// The slow path of [`ScratchSpace::current`]: claims a slot and makes it this thread's.
    #[cold]
    fn claim_current(&self) -> Result<SlotView, ScratchError> {
        let inner = &self.inner;
        loop {
            // A pending fork reset would bump the epoch inside the claim: do it first.
            inner.reset_if_forked();
            let epoch = inner.epoch.load(Ordering::Acquire);
            let slot = self.claim()?;
            if inner.epoch.load(Ordering::Acquire) != epoch {
                // exec_exit ran meanwhile: the slot may be retired already; give it back and retry.
                let _ = inner.release(slot);
                continue;
            }
            if !current::set_current(inner, slot, epoch) {
                let _ = inner.release(slot);
                return Err(ScratchError::ThreadExiting);
            }
            return Ok(slot.view());
        }
    }

    /// Drops every page (`dtrace_ptss_exec_exit`, plus the unmapping the seed leaves to the address
    /// space's teardown): the free list is emptied, all slots, claimed or free, become
    /// [`ScratchError::Stale`], every thread's [`current`](Self::current) slot is retired, and both
    /// views of every page are unmapped. The space stays usable: the next claim allocates afresh
    /// (page numbers are not reused, see [`Builder::max_pages`]). Slots in use on other threads must
    /// not be touched after this: their memory is gone. Returns the first unmap error, after trying
    /// every page.
    pub fn exec_exit(&self) -> Result<(), ScratchError> {
        let inner = &*self.inner;
        let _g = inner.lock.lock();
        if inner.fork_gen.load(Ordering::Acquire) != generation() {
            // A forked child: the pages were never ours to unmap.
            inner.reset_if_forked_locked();
            return Ok(());
        }
        let pages = inner.pool.retire();
        inner.epoch.fetch_add(1, Ordering::AcqRel);
        let mut first = None;
        for (addr, write_addr) in pages {
            for at in [addr, write_addr] {
                if let Err(e) = self.space().unmap(at..at + inner.page_size) {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
    }
}

impl Drop for ScratchSpace<'_> {
    /// Unmaps both views of every live page (`dtrace_ptss_free_page` for each), unless this is a
    /// forked child that never had them.
    fn drop(&mut self) {
        let _ = self.exec_exit();
    }
}

impl fmt::Debug for ScratchSpace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScratchSpace")
            .field("slot_size", &self.slot_size())
            .field("pages", &self.pages())
            .field("free_list_empty", &self.inner.pool.free_list_empty())
            .finish()
    }
}
