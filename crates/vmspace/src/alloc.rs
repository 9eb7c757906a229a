//! A large-block allocator on the reclaim ring: libmalloc's large cache (`large_entry_cache` with
//! `mach_vm_reclaim_try_enter` / `try_cancel`, `magazine_large.c`) as a Rust allocator a program can
//! install with `#[global_allocator]`.
//!
//! Requests of at least a threshold (default 64 KiB) are served from an [`AddressSpace`](crate::AddressSpace) (one lazily
//! reserved range, default 64 GiB, `PROT_NONE` + `MAP_NORESERVE`), rounded up to size classes: powers
//! of two with four sub-classes each, page-aligned. Smaller requests go to a wrapped allocator
//! ([`System`] by default).
//!
//! A freed large block is entered into a [`ReclaimRing`](crate::reclaim::ReclaimRing) bound to the space as
//! [`Action::Deallocate`](crate::reclaim::Action::Deallocate) and kept in a per-class cache. Reuse pops the newest cached block of the
//! class (or, best fit, of the next larger classes up to twice the size) and cancels its entry:
//! `Unreclaimed` hands the block out again (no system call, no fault); `Busy`/`Deallocated` means the
//! reclaimer took it (it is dropped from the cache, never touched) and the next one is tried, or a
//! fresh block is mapped. The next free of a reused block refills the ring slot its cancel left
//! (xnu's compact reuse path), so churn does not fill the ring with holes. A full ring flushes one
//! chunk ([`CHUNK_SIZE`](crate::reclaim::CHUNK_SIZE) entries), never the whole ring. A [`Reclaimer`](crate::reclaim::Reclaimer) thread applies the policy: a
//! maximum age (idle time), a byte budget, optionally xnu's working-set estimate, and memory pressure.
//!
//! # Installing it
//!
//! ```no_run
//! use vmspace::alloc::LargeAlloc;
//!
//! #[global_allocator]
//! static ALLOC: LargeAlloc = LargeAlloc::new();
//!
//! fn main() {
//!     let v = vec![0u8; 1 << 20]; // from the space
//!     drop(v); // into the ring and the cache
//! }
//! ```
//!
//! # Configuration
//!
//! [`LargeAlloc::new`] reads the environment at its first allocation (with `getenv`, no allocation):
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `VMSPACE_ALLOC_THRESHOLD` | smallest request served from the space, bytes (`k`/`m`/`g` suffixes) | 64 KiB |
//! | `VMSPACE_ALLOC_BUDGET` | bytes the ring may hold before the oldest are unmapped | none |
//! | `VMSPACE_ALLOC_MAX_AGE_MS` | freed blocks idle this long are unmapped (`0` disables the limit) | 1000 |
//! | `VMSPACE_ALLOC_RESERVE` | address space reserved, bytes | 64 GiB |
//!
//! [`LargeAlloc::builder`] sets the same values in code (the environment is then ignored).
//!
//! # Invariants
//!
//! - A block is in at most one of: the live map (handed out) or a class cache with a ring id. A cached
//!   block is handed out only after its cancel answered reusable, so no block is handed out twice and
//!   no block the reclaimer unmapped is ever touched.
//! - Lock order: class cache → (released) → ring → the ring's reclaim lock → the space's map lock. No
//!   lock of ours is held across a system call except the ring lock during a one-chunk flush, and none
//!   is taken while the thread holds any space's map lock (those allocations go to the wrapped
//!   allocator), so the order is never reversed.
//! - Fork: every lock of every `LargeAlloc` is taken before `fork(2)` (any caller's: the spaces'
//!   `pthread_atfork` hooks hold them, before the spaces' locks, the order above) and released after it
//!   on both sides, before anything waits again; first-time setup happens under the same table lock, so
//!   a child never inherits a lock or a setup half-held by a thread it does not have.
//! - Allocations made by the allocator's own bookkeeping (maps, queues, the space, the reclaimer) run
//!   with a per-thread re-entrancy flag set and go to the wrapped allocator, as do all allocations of the
//!   reclaimer thread (`vm-reclaim`): the allocator never recurses into its own locks.
//! - Ownership is decided by address: a pointer inside the space is ours, any other pointer belongs to
//!   the wrapped allocator.
//!
//! # Limits of this first cut
//!
//! `realloc` grows in place only into adjacent unmapped space of the reservation (`map_at` right after
//! the block); otherwise it allocates, copies and frees (no `mremap`: the space's map must stay equal to
//! the kernel). Shrinking unmaps the tail beyond the new class. Small pointers of the wrapped allocator
//! cannot be checked (a double free of one is the wrapped allocator's business).

