//! Cursor edits: insert, remove, moving an item's bounds and replacing a run of items, with the node
//! splits, sibling shifts, merges and rebalancing they cause.
//!
//! Invariant: each public edit leaves invariants 1–5 of the module documentation holding, the gap
//! summaries of the leaves it touched fixed (or listed in the open batch); every change to inner keys or
//! children forgets the finger. The caller guarantees that the items it adds overlap nothing.

use super::gap::gap_before;
use super::node::{ICAP, IMIN, LCAP, LMIN, NIL, transfer, transfer_entries, two_mut};
use super::{Pos, Tree};
use crate::map::store::Item;

impl<V> Tree<V> {
    fn set_parent(&mut self, kid: u32, kid_level: u32, p: u32) {
        if kid_level == 0 {
            self.leaves[kid as usize].parent = p;
        } else {
            self.inners[kid as usize].parent = p;
        }
    }

    /// Adds an item. The caller guarantees it overlaps nothing and lies inside `[min, max)` (the seed's
    /// `vm_map_entry_link`). Allocates a node only on a split when no spare node is left; after a successful
    /// [`Tree::ensure_spare`]`(n)` the next `n` insertions never allocate.
    pub fn insert(&mut self, item: Item<V>) {
        debug_assert!(item.start < item.end && item.start >= self.min && item.end <= self.max);
        self.count += 1;
        if self.root == NIL {
            let l = self.alloc_leaf();
            let leaf = &mut self.leaves[l as usize];
            (leaf.parent, leaf.prev, leaf.next) = (NIL, NIL, NIL);
            leaf.insert(0, item);
            (self.root, self.height) = (l, 0);
            self.forget_finger();
            return;
        }
        let l = self.leaf_for_mut(item.start);
        let li = l as usize;
        let pos = self.count_at(l, item.start);
        self.finger.slot = pos;
        let len = self.leaves[li].len as usize;
        if len < LCAP {
            // The gap ending at the item now at `pos` splits in two, around the new item.
            let gaps = (pos > 0).then(|| {
                let items = self.leaves[li].items();
                let pe = items[pos - 1].end;
                let above = items.get(pos);
                let removed = above.map_or(0, |a| gap_before(pe, a));
                (removed, gap_before(pe, &item).max(above.map_or(0, |a| gap_before(item.end, a))))
            });
            self.leaves[li].insert(pos, item);
            let next = self.leaves[li].next;
            match gaps {
                Some((removed, added)) => self.touch_gaps(l, removed, added),
                None => self.touch(l, true),
            }
            if pos == len && next != NIL {
                self.touch(next, false); // the next leaf's first gap now starts at this item's end
            }
            return;
        }
        let append = pos == LCAP && self.leaves[li].next == NIL;
        let mut item = Some(item);
        if !append && self.height > 0 {
            self.shift_to_sibling(l, pos, &mut item);
        }
        let Some(item) = item else { return };
        // Split. Growing at the top of the map keeps the full leaf all but full and starts a new one with
        // its last item and the new one: a removal at the top then leaves the new last leaf an item
        // (which removals do not rebalance) rather than emptying it and merging it back.
        let r = self.alloc_leaf();
        let ri = r as usize;
        let keep = if append { LCAP - 1 } else { LCAP.div_ceil(2) };
        let rn = {
            let (a, b) = two_mut(&mut self.leaves, li, ri);
            if pos < keep {
                transfer(a, keep - 1, LCAP + 1 - keep, b, 0);
                a.insert(pos, item);
            } else {
                transfer(a, keep, LCAP - keep, b, 0);
                b.insert(pos - keep, item);
            }
            (b.prev, b.next, b.parent) = (l, a.next, a.parent);
            a.next = r;
            b.next
        };
        if rn != NIL {
            self.leaves[rn as usize].prev = r;
        }
        let (lk, lg) = self.leaf_summary(l);
        let (rk, rg) = self.leaf_summary(r);
        let p = self.leaves[li].parent;
        self.insert_child(p, l, (lk, lg), r, (rk, rg), 0);
        if rn != NIL {
            self.fix_leaf(rn);
        }
    }

