//! Node layout: the leaf and inner node kinds, their sizes and fill limits, and the free list each arena
//! keeps of its unused nodes.
//!
//! Invariant: a leaf's `items[..len]` are initialised and `starts[i] == items[i].start` for `i < len`
//! (every method here keeps it, and the `unsafe` blocks rely on it); an inner node's `keys`, `gaps` and
//! `kids` are meaningful for `..len`; a free node has `parent == FREE` and is linked through its own
//! fields, so freeing never allocates.

use core::mem::MaybeUninit;
use core::ptr;

use crate::map::store::Item;

/// Items per leaf. Unit tests use tiny nodes so that short operation sequences build deep trees.
#[cfg(not(test))]
pub(super) const LCAP: usize = 32;
#[cfg(test)]
pub(super) const LCAP: usize = 4;
/// Children per inner node.
#[cfg(not(test))]
pub(super) const ICAP: usize = 32;
#[cfg(test)]
pub(super) const ICAP: usize = 4;
/// A non-root leaf below this many items is merged with or refilled from a sibling after a removal.
pub(super) const LMIN: usize = LCAP / 3 + 1;
/// A non-root inner node keeps at least this many children.
pub(super) const IMIN: usize = ICAP / 3 + 1;
const _: () = assert!(IMIN >= 2 && 2 * IMIN - 1 <= ICAP && 2 * LMIN - 1 <= LCAP && ICAP >= 2);

/// "No node".
pub(super) const NIL: u32 = u32::MAX;
/// `parent` of a node on the free list.
pub(super) const FREE: u32 = u32::MAX - 1;

/// A leaf: up to `LCAP` items, of which the first `len` are initialised. `repr(C)` keeps the header and
/// `starts` (a copy of each item's start, so a search reads 4 cache lines at once instead of one line per
/// probe through the items) at the front, where a lookup's first touch lands.
#[repr(C)]
pub(super) struct Leaf<V> {
    pub(super) len: u32,
    pub(super) parent: u32,
    /// Previous leaf in address order (or, on the free list, the previous free leaf).
    pub(super) prev: u32,
    /// Next leaf in address order (or, on the free list, the next free leaf).
    pub(super) next: u32,
    /// `starts[i] == items[i].start` for `i < len`.
    pub(super) starts: [u64; LCAP],
    pub(super) items: [MaybeUninit<Item<V>>; LCAP],
}

impl<V> Leaf<V> {
    pub(super) fn empty() -> Self {
        Leaf {
            len: 0,
            parent: NIL,
            prev: NIL,
            next: NIL,
            starts: [0; LCAP],
            items: [const { MaybeUninit::uninit() }; LCAP],
        }
    }

    pub(super) fn items(&self) -> &[Item<V>] {
        // SAFETY: `items[..len]` are initialised (the invariant every method below keeps), `len <= LCAP`,
        // and `MaybeUninit<T>` has the layout of `T`.
        unsafe { core::slice::from_raw_parts(self.items.as_ptr().cast::<Item<V>>(), self.len as usize) }
    }

    pub(super) fn items_mut(&mut self) -> &mut [Item<V>] {
        // SAFETY: as in `items`; the exclusive borrow of `self` makes the slice unique.
        unsafe {
            core::slice::from_raw_parts_mut(self.items.as_mut_ptr().cast::<Item<V>>(), self.len as usize)
        }
    }