mod cache;
mod class;
mod config;
mod error;
mod fork;
mod reentry;

pub use cache::CACHE_PER_CLASS;
pub use class::class_size;
pub use config::{DEFAULT_MAX_AGE, DEFAULT_RESERVE, DEFAULT_THRESHOLD};
pub use error::{AllocError, AllocStats};

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::reclaim::WorkingSet;

use cache::{State, lock};
use config::Config;
use fork::{fork_table, watch_forks};
use reentry::{Inside, bypass};

/// The large-block allocator (libmalloc's large allocator with its deferred-reclaim cache,
/// `magazine_large.c` + `large_entry_cache`); see the [module docs](self).
///
/// `const`-constructible, so it can be the `#[global_allocator]`; the space, the ring and the reclaimer
/// thread are made at the first large request. Dropping a non-static `LargeAlloc` unmaps the whole
/// space, live blocks included.
pub struct LargeAlloc<A: GlobalAlloc = System> {
    inner: A,
    base: Config,
    config: OnceLock<Config>,
    state: OnceLock<Option<State>>,
}

impl<A: GlobalAlloc> std::fmt::Debug for LargeAlloc<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargeAlloc")
            .field("config", &self.config.get().unwrap_or(&self.base))
            .field("initialized", &self.state.get().is_some())
            .finish()
    }
}

impl LargeAlloc<System> {
    /// The allocator over [`System`] with the defaults and the `VMSPACE_ALLOC_*` environment read at
    /// first use (libmalloc reads `MallocLargeCache` and friends the same way).
    pub const fn new() -> Self {
        Self::with_inner(System)
    }

    /// A builder for an allocator configured in code.
    pub fn builder() -> Builder<System> {
        Builder { inner: System, config: Config { env: false, ..Config::DEFAULT } }
    }
}

impl Default for LargeAlloc<System> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: GlobalAlloc> LargeAlloc<A> {
    /// The allocator over `inner` (for small requests and the allocator's own bookkeeping), with the
    /// defaults and the environment.
    pub const fn with_inner(inner: A) -> Self {
        LargeAlloc { inner, base: Config::DEFAULT, config: OnceLock::new(), state: OnceLock::new() }
    }

    #[inline]
    fn config(&self) -> &Config {
        if let Some(c) = self.config.get() {
            return c;
        }
        // First-time setup under the fork table, so no fork catches it half-way. The fork hooks come
        // first: a fork that starts while this thread holds the table must wait for it (unhooked, the
        // child would inherit the table held by a thread it does not have).
        watch_forks();
        let _table = fork_table();
        self.config.get_or_init(|| self.base.resolve())
    }

    /// The threshold in force (after the environment).
    pub fn threshold(&self) -> usize {
        self.config().threshold
    }

    /// The state, made on first call; `None` if the space or ring could not be made (then large
    /// requests go to the wrapped allocator).
    fn state(&self) -> Option<&State> {
        if let Some(s) = self.state.get() {
            return s.as_ref();
        }
        let _g = Inside::enter();
        let cfg = *self.config();
        // First-time setup under the fork table, so no fork catches it half-way; the state joins
        // the table, so the fork hooks take its locks from now on (hooked before the table is taken,
        // as in `config`).
        watch_forks();
        let mut table = fork_table();
        let s = self.state.get_or_init(|| State::new(&cfg)).as_ref()?;
        let me = s as *const State as usize;
        if !table.contains(&me) {
            table.push(me);
        }
        Some(s)
    }

    /// The state if already made (for frees: a pointer can be ours only if it exists).
    #[inline]
    fn made(&self) -> Option<&State> {
        self.state.get().and_then(Option::as_ref)
    }

