//! Search: descents, positions, queries and iteration. Nothing here moves an item or reshapes the tree
//! (`value_mut` only hands out an item's value).
//!
//! Invariant: every answer equals what a full descent from the root gives. The finger (set only by the
//! `_mut` descents, for changing operations) is exact while set, and the hint is validated before use, so
//! a stale hint is only a slower lookup.

use core::fmt;
use core::sync::atomic::Ordering;

use super::node::{NIL, count_items_le, count_le};
use super::{Finger, HINT_WINDOW, NO_HINT, Pos, Tree, pack};
use crate::map::store::Item;

impl<V> Tree<V> {
    // ----- positions -----

    /// The leaf whose key range holds `addr`: the last child whose first start is `<= addr` at every
    /// level (the first child if there is none). The tree must not be empty. Uses the finger when `addr`
    /// is in its range.
    #[inline]
    fn leaf_for(&self, addr: u64) -> u32 {
        let f = self.finger;
        if addr >= f.lo && addr < f.hi {
            return f.leaf;
        }
        self.descend(addr).0
    }

    /// As [`Tree::leaf_for`], and leaves the finger on the leaf found: for changing operations, which
    /// usually work on one neighbourhood several times over.
    #[inline]
    pub(super) fn leaf_for_mut(&mut self, addr: u64) -> u32 {
        let f = self.finger;
        if addr >= f.lo && addr < f.hi {
            return f.leaf;
        }
        let (leaf, lo, hi) = self.descend(addr);
        self.finger = Finger { leaf, lo, hi, slot: 0 };
        leaf
    }

    /// The descent itself: the leaf for `addr` and the range `[lo, hi)` of addresses that reach it.
    #[inline]
    pub(super) fn descend(&self, addr: u64) -> (u32, u64, u64) {
        let (mut lo, mut hi) = (0, u64::MAX);
        let mut node = self.root;
        for _ in 0..self.height {
            let n = &self.inners[node as usize];
            let len = n.len as usize;
            let c = count_le(&n.keys[..len], addr);
            let k = c.saturating_sub(1);
            if c > 0 {
                lo = n.keys[k];
            }
            if k + 1 < len {
                hi = n.keys[k + 1];
            }
            node = n.kids[k];
        }
        (node, lo, hi)
    }

    /// Forgets the finger: called by every change to inner keys or children (and to the root).
    #[inline]
    pub(super) fn forget_finger(&mut self) {
        self.finger = Finger::NONE;
        self.reshaped = true;
    }

    /// Remembers `pos` as the last item found, with the window where trying it first pays.
    fn set_hint(&self, pos: (u32, usize)) {
        let it = self.at(pos);
        self.hint.store(pack(pos.0, pos.1), Ordering::Relaxed);
        self.near_lo.store(it.start.saturating_sub(HINT_WINDOW), Ordering::Relaxed);
        self.near_hi.store(it.end.saturating_add(HINT_WINDOW), Ordering::Relaxed);
    }

    /// Position of the item with the greatest start `<= addr`.
    fn pos_floor(&self, addr: u64) -> Option<(u32, usize)> {
        if self.root == NIL {
            return None;
        }
        let l = self.leaf_for(addr);
        let i = self.count_at(l, addr);
        // `i == 0` only when `addr` lies below the first item: the descent took first children throughout.
        (i > 0).then(|| (l, i - 1))
    }

    /// Position of the item with the smallest start `>= addr`.
    fn pos_ceil(&self, addr: u64) -> Option<(u32, usize)> {
        if self.root == NIL {
            return None;
        }
        let l = self.leaf_for(addr);
        let leaf = &self.leaves[l as usize];
        let i = match addr.checked_sub(1) {
            Some(a) => self.count_at(l, a),
            None => 0,
        };
        if i < leaf.len as usize {
            Some((l, i))
        } else if leaf.next != NIL {
            Some((leaf.next, 0))
        } else {
            None
        }
    }

    fn pos_exact(&self, start: u64) -> Option<(u32, usize)> {
        self.pos_floor(start).filter(|&(l, i)| self.leaves[l as usize].starts[i] == start)
    }

    /// As [`Tree::pos_exact`], leaving the finger on the leaf (for changing operations).
    pub(super) fn pos_exact_mut(&mut self, start: u64) -> Option<(u32, usize)> {
        if self.root == NIL {
            return None;
        }
        let l = self.leaf_for_mut(start);
        let i = self.count_at(l, start);
        let found = i > 0 && self.leaves[l as usize].starts[i - 1] == start;
        if found {
            self.finger.slot = i - 1;
        }
        found.then(|| (l, i - 1))
    }

