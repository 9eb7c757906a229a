//! The entry store: the sorted, disjoint set of entries behind a [`VmMap`](super::VmMap), with the gap
//! queries `find_space` needs.
//!
//! Invariant kept here: items are disjoint half-open ranges `[start, end)` with `start < end`, keyed by
//! `start`, all inside `[min, max)`. Each item may carry `reserve_below`: bytes below its start that are
//! reserved (a stack's growth room, the seed's `avail_ssize`) and that a gap search never hands out.
//!
//! The store knows nothing of protections or objects: the map decides what an entry is, the store keeps
//! them in order and answers "what is at this address" and "where is a free gap".

#[cfg(any(test, feature = "testing"))]
use alloc::collections::BTreeMap;
#[cfg(any(test, feature = "testing"))]
use core::ops::Bound;
#[cfg(any(test, feature = "testing"))]
use core::sync::atomic::{AtomicU64, Ordering};

/// `hint` value meaning "no hint" (no item can start at `u64::MAX`: it would be empty).
#[cfg(any(test, feature = "testing"))]
const NO_HINT: u64 = u64::MAX;

/// One stored range and the map's value for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item<V> {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Bytes directly below `start` that gap searches must not hand out (stack growth room).
    pub reserve_below: u64,
    /// The map's per-entry data.
    pub value: V,
}

/// A free-space request: `len` bytes aligned to `align` (a power of two) inside `[lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapRequest {
    /// Bytes wanted (non-zero).
    pub len: u64,
    /// Alignment of the returned address: a power of two.
    pub align: u64,
    /// Lowest acceptable address.
    pub lo: u64,
    /// One past the highest acceptable last byte.
    pub hi: u64,
    /// Highest fit (top-down) instead of lowest (bottom-up, first fit).
    pub top_down: bool,
}

/// The sorted entry set. See the module documentation for its invariant.
///
/// The straightforward `BTreeMap` version of the map's store, kept as the test oracle of the arena tree
/// (`map::tree::Tree`, which the map uses): compiled for tests and the `testing` feature only.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug)]
pub struct Store<V> {
    min: u64,
    max: u64,
    items: BTreeMap<u64, Item<V>>,
    /// Start of the last item found by [`Store::containing`] (the seed's `vm_map.hint`).
    /// Atomic only so that a shared map stays `Sync`; a stale hint is merely a slower lookup.
    hint: AtomicU64,
}

#[cfg(any(test, feature = "testing"))]
impl<V: Clone> Clone for Store<V> {
    fn clone(&self) -> Self {
        Store { min: self.min, max: self.max, items: self.items.clone(), hint: AtomicU64::new(NO_HINT) }
    }
}

#[cfg(any(test, feature = "testing"))]
impl<V> Store<V> {
    /// An empty store covering `[min, max)`.
    pub fn new(min: u64, max: u64) -> Self {
        Store { min, max, items: BTreeMap::new(), hint: AtomicU64::new(NO_HINT) }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the store holds no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item whose start is exactly `start`.
    pub fn get(&self, start: u64) -> Option<&Item<V>> {
        self.items.get(&start)
    }

    /// The value of the item starting at `start`, for changes that do not move its bounds.
    pub fn value_mut(&mut self, start: u64) -> Option<&mut V> {
        self.items.get_mut(&start).map(|i| &mut i.value)
    }

    /// The item containing `addr` (`start <= addr < end`). Tries the last item found first.
    pub fn containing(&self, addr: u64) -> Option<&Item<V>> {
        let h = self.hint.load(Ordering::Relaxed);
        if h != NO_HINT
            && let Some(it) = self.items.get(&h)
            && it.start <= addr
            && addr < it.end
        {
            return Some(it);
        }
        let it = self.floor(addr).filter(|it| addr < it.end)?;
        self.hint.store(it.start, Ordering::Relaxed);
        Some(it)
    }

    /// The item with the greatest start `<= addr`.
    pub fn floor(&self, addr: u64) -> Option<&Item<V>> {
        self.items.range(..=addr).next_back().map(|(_, it)| it)
    }

    /// The item with the smallest start `>= addr`.
    pub fn ceil(&self, addr: u64) -> Option<&Item<V>> {
        self.items.range(addr..).next().map(|(_, it)| it)
    }

    /// The item just before the one starting at `start` (or before `start`).
    pub fn prev(&self, start: u64) -> Option<&Item<V>> {
        self.items.range(..start).next_back().map(|(_, it)| it)
    }

    /// The item just after the one starting at `start` (or after `start`).
    pub fn next(&self, start: u64) -> Option<&Item<V>> {
        self.items.range((Bound::Excluded(start), Bound::Unbounded)).next().map(|(_, it)| it)
    }

    /// All items in address order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Item<V>> + '_ {
        self.items.values()
    }

