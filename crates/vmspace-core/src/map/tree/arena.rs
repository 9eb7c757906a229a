//! Node allocation and reservation: taking nodes from the arenas, giving them back, and reserving spare
//! nodes ahead of operations that must not allocate (the seed's `vm_map_entry_reserve` / `_release`).
//!
//! Invariant: every arena node is in the tree or on its arena's free list (invariant 5); after
//! `ensure_spare(n)` returns `Ok`, the next `n` insertions take nodes from the free lists or spare
//! capacity and neither allocate nor fail; while allocation is forbidden nothing here allocates.

use alloc::vec::Vec;

use super::node::{FREE, FreeList, ICAP, IMIN, Inner, LCAP, Leaf, NIL, Node};
use super::{INNER_SLOP, LEAF_SLOP, Tree};
use crate::map::store::StoreFull;

impl<V> Tree<V> {
    pub(super) fn alloc_leaf(&mut self) -> u32 {
        if let Some(i) = self.free_leaves.pop(&mut self.leaves) {
            return i;
        }
        if self.leaves.len() == self.leaves.capacity() {
            // Only reached without a prior `reserve` / `ensure_spare`; grows by 1/16 to keep the slack small.
            self.leaves.reserve_exact((self.leaves.len() / 16).max(4));
        }
        assert!(self.leaves.len() < FREE as usize, "tree: leaf arena full");
        self.leaves.push(Leaf::empty());
        (self.leaves.len() - 1) as u32
    }

    pub(super) fn alloc_inner(&mut self) -> u32 {
        let i = if let Some(i) = self.free_inners.pop(&mut self.inners) {
            i
        } else {
            if self.inners.len() == self.inners.capacity() {
                self.inners.reserve_exact((self.inners.len() / 16).max(4));
            }
            assert!(self.inners.len() < FREE as usize, "tree: inner arena full");
            self.inners.push(Inner::empty());
            (self.inners.len() - 1) as u32
        };
        self.inners[i as usize].len = 0;
        i
    }

    #[inline]
    pub(super) fn free_leaf(&mut self, l: u32) {
        assert_eq!(self.leaves[l as usize].len, 0, "tree: freeing a non-empty leaf");
        self.free_leaves.push(&mut self.leaves, l);
    }

    #[inline]
    pub(super) fn free_inner(&mut self, n: u32) {
        self.inners[n as usize].len = 0;
        self.free_inners.push(&mut self.inners, n);
    }

    /// Upper bounds of the leaves and inner nodes that `n` insertions can take, splits included.
    ///
    /// Each insertion splits at most one node per level. An even split leaves halves that need about
    /// `CAP / 2` more insertions each before they split again, so beyond the nodes that are full now
    /// (at most all of them) `n` insertions cause about `2n / (CAP / 2)` splits per level; the height is
    /// bounded by the fill invariant (non-root inner nodes hold at least `IMIN` children).
    fn nodes_needed(&self, n: usize) -> (usize, usize) {
        if n == 0 {
            return (0, 0);
        }
        let live_l = self.leaves.len() - self.free_leaves.count;
        let live_i = self.inners.len() - self.free_inners.count;
        let gl = (LCAP - (LCAP + 2) / 2 + 1).max(1);
        let gi = (ICAP - (ICAP + 2) / 2 + 1).max(1);
        let leaf_splits = n.min(2 * live_l + 2 * n / gl + 2);
        let leaves = leaf_splits + usize::from(self.root == NIL);
        let total_leaves = live_l + leaves;
        let mut hmax = 0usize;
        let mut need = 2usize;
        while need <= total_leaves {
            hmax += 1;
            need = need.saturating_mul(IMIN);
        }
        let levels = hmax.max(self.height as usize);
        let mut s = leaf_splits;
        let mut inners = levels - self.height as usize; // new roots
        for _ in 0..levels {
            s = s.min(2 * live_i + 2 * s / gi + 2);
            inners += s;
        }
        (leaves, inners)
    }

