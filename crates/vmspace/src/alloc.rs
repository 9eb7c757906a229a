//! A large-block allocator on the reclaim ring: libmalloc's large cache (`large_entry_cache` with
//! `mach_vm_reclaim_try_enter` / `try_cancel`, `magazine_large.c`) as a Rust allocator a program can
//! install with `#[global_allocator]`.
//!
//! Requests of at least a threshold (default 64 KiB) are served from an [`AddressSpace`] (one lazily
//! reserved range, default 64 GiB, `PROT_NONE` + `MAP_NORESERVE`), rounded up to size classes: powers
//! of two with four sub-classes each, page-aligned. Smaller requests go to a wrapped allocator
//! ([`System`] by default).
//!
//! A freed large block is entered into a [`ReclaimRing`] bound to the space as
//! [`Action::Deallocate`] and kept in a per-class cache. Reuse pops the newest cached block of the
//! class (or, best fit, of the next larger classes up to twice the size) and cancels its entry:
//! `Unreclaimed` hands the block out again (no system call, no fault); `Busy`/`Deallocated` means the
//! reclaimer took it (it is dropped from the cache, never touched) and the next one is tried, or a
//! fresh block is mapped. The next free of a reused block refills the ring slot its cancel left
//! (xnu's compact reuse path), so churn does not fill the ring with holes. A full ring flushes one
//! chunk ([`CHUNK_SIZE`] entries), never the whole ring. A [`Reclaimer`] thread applies the policy: a
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

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use vmspace_core::{FindSpec, MapSpec, Prot};

use crate::reclaim::{
    Action, CHUNK_SIZE, Policy, REGION_SIZE_MAX, ReclaimId, ReclaimRing, Reclaimer, ReclaimerConfig,
    WorkingSet,
};
use crate::{AddressSpace, os};

/// The default threshold: requests of this size or more come from the space (libmalloc's large
/// threshold on 64-bit macOS is 128 KiB; glibc's `M_MMAP_THRESHOLD` starts at 128 KiB).
pub const DEFAULT_THRESHOLD: usize = 64 << 10;
/// The default reservation (`MAP_NORESERVE`: costs no memory).
pub const DEFAULT_RESERVE: u64 = 64 << 30;
/// The default maximum age of a freed block before the reclaimer unmaps it.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(1);
/// Cached blocks kept per size class (libmalloc's `LARGE_ENTRY_CACHE_SIZE` is 16 per magazine); the
/// oldest beyond this are unmapped at once.
pub const CACHE_PER_CLASS: usize = 512;
/// Sub-classes per power of two.
const SUBCLASSES: u32 = 4;
/// Class indices: `4 · log2 + sub-class`, below 64 · 4.
const CLASSES: usize = 64 * SUBCLASSES as usize;
/// Shards of the live-block map.
const SHARDS: usize = 16;

/// Why an Allocator-style call failed (the stable stand-in for `core::alloc::AllocError`, with the
/// reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// No memory: the space is full or the wrapped allocator returned null (`KERN_NO_SPACE`).
    OutOfMemory,
    /// The pointer lies in the space but is no live block: a double free or an interior pointer
    /// (libmalloc's "pointer being freed was not allocated").
    NotAllocated,
    /// A large layout with a pointer this allocator never handed out (outside the space).
    Foreign,
    /// The layout differs from the one the block was allocated (or last reallocated) with.
    LayoutMismatch,
    /// The size overflows when rounded, or the new layout is invalid.
    InvalidLayout,
}

impl std::fmt::Display for AllocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AllocError::OutOfMemory => "out of memory",
            AllocError::NotAllocated => "pointer being freed was not allocated (double free?)",
            AllocError::Foreign => "pointer not allocated by this allocator",
            AllocError::LayoutMismatch => "layout differs from the allocation's",
            AllocError::InvalidLayout => "invalid layout",
        })
    }
}

impl std::error::Error for AllocError {}

/// The allocator's settings (see the [module docs](self) for the environment variables).
#[derive(Clone, Copy, Debug)]
struct Config {
    threshold: usize,
    reserve: u64,
    budget: Option<u64>,
    max_age: Option<Duration>,
    working_set: Option<WorkingSet>,
    tick: Option<Duration>,
    pressure: bool,
    ring_capacity: u32,
    env: bool,
}

