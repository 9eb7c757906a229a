//! The blocks: the live map (handed out, sharded by address), the per-class caches of freed blocks with
//! their ring ids, and the ring and space under them (libmalloc's `large_entry_cache` on
//! `mach_vm_reclaim`).
//!
//! Invariant: a block is in at most one of the live map or a class cache; a cached block is handed out
//! only after its cancel answered reusable, so no block is handed out twice and no block the
//! reclaimer unmapped is touched. Lock order: class cache → (released) → ring → the ring's reclaim
//! lock → the space's map lock.

use std::alloc::Layout;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vmspace_core::{FindSpec, MapSpec, Prot};

use crate::reclaim::{
    Action, CHUNK_SIZE, Policy, REGION_SIZE_MAX, ReclaimId, ReclaimRing, Reclaimer, ReclaimerConfig,
};
use crate::{AddressSpace, os};

use super::class::{CLASSES, SUBCLASSES, class_index, class_len, class_size};
use super::config::Config;
use super::error::AllocError;

/// Cached blocks kept per size class (libmalloc's `LARGE_ENTRY_CACHE_SIZE` is 16 per magazine); the
/// oldest beyond this are unmapped at once.
pub const CACHE_PER_CLASS: usize = 512;
/// Shards of the live-block map.
const SHARDS: usize = 16;

/// A hasher for block addresses (page-aligned `u64`s): a multiply, no random keys.
#[derive(Default)]
pub(super) struct AddrHasher(u64);

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

pub(super) type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// A block handed out: its mapped length (a class size), the layout it was allocated with, and the
/// ring slot it left when it was taken from the cache (libmalloc keeps the entry's `reclaim_index`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Live {
    pub(super) len: u64,
    pub(super) size: u64,
    pub(super) align: u64,
    /// The cancelled id whose slot the next free refills (xnu's compact reuse path), so that a block
    /// cycling between use and the cache keeps one ring slot instead of leaving a hole per cycle:
    /// holes are only cleared when the reclaimer passes them, so with appends alone a busy program
    /// fills the ring with holes and every free past that point forces a flush.
    pub(super) hole: Option<ReclaimId>,
}

/// A freed block in a class cache with its ring id (libmalloc's `large_entry_t` with `reclaim_index`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Cached {
    pub(super) addr: u64,
    pub(super) id: ReclaimId,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) mapped: AtomicU64,
    pub(super) reused: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) flushes: AtomicU64,
    pub(super) unmapped: AtomicU64,
    pub(super) in_place: AtomicU64,
}

/// Everything made at first large use.
pub(super) struct State {
    /// Dropped first: its drop drains the ring through the space.
    pub(super) ring: Mutex<ReclaimRing>,
    pub(super) classes: Box<[Mutex<VecDeque<Cached>>]>,
    pub(super) live: Box<[Mutex<AddrMap<Live>>]>,
    pub(super) counters: Counters,
    pub(super) _reclaimer: Option<Reclaimer>,
    pub(super) space: Arc<AddressSpace>,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) page: u64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(super) fn new(cfg: &Config) -> Option<State> {
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
    pub(super) fn owns(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }

    pub(super) fn shard(&self, addr: u64) -> &Mutex<AddrMap<Live>> {
        let h = (addr >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60;
        &self.live[h as usize % SHARDS]
    }

    pub(super) fn spec() -> MapSpec<crate::Backing> {
        MapSpec::new(Prot::RW, Prot::RW)
    }

    /// A large block for `layout` (libmalloc's `large_malloc`: the cache first, then a fresh mapping).
    pub(super) fn alloc(&self, layout: Layout, zero: bool) -> Result<u64, AllocError> {
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
    pub(super) fn reuse(&self, cs: u64) -> Option<(u64, u64, ReclaimId)> {
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

    pub(super) fn insert_live(&self, addr: u64, l: Live) {
        lock(self.shard(addr)).insert(addr, l);
    }

    /// Take `addr` out of the live map, checking the layout.
    pub(super) fn remove_live(&self, addr: u64, layout: Layout) -> Result<Live, AllocError> {
        let mut m = lock(self.shard(addr));
        let l = *m.get(&addr).ok_or(AllocError::NotAllocated)?;
        if l.size != layout.size() as u64 || l.align != layout.align() as u64 {
            return Err(AllocError::LayoutMismatch);
        }
        m.remove(&addr);
        Ok(l)
    }

    /// Free a block no longer live (libmalloc's `large_free` into the cache, entered into the ring).
    pub(super) fn release(&self, addr: u64, len: u64, hole: Option<ReclaimId>) {
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

    pub(super) fn unmap(&self, addr: u64, len: u64) {
        self.counters.unmapped.fetch_add(1, Ordering::Relaxed);
        let _ = self.space.unmap(addr..addr + len);
    }

    /// Resize the live block at `addr` in place if it can: within its class (shrinking unmaps the
    /// tail), or by mapping the adjacent pages after it. Returns whether it did.
    ///
    /// The live map's lock is not held across the space's system calls (the block is its caller's
    /// alone until it is freed, so its entry cannot change meanwhile).
    pub(super) fn realloc_in_place(&self, addr: u64, old: Layout, new_size: u64) -> Result<bool, AllocError> {
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
