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

use alloc::vec::Vec;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use super::store::{GapRequest, Item, StoreFull};

/// Items per leaf. Unit tests use tiny nodes so that short operation sequences build deep trees.
#[cfg(not(test))]
const LCAP: usize = 32;
#[cfg(test)]
const LCAP: usize = 4;
/// Children per inner node.
#[cfg(not(test))]
const ICAP: usize = 32;
#[cfg(test)]
const ICAP: usize = 4;
/// A non-root leaf below this many items is merged with or refilled from a sibling after a removal.
const LMIN: usize = LCAP / 3 + 1;
/// A non-root inner node keeps at least this many children.
const IMIN: usize = ICAP / 3 + 1;
const _: () = assert!(IMIN >= 2 && 2 * IMIN - 1 <= ICAP && 2 * LMIN - 1 <= LCAP && ICAP >= 2);

/// "No node".
const NIL: u32 = u32::MAX;
/// `parent` of a node on the free list.
const FREE: u32 = u32::MAX - 1;
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

/// A leaf: up to `LCAP` items, of which the first `len` are initialised. `repr(C)` keeps the header and
/// `starts` (a copy of each item's start, so a search reads 4 cache lines at once instead of one line per
/// probe through the items) at the front, where a lookup's first touch lands.
#[repr(C)]
struct Leaf<V> {
    len: u32,
    parent: u32,
    /// Previous leaf in address order (or, on the free list, the previous free leaf).
    prev: u32,
    /// Next leaf in address order (or, on the free list, the next free leaf).
    next: u32,
    /// `starts[i] == items[i].start` for `i < len`.
    starts: [u64; LCAP],
    items: [MaybeUninit<Item<V>>; LCAP],
}

impl<V> Leaf<V> {
    fn empty() -> Self {
        Leaf {
            len: 0,
            parent: NIL,
            prev: NIL,
            next: NIL,
            starts: [0; LCAP],
            items: [const { MaybeUninit::uninit() }; LCAP],
        }
    }

    fn items(&self) -> &[Item<V>] {
        // SAFETY: `items[..len]` are initialised (the invariant every method below keeps), `len <= LCAP`,
        // and `MaybeUninit<T>` has the layout of `T`.
        unsafe { core::slice::from_raw_parts(self.items.as_ptr().cast::<Item<V>>(), self.len as usize) }
    }

    fn items_mut(&mut self) -> &mut [Item<V>] {
        // SAFETY: as in `items`; the exclusive borrow of `self` makes the slice unique.
        unsafe {
            core::slice::from_raw_parts_mut(self.items.as_mut_ptr().cast::<Item<V>>(), self.len as usize)
        }
    }

    /// Inserts `item` at `pos`, shifting the items from `pos` up by one.
    fn insert(&mut self, pos: usize, item: Item<V>) {
        let len = self.len as usize;
        assert!(len < LCAP && pos <= len, "leaf insert out of bounds");
        let p = self.items.as_mut_ptr();
        // SAFETY: `pos..len` are initialised and `len + 1 <= LCAP`, so source and destination lie inside the
        // array; `ptr::copy` allows the overlap. Slot `pos` is then a bitwise duplicate that is overwritten
        // below without being dropped.
        unsafe { ptr::copy(p.add(pos), p.add(pos + 1), len - pos) };
        self.starts.copy_within(pos..len, pos + 1);
        self.starts[pos] = item.start;
        self.items[pos] = MaybeUninit::new(item);
        self.len += 1;
    }

    /// Removes and returns the item at `pos`, shifting the ones above it down.
    fn remove(&mut self, pos: usize) -> Item<V> {
        let len = self.len as usize;
        assert!(pos < len, "leaf remove out of bounds");
        let p = self.items.as_mut_ptr();
        // SAFETY: slot `pos` is initialised; it is read out once, the hole is closed by moving the initialised
        // `pos + 1..len` down (inside the array), and `len` shrinks, so no item is dropped or read twice.
        unsafe {
            let it = self.items[pos].assume_init_read();
            ptr::copy(p.add(pos + 1), p.add(pos), len - pos - 1);
            self.len -= 1;
            self.starts.copy_within(pos + 1..len, pos);
            it
        }
    }

    /// Replaces the `count` items from `pos` by the items of `new`, shifting the ones above the run once.
    fn splice<const N: usize>(&mut self, pos: usize, count: usize, new: [Option<Item<V>>; N]) {
        let (len, n) = (self.len as usize, new.iter().flatten().count());
        assert!(pos + count <= len && len - count + n <= LCAP, "leaf splice out of bounds");
        // While the run is rewritten the leaf owns only the items below it: if a drop panicked, the
        // items above would leak, never be dropped twice.
        self.len = pos as u32;
        let p = self.items.as_mut_ptr();
        // SAFETY: slots `pos..pos + count` are initialised (`pos + count <= len`) and dropped once here;
        // then the initialised `pos + count..len` move to `pos + n..`, inside the array since
        // `len - count + n <= LCAP` (`ptr::copy` allows the overlap), and slots `pos..pos + n`, stale
        // duplicates or dropped, are overwritten below without being dropped.
        unsafe {
            for k in pos..pos + count {
                ptr::drop_in_place(self.items[k].as_mut_ptr());
            }
            ptr::copy(p.add(pos + count), p.add(pos + n), len - pos - count);
        }
        self.starts.copy_within(pos + count..len, pos + n);
        for (k, it) in new.into_iter().flatten().enumerate() {
            self.starts[pos + k] = it.start;
            self.items[pos + k] = MaybeUninit::new(it);
        }
        self.len = (len - count + n) as u32;
    }

