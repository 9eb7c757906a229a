//! The entry tree: an arena-allocated B+tree of address-range items, augmented with the largest free gap
//! below every child — the seed's entry index (`rb_root` in DragonFly's `vm_map`) made B-tree shaped, with
//! FreeBSD's `max_free` augmentation (Linux's maple-tree per-child gaps) so that `find_space` is O(log n).
//!
//! [`Tree`] is a drop-in replacement for [`Store`](super::store::Store): the same methods with the same
//! answers (the `BTreeMap` store is the test oracle), plus node reservation ([`Tree::reserve`],
//! [`Tree::release`]; the seed's `vm_map_entry_reserve` / `vm_map_entry_release`) so that an operation can run
//! in a context that must not allocate.
//!
//! # Layout
//!
//! Nodes live in two arenas (`Vec<Leaf<V>>`, `Vec<Inner>`) and link to each other by `u32` index. A leaf holds
//! up to `LCAP` items inline, in address order, a compact copy of their starts (what searches read), plus
//! links to its parent and to the previous and next leaf.
//! An inner node holds up to `ICAP` children in three parallel arrays: `kids` (child index), `keys` (the
//! child's first start) and `gaps` (the child's largest gap). Deleted nodes go on an intrusive, doubly linked
//! free list inside their arena and are reused before the arena grows.
//!
//! # Invariants (checked by [`Tree::check`])
//!
//! 1. Items are non-empty half-open ranges `[start, end)`, sorted by start, disjoint, inside `[min, max)`;
//!    `count` is their number.
//! 2. Every leaf is non-empty and at depth `height`; leaves are chained by `prev`/`next` in address order;
//!    every node's `parent` names the inner node that lists it (`NIL` for the root). The root inner node
//!    has at least 2 children, any other inner node at least `IMIN`. (Leaves have no minimum fill: a full
//!    last leaf splits off a two-item leaf when the map grows at its top, so sequential builds stay nearly
//!    full; and a removal never rebalances the last leaf while it has an item, so mapping and unmapping at
//!    the top of the map does not split and merge a leaf every time.)
//! 3. `keys[i]` is the smallest start in the subtree of `kids[i]`.
//! 4. **Gap augmentation (`max_free`).** Let `pred_end(x)` be the end of the item before `x` in address
//!    order, or `min` for the first item. The gap *ending at* item `x` is
//!    `[pred_end(x), max(pred_end(x), x.start - x.reserve_below))` (saturating) — exactly the gap
//!    [`Store::gaps`](super::store::Store::gaps) reports before `x`, which may be empty. The trailing gap
//!    `[last.end, max)` belongs to no leaf: it changes whenever the map grows or shrinks at its top (the
//!    mmap pattern), and keeping it out of the summaries lets such a change stop at the leaf; `find_gap`
//!    and `largest_gap` look at it directly. A leaf's largest gap is the largest length of the gaps
//!    ending at its items; `gaps[i]` is the largest gap whose **end**
//!    lies in the subtree of `kids[i]`. A gap that straddles a child boundary (it starts at the last item of
//!    one leaf and ends at the first item of the next) therefore belongs to the child holding its end; so a
//!    change to the last item of a leaf also refreshes the next leaf.
//! 5. Every arena node is either reachable from the root or on its arena's free list (`parent == FREE`,
//!    leaves empty), never both.
//! 6. The finger, when set, names the leaf a descent for any address of its `[lo, hi)` reaches (every
//!    change to inner keys or children forgets it); no batch is open between operations (between
//!    [`Tree::begin_batch`] and [`Tree::end_batch`] only invariant 4 may lag, for the leaves touched).
//!
//! # Search bounds used by `find_gap`
//!
//! For child `j` of an inner node, every gap `(s, e)` ending in it has `e < keys[j + 1]` (if `j` is not the
//! last child) and `s > keys[j - 1]` (if `j > 0`: the gap starts at the end of an item of child `j - 1` or
//! `j`). A child is searched only if its `gaps[j] >= len` and those bounds allow a fit inside `[lo, hi)`;
//! within the surviving children the search is first fit in address order (or last fit, top-down), and a
//! large-enough gap that alignment or the bounds make useless does not end the search.
//!
//! # Files
//!
//! One job each, in layers (a file uses only the ones before it, and this one only `node`): `node` (the
//! two node kinds, their sizes and the arenas' free lists), `search` (descents, positions, queries and
//! iteration), `gap` (the `max_free` augmentation, batches and `find_gap`), `arena` (node allocation and
//! reservation), `edit` (insert, remove, bounds and run changes with the splits and merges they cause),
//! `check` (the invariant checker).

mod arena;
mod check;
mod edit;
mod gap;
mod node;
mod search;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;

use node::{FreeList, Inner, Leaf, NIL};

/// `hint` value meaning "no hint".
const NO_HINT: u64 = u64::MAX;
/// Spare nodes [`Tree::release`] keeps at least (the seed's `MAP_RESERVE_SLOP`, in nodes).
const LEAF_SLOP: usize = 8;
/// Spare inner nodes [`Tree::release`] keeps at least.
const INNER_SLOP: usize = 16;

/// Where an item sits in the tree (leaf and slot), for changes that read an item and its neighbours
/// and then replace them without searching again: what the seed's code does by holding a
/// `vm_map_entry_t` and following `entry->prev` / `entry->next`. Valid until the tree next changes: a
/// stale position names no item or another one (which [`Tree::replace_run_at`] detects), never undefined
/// behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    leaf: u32,
    slot: u32,
}