    /// Before splitting the full leaf `l`, moves some of its items to a sibling under the same parent that has
    /// room and inserts `item` (taken out of the option) at its place (B*-tree style): random insertions then
    /// fill leaves to about 90 % instead of 70 %. Leaves `item` in place when neither sibling has room.
    fn shift_to_sibling(&mut self, l: u32, pos: usize, item: &mut Option<Item<V>>) {
        let p = self.leaves[l as usize].parent;
        let pi = p as usize;
        let i = self.kid_index(p, l);
        let plen = self.inners[pi].len as usize;
        let room = |t: &Self, k: u32| LCAP - t.leaves[k as usize].len as usize;
        let lroom = if i > 0 { room(self, self.inners[pi].kids[i - 1]) } else { 0 };
        let rroom = if i + 1 < plen { room(self, self.inners[pi].kids[i + 1]) } else { 0 };
        let (left, right) = if lroom >= 1 && lroom >= rroom {
            let s = self.inners[pi].kids[i - 1];
            let r = room(self, s);
            let mut k = r.div_ceil(2);
            // The new item lands in the sibling when it precedes the moved items' end: keep room for it.
            let into_sibling = pos < k;
            if into_sibling {
                k = k.min(r - 1);
            }
            let (a, b) = two_mut(&mut self.leaves, s as usize, l as usize);
            let a_old = a.len as usize;
            transfer(b, 0, k, a, a_old);
            let it = item.take().expect("item present");
            if into_sibling {
                a.insert(a_old + pos, it)
            } else {
                b.insert(pos - k, it)
            }
            (s, l)
        } else if rroom >= 1 {
            let s = self.inners[pi].kids[i + 1];
            let r = room(self, s);
            let mut k = r.div_ceil(2);
            let into_sibling = pos > LCAP - k;
            if into_sibling {
                k = k.min(r - 1);
            }
            let (a, b) = two_mut(&mut self.leaves, l as usize, s as usize);
            transfer(a, LCAP - k, k, b, 0);
            let it = item.take().expect("item present");
            if into_sibling {
                b.insert(pos - (LCAP - k), it)
            } else {
                a.insert(pos, it)
            }
            (l, s)
        } else {
            return;
        };
        self.forget_finger();
        let j = self.kid_index(p, left);
        (self.inners[pi].keys[j], self.inners[pi].gaps[j]) = self.leaf_summary(left);
        (self.inners[pi].keys[j + 1], self.inners[pi].gaps[j + 1]) = self.leaf_summary(right);
        self.fix_inner(p);
        let after = self.leaves[right as usize].next;
        if after != NIL {
            self.fix_leaf(after);
        }
    }