impl Config {
    const DEFAULT: Config = Config {
        threshold: DEFAULT_THRESHOLD,
        reserve: DEFAULT_RESERVE,
        budget: None,
        max_age: Some(DEFAULT_MAX_AGE),
        working_set: None,
        tick: None,
        pressure: true,
        ring_capacity: 4096,
        env: true,
    };

    /// The configuration with the environment applied (no allocation: `getenv` and a byte parser).
    fn resolve(mut self) -> Config {
        if self.env {
            if let Some(v) = env_u64(c"VMSPACE_ALLOC_THRESHOLD") {
                self.threshold = v.clamp(1, usize::MAX as u64) as usize;
            }
            if let Some(v) = env_u64(c"VMSPACE_ALLOC_BUDGET") {
                self.budget = Some(v);
            }
            if let Some(v) = env_u64(c"VMSPACE_ALLOC_MAX_AGE_MS") {
                self.max_age = (v > 0).then(|| Duration::from_millis(v));
            }
            if let Some(v) = env_u64(c"VMSPACE_ALLOC_RESERVE") {
                self.reserve = v;
            }
        }
        self.threshold = self.threshold.max(1);
        self
    }

    fn policy(&self) -> Policy {
        Policy { budget: self.budget, working_set: self.working_set, max_age: self.max_age }
    }
}

/// `getenv(name)` parsed as bytes with an optional `k`/`m`/`g` suffix (powers of 1024).
fn env_u64(name: &std::ffi::CStr) -> Option<u64> {
    // SAFETY: the bytes are parsed at once (setenv from another thread at the same time is the
    // caller's race, as for any getenv).
    parse_bytes(unsafe { crate::os::process::getenv(name) }?)
}

/// `"64k"` → 65536; digits with an optional `k`, `m` or `g` (any case); `None` if malformed.
fn parse_bytes(s: &[u8]) -> Option<u64> {
    let (digits, shift) = match s.last()?.to_ascii_lowercase() {
        b'k' => (&s[..s.len() - 1], 10),
        b'm' => (&s[..s.len() - 1], 20),
        b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    v.checked_mul(1 << shift)
}

/// The size class of `size`: rounded up to a quarter of its power of two, and to whole pages.
pub fn class_size(size: u64, page: u64) -> Option<u64> {
    let size = size.max(1);
    let top = 63 - size.leading_zeros();
    let step = ((1u64 << top) >> 2).max(page);
    size.checked_next_multiple_of(step)
}

/// The cache index of a class size (injective over [`class_size`]'s results).
fn class_index(cs: u64) -> usize {
    let top = 63 - cs.leading_zeros();
    let sub = if top >= 2 { (cs >> (top - 2)) & 3 } else { 0 };
    top as usize * SUBCLASSES as usize + sub as usize
}

/// The class size of cache index `i` (the inverse of [`class_index`] for indices of sizes of at least
/// four pages, where every sub-class exists).
fn class_len(i: usize) -> u64 {
    let (top, sub) = (i / SUBCLASSES as usize, i % SUBCLASSES as usize);
    (4 + sub as u64) << top.saturating_sub(2)
}

thread_local! {
    /// Whether this thread is inside the allocator's large path (or is the reclaimer thread): then every
    /// allocation goes to the wrapped allocator. 0 unknown, 1 normal, 2 inside, 3 reclaimer thread.
    static MODE: Cell<u8> = const { Cell::new(0) };
}

/// Whether this thread must bypass the large path: inside the allocator, on the reclaimer thread, or
/// inside a change to any address space (which holds that space's write lock: the large path takes
/// the allocator's locks and then its own space's lock, so entering it there could take two locks in
/// both orders, and a fork that takes every lock would wait for ever).
fn bypass() -> bool {
    // Also while this thread holds every allocator lock across a fork (it would wait for itself).
    if crate::publish::writes_held() > 0 || PREPARED.try_with(Cell::get).unwrap_or(false) {
        return true;
    }
    MODE.with(|m| match m.get() {
        0 => {
            let r = is_reclaimer_thread();
            m.set(if r { 3 } else { 1 });
            r
        }
        1 => false,
        _ => true,
    })
}

/// Whether the calling thread is a `vm-reclaim` thread (asked of the kernel: no allocation, no std
/// thread handle, so it works while a thread is being torn down).
fn is_reclaimer_thread() -> bool {
    crate::os::process::thread_name().starts_with(b"vm-reclaim")
}

/// Sets the re-entrancy flag for the scope.
struct Inside(u8);

impl Inside {
    fn enter() -> Inside {
        let prev = MODE.with(|m| m.replace(2));
        Inside(prev)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let prev = self.0;
        MODE.with(|m| m.set(prev));
    }
}

/// A hasher for block addresses (page-aligned `u64`s): a multiply, no random keys.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// A block handed out: its mapped length (a class size), the layout it was allocated with, and the
/// ring slot it left when it was taken from the cache (libmalloc keeps the entry's `reclaim_index`).
#[derive(Clone, Copy, Debug)]
struct Live {
    len: u64,
    size: u64,
    align: u64,
    /// The cancelled id whose slot the next free refills (xnu's compact reuse path), so that a block
    /// cycling between use and the cache keeps one ring slot instead of leaving a hole per cycle:
    /// holes are only cleared when the reclaimer passes them, so with appends alone a busy program
    /// fills the ring with holes and every free past that point forces a flush.
    hole: Option<ReclaimId>,
}

/// A freed block in a class cache with its ring id (libmalloc's `large_entry_t` with `reclaim_index`).
#[derive(Clone, Copy, Debug)]
struct Cached {
    addr: u64,
    id: ReclaimId,
}

/// Counters over the allocator's life ([`LargeAlloc::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Large blocks mapped fresh from the space.
    pub mapped: u64,
    /// Large blocks handed out again from the cache (cancel answered reusable).
    pub reused: u64,
    /// Cached blocks whose cancel lost the race to the reclaimer (dropped, never touched).
    pub lost: u64,
    /// Partial flushes because the ring was full.
    pub flushes: u64,
    /// Blocks unmapped at once (ring full after the flush, cache over its limit, or too large to enter).
    pub unmapped: u64,
    /// `realloc`s done in place (within the class, or grown into adjacent space).
    pub realloc_in_place: u64,
    /// Large blocks handed out now.
    pub live: u64,
    /// Bytes the ring holds now (freed, not yet reclaimed, not cancelled).
    pub reclaimable_bytes: u64,
    /// Bytes the reclaimer (policy, pressure, flushes) gave back over the ring's life.
    pub reclaimed_bytes: u64,
}