    /// Whether `ptr` lies in this allocator's space.
    pub fn owns(&self, ptr: *const u8) -> bool {
        self.made().is_some_and(|s| s.owns(ptr as usize as u64))
    }

    /// The layout the live block at `ptr` was allocated (or last reallocated) with, or `None` if `ptr`
    /// is not the start of a live block of this allocator's space (a pointer of the wrapped allocator,
    /// a freed block, an interior pointer). What a C `free(ptr)` / `malloc_usable_size(ptr)`, which get
    /// no size, need to call [`GlobalAlloc::dealloc`] (libmalloc's `large_entry_for_pointer_no_lock`).
    pub fn allocation_layout(&self, ptr: *const u8) -> Option<Layout> {
        let s = self.made()?;
        let addr = ptr as usize as u64;
        if !s.owns(addr) {
            return None;
        }
        let _g = Inside::enter();
        let l = *lock(s.shard(addr)).get(&addr)?;
        Layout::from_size_align(l.size as usize, l.align as usize).ok()
    }

    /// The managed address range, once made.
    pub fn space_range(&self) -> Option<std::ops::Range<u64>> {
        self.made().map(|s| s.start..s.end)
    }

    /// Counters (all zero before the first large request).
    pub fn stats(&self) -> AllocStats {
        let Some(s) = self.made() else { return AllocStats::default() };
        let _g = Inside::enter();
        let c = &s.counters;
        let rs = lock(&s.ring).stats();
        AllocStats {
            mapped: c.mapped.load(Ordering::Relaxed),
            reused: c.reused.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            unmapped: c.unmapped.load(Ordering::Relaxed),
            realloc_in_place: c.in_place.load(Ordering::Relaxed),
            live: s.live.iter().map(|m| lock(m).len() as u64).sum(),
            reclaimable_bytes: rs.reclaimable_bytes,
            reclaimed_bytes: rs.reclaimed_bytes,
        }
    }

    /// Give every cached block back now (`mach_vm_reclaim_ring_flush` of the whole ring, as
    /// libmalloc's `malloc_zone_pressure_relief`). Cached entries are dropped lazily on reuse.
    pub fn release_cached(&self) {
        if let Some(s) = self.made() {
            let _g = Inside::enter();
            let _ = lock(&s.ring).drain();
        }
    }

    fn is_large(&self, layout: &Layout) -> bool {
        layout.size() >= self.threshold() && !bypass()
    }