    /// Records `right` (just split off `left`) in `p` after `left`, with both summaries; splits `p` in turn
    /// when it is full, and grows a new root when `left` was the root.
    fn insert_child(
        &mut self,
        p: u32,
        left: u32,
        ls: (u64, u64),
        right: u32,
        rs: (u64, u64),
        kid_level: u32,
    ) {
        self.forget_finger();
        if p == NIL {
            let nr = self.alloc_inner();
            let n = &mut self.inners[nr as usize];
            (n.len, n.parent, n.level) = (2, NIL, kid_level + 1);
            (n.keys[0], n.gaps[0], n.kids[0]) = (ls.0, ls.1, left);
            (n.keys[1], n.gaps[1], n.kids[1]) = (rs.0, rs.1, right);
            self.set_parent(left, kid_level, nr);
            self.set_parent(right, kid_level, nr);
            self.root = nr;
            self.height += 1;
            return;
        }
        let pi = p as usize;
        let i = self.kid_index(p, left);
        let len = self.inners[pi].len as usize;
        (self.inners[pi].keys[i], self.inners[pi].gaps[i]) = ls;
        if len < ICAP {
            self.inners[pi].insert_entry(i + 1, rs.0, rs.1, right);
            self.set_parent(right, kid_level, p);
            self.fix_inner(p);
            return;
        }
        let q = self.alloc_inner();
        let qi = q as usize;
        let keep = ICAP.div_ceil(2);
        let ins = i + 1;
        {
            let (a, b) = two_mut(&mut self.inners, pi, qi);
            (b.level, b.parent) = (a.level, a.parent);
            if ins < keep {
                transfer_entries(a, keep - 1, ICAP + 1 - keep, b, 0);
                a.insert_entry(ins, rs.0, rs.1, right);
            } else {
                transfer_entries(a, keep, ICAP - keep, b, 0);
                b.insert_entry(ins - keep, rs.0, rs.1, right);
            }
        }
        for j in 0..self.inners[qi].len as usize {
            let k = self.inners[qi].kids[j];
            self.set_parent(k, kid_level, q);
        }
        if ins < keep {
            self.set_parent(right, kid_level, p);
        }
        let ps = self.inners[pi].summary();
        let qs = self.inners[qi].summary();
        let gp = self.inners[pi].parent;
        self.insert_child(gp, p, ps, q, qs, kid_level + 1);
    }

    /// Removes and returns the item starting at `start` (the seed's `vm_map_entry_unlink`). Never allocates;
    /// emptied nodes go back to the arena's free list.
    pub fn remove(&mut self, start: u64) -> Option<Item<V>> {
        let (l, pos) = self.pos_exact_mut(start)?;
        let li = l as usize;
        let item = self.leaves[li].remove(pos);
        self.count -= 1;
        let len = self.leaves[li].len as usize;
        if self.height == 0 {
            if len == 0 {
                self.free_leaf(l);
                (self.root, self.height) = (NIL, 0);
                self.forget_finger();
            }
            return Some(item);
        }
        let next = self.leaves[li].next;
        let succ_elsewhere = pos == len && next != NIL;
        // The last leaf may run low: it is where the map grows and shrinks (see invariant 2).
        if len >= LMIN || (next == NIL && len > 0) {
            if pos > 0 {
                // The gaps ending at the item and at its successor join into one.
                let items = self.leaves[li].items();
                let pe = items[pos - 1].end;
                let above = items.get(pos);
                let removed = gap_before(pe, &item).max(above.map_or(0, |a| gap_before(item.end, a)));
                let added = above.map_or(0, |a| gap_before(pe, a));
                self.touch_gaps(l, removed, added);
            } else {
                self.touch(l, true);
            }
            if succ_elsewhere {
                self.touch(next, false);
            }
        } else {
            let succ = succ_elsewhere.then(|| self.leaves[next as usize].items()[0].start);
            self.rebalance_leaf(l);
            if let Some(s) = succ {
                let sl = self.leaf_for_mut(s);
                self.fix_leaf(sl);
            }
        }
        Some(item)
    }

    /// Merges the underfull leaf `l` with a sibling, or moves items over from one.
    fn rebalance_leaf(&mut self, l: u32) {
        self.forget_finger();
        let p = self.leaves[l as usize].parent;
        let pi = p as usize;
        let i = self.kid_index(p, l);
        let j = i.saturating_sub(1);
        let (a, b) = (self.inners[pi].kids[j], self.inners[pi].kids[j + 1]);
        let (ai, bi) = (a as usize, b as usize);
        let (alen, blen) = (self.leaves[ai].len as usize, self.leaves[bi].len as usize);
        if alen + blen <= LCAP {
            let bn = {
                let (x, y) = two_mut(&mut self.leaves, ai, bi);
                transfer(y, 0, blen, x, alen);
                x.next = y.next;
                y.next
            };
            if bn != NIL {
                self.leaves[bn as usize].prev = a;
            }
            self.free_leaf(b);
            self.inners[pi].remove_entry(j + 1);
            (self.inners[pi].keys[j], self.inners[pi].gaps[j]) = self.leaf_summary(a);
            self.after_shrink(p);
        } else {
            let ta = (alen + blen) / 2;
            {
                let (x, y) = two_mut(&mut self.leaves, ai, bi);
                if alen < ta {
                    transfer(y, 0, ta - alen, x, alen);
                } else {
                    transfer(x, ta, alen - ta, y, 0);
                }
            }
            (self.inners[pi].keys[j], self.inners[pi].gaps[j]) = self.leaf_summary(a);
            (self.inners[pi].keys[j + 1], self.inners[pi].gaps[j + 1]) = self.leaf_summary(b);
            self.fix_inner(p);
        }
    }