    /// Inserts `item` at `pos`, shifting the items from `pos` up by one.
    #[inline]
    pub(super) fn insert(&mut self, pos: usize, item: Item<V>) {
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
    #[inline]
    pub(super) fn remove(&mut self, pos: usize) -> Item<V> {
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
    pub(super) fn splice<const N: usize>(&mut self, pos: usize, count: usize, new: [Option<Item<V>>; N]) {
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
        // The new items are copied straight from the array into their slots (no iterator moving them
        // first), and the array forgets them.
        let new = core::mem::ManuallyDrop::new(new);
        for (k, it) in (pos..).zip(new.iter().flatten()) {
            self.starts[k] = it.start;
            // SAFETY: slot `k` (one of `pos..pos + n`) holds nothing live (see above), and `it` is read
            // once: `new` is never dropped, so the item has exactly one owner, the leaf.
            unsafe { ptr::copy_nonoverlapping(it, self.items[k].as_mut_ptr(), 1) };
        }
        self.len = (len - count + n) as u32;
    }

    #[inline]
    pub(super) fn clone_leaf(&self) -> Self
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
pub(super) fn transfer<V>(src: &mut Leaf<V>, from: usize, count: usize, dst: &mut Leaf<V>, at: usize) {
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
pub(super) struct Inner {
    pub(super) len: u32,
    pub(super) parent: u32,
    /// Height of this node above the leaves (1: the children are leaves).
    pub(super) level: u32,
    pub(super) keys: [u64; ICAP],
    pub(super) gaps: [u64; ICAP],
    /// Children; on the free list `kids[0]` / `kids[1]` are the next / previous free node.
    pub(super) kids: [u32; ICAP],
}

impl Inner {
    pub(super) fn empty() -> Self {
        Inner { len: 0, parent: NIL, level: 0, keys: [0; ICAP], gaps: [0; ICAP], kids: [NIL; ICAP] }
    }

    pub(super) fn insert_entry(&mut self, pos: usize, key: u64, gap: u64, kid: u32) {
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

    pub(super) fn remove_entry(&mut self, pos: usize) {
        let len = self.len as usize;
        self.keys.copy_within(pos + 1..len, pos);
        self.gaps.copy_within(pos + 1..len, pos);
        self.kids.copy_within(pos + 1..len, pos);
        self.len -= 1;
    }

    pub(super) fn summary(&self) -> (u64, u64) {
        (self.keys[0], self.gaps[..self.len as usize].iter().copied().max().unwrap_or(0))
    }
}

/// Moves `count` entries from `src[from..]` into `dst` at `at`.
pub(super) fn transfer_entries(src: &mut Inner, from: usize, count: usize, dst: &mut Inner, at: usize) {
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
pub(super) trait Node {
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
pub(super) struct FreeList {
    pub(super) head: u32,
    pub(super) count: usize,
}

impl FreeList {
    pub(super) const EMPTY: FreeList = FreeList { head: NIL, count: 0 };

    #[inline]
    pub(super) fn push<T: Node>(&mut self, nodes: &mut [T], i: u32) {
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

    #[inline]
    pub(super) fn unlink<T: Node>(&mut self, nodes: &mut [T], i: u32) {
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

    pub(super) fn pop<T: Node>(&mut self, nodes: &mut [T]) -> Option<u32> {
        let h = self.head;
        if h == NIL {
            return None;
        }
        self.unlink(nodes, h);
        Some(h)
    }
}

/// Two distinct elements of a slice, mutably.
pub(super) fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert!(a != b);
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

/// How many of the sorted `keys` are `<= addr`, in two branch-free steps: count the blocks of 8 keys (one
/// cache line each) whose first key is `<= addr`, then count within the last such block. The first step's
/// loads are independent, so a cold node's lines arrive in parallel; both steps together are about 12
/// compares for 32 keys (a linear count is 32 dependent additions, and x86-64's baseline cannot vectorise
/// u64 compares; a binary search makes each probe wait for the last).
#[inline]
pub(super) fn count_le(keys: &[u64], addr: u64) -> usize {
    const BLOCK: usize = 8;
    let block = keys.iter().step_by(BLOCK).skip(1).map(|&k| usize::from(k <= addr)).sum::<usize>() * BLOCK;
    let tail = &keys[block..keys.len().min(block + BLOCK)];
    block + tail.iter().map(|&k| usize::from(k <= addr)).sum::<usize>()
}

/// How many of `leaf`'s items start at or below `addr` (as [`count_le`], over the leaf's `starts`).
#[inline]
pub(super) fn count_items_le<V>(leaf: &Leaf<V>, addr: u64) -> usize {
    count_le(&leaf.starts[..leaf.len as usize], addr)
}