    fn ensure_arena<T>(v: &mut Vec<T>, free: usize, need: usize, allowed: bool) -> Result<(), StoreFull> {
        if free + (v.capacity() - v.len()) >= need {
            return Ok(());
        }
        if !allowed {
            return Err(StoreFull);
        }
        let extra = (need - free).max(v.len() / 16);
        v.try_reserve_exact(extra).map_err(|_| StoreFull)
    }

    /// Makes sure the next `n` insertions (and the node splits they cause) will not need to allocate,
    /// allocating spare nodes if allowed, or reports that memory could not be had (the seed's
    /// `vm_map_entry_reserve` as each map operation calls it). Fails with [`StoreFull`] when allocation
    /// fails, or is forbidden ([`Tree::set_alloc_allowed`]) and the spare nodes are spent; never panics
    /// and never aborts. After `Ok`, the next `n` insertions neither allocate nor fail.
    pub fn ensure_spare(&mut self, n: usize) -> Result<(), StoreFull> {
        // Fast path: an insertion splits at most one leaf and one inner node per level, plus a new root.
        let spare = |len: usize, cap: usize, free: usize| cap - len + free;
        let h = self.height as usize;
        if spare(self.leaves.len(), self.leaves.capacity(), self.free_leaves.count) > n
            && spare(self.inners.len(), self.inners.capacity(), self.free_inners.count) >= n * (h + n + 1)
        {
            return Ok(());
        }
        let (nl, ni) = self.nodes_needed(n);
        // When allocation is allowed, make room for the fast path's bound too, so that the next calls
        // take it instead of working out the exact need again.
        let (nl, ni) = if self.alloc_allowed { (nl.max(n + 1), ni.max(n * (h + n + 1))) } else { (nl, ni) };
        Self::ensure_arena(&mut self.leaves, self.free_leaves.count, nl, self.alloc_allowed)?;
        Self::ensure_arena(&mut self.inners, self.free_inners.count, ni, self.alloc_allowed)
    }

    /// Pre-allocates enough arena nodes that the next `n` insertions, with the splits they cause, allocate
    /// nothing (the seed's `vm_map_entry_reserve(n)`, as fork calls it with `nentries + 4`). Uses
    /// `Vec::try_reserve_exact`, so a failure is [`StoreFull`], never an abort.
    pub fn reserve(&mut self, n: usize) -> Result<(), StoreFull> {
        self.ensure_spare(n)
    }

    /// Gives spare nodes back to the allocator (the seed's `vm_map_entry_release`): free nodes at the end of
    /// each arena and unused capacity, keeping a slop of a few nodes (or an eighth of the live nodes, so that a
    /// reserve / release pair per operation does not reallocate each time). Does nothing while allocation is
    /// forbidden.
    pub fn release(&mut self) {
        if !self.alloc_allowed {
            return;
        }
        Self::trim(&mut self.leaves, &mut self.free_leaves, LEAF_SLOP);
        Self::trim(&mut self.inners, &mut self.free_inners, INNER_SLOP);
    }

    fn trim<T: Node>(v: &mut Vec<T>, fl: &mut FreeList, slop: usize) {
        let keep = slop.max((v.len() - fl.count) / 8);
        while fl.count > keep && v.last().is_some_and(Node::is_free) {
            let i = (v.len() - 1) as u32;
            fl.unlink(v, i);
            v.pop();
        }
        let spare_cap = v.capacity() - v.len();
        if spare_cap > keep {
            v.shrink_to(v.len() + keep.saturating_sub(fl.count));
        }
    }

    /// Allows or forbids allocation (forbid it around code that runs in a signal handler, as the seed's
    /// `kreserve` callers do). While forbidden, [`Tree::ensure_spare`] only succeeds on spare nodes already
    /// held and [`Tree::release`] keeps everything.
    pub fn set_alloc_allowed(&mut self, allowed: bool) {
        self.alloc_allowed = allowed;
    }
}