    /// `p` just lost a child: collapse a one-child root, rebalance an underfull node, or carry the change up.
    fn after_shrink(&mut self, p: u32) {
        self.forget_finger();
        let pi = p as usize;
        if p == self.root {
            if self.inners[pi].len == 1 {
                let c = self.inners[pi].kids[0];
                let lvl = self.inners[pi].level;
                self.set_parent(c, lvl - 1, NIL);
                self.free_inner(p);
                self.root = c;
                self.height -= 1;
            }
        } else if (self.inners[pi].len as usize) < IMIN {
            self.rebalance_inner(p);
        } else {
            self.fix_inner(p);
        }
    }

    /// Merges the underfull inner node `n` with a sibling, or moves children over from one.
    fn rebalance_inner(&mut self, n: u32) {
        self.forget_finger();
        let g = self.inners[n as usize].parent;
        let gi = g as usize;
        let i = self.kid_index(g, n);
        let j = i.saturating_sub(1);
        let (a, b) = (self.inners[gi].kids[j], self.inners[gi].kids[j + 1]);
        let (ai, bi) = (a as usize, b as usize);
        let (alen, blen) = (self.inners[ai].len as usize, self.inners[bi].len as usize);
        let kid_level = self.inners[ai].level - 1;
        if alen + blen <= ICAP {
            {
                let (x, y) = two_mut(&mut self.inners, ai, bi);
                transfer_entries(y, 0, blen, x, alen);
            }
            for k in alen..alen + blen {
                let kid = self.inners[ai].kids[k];
                self.set_parent(kid, kid_level, a);
            }
            self.free_inner(b);
            self.inners[gi].remove_entry(j + 1);
            (self.inners[gi].keys[j], self.inners[gi].gaps[j]) = self.inners[ai].summary();
            self.after_shrink(g);
        } else {
            let ta = (alen + blen) / 2;
            {
                let (x, y) = two_mut(&mut self.inners, ai, bi);
                if alen < ta {
                    transfer_entries(y, 0, ta - alen, x, alen);
                } else {
                    transfer_entries(x, ta, alen - ta, y, 0);
                }
            }
            for k in 0..self.inners[ai].len as usize {
                let kid = self.inners[ai].kids[k];
                self.set_parent(kid, kid_level, a);
            }
            for k in 0..self.inners[bi].len as usize {
                let kid = self.inners[bi].kids[k];
                self.set_parent(kid, kid_level, b);
            }
            (self.inners[gi].keys[j], self.inners[gi].gaps[j]) = self.inners[ai].summary();
            (self.inners[gi].keys[j + 1], self.inners[gi].gaps[j + 1]) = self.inners[bi].summary();
            self.fix_inner(g);
        }
    }