    /// `malloc_zone_malloc` for a layout, stable Allocator-style (`Allocator::allocate`): a zero-sized
    /// layout answers a dangling, aligned pointer.
    pub fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_inner(layout, false)
    }

    /// [`allocate`](Self::allocate) with the memory zeroed (`Allocator::allocate_zeroed`).
    pub fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_inner(layout, true)
    }

    fn allocate_inner(&self, layout: Layout, zero: bool) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let p = NonNull::new(layout.align() as *mut u8).ok_or(AllocError::InvalidLayout)?;
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        if self.is_large(&layout)
            && let Some(s) = self.state()
        {
            let _g = Inside::enter();
            let a = s.alloc(layout, zero)?;
            let p = NonNull::new(a as usize as *mut u8).ok_or(AllocError::OutOfMemory)?;
            return Ok(NonNull::slice_from_raw_parts(p, layout.size()));
        }
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { if zero { self.inner.alloc_zeroed(layout) } else { self.inner.alloc(layout) } };
        let p = NonNull::new(p).ok_or(AllocError::OutOfMemory)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    /// `malloc_zone_free` with checks, stable Allocator-style (`Allocator::deallocate`): a pointer in
    /// the space that is no live block → `NotAllocated` (double free); a layout that differs →
    /// `LayoutMismatch`; a large layout with a pointer from elsewhere → `Foreign`. Nothing is freed on
    /// error.
    ///
    /// # Safety
    ///
    /// A pointer outside the space with a small layout goes to the wrapped allocator unchecked: it must
    /// have come from this allocator's `allocate` with `layout`.
    pub unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), AllocError> {
        if layout.size() == 0 {
            return Ok(());
        }
        let addr = ptr.as_ptr() as usize as u64;
        if let Some(s) = self.made() {
            if s.owns(addr) {
                let _g = Inside::enter();
                let l = s.remove_live(addr, layout)?;
                s.release(addr, l.len, l.hole);
                return Ok(());
            }
            if layout.size() >= self.threshold() {
                return Err(AllocError::Foreign);
            }
        } else if layout.size() >= self.threshold() && self.state.get().is_none() {
            // Nothing large was ever allocated: a large layout cannot be ours.
            return Err(AllocError::Foreign);
        }
        // SAFETY: the caller guarantees a small pointer came from our `allocate` with `layout`, which
        // took it from `inner`.
        unsafe { self.inner.dealloc(ptr.as_ptr(), layout) };
        Ok(())
    }

    /// `malloc_zone_realloc`, Allocator-style (`grow` / `shrink` in one): in place when it can, else
    /// allocate, copy and free. On error the old block is unchanged.
    ///
    /// # Safety
    ///
    /// As [`deallocate`](Self::deallocate) for `ptr` and `old`.
    pub unsafe fn reallocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let new = Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError::InvalidLayout)?;
        let addr = ptr.as_ptr() as usize as u64;
        if let Some(s) = self.made()
            && s.owns(addr)
            && new_size > 0
        {
            let _g = Inside::enter();
            if s.realloc_in_place(addr, old, new_size as u64)? {
                return Ok(NonNull::slice_from_raw_parts(ptr, new_size));
            }
        }
        let n = self.allocate(new)?;
        // SAFETY: both blocks are valid for min(old, new) bytes and distinct (the old one is live).
        unsafe {
            std::ptr::copy_nonoverlapping(ptr.as_ptr(), n.as_ptr() as *mut u8, old.size().min(new_size))
        };
        // SAFETY: forwarded from our caller.
        if let Err(e) = unsafe { self.deallocate(ptr, old) } {
            // SAFETY: `n` was just allocated with `new`.
            let _ = unsafe { self.deallocate(n.cast(), new) };
            return Err(e);
        }
        Ok(n)
    }
}

/// Report a fatal misuse in `GlobalAlloc::dealloc`: one line on stderr with `write(2)`, then abort
/// (libmalloc's `malloc_report(MALLOC_REPORT_CRASH, …)`).
fn fatal(msg: &str) -> ! {
    crate::os::signal::write_stderr(msg.as_bytes());
    std::process::abort()
}

// SAFETY: every pointer handed out is either the wrapped allocator's (forwarded with the same layout) or a
// block of at least `layout.size()` bytes mapped read-write in our space, aligned to the layout (class sizes
// are page multiples, mappings page-aligned or aligned by `FindSpec::align`), held by no one else until it is
// freed (live map + ring cancel protocol).
unsafe impl<A: GlobalAlloc> GlobalAlloc for LargeAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.is_large(&layout)
            && let Some(s) = self.state()
        {
            let _g = Inside::enter();
            return s.alloc(layout, false).map_or(std::ptr::null_mut(), |a| a as usize as *mut u8);
        }
        // SAFETY: forwarded with our caller's contract.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.is_large(&layout)
            && let Some(s) = self.state()
        {
            let _g = Inside::enter();
            return s.alloc(layout, true).map_or(std::ptr::null_mut(), |a| a as usize as *mut u8);
        }
        // SAFETY: forwarded with our caller's contract.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let addr = ptr as usize as u64;
        if let Some(s) = self.made()
            && s.owns(addr)
        {
            let _g = Inside::enter();
            match s.remove_live(addr, layout) {
                Ok(l) => s.release(addr, l.len, l.hole),
                Err(AllocError::LayoutMismatch) => {
                    fatal("vmspace::alloc: free with a layout different from the allocation's; aborting\n")
                }
                Err(_) => {
                    fatal("vmspace::alloc: pointer being freed was not allocated (double free?); aborting\n")
                }
            }
            return;
        }
        // SAFETY: not in our space, so it came from `inner` (our contract with the caller).
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let addr = ptr as usize as u64;
        let ours = self.made().is_some_and(|s| s.owns(addr));
        // SAFETY: the caller guarantees `new_size` rounded to `layout.align()` does not overflow.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !ours && !self.is_large(&new) {
            // Small to small (or a thread that must bypass): the wrapped allocator's realloc.
            // SAFETY: forwarded; `ptr` is the wrapped allocator's.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        if ours && let Some(s) = self.made() {
            let _g = Inside::enter();
            match s.realloc_in_place(addr, layout, new_size as u64) {
                Ok(true) => return ptr,
                Ok(false) => {}
                Err(AllocError::NotAllocated) => {
                    fatal("vmspace::alloc: pointer being reallocated was not allocated; aborting\n")
                }
                Err(AllocError::LayoutMismatch) => {
                    fatal("vmspace::alloc: realloc with a layout different from the allocation's; aborting\n")
                }
                Err(_) => return std::ptr::null_mut(),
            }
        }
        // Move: allocate (large or small), copy, free.
        // SAFETY: `new` is valid per the caller's contract and non-zero-sized.
        let n = unsafe { self.alloc(new) };
        if !n.is_null() {
            // SAFETY: both valid for the copied length; distinct blocks.
            unsafe { std::ptr::copy_nonoverlapping(ptr, n, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated with `layout` by us.
            unsafe { self.dealloc(ptr, layout) };
        }
        n
    }
}