    /// Items overlapping `[start, end)`, in address order.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Item<V>> + '_ {
        let first = self.floor(start).filter(|it| it.end > start).map(|it| it.start).unwrap_or(start);
        self.items.range(first..end).map(|(_, it)| it)
    }

    /// Adds an item. The caller guarantees it overlaps nothing and lies inside `[min, max)`.
    pub fn insert(&mut self, item: Item<V>) {
        debug_assert!(item.start < item.end && item.start >= self.min && item.end <= self.max);
        self.items.insert(item.start, item);
    }

    /// Removes and returns the item starting at `start`.
    pub fn remove(&mut self, start: u64) -> Option<Item<V>> {
        let _ = self.hint.compare_exchange(start, NO_HINT, Ordering::Relaxed, Ordering::Relaxed);
        self.items.remove(&start)
    }

    /// Moves the bounds of the item starting at `start`. The caller guarantees the new bounds overlap no
    /// other item.
    pub fn set_bounds(&mut self, start: u64, new_start: u64, new_end: u64, reserve_below: u64) {
        if let Some(mut it) = self.remove(start) {
            it.start = new_start;
            it.end = new_end;
            it.reserve_below = reserve_below;
            self.insert(it);
        }
    }

    /// The lowest (or, top-down, highest) aligned address where `req.len` bytes fit in a gap inside
    /// `[req.lo, req.hi)`, outside every item and every item's `reserve_below`.
    pub fn find_gap(&self, req: &GapRequest) -> Option<u64> {
        let lo = req.lo.max(self.min);
        let hi = req.hi.min(self.max);
        if req.len == 0 || !req.align.is_power_of_two() || lo >= hi {
            return None;
        }
        let fit = |gap_start: u64, gap_end: u64| -> Option<u64> {
            let (s, e) = (gap_start.max(lo), gap_end.min(hi));
            if e <= s || e - s < req.len {
                return None;
            }
            if req.top_down {
                let a = (e - req.len) & !(req.align - 1);
                (a >= s).then_some(a)
            } else {
                let a = s.checked_add(req.align - 1)? & !(req.align - 1);
                (a.checked_add(req.len)? <= e).then_some(a)
            }
        };
        let gaps = self.gaps();
        if req.top_down {
            let mut v: alloc::vec::Vec<(u64, u64)> = gaps.collect();
            v.reverse();
            v.into_iter().find_map(|(s, e)| fit(s, e))
        } else {
            gaps.into_iter().find_map(|(s, e)| fit(s, e))
        }
    }

    /// The free gaps of `[min, max)` in address order, each shortened by the next item's reservation.
    pub fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        gaps_between(self.items.values(), self.min, self.max)
    }

    /// The size of the largest gap (as [`Store::gaps`] reports them).
    pub fn largest_gap(&self) -> u64 {
        self.gaps().map(|(s, e)| e - s).max().unwrap_or(0)
    }

    /// Checks the store's own invariant; the error names the first violation.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut prev_end = self.min;
        for (k, it) in &self.items {
            if *k != it.start {
                return Err("item keyed by another start");
            }
            if it.start >= it.end {
                return Err("empty or inverted item");
            }
            if it.start < prev_end {
                return Err("items overlap or lie below min");
            }
            prev_end = it.end;
        }
        if prev_end > self.max {
            return Err("item above max");
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "testing"))]
impl<V> Store<V> {
    /// Makes sure the next `n` insertions (and the node splits they cause) will not need to allocate,
    /// or reports that memory could not be had. The map calls this after validating an operation and
    /// before changing anything, so an allocation failure leaves the map untouched.
    ///
    /// The `BTreeMap` store cannot pre-allocate nodes, so it always answers yes; the arena tree does.
    pub fn ensure_spare(&mut self, _n: usize) -> Result<(), StoreFull> {
        Ok(())
    }
}

/// Nodes could not be had: allocation failed or was forbidden and the reservation is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreFull;

/// The free gaps between `items` (in address order) inside `[min, max)`, each ending at the next item's
/// start less its reservation (`reserve_below`); empty gaps are skipped. Shared by [`Store::gaps`] and
/// the tree's.
pub(crate) fn gaps_between<'a, V: 'a>(
    mut items: impl Iterator<Item = &'a Item<V>> + 'a,
    min: u64,
    max: u64,
) -> impl Iterator<Item = (u64, u64)> + 'a {
    let mut prev_end = min;
    let mut done = false;
    core::iter::from_fn(move || {
        while !done {
            match items.next() {
                Some(it) => {
                    let gap = (prev_end, it.start.saturating_sub(it.reserve_below).max(prev_end));
                    prev_end = it.end;
                    if gap.1 > gap.0 {
                        return Some(gap);
                    }
                }
                None => {
                    done = true;
                    if max > prev_end {
                        return Some((prev_end, max));
                    }
                }
            }
        }
        None
    })
}
