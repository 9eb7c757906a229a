//! The VMA store: VMAs sorted by address in a two-level array (chunks of at most [`CHUNK`] VMAs),
//! with `mm->total_vm` and `mm->data_vm` kept as counters.
//!
//! A `BTreeMap<u64, Vma>` spent most of `Mm`'s time in its range searches (`find_vma` took two), and
//! moved whole VMAs between nodes. Here a lookup is a binary search over the chunks' last VMAs, then
//! one inside a chunk; the VMA's neighbours are the next and previous slots, so `find_vma`,
//! `ends_at` + the next VMA, and gap walks cost one search. Inserting or removing moves at most one
//! chunk's tail (and, when a chunk splits or empties, the short array of chunks), so the cost stays
//! logarithmic-plus-a-chunk at `vm.max_map_count`.
//!
//! Every change goes through [`Vmas::insert`], [`Vmas::remove`], [`Vmas::update`] or
//! [`Vmas::remove_range`], which keep the counters exact; `Mm::check_invariants` recomputes them.

use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;

use super::{Vma, is_data};

/// The most VMAs in one chunk: a full chunk splits in two halves.
const CHUNK: usize = 32;

/// VMAs in address order (disjoint, each keyed by its start), with page counters.
#[derive(Clone, Default)]
pub(super) struct Vmas {
    /// Non-empty, sorted chunks; together, all VMAs in order.
    chunks: Vec<Vec<Vma>>,
    len: usize,
    /// Sum of the VMAs' pages (`total_vm`).
    total: u64,
    /// Sum of the data VMAs' pages (`data_vm`).
    data: u64,
    /// Per chunk, the largest gap between two of its VMAs ([`DIRTY`]: not known since it changed),
    /// computed when a placement asks: the gap search skips chunks with no gap large enough, as
    /// Linux's `vm_unmapped_area` skips subtrees by their `rb_subtree_gap`.
    gaps: Vec<Cell<u64>>,
    /// The chunk the last lookup found: one call's lookups mostly fall in one chunk, which two
    /// comparisons confirm before a binary search over the chunks is needed.
    hint: Cell<usize>,
}

/// A chunk's gap is to be recomputed.
const DIRTY: u64 = u64::MAX;

impl fmt::Debug for Vmas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter().map(|v| (v.start, v))).finish()
    }
}

/// A slot: chunk index and index inside it; `(chunks.len(), 0)` is the end.
type Pos = (usize, usize);

fn pages_of(v: &Vma) -> (u64, u64) {
    let p = v.pages();
    (p, if is_data(v.flags) { p } else { 0 })
}