    fn clone_leaf(&self) -> Self
    where
        V: Clone,
    {
        let mut l = Leaf::empty();
        (l.parent, l.prev, l.next) = (self.parent, self.prev, self.next);
        for (i, it) in self.items().iter().enumerate() {
            l.items[i] = MaybeUninit::new(it.clone());
            l.starts[i] = it.start;
            l.len += 1;
        }
        l
    }
}

impl<V> Drop for Leaf<V> {
    fn drop(&mut self) {
        let items: *mut [Item<V>] = self.items_mut();
        // SAFETY: exactly the initialised items, each dropped once; the leaf is never used again.
        unsafe { ptr::drop_in_place(items) };
    }
}

/// Moves `count` items starting at `from` out of `src` and into `dst` at `at` (two different leaves).
fn transfer<V>(src: &mut Leaf<V>, from: usize, count: usize, dst: &mut Leaf<V>, at: usize) {
    let (slen, dlen) = (src.len as usize, dst.len as usize);
    assert!(from + count <= slen && at <= dlen && dlen + count <= LCAP, "leaf transfer out of bounds");
    let d = dst.items.as_mut_ptr();
    let s = src.items.as_mut_ptr();
    // SAFETY: all ranges lie inside the two arrays (asserted above). `dst`'s initialised `at..dlen` move up by
    // `count` (overlap allowed by `ptr::copy`); the `count` initialised items of `src` are then copied into
    // the hole (two distinct leaves, so no overlap); `src`'s items above them close its hole. The lengths are
    // updated right after, with no panic in between, so every item stays owned exactly once.
    unsafe {
        ptr::copy(d.add(at), d.add(at + count), dlen - at);
        ptr::copy_nonoverlapping(s.add(from), d.add(at), count);
        ptr::copy(s.add(from + count), s.add(from), slen - from - count);
    }
    dst.starts.copy_within(at..dlen, at + count);
    dst.starts[at..at + count].copy_from_slice(&src.starts[from..from + count]);
    src.starts.copy_within(from + count..slen, from);
    src.len -= count as u32;
    dst.len += count as u32;
}

/// An inner node: up to `ICAP` children with their first key and largest gap.
#[derive(Clone)]
struct Inner {
    len: u32,
    parent: u32,
    /// Height of this node above the leaves (1: the children are leaves).
    level: u32,
    keys: [u64; ICAP],
    gaps: [u64; ICAP],
    /// Children; on the free list `kids[0]` / `kids[1]` are the next / previous free node.
    kids: [u32; ICAP],
}

impl Inner {
    fn empty() -> Self {
        Inner { len: 0, parent: NIL, level: 0, keys: [0; ICAP], gaps: [0; ICAP], kids: [NIL; ICAP] }
    }

    fn insert_entry(&mut self, pos: usize, key: u64, gap: u64, kid: u32) {
        let len = self.len as usize;
        assert!(len < ICAP && pos <= len);
        self.keys.copy_within(pos..len, pos + 1);
        self.gaps.copy_within(pos..len, pos + 1);
        self.kids.copy_within(pos..len, pos + 1);
        self.keys[pos] = key;
        self.gaps[pos] = gap;
        self.kids[pos] = kid;
        self.len += 1;
    }

    fn remove_entry(&mut self, pos: usize) {
        let len = self.len as usize;
        self.keys.copy_within(pos + 1..len, pos);
        self.gaps.copy_within(pos + 1..len, pos);
        self.kids.copy_within(pos + 1..len, pos);
        self.len -= 1;
    }

    fn summary(&self) -> (u64, u64) {
        (self.keys[0], self.gaps[..self.len as usize].iter().copied().max().unwrap_or(0))
    }
}

/// Moves `count` entries from `src[from..]` into `dst` at `at`.
fn transfer_entries(src: &mut Inner, from: usize, count: usize, dst: &mut Inner, at: usize) {
    let (slen, dlen) = (src.len as usize, dst.len as usize);
    assert!(from + count <= slen && at <= dlen && dlen + count <= ICAP);
    dst.keys.copy_within(at..dlen, at + count);
    dst.gaps.copy_within(at..dlen, at + count);
    dst.kids.copy_within(at..dlen, at + count);
    dst.keys[at..at + count].copy_from_slice(&src.keys[from..from + count]);
    dst.gaps[at..at + count].copy_from_slice(&src.gaps[from..from + count]);
    dst.kids[at..at + count].copy_from_slice(&src.kids[from..from + count]);
    src.keys.copy_within(from + count..slen, from);
    src.gaps.copy_within(from + count..slen, from);
    src.kids.copy_within(from + count..slen, from);
    src.len -= count as u32;
    dst.len += count as u32;
}

/// Free-list access shared by both node kinds.
trait Node {
    fn links(&mut self) -> (&mut u32, &mut u32);
    fn parent_mut(&mut self) -> &mut u32;
    fn is_free(&self) -> bool;
    /// (next, previous) free-list links.
    fn free_view(&self) -> (u32, u32);
}