#[derive(Default)]
struct Counters {
    mapped: AtomicU64,
    reused: AtomicU64,
    lost: AtomicU64,
    flushes: AtomicU64,
    unmapped: AtomicU64,
    in_place: AtomicU64,
}

/// Everything made at first large use.
struct State {
    /// Dropped first: its drop drains the ring through the space.
    ring: Mutex<ReclaimRing>,
    classes: Box<[Mutex<VecDeque<Cached>>]>,
    live: Box<[Mutex<AddrMap<Live>>]>,
    counters: Counters,
    _reclaimer: Option<Reclaimer>,
    space: Arc<AddressSpace>,
    start: u64,
    end: u64,
    page: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn new(cfg: &Config) -> Option<State> {
        let space = Arc::new(AddressSpace::reserve(cfg.reserve).ok()?);
        let range = space.range();
        let policy = cfg.policy();
        let wants_thread = policy != Policy::default() || cfg.pressure;
        let reclaimer = if wants_thread {
            let tick = cfg.tick.unwrap_or_else(|| {
                cfg.max_age
                    .map_or(Duration::from_millis(100), |a| a / 2)
                    .clamp(Duration::from_millis(1), Duration::from_millis(100))
            });
            let pressure = if cfg.pressure { crate::reclaim::pressure::detect() } else { None };
            Reclaimer::spawn(ReclaimerConfig { tick, pressure, ..ReclaimerConfig::default() }).ok()
        } else {
            None
        };
        let cap = ReclaimRing::round_capacity(cfg.ring_capacity.max(1));
        let mut b = ReclaimRing::builder().capacity(cap, cap).space(&space).policy(policy);
        if let Some(r) = reclaimer.as_ref() {
            b = b.reclaimer(r);
        }
        let ring = b.build().ok()?;
        Some(State {
            ring: Mutex::new(ring),
            classes: (0..CLASSES).map(|_| Mutex::new(VecDeque::new())).collect(),
            live: (0..SHARDS).map(|_| Mutex::new(AddrMap::default())).collect(),
            counters: Counters::default(),
            _reclaimer: reclaimer,
            space,
            start: range.start,
            end: range.end,
            page: os::page_size(),
        })
    }