impl Vmas {
    /// Number of VMAs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No VMA.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every VMA.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.gaps.clear();
        self.len = 0;
        self.total = 0;
        self.data = 0;
    }

    /// `total_vm`, pages.
    pub fn total_pages(&self) -> u64 {
        self.total
    }

    /// `data_vm`, pages.
    pub fn data_pages(&self) -> u64 {
        self.data
    }

    /// The first slot whose VMA ends above `addr` (the VMAs are disjoint and sorted, so ends are too).
    /// The first chunk for which `before` (true, then false, along the chunks) is false.
    fn chunk(&self, before: impl Fn(&Vec<Vma>) -> bool) -> usize {
        let h = self.hint.get();
        if h < self.chunks.len() && !before(&self.chunks[h]) && (h == 0 || before(&self.chunks[h - 1])) {
            return h;
        }
        let ci = self.chunks.partition_point(before);
        self.hint.set(ci);
        ci
    }

    fn pos_end_above(&self, addr: u64) -> Pos {
        let ci = self.chunk(|c| c[c.len() - 1].end <= addr);
        if ci == self.chunks.len() {
            return (ci, 0);
        }
        (ci, self.chunks[ci].partition_point(|v| v.end <= addr))
    }

    /// The first slot whose VMA starts at or above `addr`.
    fn pos_start_at_least(&self, addr: u64) -> Pos {
        let ci = self.chunk(|c| c[c.len() - 1].start < addr);
        if ci == self.chunks.len() {
            return (ci, 0);
        }
        (ci, self.chunks[ci].partition_point(|v| v.start < addr))
    }

    fn at(&self, (ci, i): Pos) -> Option<&Vma> {
        self.chunks.get(ci).and_then(|c| c.get(i))
    }

    /// The VMA in the slot before `pos`.
    fn before(&self, (ci, i): Pos) -> Option<&Vma> {
        if i > 0 {
            return Some(&self.chunks[ci][i - 1]);
        }
        ci.checked_sub(1).map(|p| {
            let c = &self.chunks[p];
            &c[c.len() - 1]
        })
    }

    /// `find_vma`: the first VMA ending above `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.at(self.pos_end_above(addr))
    }

    /// The VMA containing `addr`.
    pub fn containing(&self, addr: u64) -> Option<&Vma> {
        self.find(addr).filter(|v| v.start <= addr)
    }

    /// The VMA starting exactly at `start`.
    pub fn get(&self, start: u64) -> Option<&Vma> {
        self.at(self.pos_start_at_least(start)).filter(|v| v.start == start)
    }

    /// The last VMA starting below `addr`, and the first starting at or above it.
    pub fn around(&self, addr: u64) -> (Option<&Vma>, Option<&Vma>) {
        let pos = self.pos_start_at_least(addr);
        (self.before(pos), self.at(pos))
    }

    /// The last VMA starting below `addr`.
    pub fn last_below(&self, addr: u64) -> Option<&Vma> {
        self.before(self.pos_start_at_least(addr))
    }

    /// The VMAs in address order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Vma> + '_ {
        self.chunks.iter().flatten()
    }

    /// The VMAs ending above `addr`, in address order (`find_vma`, then its successors).
    pub fn ending_above(&self, addr: u64) -> impl Iterator<Item = &Vma> + '_ {
        self.iter_at(self.pos_end_above(addr))
    }

    fn iter_at(&self, (ci, i): Pos) -> impl Iterator<Item = &Vma> + '_ {
        let head: &[Vma] = self.chunks.get(ci).map_or(&[], |c| &c[i..]);
        head.iter().chain(self.chunks.get(ci + 1..).unwrap_or(&[]).iter().flatten())
    }

    /// The VMAs starting at or above `addr`, in address order.
    pub fn from(&self, addr: u64) -> impl Iterator<Item = &Vma> + '_ {
        self.iter_at(self.pos_start_at_least(addr))
    }

    /// Inserts `v`, replacing a VMA with the same start (as `BTreeMap::insert`).
    pub fn insert(&mut self, v: Vma) {
        let (t, d) = pages_of(&v);
        self.total += t;
        self.data += d;
        if self.chunks.is_empty() {
            let mut c = Vec::with_capacity(CHUNK);
            c.push(v);
            self.chunks.push(c);
            self.gaps.push(Cell::new(DIRTY));
            self.len = 1;
            return;
        }
        let (mut ci, mut i) = self.pos_start_at_least(v.start);
        if ci == self.chunks.len() {
            ci -= 1;
            i = self.chunks[ci].len();
        }
        self.gaps[ci].set(DIRTY);
        let c = &mut self.chunks[ci];
        if c.get(i).is_some_and(|o| o.start == v.start) {
            let (ot, od) = pages_of(&c[i]);
            self.total -= ot;
            self.data -= od;
            c[i] = v;
            return;
        }
        c.insert(i, v);
        self.len += 1;
        self.grown(ci);
    }

    /// After an insertion into chunk `ci`: splits it when full.
    fn grown(&mut self, ci: usize) {
        let c = &mut self.chunks[ci];
        if c.len() >= CHUNK {
            let mut tail = Vec::with_capacity(CHUNK);
            tail.extend(c.drain(CHUNK / 2..));
            self.chunks.insert(ci + 1, tail);
            self.gaps[ci].set(DIRTY);
            self.gaps.insert(ci + 1, Cell::new(DIRTY));
        }
    }

    /// `__split_vma`: splits the VMA containing `at` (strictly inside it) in two; nothing when no VMA
    /// has `at` strictly inside.
    pub fn split(&mut self, at: u64) {
        let (ci, i) = self.pos_end_above(at);
        let Some(c) = self.chunks.get_mut(ci) else { return };
        let v = &mut c[i];
        if v.start >= at {
            return;
        }
        let mut hi = v.clone();
        hi.start = at;
        hi.pgoff = v.pgoff_at(at);
        v.end = at;
        c.insert(i + 1, hi);
        self.gaps[ci].set(DIRTY);
        self.len += 1;
        self.grown(ci);
    }

    /// Removes the VMA starting at `start`.
    pub fn remove(&mut self, start: u64) -> Option<Vma> {
        let (ci, i) = self.pos_start_at_least(start);
        if self.at((ci, i)).is_none_or(|v| v.start != start) {
            return None;
        }
        let v = self.chunks[ci].remove(i);
        self.removed(&v);
        self.tidy(ci);
        Some(v)
    }

    fn removed(&mut self, v: &Vma) {
        let (t, d) = pages_of(v);
        self.total -= t;
        self.data -= d;
        self.len -= 1;
    }

    /// After removals from chunk `ci`: drops it when empty, joins it with the next when both are small.
    fn tidy(&mut self, ci: usize) {
        self.gaps[ci].set(DIRTY);
        if self.chunks[ci].is_empty() {
            self.chunks.remove(ci);
            self.gaps.remove(ci);
            return;
        }
        if ci + 1 < self.chunks.len() && self.chunks[ci].len() + self.chunks[ci + 1].len() <= CHUNK / 2 {
            let next = self.chunks.remove(ci + 1);
            self.gaps.remove(ci + 1);
            self.chunks[ci].extend(next);
        }
    }

    /// Removes the VMAs starting in `[start, end)`, calling `gone` with each.
    pub fn remove_range(&mut self, start: u64, end: u64, mut gone: impl FnMut(&Vma)) {
        loop {
            let (ci, i) = self.pos_start_at_least(start);
            let Some(c) = self.chunks.get_mut(ci) else { return };
            let n = c[i..].partition_point(|v| v.start < end);
            if n == 0 {
                return;
            }
            let mut t = 0;
            let mut d = 0;
            for v in c.drain(i..i + n) {
                let (vt, vd) = pages_of(&v);
                t += vt;
                d += vd;
                gone(&v);
            }
            let reached_end = c.len() == i;
            self.total -= t;
            self.data -= d;
            self.len -= n;
            self.tidy(ci);
            if !reached_end {
                return;
            }
        }
    }

    /// Changes the VMA starting at `start` (not its start, nor its place in the order) through `f`,
    /// keeping the counters.
    pub fn update<R>(&mut self, start: u64, f: impl FnOnce(&mut Vma) -> R) -> Option<R> {
        let (ci, i) = self.pos_start_at_least(start);
        let v = self.chunks.get_mut(ci).and_then(|c| c.get_mut(i)).filter(|v| v.start == start)?;
        let (ot, od) = pages_of(v);
        self.gaps[ci].set(DIRTY);
        let r = f(v);
        debug_assert_eq!(v.start, start, "update moved a VMA");
        let (nt, nd) = pages_of(v);
        self.total = self.total - ot + nt;
        self.data = self.data - od + nd;
        Some(r)
    }

    /// Changes the VMA starting at `start` through `f`, which may move its start: as removing it and
    /// inserting the changed VMA (which replaces one with the new start), done in place when the order
    /// allows.
    pub fn rekey(&mut self, start: u64, f: impl FnOnce(&mut Vma)) {
        let (ci, i) = self.pos_start_at_least(start);
        let Some(v) = self.chunks.get_mut(ci).and_then(|c| c.get_mut(i)).filter(|v| v.start == start) else {
            return;
        };
        let (ot, od) = pages_of(v);
        self.gaps[ci].set(DIRTY);
        f(v);
        let (nt, nd) = pages_of(v);
        let new_start = v.start;
        self.total = self.total - ot + nt;
        self.data = self.data - od + nd;
        let after_prev = self.before((ci, i)).is_none_or(|p| p.start < new_start);
        let next = if i + 1 < self.chunks[ci].len() { (ci, i + 1) } else { (ci + 1, 0) };
        let before_next = self.at(next).is_none_or(|n| n.start > new_start);
        if !(after_prev && before_next) {
            let v = self.chunks[ci].remove(i);
            self.removed(&v);
            self.tidy(ci);
            self.insert(v);
        }
    }

    /// The largest gap between two VMAs of chunk `ci`.
    fn inner_gap(&self, ci: usize) -> u64 {
        let g = self.gaps[ci].get();
        if g != DIRTY {
            return g;
        }
        let c = &self.chunks[ci];
        let g = c.windows(2).map(|w| w[1].start - w[0].end).max().unwrap_or(0);
        self.gaps[ci].set(g);
        g
    }

    /// The highest free gap of at least `len` bytes, clipped to `[low, high)`, among the gaps between
    /// the VMAs starting below `high` (the one above the last of them ends at `high`; the one below
    /// the first starts at 0): the first fitting gap a walk down from `high` meets, found skipping
    /// chunks whose inner gaps are all smaller.
    pub fn highest_gap(&self, low: u64, high: u64, len: u64) -> Option<(u64, u64)> {
        let fit = |gs: u64, ge: u64| {
            let (gs, ge) = (gs.max(low), ge.min(high));
            (gs < ge && ge - gs >= len).then_some((gs, ge))
        };
        let (mut ci, mut i) = self.pos_start_at_least(high);
        let mut top = high;
        if i > 0 {
            // The chunk `high` falls in: the gap up to `high`, then its inner gaps (a superset of
            // those below `high`) tell whether to walk it.
            let c = &self.chunks[ci];
            if let Some(g) = fit(c[i - 1].end, top) {
                return Some(g);
            }
            top = c[i - 1].start;
            i -= 1;
            if i > 0 && self.inner_gap(ci) < len {
                top = c[0].start;
                i = 0;
            }
        }
        loop {
            if top <= low {
                return None;
            }
            if i == 0 {
                if ci == 0 {
                    return fit(0, top);
                }
                ci -= 1;
                let c = &self.chunks[ci];
                let last = &c[c.len() - 1];
                if let Some(g) = fit(last.end, top) {
                    return Some(g);
                }
                top = last.start;
                i = c.len() - 1;
                if i > 0 && self.inner_gap(ci) < len {
                    top = c[0].start;
                    i = 0;
                }
                continue;
            }
            let v = &self.chunks[ci][i - 1];
            if let Some(g) = fit(v.end, top) {
                return Some(g);
            }
            top = v.start;
            i -= 1;
        }
    }

    /// Checks the chunk structure and recomputes the counters.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.chunks.iter().any(|c| c.is_empty() || c.len() >= CHUNK) {
            return Err("a VMA chunk is empty or over-full");
        }
        if self.chunks.iter().map(Vec::len).sum::<usize>() != self.len {
            return Err("the VMA count is stale");
        }
        if self.gaps.len() != self.chunks.len() {
            return Err("the gap index has another length");
        }
        for (c, g) in self.chunks.iter().zip(&self.gaps) {
            let real = c.windows(2).map(|w| w[1].start - w[0].end).max().unwrap_or(0);
            if g.get() != DIRTY && g.get() != real {
                return Err("a chunk's gap is stale");
            }
        }
        let (t, d) = self.iter().map(pages_of).fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
        if t != self.total {
            return Err("the total_vm counter is stale");
        }
        if d != self.data {
            return Err("the data_vm counter is stale");
        }
        Ok(())
    }
}