    /// Moves the bounds of the item starting at `start` (the seed's clip / `vm_map_simplify_entry` edits).
    /// The caller guarantees the new bounds overlap no other item. In place when the item keeps its place in
    /// address order (the usual clip), otherwise a remove and an insert.
    pub fn set_bounds(&mut self, start: u64, new_start: u64, new_end: u64, reserve_below: u64) {
        let Some((l, pos)) = self.pos_exact_mut(start) else { return };
        let leaf = &self.leaves[l as usize];
        let items = leaf.items();
        let after_prev = if pos > 0 {
            items[pos - 1].start < new_start
        } else if leaf.prev != NIL {
            let pl = &self.leaves[leaf.prev as usize];
            pl.items()[pl.len as usize - 1].start < new_start
        } else {
            true
        };
        let (last, next) = (pos + 1 == items.len(), leaf.next);
        let before_next = if !last {
            new_start < items[pos + 1].start
        } else if next != NIL {
            new_start < self.leaves[next as usize].items()[0].start
        } else {
            true
        };
        if after_prev && before_next {
            debug_assert!(new_start < new_end && new_start >= self.min && new_end <= self.max);
            let leaf = &mut self.leaves[l as usize];
            leaf.starts[pos] = new_start;
            let it = &mut leaf.items_mut()[pos];
            (it.start, it.end, it.reserve_below) = (new_start, new_end, reserve_below);
            self.touch(l, pos == 0 && new_start != start);
            if last && next != NIL {
                self.touch(next, false);
            }
        } else if let Some(mut it) = self.remove(start) {
            (it.start, it.end, it.reserve_below) = (new_start, new_end, reserve_below);
            self.insert(it);
        }
    }

    /// Replaces the `count` consecutive items from the one starting at `first` by the items of `new`
    /// (in address order, the first starting at `first`, none overlapping the items around the run):
    /// how a change inside one entry splits it into pieces or joins it with its neighbours. When one
    /// leaf holds the run and has room for the result, this is one shift of the items above the run;
    /// otherwise the old items are removed and the new ones inserted one by one. Does nothing when no
    /// item starts at `first`.
    pub fn replace_run<const N: usize>(&mut self, first: u64, count: usize, new: [Option<Item<V>>; N]) {
        let Some((l, pos)) = self.pos_exact_mut(first) else { return };
        self.replace_run_in(l, pos, first, count, new);
    }

    /// [`Tree::replace_run`] for the run whose first item is at `at` (found since the last change), with
    /// no search; a position that no longer names an item starting where `new` starts is looked up by
    /// that start instead.
    #[inline]
    pub fn replace_run_at<const N: usize>(&mut self, at: Pos, count: usize, new: [Option<Item<V>>; N]) {
        let Some(first) = new.iter().flatten().next().map(|it| it.start) else { return };
        match self.item(at) {
            Some(it) if it.start == first => {
                self.replace_run_in(at.leaf, at.slot as usize, first, count, new)
            }
            _ => self.replace_run(first, count, new),
        }
    }

    /// [`Tree::replace_run`] with the run's first item at slot `pos` of leaf `l`.
    #[inline]
    fn replace_run_in<const N: usize>(
        &mut self,
        l: u32,
        pos: usize,
        first: u64,
        count: usize,
        new: [Option<Item<V>>; N],
    ) {
        debug_assert!(
            new.iter().flatten().next().is_some_and(|it| it.start == first),
            "the run keeps its start"
        );
        let li = l as usize;
        let len = self.leaves[li].len as usize;
        let n = new.iter().flatten().count();
        let fits = pos + count <= len && len - count + n <= LCAP;
        let next = self.leaves[li].next;
        if n == 0 || !fits || (self.height > 0 && next != NIL && len - count + n < LMIN) {
            for _ in 0..count {
                let Some(s) = self.ceil(first).map(|it| it.start) else { break };
                self.remove(s);
            }
            for it in new.into_iter().flatten() {
                self.insert(it);
            }
            return;
        }
        self.leaves[li].splice(pos, count, new);
        self.count = self.count - count + n;
        self.finger.slot = pos;
        self.touch(l, false);
        if pos + count == len && next != NIL {
            self.touch(next, false); // the next leaf's first gap starts at the run's last end
        }
    }
}