impl<V> Node for Leaf<V> {
    fn links(&mut self) -> (&mut u32, &mut u32) {
        (&mut self.next, &mut self.prev)
    }
    fn parent_mut(&mut self) -> &mut u32 {
        &mut self.parent
    }
    fn is_free(&self) -> bool {
        self.parent == FREE
    }
    fn free_view(&self) -> (u32, u32) {
        (self.next, self.prev)
    }
}

impl Node for Inner {
    fn links(&mut self) -> (&mut u32, &mut u32) {
        let (a, b) = self.kids.split_at_mut(1);
        (&mut a[0], &mut b[0])
    }
    fn parent_mut(&mut self) -> &mut u32 {
        &mut self.parent
    }
    fn is_free(&self) -> bool {
        self.parent == FREE
    }
    fn free_view(&self) -> (u32, u32) {
        (self.kids[0], self.kids[1])
    }
}

/// An arena's free list: doubly linked through the free nodes themselves, so freeing never allocates.
#[derive(Clone, Copy, Debug)]
struct FreeList {
    head: u32,
    count: usize,
}

impl FreeList {
    const EMPTY: FreeList = FreeList { head: NIL, count: 0 };

    fn push<T: Node>(&mut self, nodes: &mut [T], i: u32) {
        let old = self.head;
        {
            let n = &mut nodes[i as usize];
            *n.parent_mut() = FREE;
            let (next, prev) = n.links();
            *next = old;
            *prev = NIL;
        }
        if old != NIL {
            *nodes[old as usize].links().1 = i;
        }
        self.head = i;
        self.count += 1;
    }

    fn unlink<T: Node>(&mut self, nodes: &mut [T], i: u32) {
        let (next, prev) = {
            let (n, p) = nodes[i as usize].links();
            (*n, *p)
        };
        if prev == NIL {
            self.head = next;
        } else {
            *nodes[prev as usize].links().0 = next;
        }
        if next != NIL {
            *nodes[next as usize].links().1 = prev;
        }
        *nodes[i as usize].parent_mut() = NIL;
        self.count -= 1;
    }

    fn pop<T: Node>(&mut self, nodes: &mut [T]) -> Option<u32> {
        let h = self.head;
        if h == NIL {
            return None;
        }
        self.unlink(nodes, h);
        Some(h)
    }
}