    /// [`count_items_le`] for leaf `l`, trying the finger's slot, the three after it and the one before
    /// it first: a changing operation usually works on one entry and its neighbours several times over.
    #[inline]
    pub(super) fn count_at(&self, l: u32, addr: u64) -> usize {
        let leaf = &self.leaves[l as usize];
        let (f, len) = (self.finger, leaf.len as usize);
        if l == f.leaf && len > 0 {
            let starts = &leaf.starts[..len];
            let i = f.slot.min(len - 1);
            if starts[i] <= addr {
                // Forward: the answer is the first start above `addr`, within three slots.
                let ahead = &starts[i + 1..len.min(i + 4)];
                if let Some(k) = ahead.iter().position(|&st| st > addr) {
                    return i + 1 + k;
                }
                if i + 4 >= len {
                    return len;
                }
            } else if i > 0 && starts[i - 1] <= addr {
                return i;
            }
        }
        count_items_le(leaf, addr)
    }

    #[inline]
    pub(super) fn at(&self, (l, i): (u32, usize)) -> &Item<V> {
        &self.leaves[l as usize].items()[i]
    }

    fn first_leaf(&self) -> u32 {
        let mut node = self.root;
        for _ in 0..self.height {
            node = self.inners[node as usize].kids[0];
        }
        node
    }

    pub(super) fn last_leaf(&self) -> u32 {
        let mut node = self.root;
        for _ in 0..self.height {
            let n = &self.inners[node as usize];
            node = n.kids[n.len as usize - 1];
        }
        node
    }

    // ----- queries -----

    /// The item whose start is exactly `start`.
    pub fn get(&self, start: u64) -> Option<&Item<V>> {
        self.pos_exact(start).map(|p| self.at(p))
    }

    /// The value of the item starting at `start`, for changes that do not move its bounds.
    pub fn value_mut(&mut self, start: u64) -> Option<&mut V> {
        let (l, i) = self.pos_exact_mut(start)?;
        Some(&mut self.leaves[l as usize].items_mut()[i].value)
    }

    /// The item containing `addr` (`start <= addr < end`): the seed's `vm_map_lookup_entry`. Tries the last
    /// item found first, then its neighbours (so sequential lookups stay cheap), then descends the tree.
    pub fn containing(&self, addr: u64) -> Option<&Item<V>> {
        self.containing_at(addr).map(|p| self.at(p))
    }

    /// [`Tree::containing`], as a position (`vm_map_lookup_entry`'s entry pointer): for a change that
    /// reads the item and its neighbours and then replaces them ([`Tree::replace_run_at`]) without
    /// searching again.
    pub fn containing_pos(&self, addr: u64) -> Option<Pos> {
        self.containing_at(addr).map(|(l, i)| Pos { leaf: l, slot: i as u32 })
    }

    /// The item at `pos`, or `None` when `pos` names no item (it came from before a change).
    pub fn item(&self, pos: Pos) -> Option<&Item<V>> {
        self.leaves.get(pos.leaf as usize)?.items().get(pos.slot as usize)
    }

    /// The position of the item with the greatest start `<= addr` ([`Tree::floor`]'s item): for a walk
    /// over neighbours with [`Tree::next_pos`] instead of a search per step.
    pub fn floor_pos(&self, addr: u64) -> Option<Pos> {
        self.pos_floor(addr).map(|(l, i)| Pos { leaf: l, slot: i as u32 })
    }

    /// The position of the item with the smallest start `>= addr` ([`Tree::ceil`]'s item).
    pub fn ceil_pos(&self, addr: u64) -> Option<Pos> {
        self.pos_ceil(addr).map(|(l, i)| Pos { leaf: l, slot: i as u32 })
    }

    /// The position of the item before the one at `pos`.
    pub fn prev_pos(&self, pos: Pos) -> Option<Pos> {
        self.item(pos)?;
        self.before((pos.leaf, pos.slot as usize)).map(|(l, i)| Pos { leaf: l, slot: i as u32 })
    }

    /// The position of the item after the one at `pos`.
    pub fn next_pos(&self, pos: Pos) -> Option<Pos> {
        self.item(pos)?;
        self.after((pos.leaf, pos.slot as usize)).map(|(l, i)| Pos { leaf: l, slot: i as u32 })
    }

    /// The position after `(l, s)`, a live item's.
    pub(super) fn after(&self, (l, s): (u32, usize)) -> Option<(u32, usize)> {
        let leaf = &self.leaves[l as usize];
        if s + 1 < leaf.len as usize {
            Some((l, s + 1))
        } else if leaf.next != NIL {
            Some((leaf.next, 0))
        } else {
            None
        }
    }

    /// The position before `(l, s)`, a live item's.
    pub(super) fn before(&self, (l, s): (u32, usize)) -> Option<(u32, usize)> {
        let leaf = &self.leaves[l as usize];
        if s > 0 {
            Some((l, s - 1))
        } else if leaf.prev != NIL {
            Some((leaf.prev, self.leaves[leaf.prev as usize].len as usize - 1))
        } else {
            None
        }
    }

