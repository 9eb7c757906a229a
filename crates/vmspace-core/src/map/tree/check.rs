//! The invariant checker: [`Tree::check`] recomputes invariants 1–6 of the module documentation from the
//! nodes, the `max_free` summaries included, and names the first violation.
//!
//! Invariant: checking changes nothing (it takes `&self` and does not touch the hint).

use super::Tree;
use super::gap::gap_before;
use super::node::{FreeList, ICAP, IMIN, NIL, Node};

impl<V> Tree<V> {
    /// Checks the tree's invariants (module documentation), including that every stored `max_free` equals a
    /// recomputation from the items; the error names the first violation.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut st = CheckState { prev_end: self.min, prev_leaf: NIL, count: 0, leaves: 0, inners: 0 };
        if self.root == NIL {
            if self.count != 0 || self.height != 0 {
                return Err("empty tree with a count or a height");
            }
        } else {
            self.check_node(self.root, self.height, NIL, &mut st)?;
            if st.prev_end > self.max {
                return Err("item above max");
            }
            if self.leaves[st.prev_leaf as usize].next != NIL {
                return Err("last leaf has a next link");
            }
            if st.count != self.count {
                return Err("count differs from the items");
            }
        }
        if self.ndirty != 0 {
            return Err("a batch was not ended");
        }
        Self::check_free(&self.leaves, self.free_leaves, st.leaves)?;
        Self::check_free(&self.inners, self.free_inners, st.inners)?;
        let f = self.finger;
        if f.lo < f.hi && (self.root == NIL || self.descend(f.lo) != (f.leaf, f.lo, f.hi)) {
            return Err("finger disagrees with the inner keys");
        }
        if self.leaves.iter().any(|l| l.is_free() && l.len != 0) {
            return Err("free leaf holds items");
        }
        Ok(())
    }

    fn check_free<T: Node>(nodes: &[T], fl: FreeList, live: usize) -> Result<(), &'static str> {
        let mut n = 0;
        let mut prev = NIL;
        let mut i = fl.head;
        while i != NIL {
            let node = nodes.get(i as usize).ok_or("free link out of the arena")?;
            if !node.is_free() {
                return Err("free list holds a live node");
            }
            n += 1;
            if n > nodes.len() {
                return Err("free list loops");
            }
            let (next, back) = node.free_view();
            if back != prev {
                return Err("free list back link wrong");
            }
            prev = i;
            i = next;
        }
        if n != fl.count {
            return Err("free count differs from the free list");
        }
        if live + n != nodes.len() {
            return Err("arena node neither in the tree nor free");
        }
        Ok(())
    }

    fn check_node(
        &self,
        node: u32,
        level: u32,
        parent: u32,
        st: &mut CheckState,
    ) -> Result<(u64, u64), &'static str> {
        if level == 0 {
            let leaf = self.leaves.get(node as usize).ok_or("leaf link out of the arena")?;
            if leaf.parent != parent {
                return Err("leaf parent link wrong");
            }
            if leaf.len == 0 {
                return Err("empty leaf");
            }
            if leaf.prev != st.prev_leaf
                || (st.prev_leaf != NIL && self.leaves[st.prev_leaf as usize].next != node)
            {
                return Err("leaf chain out of address order");
            }
            let mut best = 0;
            if leaf.items().iter().zip(&leaf.starts).any(|(it, &s)| it.start != s) {
                return Err("leaf starts differ from its items");
            }
            for it in leaf.items() {
                if it.start >= it.end {
                    return Err("empty or inverted item");
                }
                if it.start < st.prev_end {
                    return Err("items overlap or lie below min");
                }
                best = best.max(gap_before(st.prev_end, it));
                st.prev_end = it.end;
                st.count += 1;
            }
            st.prev_leaf = node;
            st.leaves += 1;
            return Ok((leaf.items()[0].start, best));
        }
        let n = self.inners.get(node as usize).ok_or("inner link out of the arena")?;
        if n.parent != parent {
            return Err("inner parent link wrong");
        }
        if n.level != level {
            return Err("inner node level wrong");
        }
        let len = n.len as usize;
        if len > ICAP || len < if parent == NIL { 2 } else { IMIN } {
            return Err("inner node under- or overfull");
        }
        st.inners += 1;
        let mut best = 0;
        for j in 0..len {
            let (k, g) = self.check_node(n.kids[j], level - 1, node, st)?;
            if n.keys[j] != k {
                return Err("separator key is not the child's first start");
            }
            if n.gaps[j] != g {
                return Err("max_free augmentation differs from a recomputation");
            }
            best = best.max(g);
        }
        Ok((n.keys[0], best))
    }
}

struct CheckState {
    prev_end: u64,
    prev_leaf: u32,
    count: usize,
    leaves: usize,
    inners: usize,
}