impl<A: GlobalAlloc> Drop for LargeAlloc<A> {
    /// Leaves the fork table before the state (and its locks) goes.
    fn drop(&mut self) {
        if let Some(s) = self.made() {
            let me = s as *const State as usize;
            fork_table().retain(|&p| p != me);
        }
    }
}

/// Configuration of a [`LargeAlloc`] in code ([`LargeAlloc::builder`]); the environment is ignored.
#[derive(Debug)]
pub struct Builder<A> {
    inner: A,
    config: Config,
}

impl<A: GlobalAlloc> Builder<A> {
    /// Requests of at least this many bytes come from the space (default [`DEFAULT_THRESHOLD`]).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.config.threshold = bytes.max(1);
        self
    }

    /// The address space to reserve (default [`DEFAULT_RESERVE`]); requests beyond it fail.
    pub fn reserve(mut self, bytes: u64) -> Self {
        self.config.reserve = bytes;
        self
    }

    /// Unmap the oldest freed blocks while the ring holds more than this ([`Policy::budget`](crate::reclaim::Policy::budget)).
    pub fn budget(mut self, bytes: u64) -> Self {
        self.config.budget = Some(bytes);
        self
    }

    /// Unmap freed blocks idle longer than this ([`Policy::max_age`](crate::reclaim::Policy::max_age); `None` disables, default
    /// [`DEFAULT_MAX_AGE`]).
    pub fn max_age(mut self, age: impl Into<Option<Duration>>) -> Self {
        self.config.max_age = age.into();
        self
    }

    /// Trim by xnu's working-set estimate too ([`Policy::working_set`](crate::reclaim::Policy::working_set)).
    pub fn working_set(mut self, ws: WorkingSet) -> Self {
        self.config.working_set = Some(ws);
        self
    }

    /// The reclaimer's tick ([`ReclaimerConfig::tick`](crate::reclaim::ReclaimerConfig::tick); default half the max age, 1–100 ms).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.config.tick = Some(tick);
        self
    }

    /// Whether memory pressure (PSI / cgroup) drains the ring (default on).
    pub fn pressure(mut self, on: bool) -> Self {
        self.config.pressure = on;
        self
    }

    /// Entries in the ring (rounded by [`ReclaimRing::round_capacity`](crate::reclaim::ReclaimRing::round_capacity); default 4096).
    pub fn ring_capacity(mut self, n: u32) -> Self {
        self.config.ring_capacity = n;
        self
    }

    /// Read the `VMSPACE_ALLOC_*` environment at first use as well (it then overrides the builder).
    pub fn env(mut self, on: bool) -> Self {
        self.config.env = on;
        self
    }

    /// Wrap `inner` instead.
    pub fn inner<B: GlobalAlloc>(self, inner: B) -> Builder<B> {
        Builder { inner, config: self.config }
    }

    /// The allocator (its space is made at first large use).
    pub fn build(self) -> LargeAlloc<A> {
        LargeAlloc { inner: self.inner, base: self.config, config: OnceLock::new(), state: OnceLock::new() }
    }
}