    #[inline]
    fn owns(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }

    fn shard(&self, addr: u64) -> &Mutex<AddrMap<Live>> {
        let h = (addr >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60;
        &self.live[h as usize % SHARDS]
    }

    fn spec() -> MapSpec<crate::Backing> {
        MapSpec::new(Prot::RW, Prot::RW)
    }

    /// A large block for `layout` (libmalloc's `large_malloc`: the cache first, then a fresh mapping).
    fn alloc(&self, layout: Layout, zero: bool) -> Result<u64, AllocError> {
        let size = layout.size() as u64;
        let align = layout.align() as u64;
        let cs = class_size(size, self.page).ok_or(AllocError::InvalidLayout)?;
        if cs > self.end - self.start {
            return Err(AllocError::OutOfMemory);
        }
        if align <= self.page
            && cs <= REGION_SIZE_MAX
            && let Some((addr, len, hole)) = self.reuse(cs)
        {
            if zero {
                // SAFETY: the block `[addr, addr + len)`, `len >= size`, is mapped read-write and ours
                // alone (its cancel answered reusable and it is not yet in the live map).
                unsafe { std::ptr::write_bytes(addr as usize as *mut u8, 0, size as usize) };
            }
            self.insert_live(addr, Live { len, size, align, hole: Some(hole) });
            return Ok(addr);
        }
        let addr = if align <= self.page {
            self.space.map(cs, Self::spec())
        } else {
            let find = FindSpec { align, ..FindSpec::new(cs) };
            self.space.map_with(&find, Self::spec())
        }
        .map_err(|_| AllocError::OutOfMemory)?;
        self.counters.mapped.fetch_add(1, Ordering::Relaxed);
        self.insert_live(addr, Live { len: cs, size, align, hole: None });
        Ok(addr)
    }

    /// A cached block for class `cs`: the newest of that class whose cancel answers reusable, else of
    /// the next larger classes up to twice the size (best fit: a slightly larger block already in
    /// memory beats a fresh mapping that faults page by page). Returns its address, mapped length
    /// and the id whose slot it left.
    fn reuse(&self, cs: u64) -> Option<(u64, u64, ReclaimId)> {
        let first = class_index(cs);
        for (i, q) in self.classes.iter().enumerate().skip(first).take(SUBCLASSES as usize + 1) {
            let len = class_len(i);
            if len > 2 * cs {
                break;
            }
            loop {
                // The class lock only for the pop: cancelling may wait for the reclaimer.
                let next = lock(q).pop_back();
                let Some(c) = next else { break };
                let cancelled = lock(&self.ring).try_cancel(c.id, c.addr, len, Action::Deallocate);
                match cancelled {
                    Ok(r) if r.state.is_reusable() => {
                        self.counters.reused.fetch_add(1, Ordering::Relaxed);
                        return Some((c.addr, len, c.id));
                    }
                    _ => {
                        self.counters.lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        None
    }

    fn insert_live(&self, addr: u64, l: Live) {
        lock(self.shard(addr)).insert(addr, l);
    }

    /// Take `addr` out of the live map, checking the layout.
    fn remove_live(&self, addr: u64, layout: Layout) -> Result<Live, AllocError> {
        let mut m = lock(self.shard(addr));
        let l = *m.get(&addr).ok_or(AllocError::NotAllocated)?;
        if l.size != layout.size() as u64 || l.align != layout.align() as u64 {
            return Err(AllocError::LayoutMismatch);
        }
        m.remove(&addr);
        Ok(l)
    }

    /// Free a block no longer live (libmalloc's `large_free` into the cache, entered into the ring).
    fn release(&self, addr: u64, len: u64, hole: Option<ReclaimId>) {
        let cacheable = len <= REGION_SIZE_MAX && class_size(len, self.page) == Some(len);
        if !cacheable {
            self.unmap(addr, len);
            return;
        }
        let id = {
            let mut ring = lock(&self.ring);
            // The block's old slot if the reclaimer has not passed it yet, else a new one.
            let refilled = hole.and_then(|h| ring.try_enter(addr, len, Action::Deallocate, Some(h)).ok());
            let mut e = match refilled {
                Some(e) if e.id.is_some() => Ok(e),
                _ => ring.try_enter(addr, len, Action::Deallocate, None),
            };
            if matches!(e, Ok(ref e) if e.id.is_none()) {
                // Full: reclaim one chunk (the oldest entries), not the whole ring.
                self.counters.flushes.fetch_add(1, Ordering::Relaxed);
                let _ = ring.flush(CHUNK_SIZE as u64);
                e = ring.try_enter(addr, len, Action::Deallocate, None);
            }
            e.ok().and_then(|e| e.id)
        };
        let Some(id) = id else {
            self.unmap(addr, len);
            return;
        };
        let evicted = {
            let mut q = lock(&self.classes[class_index(len)]);
            q.push_back(Cached { addr, id });
            if q.len() > CACHE_PER_CLASS { q.pop_front() } else { None }
        };
        if let Some(old) = evicted {
            let c = lock(&self.ring).try_cancel(old.id, old.addr, len, Action::Deallocate);
            if c.is_ok_and(|c| c.state.is_reusable()) {
                self.unmap(old.addr, len);
            }
        }
    }

    fn unmap(&self, addr: u64, len: u64) {
        self.counters.unmapped.fetch_add(1, Ordering::Relaxed);
        let _ = self.space.unmap(addr..addr + len);
    }

    /// Resize the live block at `addr` in place if it can: within its class (shrinking unmaps the
    /// tail), or by mapping the adjacent pages after it. Returns whether it did.
    ///
    /// The live map's lock is not held across the space's system calls (the block is its caller's
    /// alone until it is freed, so its entry cannot change meanwhile).
    fn realloc_in_place(&self, addr: u64, old: Layout, new_size: u64) -> Result<bool, AllocError> {
        let l = {
            let m = lock(self.shard(addr));
            let l = *m.get(&addr).ok_or(AllocError::NotAllocated)?;
            if l.size != old.size() as u64 || l.align != old.align() as u64 {
                return Err(AllocError::LayoutMismatch);
            }
            l
        };
        let want = class_size(new_size, self.page).ok_or(AllocError::InvalidLayout)?;
        let len = if want <= l.len {
            if want < l.len && self.space.unmap(addr + want..addr + l.len).is_ok() { want } else { l.len }
        } else {
            let Some(end) = addr.checked_add(want).filter(|&e| e <= self.end) else { return Ok(false) };
            if self.space.map_at(addr + l.len..end, Self::spec()).is_err() {
                return Ok(false);
            }
            want
        };
        if let Some(l) = lock(self.shard(addr)).get_mut(&addr) {
            l.len = len;
            l.size = new_size;
        }
        self.counters.in_place.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

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

// ---- fork ----

/// Every `LargeAlloc` state of this process (its address), for the fork hooks; held across `fork(2)`.
static FORK_TABLE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn fork_table() -> MutexGuard<'static, Vec<usize>> {
    lock(&FORK_TABLE)
}

/// The locks held across one fork, by the forking thread.
struct Held {
    _table: MutexGuard<'static, Vec<usize>>,
    _rings: Vec<MutexGuard<'static, ReclaimRing>>,
    _classes: Vec<MutexGuard<'static, VecDeque<Cached>>>,
    _live: Vec<MutexGuard<'static, AddrMap<Live>>>,
}

/// Where the forking thread keeps its [`Held`] between the hooks before and after `fork(2)`.
struct HeldCell(std::cell::UnsafeCell<Option<Held>>);
// SAFETY: only the thread holding `FORK_TABLE` writes the cell (in `fork_prepare`), and only that thread
// takes it (in `fork_release`, on the same thread: atfork hooks and `fork::fork` run on the forking
// thread); another forker waits for the table before it touches the cell.
unsafe impl Sync for HeldCell {}
static HELD: HeldCell = HeldCell(std::cell::UnsafeCell::new(None));

thread_local! {
    /// This thread took the locks itself (`fork::fork`), so the atfork prepare hook must not again.
    static PREPARED: Cell<bool> = const { Cell::new(false) };
}

/// Takes every lock of every `LargeAlloc`, in the allocator's order, to be held across a fork by the
/// calling thread (the spaces' fork hooks call it before they take the spaces' locks).
pub(crate) fn fork_prepare() {
    if PREPARED.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    let _g = Inside::enter();
    let table = fork_table();
    let (mut rings, mut classes, mut live) = (Vec::new(), Vec::new(), Vec::new());
    for &p in table.iter() {
        // SAFETY: a state stays in the table until its allocator's drop removes it under this lock,
        // which we hold until the guards below are dropped (in `fork_release`); so it lives as long as
        // they do, which is what the `'static` borrows stand for.
        let s: &'static State = unsafe { &*(p as *const State) };
        rings.push(lock(&s.ring));
        classes.extend(s.classes.iter().map(lock));
        live.extend(s.live.iter().map(lock));
    }
    let held = Held { _table: table, _rings: rings, _classes: classes, _live: live };
    // SAFETY: we hold the table (inside `held`): the cell is ours (see `HeldCell`).
    unsafe { *HELD.0.get() = Some(held) };
    let _ = PREPARED.try_with(|c| c.set(true));
}

/// Releases what [`fork_prepare`] took (in the parent and in the child, after `fork(2)`). Nothing if
/// nothing is held by this thread.
pub(crate) fn fork_release() {
    if !PREPARED.try_with(|c| c.replace(false)).unwrap_or(false) {
        return;
    }
    let _g = Inside::enter();
    // SAFETY: this thread prepared (PREPARED), so it holds the table and the cell is its own; the value
    // is taken out before its guards (the table last) are dropped.
    let held = unsafe { (*HELD.0.get()).take() };
    drop(held);
}

/// Joins the spaces' fork hooks once (called before the table is first taken, so that every fork from
/// then on takes the table before `fork(2)`).
fn watch_forks() {
    // A `Once`, not a flag: a second caller must not go on (and take the table) before the first has
    // registered the hooks.
    static WATCHING: std::sync::Once = std::sync::Once::new();
    WATCHING.call_once(|| {
        // One pair of four slots, registered once: it cannot be full.
        let registered = crate::space::also_hold_across_forks(fork_prepare, fork_release);
        debug_assert!(registered);
    });
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

    /// Unmap the oldest freed blocks while the ring holds more than this ([`Policy::budget`]).
    pub fn budget(mut self, bytes: u64) -> Self {
        self.config.budget = Some(bytes);
        self
    }

    /// Unmap freed blocks idle longer than this ([`Policy::max_age`]; `None` disables, default
    /// [`DEFAULT_MAX_AGE`]).
    pub fn max_age(mut self, age: impl Into<Option<Duration>>) -> Self {
        self.config.max_age = age.into();
        self
    }

    /// Trim by xnu's working-set estimate too ([`Policy::working_set`]).
    pub fn working_set(mut self, ws: WorkingSet) -> Self {
        self.config.working_set = Some(ws);
        self
    }

    /// The reclaimer's tick ([`ReclaimerConfig::tick`]; default half the max age, 1–100 ms).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.config.tick = Some(tick);
        self
    }

    /// Whether memory pressure (PSI / cgroup) drains the ring (default on).
    pub fn pressure(mut self, on: bool) -> Self {
        self.config.pressure = on;
        self
    }

    /// Entries in the ring (rounded by [`ReclaimRing::round_capacity`]; default 4096).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_page_multiples_and_indices_distinct() {
        let page = 4096;
        let mut seen = std::collections::HashMap::new();
        let mut s = 1u64;
        while s < 1 << 34 {
            for d in [0, 1, s / 3, s / 2] {
                let cs = class_size(s + d, page).unwrap();
                assert!(cs >= s + d && cs.is_multiple_of(page));
                assert_eq!(class_size(cs, page), Some(cs));
                if let Some(&other) = seen.get(&class_index(cs)) {
                    assert_eq!(other, cs);
                }
                seen.insert(class_index(cs), cs);
                assert!(class_index(cs) < CLASSES);
            }
            s = s * 3 / 2 + 1;
        }
        assert_eq!(class_size(65536, page), Some(65536));
        assert_eq!(class_size(65537, page), Some(65536 + 16384));
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes(b"64k"), Some(65536));
        assert_eq!(parse_bytes(b"2M"), Some(2 << 20));
        assert_eq!(parse_bytes(b"123"), Some(123));
        assert_eq!(parse_bytes(b"x"), None);
        assert_eq!(parse_bytes(b"k"), None);
        assert_eq!(parse_bytes(b""), None);
    }
}
