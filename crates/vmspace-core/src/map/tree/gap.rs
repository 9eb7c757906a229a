//! Gap augmentation (`max_free`, invariant 4 of the module documentation), batches of changes, and
//! `find_gap`, which the augmentation makes O(log n).
//!
//! Invariant: outside a batch, every inner entry's `gaps[i]` is the largest gap ending in the subtree of
//! `kids[i]` (the trailing gap belongs to none); a change to a leaf is carried up by `fix_up` to the
//! first entry that is already right. Inside a batch only the leaves in `dirty` may lag, and `find_gap`
//! and `largest_gap` are not called.

use super::node::{FREE, NIL, count_items_le};
use super::{DIRTY_MAX, GAPS_UNKNOWN, Tree};
use crate::map::store::{GapRequest, Item};

/// A gap request normalised against the tree's bounds.
struct Ctx {
    lo: u64,
    hi: u64,
    len: u64,
    align: u64,
    top_down: bool,
}

impl Ctx {
    /// The placement inside `[gap_start, gap_end) ∩ [lo, hi)`, exactly as the `BTreeMap` store computes it.
    pub(super) fn fit(&self, gap_start: u64, gap_end: u64) -> Option<u64> {
        let (s, e) = (gap_start.max(self.lo), gap_end.min(self.hi));
        if e <= s || e - s < self.len {
            return None;
        }
        if self.top_down {
            let a = (e - self.len) & !(self.align - 1);
            (a >= s).then_some(a)
        } else {
            let a = s.checked_add(self.align - 1)? & !(self.align - 1);
            (a.checked_add(self.len)? <= e).then_some(a)
        }
    }
}

/// The length of the gap ending at `it` when the item before it ends at `prev_end` (invariant 4).
#[inline]
pub(super) fn gap_before<V>(prev_end: u64, it: &Item<V>) -> u64 {
    it.start.saturating_sub(it.reserve_below).max(prev_end) - prev_end
}