/// The sorted entry set as an augmented B+tree. See the module documentation for its layout and invariants.
///
/// Seed counterpart: the entry index of `struct vm_map` (`rb_root`, the red-black tree of entries), with
/// FreeBSD's `max_free` augmentation and the `vm_map.hint` last-lookup cache.
pub struct Tree<V> {
    min: u64,
    max: u64,
    root: u32,
    /// Levels of inner nodes above the leaves (0: the root is a leaf).
    height: u32,
    count: usize,
    leaves: Vec<Leaf<V>>,
    inners: Vec<Inner>,
    free_leaves: FreeList,
    free_inners: FreeList,
    alloc_allowed: bool,
    /// Position `(leaf << 32) | slot` of the last item found by [`Tree::containing`] (the seed's
    /// `vm_map.hint`). Validated before use, so a stale hint is merely a slower lookup; atomic only so that
    /// a shared tree stays `Sync`.
    hint: AtomicU64,
    /// The leaf the last changing operation descended to, with the addresses that descend there.
    finger: Finger,
    /// Between [`Tree::begin_batch`] and [`Tree::end_batch`]: leaves whose gap summary is stale in their
    /// parent (their keys are always right), fixed once at the end instead of after every change.
    batch: bool,
    dirty: [u32; DIRTY_MAX],
    /// For each dirty leaf, the largest gap the batch's changes took out of it ([`GAPS_UNKNOWN`]: a
    /// change that did not say) and the largest they put in: [`Tree::end_batch`] works the new summary
    /// out from the recorded one when no removed gap can have been the largest.
    dgaps: [(u64, u64); DIRTY_MAX],
    ndirty: usize,
    /// The batch changed the tree's shape or a key, or fixed a summary early (from a state in the
    /// middle of the batch): [`Tree::end_batch_same_gaps`] must then fix as `end_batch` does.
    reshaped: bool,
    /// A window around the hinted item (`HINT_WINDOW` each side): lookups outside it skip the hint and
    /// its neighbours without touching them.
    near_lo: AtomicU64,
    near_hi: AtomicU64,
}

/// Leaves a batch remembers; a batch that touches more fixes the extra ones at once.
const DIRTY_MAX: usize = 8;

/// A dirty leaf's removed-gap record when a change did not tell its gaps (no gap is this long: a gap
/// ends at an item's start, below `max`).
const GAPS_UNKNOWN: u64 = u64::MAX;

/// How far around the hinted item a lookup still tries the hint and its neighbours first.
const HINT_WINDOW: u64 = 16 << 20;

impl<V: Clone> Clone for Tree<V> {
    fn clone(&self) -> Self {
        Tree {
            min: self.min,
            max: self.max,
            root: self.root,
            height: self.height,
            count: self.count,
            // The same capacity: spare nodes reserved ahead (`reserve`) are part of the copy.
            leaves: {
                let mut v = Vec::with_capacity(self.leaves.capacity());
                v.extend(self.leaves.iter().map(Leaf::clone_leaf));
                v
            },
            inners: {
                let mut v = Vec::with_capacity(self.inners.capacity());
                v.extend_from_slice(&self.inners);
                v
            },
            free_leaves: self.free_leaves,
            free_inners: self.free_inners,
            alloc_allowed: self.alloc_allowed,
            hint: AtomicU64::new(NO_HINT),
            finger: Finger::NONE,
            batch: false,
            dirty: [NIL; DIRTY_MAX],
            dgaps: [(GAPS_UNKNOWN, 0); DIRTY_MAX],
            ndirty: 0,
            reshaped: false,
            near_lo: AtomicU64::new(u64::MAX),
            near_hi: AtomicU64::new(0),
        }
    }
}

/// A leaf and the address range `[lo, hi)` that descends to it: what the inner keys said when a changing
/// operation last descended. Every change of an inner node's keys or children forgets it, so while it is
/// set it is exact and a lookup in its range skips the descent without touching the leaf. Set only
/// through `&mut Tree` (readers on other threads only read it, so it needs no atomics).
#[derive(Clone, Copy)]
struct Finger {
    leaf: u32,
    lo: u64,
    hi: u64,
    /// The slot the last changing operation used in `leaf`: searches try it and its neighbours first
    /// (a guess, checked against `starts`; see [`Tree::count_at`]).
    slot: usize,
}

impl Finger {
    const NONE: Finger = Finger { leaf: NIL, lo: u64::MAX, hi: 0, slot: 0 };
}

#[inline]
fn pack(leaf: u32, slot: usize) -> u64 {
    (u64::from(leaf) << 32) | slot as u64
}

impl<V> Tree<V> {
    /// An empty tree covering `[min, max)` (the seed's `vm_map_init`). Allocates nothing.
    pub fn new(min: u64, max: u64) -> Self {
        Tree {
            min,
            max,
            root: NIL,
            height: 0,
            count: 0,
            leaves: Vec::new(),
            inners: Vec::new(),
            free_leaves: FreeList::EMPTY,
            free_inners: FreeList::EMPTY,
            alloc_allowed: true,
            hint: AtomicU64::new(NO_HINT),
            finger: Finger::NONE,
            batch: false,
            dirty: [NIL; DIRTY_MAX],
            dgaps: [(GAPS_UNKNOWN, 0); DIRTY_MAX],
            ndirty: 0,
            reshaped: false,
            near_lo: AtomicU64::new(u64::MAX),
            near_hi: AtomicU64::new(0),
        }
    }

    /// Number of items (the seed's `nentries`).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the tree holds no item.
    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}