    fn containing_at(&self, addr: u64) -> Option<(u32, usize)> {
        let h = self.hint.load(Ordering::Relaxed);
        if h != NO_HINT
            && addr >= self.near_lo.load(Ordering::Relaxed)
            && addr < self.near_hi.load(Ordering::Relaxed)
            && let Some(leaf) = self.leaves.get((h >> 32) as usize)
            && let s = (h & 0xffff_ffff) as usize
            && let Some(it) = leaf.items().get(s)
        {
            // A live leaf's initialised slot is an item of the tree; free leaves have no items.
            let l = (h >> 32) as u32;
            if addr >= it.start {
                if addr < it.end {
                    return Some((l, s));
                }
                // Sequential access: the next item, or the gap before it.
                let next = self.after((l, s))?;
                let n = self.at(next);
                if addr < n.start {
                    return None;
                }
                if addr < n.end {
                    self.set_hint(next);
                    return Some(next);
                }
            } else {
                let prev = self.before((l, s))?;
                let p = self.at(prev);
                if addr >= p.end {
                    return None;
                }
                if addr >= p.start {
                    self.set_hint(prev);
                    return Some(prev);
                }
            }
        }
        let pos = self.pos_floor(addr)?;
        if addr >= self.at(pos).end {
            return None;
        }
        self.set_hint(pos);
        Some(pos)
    }

    /// The item with the greatest start `<= addr`.
    pub fn floor(&self, addr: u64) -> Option<&Item<V>> {
        self.pos_floor(addr).map(|p| self.at(p))
    }

    /// The item with the smallest start `>= addr`.
    pub fn ceil(&self, addr: u64) -> Option<&Item<V>> {
        self.pos_ceil(addr).map(|p| self.at(p))
    }

    /// The item just before the one starting at `start` (or before `start`): the seed's `entry->prev`.
    pub fn prev(&self, start: u64) -> Option<&Item<V>> {
        self.floor(start.checked_sub(1)?)
    }

    /// The item just after the one starting at `start` (or after `start`): the seed's `entry->next`.
    pub fn next(&self, start: u64) -> Option<&Item<V>> {
        self.ceil(start.checked_add(1)?)
    }

    /// All items in address order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Item<V>> + '_ {
        let (front, back) = if self.root == NIL {
            ((NIL, 0), (NIL, 0))
        } else {
            let last = self.last_leaf();
            ((self.first_leaf(), 0), (last, self.leaves[last as usize].len as usize))
        };
        Iter { tree: self, front, back, remaining: self.count }
    }

    /// Items overlapping `[start, end)`, in address order.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Item<V>> + '_ {
        // The item after the floor is the ceiling (the floor has the greatest start `<= start`, and
        // one ending at or below `start` starts below it): no second search.
        let first = match self.pos_floor(start) {
            Some(p) if self.at(p).end > start => Some(p),
            Some(p) => self.after(p),
            None => self.pos_ceil(start),
        };
        let (leaf, slot) = first.unwrap_or((NIL, 0));
        Walk { tree: self, leaf, slot }.take_while(move |it| it.start < end)
    }
}

impl<V: fmt::Debug> fmt::Debug for Tree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Items<'a, V>(&'a Tree<V>);
        impl<V: fmt::Debug> fmt::Debug for Items<'_, V> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.iter()).finish()
            }
        }
        f.debug_struct("Tree")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("height", &self.height)
            .field("items", &Items(self))
            .finish()
    }
}

/// Iterator over all items, from both ends.
struct Iter<'a, V> {
    tree: &'a Tree<V>,
    front: (u32, usize),
    /// One past the next item `next_back` returns.
    back: (u32, usize),
    remaining: usize,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = &'a Item<V>;

    fn next(&mut self) -> Option<&'a Item<V>> {
        if self.remaining == 0 {
            return None;
        }
        let mut leaf = &self.tree.leaves[self.front.0 as usize];
        if self.front.1 == leaf.len as usize {
            self.front = (leaf.next, 0);
            leaf = &self.tree.leaves[self.front.0 as usize];
        }
        let it = &leaf.items()[self.front.1];
        self.front.1 += 1;
        self.remaining -= 1;
        Some(it)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<'a, V> DoubleEndedIterator for Iter<'a, V> {
    fn next_back(&mut self) -> Option<&'a Item<V>> {
        if self.remaining == 0 {
            return None;
        }
        if self.back.1 == 0 {
            let p = self.tree.leaves[self.back.0 as usize].prev;
            self.back = (p, self.tree.leaves[p as usize].len as usize);
        }
        self.back.1 -= 1;
        self.remaining -= 1;
        Some(&self.tree.leaves[self.back.0 as usize].items()[self.back.1])
    }
}

/// Forward walk from a position (`leaf == NIL`: at the end).
struct Walk<'a, V> {
    tree: &'a Tree<V>,
    leaf: u32,
    slot: usize,
}

impl<'a, V> Iterator for Walk<'a, V> {
    type Item = &'a Item<V>;

    fn next(&mut self) -> Option<&'a Item<V>> {
        if self.leaf == NIL {
            return None;
        }
        let l = &self.tree.leaves[self.leaf as usize];
        let it = &l.items()[self.slot];
        self.slot += 1;
        if self.slot == l.len as usize {
            (self.leaf, self.slot) = (l.next, 0);
        }
        Some(it)
    }
}