impl<V> Tree<V> {
    /// The free gaps of `[min, max)` in address order, each shortened by the next item's reservation.
    pub fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        crate::map::store::gaps_between(self.iter(), self.min, self.max)
    }

    /// The size of the largest gap (as [`Tree::gaps`] reports them), in O(1) from the root's `max_free`.
    pub fn largest_gap(&self) -> u64 {
        debug_assert_eq!(self.ndirty, 0, "largest_gap inside a batch");
        if self.root == NIL {
            return self.max.saturating_sub(self.min);
        }
        let inside = if self.height == 0 {
            self.leaf_summary(self.root).1
        } else {
            self.inners[self.root as usize].summary().1
        };
        inside.max(self.max.saturating_sub(self.last_end()))
    }

    /// The end of the last item (the tree must not be empty): where the trailing gap starts.
    fn last_end(&self) -> u64 {
        let l = &self.leaves[self.last_leaf() as usize];
        l.items()[l.len as usize - 1].end
    }

    /// The lowest (or, top-down, highest) aligned address where `req.len` bytes fit in a gap inside
    /// `[req.lo, req.hi)`, outside every item and every item's `reserve_below`: the seed's
    /// `vm_map_findspace`, in O(log n) through the `max_free` augmentation (first fit, like FreeBSD's).
    pub fn find_gap(&self, req: &GapRequest) -> Option<u64> {
        debug_assert_eq!(self.ndirty, 0, "find_gap inside a batch");
        let lo = req.lo.max(self.min);
        let hi = req.hi.min(self.max);
        if req.len == 0 || !req.align.is_power_of_two() || lo >= hi {
            return None;
        }
        let c = Ctx { lo, hi, len: req.len, align: req.align, top_down: req.top_down };
        if self.root == NIL {
            return c.fit(self.min, self.max);
        }
        if hi - lo < req.len {
            return None;
        }
        // The trailing gap is in no summary: first for a top-down search, last for a bottom-up one.
        let trailing = || c.fit(self.last_end(), self.max);
        if c.top_down {
            trailing().or_else(|| self.search(self.root, self.height, &c))
        } else {
            self.search(self.root, self.height, &c).or_else(trailing)
        }
    }

    fn search(&self, node: u32, level: u32, c: &Ctx) -> Option<u64> {
        if level == 0 {
            return self.search_leaf(node, c);
        }
        let n = &self.inners[node as usize];
        let len = n.len as usize;
        // Usable gaps end at or above `lo + len` and start at or below `hi - len` (`hi - lo >= len`).
        let end_floor = c.lo.saturating_add(c.len);
        let start_ceil = c.hi - c.len;
        if c.top_down {
            for j in (0..len).rev() {
                if j + 1 < len && n.keys[j + 1] <= end_floor {
                    break; // gaps here and to the left all end below `lo + len`
                }
                if n.gaps[j] < c.len || (j > 0 && n.keys[j - 1] >= start_ceil) {
                    continue;
                }
                if let Some(a) = self.search(n.kids[j], level - 1, c) {
                    return Some(a);
                }
            }
        } else {
            for j in 0..len {
                if j > 0 && n.keys[j - 1] >= start_ceil {
                    break; // gaps here and to the right all start above `hi - len`
                }
                if n.gaps[j] < c.len || (j + 1 < len && n.keys[j + 1] <= end_floor) {
                    continue;
                }
                if let Some(a) = self.search(n.kids[j], level - 1, c) {
                    return Some(a);
                }
            }
        }
        None
    }

    fn search_leaf(&self, l: u32, c: &Ctx) -> Option<u64> {
        let leaf = &self.leaves[l as usize];
        let items = leaf.items();
        let n = items.len();
        // The end of the item before `items[i]`; touches the previous leaf only for `i == 0`.
        let prev_end = |i: usize| if i > 0 { items[i - 1].end } else { self.prev_end_of(l) };
        if c.top_down {
            // The gap ending at `items[i]` starts at `items[i - 1].end`, above `hi` once `items[i - 1]`
            // starts at or above it: only items up to the first one starting above `hi` can matter.
            let last = count_items_le(leaf, c.hi).min(n - 1);
            for i in (0..=last).rev() {
                let it = &items[i];
                if it.start <= c.lo {
                    return None; // this gap and all to its left end at or below `lo`
                }
                let pe = prev_end(i);
                if let Some(a) = c.fit(pe, it.start.saturating_sub(it.reserve_below).max(pe)) {
                    return Some(a);
                }
            }
            None
        } else {
            // The gap ending at `items[i]` ends at or below its start: skip the items starting at or below `lo`.
            let first = count_items_le(leaf, c.lo);
            for (i, it) in items.iter().enumerate().skip(first) {
                let pe = prev_end(i);
                if pe >= c.hi {
                    return None; // this gap and all to its right start at or above `hi`
                }
                if let Some(a) = c.fit(pe, it.start.saturating_sub(it.reserve_below).max(pe)) {
                    return Some(a);
                }
            }
            None
        }
    }

    /// End of the item before leaf `l`'s first item (`min` for the first leaf).
    #[inline]
    fn prev_end_of(&self, l: u32) -> u64 {
        let p = self.leaves[l as usize].prev;
        if p == NIL {
            self.min
        } else {
            let pl = &self.leaves[p as usize];
            pl.items()[pl.len as usize - 1].end
        }
    }

    /// Leaf `l`'s first start and largest gap (invariant 4), recomputed from its items.
    pub(super) fn leaf_summary(&self, l: u32) -> (u64, u64) {
        let leaf = &self.leaves[l as usize];
        let items = leaf.items();
        let mut prev_end = self.prev_end_of(l);
        let mut best = 0;
        for it in items {
            best = best.max(gap_before(prev_end, it));
            prev_end = it.end;
        }
        (items[0].start, best)
    }

    /// Index of `child` among `p`'s children.
    #[inline]
    pub(super) fn kid_index(&self, p: u32, child: u32) -> usize {
        let n = &self.inners[p as usize];
        n.kids[..n.len as usize]
            .iter()
            .position(|&k| k == child)
            .expect("tree: child missing from its parent")
    }

    /// Stores `(key, gap)` as `child`'s entry in `p` and carries the change up to the root, stopping as
    /// soon as an entry is already right (everything above it then is too).
    ///
    /// A node's largest gap is worked out from the one its parent records for it, without a scan of its
    /// children unless the child that changed held the largest gap and shrank: every recorded entry is
    /// its node's summary whenever this runs (changes that write entries directly fix their node next).
    fn fix_up(&mut self, mut p: u32, child: u32, mut key: u64, mut gap: u64) {
        if p == NIL {
            return;
        }
        let mut i = self.kid_index(p, child);
        loop {
            let n = &mut self.inners[p as usize];
            if n.keys[i] == key && n.gaps[i] == gap {
                return;
            }
            let (moved, old_gap) = (n.keys[i] != key, n.gaps[i]);
            n.keys[i] = key;
            n.gaps[i] = gap;
            let parent = n.parent;
            if moved {
                self.forget_finger();
            }
            if parent == NIL {
                return;
            }
            let j = self.kid_index(parent, p);
            let recorded = self.inners[parent as usize].gaps[j];
            let n = &self.inners[p as usize];
            let largest = if gap >= recorded {
                gap
            } else if old_gap < recorded {
                recorded
            } else {
                n.summary().1
            };
            debug_assert_eq!(largest, n.summary().1, "fix_up: a recorded gap lagged its node");
            (key, gap) = (n.keys[0], largest);
            (p, i) = (parent, j);
        }
    }

    /// Leaf `l`'s items changed: fix its entry in its parent now (`key_moved`: its first start changed,
    /// which routing needs at once; or outside a batch), or remember it for [`Tree::end_batch`].
    #[inline]
    pub(super) fn touch(&mut self, l: u32, key_moved: bool) {
        if key_moved || !self.batch {
            self.reshaped = true;
            return self.fix_leaf(l);
        }
        self.mark_dirty(l, GAPS_UNKNOWN, 0);
    }

    /// [`Tree::touch`] for a change to leaf `l` that kept its first start and whose gaps (invariant 4)
    /// are known: the largest gap it took out (`removed`) and the largest it put in (`added`), 0 for
    /// none. [`Tree::end_batch`] then needs no scan of the leaf when `removed` cannot have been its
    /// largest gap.
    #[inline]
    pub(super) fn touch_gaps(&mut self, l: u32, removed: u64, added: u64) {
        if !self.batch {
            self.reshaped = true;
            return self.fix_leaf(l);
        }
        self.mark_dirty(l, removed, added);
    }

    /// Lists `l` as dirty with the gaps a change took out and put in (combined with the batch's
    /// earlier changes to it), or fixes it at once when the list is full.
    #[inline]
    fn mark_dirty(&mut self, l: u32, removed: u64, added: u64) {
        let n = self.ndirty;
        if let Some(k) = self.dirty[..n].iter().position(|&d| d == l) {
            let g = &mut self.dgaps[k];
            *g = (g.0.max(removed), g.1.max(added));
            return;
        }
        if n == DIRTY_MAX {
            self.reshaped = true;
            return self.fix_leaf(l);
        }
        self.dirty[n] = l;
        self.dgaps[n] = (removed, added);
        self.ndirty += 1;
    }

    /// Starts a batch of changes (one map operation): gap summaries are fixed once, by
    /// [`Tree::end_batch`], instead of after every change. Keys stay exact throughout, so lookups and
    /// changes work as usual; only [`Tree::find_gap`] and [`Tree::largest_gap`] must wait for the end.
    pub fn begin_batch(&mut self) {
        self.batch = true;
        self.reshaped = false;
    }

    /// Ends a batch whose changes, taken together, left every gap as it was: items were split into
    /// touching pieces or touching items joined, each gap still ending at the same item with the same
    /// length (a protect inside one entry). Then, unless the batch reshaped the tree or fixed a summary
    /// from a state in its middle, every stored summary is still right and nothing is recomputed.
    /// Otherwise this is [`Tree::end_batch`].
    pub fn end_batch_same_gaps(&mut self) {
        if self.reshaped {
            return self.end_batch();
        }
        #[cfg(debug_assertions)]
        for &l in &self.dirty[..self.ndirty] {
            let p = self.leaves[l as usize].parent;
            if p != NIL {
                let i = self.kid_index(p, l);
                let n = &self.inners[p as usize];
                debug_assert_eq!((n.keys[i], n.gaps[i]), self.leaf_summary(l), "batch changed a gap");
            }
        }
        self.batch = false;
        self.ndirty = 0;
    }

    /// Ends a batch: fixes the summaries of every leaf it touched (a leaf freed meanwhile is skipped;
    /// one reused meanwhile got a fresh summary and is fixed again harmlessly).
    ///
    /// Unless the batch reshaped the tree or fixed a summary in its middle, a dirty leaf's recorded
    /// summary is the one from before the batch, and its first start has not moved. When every gap the
    /// batch took out of the leaf was shorter than the recorded largest gap (or empty), a gap of that
    /// length is still there, and the new largest gap is the larger of it and the largest gap put in:
    /// no scan of the leaf.
    pub fn end_batch(&mut self) {
        self.batch = false;
        let exact = !self.reshaped;
        for k in 0..self.ndirty {
            let l = self.dirty[k];
            let leaf = &self.leaves[l as usize];
            let p = leaf.parent;
            if p == FREE || leaf.len == 0 || p == NIL {
                continue; // freed, or the root: no entry records it
            }
            let (removed, added) = self.dgaps[k];
            if exact && removed != GAPS_UNKNOWN {
                let key = leaf.starts[0];
                if removed == 0 && added == 0 {
                    #[cfg(debug_assertions)]
                    {
                        let i = self.kid_index(p, l);
                        let n = &self.inners[p as usize];
                        debug_assert_eq!(
                            (n.keys[i], n.gaps[i]),
                            self.leaf_summary(l),
                            "end_batch: no gap changed"
                        );
                    }
                    continue;
                }
                let recorded = self.inners[p as usize].gaps[self.kid_index(p, l)];
                if removed < recorded || removed == 0 {
                    let gap = recorded.max(added);
                    debug_assert_eq!((key, gap), self.leaf_summary(l), "end_batch: worked-out summary");
                    self.fix_up(p, l, key, gap);
                    continue;
                }
            }
            self.fix_leaf(l);
        }
        self.ndirty = 0;
    }

    #[inline]
    pub(super) fn fix_leaf(&mut self, l: u32) {
        let (k, g) = self.leaf_summary(l);
        let p = self.leaves[l as usize].parent;
        self.fix_up(p, l, k, g);
    }

    #[inline]
    pub(super) fn fix_inner(&mut self, n: u32) {
        let (k, g) = self.inners[n as usize].summary();
        let p = self.inners[n as usize].parent;
        self.fix_up(p, n, k, g);
    }
}