/// Two distinct elements of a slice, mutably.
fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert!(a != b);
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

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
    fn fit(&self, gap_start: u64, gap_end: u64) -> Option<u64> {
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

/// How many of the sorted `keys` are `<= addr`, in two branch-free steps: count the blocks of 8 keys (one
/// cache line each) whose first key is `<= addr`, then count within the last such block. The first step's
/// loads are independent, so a cold node's lines arrive in parallel; both steps together are about 12
/// compares for 32 keys (a linear count is 32 dependent additions, and x86-64's baseline cannot vectorise
/// u64 compares; a binary search makes each probe wait for the last).
#[inline]
fn count_le(keys: &[u64], addr: u64) -> usize {
    const BLOCK: usize = 8;
    let block = keys.iter().step_by(BLOCK).skip(1).map(|&k| usize::from(k <= addr)).sum::<usize>() * BLOCK;
    let tail = &keys[block..keys.len().min(block + BLOCK)];
    block + tail.iter().map(|&k| usize::from(k <= addr)).sum::<usize>()
}

/// How many of `leaf`'s items start at or below `addr` (as [`count_le`], over the leaf's `starts`).
#[inline]
fn count_items_le<V>(leaf: &Leaf<V>, addr: u64) -> usize {
    count_le(&leaf.starts[..leaf.len as usize], addr)
}

/// The length of the gap ending at `it` when the item before it ends at `prev_end` (invariant 4).
#[inline]
fn gap_before<V>(prev_end: u64, it: &Item<V>) -> u64 {
    it.start.saturating_sub(it.reserve_below).max(prev_end) - prev_end
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
            ndirty: 0,
            reshaped: false,
            near_lo: AtomicU64::new(u64::MAX),
            near_hi: AtomicU64::new(0),
        }
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
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

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
    fn leaf_for_mut(&mut self, addr: u64) -> u32 {
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
    fn descend(&self, addr: u64) -> (u32, u64, u64) {
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
    fn forget_finger(&mut self) {
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
    fn pos_exact_mut(&mut self, start: u64) -> Option<(u32, usize)> {
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
    fn count_at(&self, l: u32, addr: u64) -> usize {
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
    fn at(&self, (l, i): (u32, usize)) -> &Item<V> {
        &self.leaves[l as usize].items()[i]
    }

    fn first_leaf(&self) -> u32 {
        let mut node = self.root;
        for _ in 0..self.height {
            node = self.inners[node as usize].kids[0];
        }
        node
    }

    fn last_leaf(&self) -> u32 {
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
    fn after(&self, (l, s): (u32, usize)) -> Option<(u32, usize)> {
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
    fn before(&self, (l, s): (u32, usize)) -> Option<(u32, usize)> {
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
        let first = match self.pos_floor(start) {
            Some(p) if self.at(p).end > start => Some(p),
            _ => self.pos_ceil(start),
        };
        let (leaf, slot) = first.unwrap_or((NIL, 0));
        Walk { tree: self, leaf, slot }.take_while(move |it| it.start < end)
    }

    /// The free gaps of `[min, max)` in address order, each shortened by the next item's reservation.
    pub fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        super::store::gaps_between(self.iter(), self.min, self.max)
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

    // ----- augmentation -----

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
    fn leaf_summary(&self, l: u32) -> (u64, u64) {
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
    fn kid_index(&self, p: u32, child: u32) -> usize {
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
    fn touch(&mut self, l: u32, key_moved: bool) {
        if key_moved || !self.batch {
            self.reshaped = true;
            return self.fix_leaf(l);
        }
        let dirty = &self.dirty[..self.ndirty];
        if dirty.contains(&l) {
            return;
        }
        if self.ndirty == DIRTY_MAX {
            self.reshaped = true;
            return self.fix_leaf(l);
        }
        self.dirty[self.ndirty] = l;
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
    pub fn end_batch(&mut self) {
        self.batch = false;
        for k in 0..self.ndirty {
            let l = self.dirty[k];
            let leaf = &self.leaves[l as usize];
            if leaf.parent != FREE && leaf.len > 0 {
                self.fix_leaf(l);
            }
        }
        self.ndirty = 0;
    }

    fn fix_leaf(&mut self, l: u32) {
        let (k, g) = self.leaf_summary(l);
        let p = self.leaves[l as usize].parent;
        self.fix_up(p, l, k, g);
    }

    fn fix_inner(&mut self, n: u32) {
        let (k, g) = self.inners[n as usize].summary();
        let p = self.inners[n as usize].parent;
        self.fix_up(p, n, k, g);
    }

    fn set_parent(&mut self, kid: u32, kid_level: u32, p: u32) {
        if kid_level == 0 {
            self.leaves[kid as usize].parent = p;
        } else {
            self.inners[kid as usize].parent = p;
        }
    }

    // ----- node allocation -----

    fn alloc_leaf(&mut self) -> u32 {
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

    fn alloc_inner(&mut self) -> u32 {
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

    fn free_leaf(&mut self, l: u32) {
        assert_eq!(self.leaves[l as usize].len, 0, "tree: freeing a non-empty leaf");
        self.free_leaves.push(&mut self.leaves, l);
    }

    fn free_inner(&mut self, n: u32) {
        self.inners[n as usize].len = 0;
        self.free_inners.push(&mut self.inners, n);
    }

    // ----- mutation -----

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
            self.leaves[li].insert(pos, item);
            let next = self.leaves[li].next;
            self.touch(l, pos == 0);
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
            self.touch(l, pos == 0);
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

    // ----- checking -----

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

impl<V> Tree<V> {
    // ----- reservation -----

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::store::Store;
    use proptest::collection::vec;
    use proptest::prelude::*;

    const PAGE: u64 = 4096;
    const GIB: u64 = 1 << 30;

    fn item(start: u64, end: u64, reserve_below: u64, value: u32) -> Item<u32> {
        Item { start, end, reserve_below, value }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert {
            start: u64,
            pages: u64,
            rb: u64,
            v: u32,
        },
        Fill {
            start: u64,
            count: usize,
            pages: u64,
            gap: u64,
        },
        Remove {
            pick: usize,
        },
        RemoveAddr(u64),
        SetBounds {
            pick: usize,
            a: u64,
            b: u64,
            rb: u64,
        },
        Move {
            pick: usize,
            to: u64,
        },
        Value {
            pick: usize,
            v: u32,
        },
        /// Replace `count` consecutive items by up to three pieces of their span, cut at `cuts`, the
        /// last one shortened by `shrink` bytes (within its length).
        Replace {
            pick: usize,
            count: usize,
            pieces: usize,
            cuts: [u64; 2],
            shrink: u64,
            v: u32,
        },
    }

    /// Mostly page-aligned addresses, clustered on both sides of GiB boundaries so that items collide and
    /// large alignments matter; sometimes anywhere, sometimes unaligned.
    fn addr() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => (0u64..8, 0u64..96).prop_map(|(g, p)| g * GIB + p * PAGE),
            2 => (1u64..8, 1u64..96).prop_map(|(g, p)| g * GIB - p * PAGE),
            2 => (0u64..(8 * GIB / PAGE)).prop_map(|p| p * PAGE),
            1 => 0u64..8 * GIB,
        ]
    }

    fn reserve_below() -> impl Strategy<Value = u64> {
        prop_oneof![6 => Just(0u64), 2 => (1u64..8).prop_map(|p| p * PAGE), 1 => 1u64..3 * PAGE]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (addr(), 1u64..12, reserve_below(), any::<u32>())
                .prop_map(|(start, pages, rb, v)| Op::Insert { start, pages, rb, v }),
            2 => (addr(), 1usize..40, 1u64..4, 0u64..4)
                .prop_map(|(start, count, pages, gap)| Op::Fill { start, count, pages, gap }),
            4 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
            1 => addr().prop_map(Op::RemoveAddr),
            3 => (any::<usize>(), any::<u64>(), any::<u64>(), reserve_below())
                .prop_map(|(pick, a, b, rb)| Op::SetBounds { pick, a, b, rb }),
            1 => (any::<usize>(), addr()).prop_map(|(pick, to)| Op::Move { pick, to }),
            1 => (any::<usize>(), any::<u32>()).prop_map(|(pick, v)| Op::Value { pick, v }),
            3 => (
                any::<usize>(),
                1usize..4,
                1usize..4,
                any::<[u64; 2]>(),
                prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
                any::<u32>(),
            )
                .prop_map(|(pick, count, pieces, cuts, shrink, v)| {
                    Op::Replace { pick, count, pieces, cuts, shrink, v }
                }),
        ]
    }

    fn bounds() -> impl Strategy<Value = (u64, u64)> {
        prop_oneof![
            Just((0, 8 * GIB)),
            Just((16 * PAGE, 8 * GIB - 3 * PAGE)),
            Just((0, u64::MAX)),
            Just((GIB, 4 * GIB + 5 * PAGE)),
        ]
    }

    fn req() -> impl Strategy<Value = GapRequest> {
        let len = prop_oneof![
            6 => (1u64..48).prop_map(|p| p * PAGE),
            1 => 1u64..4 * PAGE,
            1 => (1u64..3).prop_map(|g| g * GIB),
            1 => Just(2u64 << 20),
        ];
        let align =
            prop_oneof![8 => (0u32..=18).prop_map(|k| PAGE << k), 1 => Just(1u64), 1 => Just(3 * PAGE)];
        let window = prop_oneof![
            3 => (addr(), addr()).prop_map(|(a, b)| (a.min(b), a.max(b))),
            1 => Just((0u64, u64::MAX)),
            1 => (addr(), addr()),
        ];
        (len, align, window, any::<bool>()).prop_map(|(len, align, (lo, hi), top_down)| GapRequest {
            len,
            align,
            lo,
            hi,
            top_down,
        })
    }

    fn fits(s: &Store<u32>, start: u64, end: u64, skip: Option<u64>) -> bool {
        start < end
            && start >= s_min(s)
            && end <= s_max(s)
            && s.overlapping(start, end).all(|it| Some(it.start) == skip)
    }

    // The store keeps its bounds private; recover them from its gap list on an empty map or the test state.
    fn s_min(s: &Store<u32>) -> u64 {
        BOUNDS.with(|b| b.get().0).max(s.iter().next().map_or(0, |_| 0))
    }
    fn s_max(_s: &Store<u32>) -> u64 {
        BOUNDS.with(|b| b.get().1)
    }
    std::thread_local! {
        static BOUNDS: core::cell::Cell<(u64, u64)> = const { core::cell::Cell::new((0, 0)) };
    }

    fn nth_start(s: &Store<u32>, pick: usize) -> Option<u64> {
        let n = s.len();
        (n > 0).then(|| s.iter().nth(pick % n).unwrap().start)
    }

    fn apply(t: &mut Tree<u32>, s: &mut Store<u32>, op: &Op) {
        let (min, max) = BOUNDS.with(|b| b.get());
        match *op {
            Op::Insert { start, pages, rb, v } => {
                if let Some(end) = start.checked_add(pages * PAGE)
                    && fits(s, start, end, None)
                {
                    t.insert(item(start, end, rb, v));
                    s.insert(item(start, end, rb, v));
                }
            }
            Op::Fill { start, count, pages, gap } => {
                for k in 0..count as u64 {
                    let st = start.saturating_add(k * (pages + gap) * PAGE);
                    if let Some(end) = st.checked_add(pages * PAGE)
                        && fits(s, st, end, None)
                    {
                        t.insert(item(st, end, 0, k as u32));
                        s.insert(item(st, end, 0, k as u32));
                    }
                }
            }
            Op::Remove { pick } => {
                if let Some(st) = nth_start(s, pick) {
                    assert_eq!(t.remove(st), s.remove(st));
                }
            }
            Op::RemoveAddr(a) => assert_eq!(t.remove(a), s.remove(a)),
            Op::SetBounds { pick, a, b, rb } => {
                let Some(st) = nth_start(s, pick) else { return };
                let lo = s.prev(st).map_or(min, |p| p.end);
                let hi = s.next(st).map_or(max, |n| n.start);
                let span = hi - lo;
                let ns = lo + ((a % span) & !(PAGE - 1));
                let mut ne = ns + 1 + b % (hi - ns);
                if ne.next_multiple_of(PAGE) <= hi {
                    ne = ne.next_multiple_of(PAGE);
                }
                t.set_bounds(st, ns, ne, rb);
                s.set_bounds(st, ns, ne, rb);
            }
            Op::Move { pick, to } => {
                let Some(st) = nth_start(s, pick) else { return };
                let it = s.get(st).unwrap().clone();
                if let Some(end) = to.checked_add(it.end - it.start)
                    && fits(s, to, end, Some(st))
                {
                    t.set_bounds(st, to, end, it.reserve_below);
                    s.set_bounds(st, to, end, it.reserve_below);
                }
            }
            Op::Value { pick, v } => {
                if let Some(st) = nth_start(s, pick) {
                    *t.value_mut(st).unwrap() = v;
                    *s.value_mut(st).unwrap() = v;
                }
                assert_eq!(t.value_mut(u64::MAX).is_none(), s.value_mut(u64::MAX).is_none());
            }
            Op::Replace { pick, count, pieces, cuts, shrink, v } => {
                let Some(st) = nth_start(s, pick) else { return };
                let old: Vec<Item<u32>> = s.iter().filter(|it| it.start >= st).take(count).cloned().collect();
                let end = old.last().unwrap().end;
                let mut points: Vec<u64> = cuts
                    .iter()
                    .take(pieces - 1)
                    .filter(|_| end - st >= 2)
                    .map(|c| st + 1 + c % (end - st - 1))
                    .collect();
                points.sort_unstable();
                points.dedup();
                points.insert(0, st);
                points.push(end);
                let mut new = [None, None, None];
                for (k, w) in points.windows(2).enumerate() {
                    let rb = if k == 0 { old[0].reserve_below } else { 0 };
                    new[k] = Some(item(w[0], w[1], rb, v.wrapping_add(k as u32)));
                }
                let last = points.len() - 2;
                let it = new[last].as_mut().unwrap();
                it.end -= shrink % (it.end - it.start);
                for o in &old {
                    s.remove(o.start);
                }
                for it in new.iter().flatten() {
                    s.insert(it.clone());
                }
                // By start, or by the position a lookup gave (a stale one, taken before an unrelated
                // lookup moved nothing, must work the same).
                if v % 2 == 0 {
                    t.replace_run(st, old.len(), new);
                } else {
                    let at = t.containing_pos(st).expect("the run's first item");
                    assert_eq!(t.item(at).map(|it| it.start), Some(st));
                    assert_eq!(
                        t.prev_pos(at).and_then(|p| t.item(p)).map(|it| it.start),
                        s.prev(st).map(|it| it.start)
                    );
                    let last = (1..old.len()).try_fold(at, |p, _| t.next_pos(p));
                    assert_eq!(
                        last.and_then(|p| t.item(p)).map(|it| it.start),
                        Some(old[old.len() - 1].start)
                    );
                    t.replace_run_at(at, old.len(), new);
                }
            }
        }
    }

    fn compare(t: &Tree<u32>, s: &Store<u32>, probes: &[u64], reqs: &[GapRequest]) {
        if let Err(e) = t.check() {
            panic!("tree check: {e}\n{t:?}");
        }
        s.check().unwrap();
        assert_eq!(t.len(), s.len());
        assert_eq!(t.is_empty(), s.is_empty());
        let ti: Vec<_> = t.iter().cloned().collect();
        let si: Vec<_> = s.iter().cloned().collect();
        assert_eq!(ti, si);
        assert!(t.iter().rev().eq(s.iter().rev()));
        // Both ends at once.
        let (mut a, mut b) = (t.iter(), s.iter());
        for k in 0..si.len() + 2 {
            if k % 2 == 0 {
                assert_eq!(a.next(), b.next());
            } else {
                assert_eq!(a.next_back(), b.next_back());
            }
        }
        assert!(t.gaps().eq(s.gaps()));
        assert_eq!(t.largest_gap(), s.largest_gap());

        let mut ps = probes.to_vec();
        for it in s.iter() {
            ps.extend([
                it.start,
                it.end - 1,
                it.end,
                it.start.wrapping_sub(1),
                it.start.saturating_sub(it.reserve_below),
            ]);
        }
        ps.extend([0, u64::MAX, 1]);
        for &p in &ps {
            assert_eq!(t.containing(p), s.containing(p), "containing {p:#x}");
            assert_eq!(t.floor(p), s.floor(p), "floor {p:#x}");
            assert_eq!(t.ceil(p), s.ceil(p), "ceil {p:#x}");
            assert_eq!(t.prev(p), s.prev(p), "prev {p:#x}");
            assert_eq!(t.next(p), s.next(p), "next {p:#x}");
            assert_eq!(t.get(p), s.get(p), "get {p:#x}");
        }
        // Sequential and backward lookups go through the hint's neighbours.
        ps.sort_unstable();
        for &p in ps.iter().chain(ps.iter().rev()) {
            assert_eq!(t.containing(p), s.containing(p), "containing (sorted) {p:#x}");
        }
        for w in probes.windows(2) {
            let (x, y) = (w[0].min(w[1]), w[0].max(w[1]));
            assert!(t.overlapping(x, y).eq(s.overlapping(x, y)), "overlapping {x:#x}..{y:#x}");
        }
        for it in s.iter().take(8) {
            assert!(t.overlapping(it.start, it.start).eq(s.overlapping(it.start, it.start)));
            assert!(
                t.overlapping(it.end - 1, it.end + 5 * PAGE).eq(s.overlapping(it.end - 1, it.end + 5 * PAGE))
            );
        }
        let mut all = reqs.to_vec();
        // Exact fits: each gap's own length, at several alignments, in the whole map and in the gap alone.
        for (k, (gs, ge)) in s.gaps().take(6).enumerate() {
            let align = [1, PAGE, 2 << 20, GIB][k % 4];
            for td in [false, true] {
                all.push(GapRequest { len: ge - gs, align, lo: 0, hi: u64::MAX, top_down: td });
                all.push(GapRequest { len: ge - gs, align: 1, lo: gs, hi: ge, top_down: td });
                all.push(GapRequest {
                    len: (ge - gs).div_ceil(2),
                    align: PAGE,
                    lo: gs + 1,
                    hi: ge,
                    top_down: td,
                });
            }
        }
        for r in &all {
            for td in [false, true] {
                let r = GapRequest { top_down: td, ..*r };
                assert_eq!(t.find_gap(&r), s.find_gap(&r), "find_gap {r:x?}");
            }
        }
    }

    fn run(bounds: (u64, u64), ops: &[Op], probes: &[u64], reqs: &[GapRequest]) {
        BOUNDS.with(|b| b.set(bounds));
        let mut t = Tree::new(bounds.0, bounds.1);
        let mut s = Store::new(bounds.0, bounds.1);
        compare(&t, &s, probes, reqs);
        for (k, op) in ops.iter().enumerate() {
            apply(&mut t, &mut s, op);
            compare(&t, &s, probes, reqs);
            if k % 16 == 15 {
                let c = t.clone();
                compare(&c, &s, probes, reqs);
            }
        }
        // The same operations in batches of five: lookups stay exact inside a batch, and after its end
        // the tree (gap summaries included) equals the store again.
        let mut t = Tree::new(bounds.0, bounds.1);
        let mut s = Store::new(bounds.0, bounds.1);
        for batch in ops.chunks(5) {
            t.begin_batch();
            for op in batch {
                apply(&mut t, &mut s, op);
                for &p in probes {
                    assert_eq!(t.containing(p), s.containing(p), "containing {p:#x} inside a batch");
                    assert_eq!(t.floor(p), s.floor(p), "floor {p:#x} inside a batch");
                    assert_eq!(t.ceil(p), s.ceil(p), "ceil {p:#x} inside a batch");
                }
            }
            t.end_batch();
            compare(&t, &s, probes, reqs);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn tree_matches_store(
            bounds in bounds(),
            ops in vec(op(), 1..90),
            probes in vec(addr(), 8),
            reqs in vec(req(), 10),
        ) {
            run(bounds, &ops, &probes, &reqs);
        }
    }

    /// A tiny deterministic generator for the long sequences below.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 17
        }
    }

    /// Thousands of operations grow the tiny-node tree to height 6+ and shrink it again.
    #[test]
    fn long_sequence_grows_and_shrinks() {
        let bounds = (0, 64 * GIB);
        BOUNDS.with(|b| b.set(bounds));
        let mut t = Tree::new(bounds.0, bounds.1);
        let mut s = Store::new(bounds.0, bounds.1);
        let mut g = Lcg(7);
        let mut max_height = 0;
        for step in 0..6000u64 {
            let growing = (step / 1500) % 2 == 0;
            let r = g.next() % 10;
            let op = if r < 6 && growing || r < 3 {
                Op::Insert {
                    start: (g.next() % (1 << 16)) * PAGE,
                    pages: 1 + g.next() % 4,
                    rb: 0,
                    v: step as u32,
                }
            } else if r < 8 {
                Op::Remove { pick: g.next() as usize }
            } else {
                Op::SetBounds { pick: g.next() as usize, a: g.next(), b: g.next(), rb: (g.next() % 3) * PAGE }
            };
            apply(&mut t, &mut s, &op);
            t.check().unwrap();
            max_height = max_height.max(t.height);
            if step % 250 == 0 {
                let reqs: Vec<_> = (0..20)
                    .map(|k| GapRequest {
                        len: (1 + g.next() % 8) * PAGE,
                        align: PAGE << (g.next() % 12),
                        lo: (g.next() % (1 << 16)) * PAGE,
                        hi: u64::MAX,
                        top_down: k % 2 == 0,
                    })
                    .collect();
                compare(&t, &s, &[0, 5 * PAGE, 1 << 28], &reqs);
            }
        }
        assert!(max_height >= 5, "height {max_height}");
        while let Some(st) = nth_start(&s, 0) {
            assert_eq!(t.remove(st), s.remove(st));
        }
        t.check().unwrap();
        assert!(t.is_empty() && t.root == NIL);
        assert_eq!(t.leaves.len(), t.free_leaves.count);
    }

    #[test]
    fn reservation_forbidden_and_spent_is_an_error() {
        let mut t: Tree<u32> = Tree::new(0, 1 << 40);
        t.set_alloc_allowed(false);
        assert_eq!(t.ensure_spare(1), Err(StoreFull));
        assert_eq!(t.reserve(4), Err(StoreFull));
        assert_eq!(t.ensure_spare(0), Ok(()));
        t.set_alloc_allowed(true);
        assert_eq!(t.ensure_spare(4), Ok(()));
        t.set_alloc_allowed(false);
        // Spend the reservation without ever asking again: it runs out with an error, never a panic.
        let mut refused = false;
        for k in 0..10_000u64 {
            if t.ensure_spare(4).is_err() {
                refused = true;
                break;
            }
            t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, 0));
        }
        assert!(refused, "a spent reservation with allocation forbidden must be refused");
        t.check().unwrap();
    }

    #[test]
    fn reserved_inserts_do_not_allocate() {
        let mut g = Lcg(3);
        for &(prefill, n) in &[(0usize, 1usize), (0, 50), (10, 4), (300, 4), (300, 200), (2000, 33)] {
            let mut t: Tree<u32> = Tree::new(0, 1 << 40);
            // Every other page slot of a large space; the reserved inserts go into random free slots.
            let mut used = alloc::collections::BTreeSet::new();
            while used.len() < prefill {
                let slot = g.next() % 100_000;
                if used.insert(slot) {
                    t.insert(item(slot * 2 * PAGE, slot * 2 * PAGE + PAGE, 0, 0));
                }
            }
            t.release();
            assert_eq!(t.reserve(n), Ok(()));
            t.set_alloc_allowed(false);
            assert_eq!(t.ensure_spare(n), Ok(()));
            let caps = (t.leaves.capacity(), t.inners.capacity());
            let mut done = 0;
            while done < n {
                let slot = g.next() % 100_000;
                if used.insert(slot) {
                    t.insert(item(slot * 2 * PAGE, slot * 2 * PAGE + PAGE, 0, 0));
                    done += 1;
                    assert_eq!(
                        (t.leaves.capacity(), t.inners.capacity()),
                        caps,
                        "insert {done} of {n} allocated"
                    );
                }
            }
            t.check().unwrap();
            t.set_alloc_allowed(true);
            t.release();
            t.check().unwrap();
        }
    }

    #[test]
    fn appending_keeps_leaves_full_and_release_trims() {
        let mut t: Tree<u32> = Tree::new(0, 1 << 40);
        for k in 0..1000u64 {
            t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, 0));
        }
        t.check().unwrap();
        // Every leaf but the last keeps `LCAP - 1` items.
        let live = t.leaves.len() - t.free_leaves.count;
        assert!(live <= 1000 / (LCAP - 1) + 1, "{live} leaves for 1000 appended items");
        t.reserve(5000).unwrap();
        let big = t.leaves.capacity();
        t.release();
        assert!(t.leaves.capacity() < big);
        // Remove everything: nodes go to the free lists, release gives the tail back.
        for k in 0..1000u64 {
            t.remove(k * 2 * PAGE).unwrap();
        }
        t.check().unwrap();
        t.release();
        t.check().unwrap();
        assert!(t.leaves.len() <= LEAF_SLOP && t.inners.len() <= INNER_SLOP);
    }

    #[test]
    fn hint_survives_node_reuse() {
        let mut t: Tree<u32> = Tree::new(0, 1 << 40);
        for k in 0..200u64 {
            t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, k as u32));
        }
        assert_eq!(t.containing(7 * 2 * PAGE).map(|i| i.value), Some(7));
        for k in 0..150u64 {
            t.remove(k * 2 * PAGE);
        }
        for k in 0..150u64 {
            t.insert(item(k * 2 * PAGE + 100 * GIB, k * 2 * PAGE + PAGE + 100 * GIB, 0, 1000 + k as u32));
        }
        assert_eq!(t.containing(7 * 2 * PAGE), None);
        assert_eq!(t.containing(7 * 2 * PAGE + 100 * GIB).map(|i| i.value), Some(1007));
        assert_eq!(t.containing(8 * 2 * PAGE + 100 * GIB).map(|i| i.value), Some(1008));
        assert_eq!(t.containing(8 * 2 * PAGE + 100 * GIB + PAGE), None);
        let c = t.clone();
        assert_eq!(c.containing(199 * 2 * PAGE).map(|i| i.value), Some(199));
        c.check().unwrap();
    }

    /// Mapping and unmapping above everything, at a full last leaf, neither allocates nor frees a leaf
    /// after the first split: the last leaf is not rebalanced while it has an item.
    #[test]
    fn insert_and_remove_at_the_top_do_not_split_every_time() {
        let mut t: Tree<u32> = Tree::new(0, 1 << 40);
        let n = 10 * LCAP as u64;
        for k in 0..n {
            t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, 0));
        }
        // Fill the last leaf exactly.
        let mut k = n;
        while t.leaves[t.last_leaf() as usize].len as usize != LCAP {
            t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, 0));
            k += 1;
        }
        let top = k * 2 * PAGE;
        t.insert(item(top, top + PAGE, 0, 1));
        t.remove(top).unwrap();
        let live = t.leaves.len() - t.free_leaves.count;
        let arena = t.leaves.len();
        for _ in 0..100 {
            t.insert(item(top, top + PAGE, 0, 1));
            t.check().unwrap();
            assert_eq!(t.leaves.len() - t.free_leaves.count, live, "the insertion split a leaf");
            t.remove(top).unwrap();
            t.check().unwrap();
        }
        assert_eq!(t.leaves.len() - t.free_leaves.count, live, "the cycle splits or merges leaves");
        assert_eq!(t.leaves.len(), arena);
        // Emptying the last leaf still merges it away.
        let last = t.last_leaf();
        let starts: Vec<u64> = t.leaves[last as usize].items().iter().map(|it| it.start).collect();
        for s in starts {
            t.remove(s).unwrap();
            t.check().unwrap();
        }
        assert_eq!(t.leaves.len() - t.free_leaves.count, live - 1);
    }

    /// Regression: a removal that leaves the first leaf underfull when leaf and root share an index.
    #[test]
    fn underfull_first_leaf_is_rebalanced() {
        let ops = [
            Op::Insert { start: 0, pages: 1, rb: 0, v: 0 },
            Op::Insert { start: 4096, pages: 1, rb: 0, v: 0 },
            Op::Insert { start: 24576, pages: 1, rb: 0, v: 0 },
            Op::SetBounds { pick: 269974295140417, a: 1054996338196197376, b: 0, rb: 0 },
            Op::Insert { start: 0, pages: 1, rb: 0, v: 0 },
            Op::Insert { start: 2147483648, pages: 1, rb: 0, v: 0 },
            Op::Insert { start: 28672, pages: 1, rb: 0, v: 0 },
            Op::Remove { pick: 113210014921035710 },
        ];
        run((0, 8 * GIB), &ops, &[0, GIB], &[]);
    }
}
