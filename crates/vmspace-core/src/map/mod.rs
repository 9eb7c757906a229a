//! The address map (`vm_map`): entries, clipping, merging, find_space, protection, inheritance, wiring,
//! advice, lookup, stacks and fork.
//!
//! Every operation follows one discipline, which is what makes it atomic: **validate** the whole request
//! against the map without changing anything, **ensure** the store has the entries it will need
//! (`ResourceShortage` otherwise), then **mutate** through the journaled primitives below, which cannot
//! fail. So a refused operation leaves the map exactly as it was, and a successful one leaves a journal
//! ([`VmMap::undo`]) and a list of effects ([`VmMap::effects`]) behind.
//!
//! Invariants ([`VmMap::check_invariants`]): entries sorted, disjoint, non-empty, page-aligned, inside
//! `[min, max)`; `prot ⊆ max_prot`; a user-wired entry has `wired_count ≥ 1`; a stack reservation
//! (`avail_ssize`) lies in free space and only on STACK entries; no two adjacent entries are mergeable;
//! the counters (entries, size, wired) equal what the entries say.

mod adopt;
mod display;
pub mod effect;
pub mod entry;
pub mod error;
mod fork;
mod lookup;
mod ops;
mod stack;
// The `BTreeMap` store (the tree's test oracle) and the tree itself are public only for the crate's own
// tests and examples, which enable `testing` through a self dev-dependency.
#[cfg(feature = "testing")]
pub mod store;
#[cfg(not(feature = "testing"))]
pub(crate) mod store;
#[cfg(feature = "testing")]
pub mod tree;
#[cfg(not(feature = "testing"))]
pub(crate) mod tree;
pub mod types;

use alloc::vec::Vec;
use core::ops::Range;

pub use adopt::Observed;
pub use display::HumanSize;
pub use effect::Effect;
pub use entry::{Attrs, Entry};
pub use error::VmError;
pub use lookup::Fault;
pub use ops::FindSpec;
pub use stack::Growth;
pub use store::{GapRequest, Item, StoreFull};
pub use types::{Access, Advice, Behavior, EntryFlags, Inherit, MapKind, MapObject, MapSpec, Prot, SubmapId};

use tree::Tree;

/// The default page size.
pub const PAGE_SIZE: u64 = 4096;

/// Entries one insertion needs with the clips it may cause (`MAP_RESERVE_COUNT`): what every operation
/// ensures before it changes anything.
pub const RESERVE_COUNT: usize = 4;

/// Spare entries a reservation may keep after `release` (`MAP_RESERVE_SLOP`).
pub const RESERVE_SLOP: usize = 32;

/// The default stack growth step (the seed's `sgrowsiz`).
pub const DEFAULT_STACK_GROWTH: u64 = 64 * 1024;

/// One reversible change, recorded so [`VmMap::undo`] can put the map back.
#[derive(Clone, Debug)]
enum Undo<O> {
    /// An item was inserted at this start: remove it.
    Inserted(u64),
    /// This item was removed (or is about to be replaced): put it back.
    Removed(Entry<O>),
}

/// An address map over `[min, max)` (`struct vm_map`), generic over the backing object `O`.
///
/// See the module documentation for the discipline every operation follows and the invariants it keeps.
#[derive(Debug)]
pub struct VmMap<O = ()> {
    store: Tree<Attrs<O>>,
    min: u64,
    max: u64,
    page_size: u64,
    /// Bytes mapped (`size`).
    size: u64,
    /// Bytes whose `wired_count` is non-zero.
    wired: u64,
    /// Bumped by every successful change (`timestamp`).
    timestamp: u64,
    /// `MAP_WIREFUTURE`: new mappings and stack growth are user-wired.
    wire_future: bool,
    /// The largest size a stack may grow to (RLIMIT_STACK); `u64::MAX` for no limit.
    stack_limit: u64,
    /// Stack growth step (`sgrowsiz`).
    stack_growth: u64,
    journal: Vec<Undo<O>>,
    effects: Vec<Effect<O>>,
    /// Counters before the last operation, for `undo`.
    saved: (u64, u64, u64, bool),
    /// Whether the last call changed the map and recorded how to revert it (`undo` has work).
    undoable: bool,
    /// Changes the current operation made (journaled or not): whether the timestamp moves.
    steps: usize,
    /// Whether operations record their undo journal and effects; off inside [`VmMap::replay`].
    recording: bool,
}

impl<O: MapObject> Clone for VmMap<O> {
    fn clone(&self) -> Self {
        VmMap {
            store: self.store.clone(),
            min: self.min,
            max: self.max,
            page_size: self.page_size,
            size: self.size,
            wired: self.wired,
            timestamp: self.timestamp,
            wire_future: self.wire_future,
            stack_limit: self.stack_limit,
            stack_growth: self.stack_growth,
            // A copy keeps the room reserved for operations that must not allocate.
            journal: Vec::with_capacity(self.journal.capacity()),
            effects: Vec::with_capacity(self.effects.capacity()),
            saved: (self.size, self.wired, self.timestamp, self.wire_future),
            undoable: false,
            steps: 0,
            recording: true,
        }
    }
}

impl<O: MapObject> VmMap<O> {
    /// An empty map of `[min, max)` with 4 KiB pages (`vm_map_create` / `vm_map_init`).
    ///
    /// `min` and `max` must be page-aligned with `min < max`, else `InvalidArgument`.
    pub fn new(min: u64, max: u64) -> Result<Self, VmError> {
        Self::with_page_size(min, max, PAGE_SIZE)
    }

    /// An empty map of `[min, max)` with pages of `page_size` bytes (a power of two, e.g. 16 KiB).
    pub fn with_page_size(min: u64, max: u64, page_size: u64) -> Result<Self, VmError> {
        if !page_size.is_power_of_two()
            || !min.is_multiple_of(page_size)
            || !max.is_multiple_of(page_size)
            || min >= max
        {
            return Err(VmError::InvalidArgument);
        }
        Ok(VmMap {
            store: Tree::new(min, max),
            min,
            max,
            page_size,
            size: 0,
            wired: 0,
            timestamp: 0,
            wire_future: false,
            stack_limit: u64::MAX,
            stack_growth: DEFAULT_STACK_GROWTH.max(page_size),
            journal: Vec::new(),
            effects: Vec::new(),
            saved: (0, 0, 0, false),
            undoable: false,
            steps: 0,
            recording: true,
        })
    }

    /// Lowest address of the map (`vm_map_min`).
    pub fn min(&self) -> u64 {
        self.min
    }

    /// One past the highest address of the map (`vm_map_max`).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The page size every range must be aligned to.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Number of entries (`nentries`).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether the map has no entry.
    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// Bytes mapped (`size`).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes wired (kernel or user).
    pub fn wired_size(&self) -> u64 {
        self.wired
    }

    /// Version number, bumped by every successful change (`timestamp`).
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The entries in address order.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &Entry<O>> + '_ {
        self.store.iter()
    }

    /// The entries overlapping `range`, in address order (O(log n + k)).
    pub fn overlapping(&self, range: Range<u64>) -> impl Iterator<Item = &Entry<O>> + '_ {
        self.store.overlapping(range.start, range.end)
    }

    /// The free gaps of the map in address order, each shortened by the stack reservation above it.
    pub fn holes(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.store.gaps().map(|(s, e)| s..e)
    }

    /// The size of the largest gap [`VmMap::find_space`] could use.
    pub fn largest_gap(&self) -> u64 {
        self.store.largest_gap()
    }

    /// The effects of the last successful mutating operation, in the order the OS should apply them.
    /// Empty after a failed operation.
    pub fn effects(&self) -> &[Effect<O>] {
        &self.effects
    }

    /// Takes the effects of the last operation, leaving none.
    pub fn take_effects(&mut self) -> Vec<Effect<O>> {
        core::mem::take(&mut self.effects)
    }

    /// Whether new mappings are user-wired (`MAP_WIREFUTURE`, set by `mlockall(MCL_FUTURE)`).
    pub fn wire_future(&self) -> bool {
        self.wire_future
    }

    /// Sets or clears `MAP_WIREFUTURE` (the seed's map flag, set by `mlockall(MCL_FUTURE)`). It is map
    /// state: a call that changes it moves the timestamp and is reverted by [`VmMap::undo`]; setting
    /// it to what it already is changes nothing.
    pub fn set_wire_future(&mut self, on: bool) {
        self.begin();
        if self.wire_future != on {
            self.wire_future = on;
            self.steps += 1;
        }
        self.commit();
    }

    /// The largest size a stack may reach by growth (RLIMIT_STACK); `u64::MAX` means no limit.
    pub fn stack_limit(&self) -> u64 {
        self.stack_limit
    }

    /// Sets the stack size limit (RLIMIT_STACK). A process limit, not map state: the timestamp stays
    /// and [`VmMap::undo`] has nothing to revert afterwards.
    pub fn set_stack_limit(&mut self, bytes: u64) {
        self.begin();
        self.stack_limit = bytes;
    }

    /// The stack growth step (`sgrowsiz`), 64 KiB by default.
    pub fn stack_growth(&self) -> u64 {
        self.stack_growth
    }

    /// Sets the stack growth step; rounded up to whole pages, at least one page. A setting, not map
    /// state, as [`VmMap::set_stack_limit`].
    pub fn set_stack_growth(&mut self, bytes: u64) {
        self.begin();
        self.stack_growth = self.round_up(bytes).unwrap_or(!(self.page_size - 1)).max(self.page_size);
    }

    /// Reserves entries so that the next `n` insertions (including the node splits they cause)
    /// allocate nothing (`vm_map_entry_reserve`); `ResourceShortage` if memory cannot be had.
    pub fn reserve(&mut self, n: usize) -> Result<(), VmError> {
        self.store.reserve(n).map_err(|StoreFull| VmError::ResourceShortage)
    }

    /// Gives reserved entries back, keeping a small slop (`vm_map_entry_release`).
    pub fn release(&mut self) {
        self.store.release();
    }

    /// Allows or forbids the map to allocate. While forbidden (a signal handler growing a stack, say),
    /// operations use only entries reserved ahead and fail with `ResourceShortage` when those run out,
    /// changing nothing. The journal and effect lists must also have room: reserve before forbidding.
    pub fn set_alloc_allowed(&mut self, allowed: bool) {
        self.store.set_alloc_allowed(allowed);
    }

    /// Makes room in the journal and effect lists for operations that must not allocate.
    pub fn reserve_journal(&mut self, n: usize) {
        self.journal.reserve(n.saturating_sub(self.journal.len()));
        self.effects.reserve(n.saturating_sub(self.effects.len()));
    }

    /// Runs `op` (calls on this map) without recording an undo journal or effects (no seed
    /// counterpart: the seed has one map per address space, where vmspace keeps two for lock-free
    /// lookups): for a replica
    /// brought up to date by repeating, call for call, what its original did successfully (the second
    /// copy of a left-right pair). The map, its counters and its timestamp change exactly as they
    /// would otherwise; afterwards [`VmMap::effects`] is empty and [`VmMap::undo`] has nothing to undo.
    /// Saves the journal's copies of every entry an operation replaces.
    pub fn replay<R>(&mut self, op: impl FnOnce(&mut Self) -> R) -> R {
        let was = core::mem::replace(&mut self.recording, false);
        let r = op(self);
        self.recording = was;
        self.journal.clear();
        self.effects.clear();
        self.undoable = false;
        r
    }

    /// Reverts the last call on the map if that call changed it (no seed counterpart: DragonFly undoes
    /// inside each operation, under the map lock): entries, counters, `wire_future` and timestamp are
    /// as they were before it, and its effects are dropped. For a caller whose OS step failed after the
    /// map decided.
    ///
    /// Reverted when it changed the map: `insert`, `map_anywhere` / `map_with`, `remove`, `protect`,
    /// `protect_max`, `inherit`, `madvise` (behaviour and flags), `wire`, `unwire`, `wire_kernel`,
    /// `unwire_kernel`, `wire_all`, `unwire_all` (its wiring and `wire_future`, together), `guard`,
    /// `unguard`, `seal`, `submap`, `stack` / `stack_anywhere`, `grow_stack`, `lookup` (a write that
    /// made a needs-copy entry private), `fork` (the parent's copy-on-write marks; the child is the
    /// caller's) and `set_wire_future`.
    ///
    /// Returns `false`, changing nothing, when the last such call failed, changed nothing (the
    /// timestamp did not move: a no-op, memory advice, `clean`, a lookup that resolved nothing), was
    /// `set_stack_limit` or `set_stack_growth` (limits, not map state), ran inside [`VmMap::replay`], or
    /// was itself an `undo` (one level only). It never reaches further back: after a call that changed
    /// nothing, the call before it stays done, as its OS step succeeded. Queries (`&self`) and the calls
    /// about the map's own memory (`reserve`, `release`, `reserve_journal`, `set_alloc_allowed`,
    /// `take_effects`) are not calls on the map in this sense and leave the undo as it was.
    pub fn undo(&mut self) -> bool {
        if !self.undoable {
            return false;
        }
        self.rollback();
        self.undoable = false;
        self.effects.clear();
        true
    }

    /// Puts back every journaled entry and the counters saved by `begin`.
    fn rollback(&mut self) {
        while let Some(step) = self.journal.pop() {
            match step {
                Undo::Inserted(start) => {
                    self.store.remove(start);
                }
                Undo::Removed(item) => self.store.insert(item),
            }
        }
        (self.size, self.wired, self.timestamp, self.wire_future) = self.saved;
    }

    // ---- validation ----

    fn aligned(&self, x: u64) -> bool {
        x & (self.page_size - 1) == 0
    }

    fn round_up(&self, x: u64) -> Option<u64> {
        Some(x.checked_add(self.page_size - 1)? & !(self.page_size - 1))
    }

    /// Checks a range's shape: `InvalidArgument` if inverted or unaligned, then `Ok(true)` if it is
    /// empty, then `InvalidAddress` if it leaves `[min, max)`.
    fn check_range(&self, r: &Range<u64>) -> Result<bool, VmError> {
        if r.end < r.start || !self.aligned(r.start) || !self.aligned(r.end) {
            return Err(VmError::InvalidArgument);
        }
        if r.start == r.end {
            return Ok(true);
        }
        if r.start < self.min || r.end > self.max {
            return Err(VmError::InvalidAddress);
        }
        Ok(false)
    }

    /// Checks that every page of `r` is mapped and every entry passes `ok`; the first failure in address
    /// order is returned. Holes are `InvalidAddress`; a submap entry `r` covers only part of is
    /// `InvalidArgument` (submap entries never merge, so a clip would split one for good).
    fn check_mapped(
        &self,
        r: &Range<u64>,
        mut ok: impl FnMut(&Entry<O>) -> Result<(), VmError>,
    ) -> Result<usize, VmError> {
        let mut at = r.start;
        let mut n = 0;
        for e in self.store.overlapping(r.start, r.end) {
            if e.start > at {
                return Err(VmError::InvalidAddress);
            }
            if Self::partial_submap(e, r) {
                return Err(VmError::InvalidArgument);
            }
            ok(e)?;
            at = e.end;
            n += 1;
        }
        if at < r.end {
            return Err(VmError::InvalidAddress);
        }
        Ok(n)
    }

    /// Whether `e` is a submap entry that `r` covers only part of.
    fn partial_submap(e: &Entry<O>, r: &Range<u64>) -> bool {
        matches!(e.value.kind, MapKind::Submap(_)) && (e.start < r.start || e.end > r.end)
    }

    /// Makes sure the store can take `n` more entries without allocating, or reports why not.
    fn ensure(&mut self, n: usize) -> Result<(), VmError> {
        self.store.ensure_spare(n).map_err(|StoreFull| VmError::ResourceShortage)
    }

    /// Starts a mutating operation: clears the journal and effects (the last call's undo is gone),
    /// saves the counters.
    fn begin(&mut self) {
        self.journal.clear();
        self.effects.clear();
        self.undoable = false;
        self.steps = 0;
        self.saved = (self.size, self.wired, self.timestamp, self.wire_future);
    }

    /// Ends a successful mutating operation: the timestamp moves, and `undo` may revert it, if the map
    /// changed.
    fn commit(&mut self) {
        if self.steps > 0 {
            self.timestamp = self.timestamp.wrapping_add(1);
            self.undoable = self.recording;
        }
    }

    // ---- journaled primitives: they cannot fail ----

    /// Journals that an item now starts at `start` (undo removes it).
    fn log_inserted(&mut self, start: u64) {
        self.steps += 1;
        if self.recording {
            self.journal.push(Undo::Inserted(start));
        }
    }

    /// Journals the item at `start` as it is now, before it is replaced or removed (undo puts it back).
    fn log_replaced(&mut self, start: u64) {
        self.steps += 1;
        if self.recording {
            let old = self.store.get(start).expect("log: the caller found this entry").clone();
            self.journal.push(Undo::Removed(old));
        }
    }

    /// Journals `e`, just taken out of the store (undo puts it back).
    fn log_removed(&mut self, e: Entry<O>) {
        self.steps += 1;
        if self.recording {
            self.journal.push(Undo::Removed(e));
        }
    }

    /// [`VmMap::log_replaced`] for the item at `pos`.
    fn log_replaced_at(&mut self, pos: tree::Pos) {
        self.steps += 1;
        if self.recording {
            let old = self.store.item(pos).expect("log: the caller found this entry").clone();
            self.journal.push(Undo::Removed(old));
        }
    }

    /// Counts `len` bytes in, wired or not.
    fn count_in(&mut self, len: u64, wired: bool) {
        self.size += len;
        if wired {
            self.wired += len;
        }
    }

    /// Counts `len` bytes out, wired or not.
    fn count_out(&mut self, len: u64, wired: bool) {
        self.size -= len;
        if wired {
            self.wired -= len;
        }
    }

    fn put(&mut self, e: Entry<O>) {
        self.count_in(e.len(), e.value.wired_count > 0);
        self.log_inserted(e.start);
        self.store.insert(e);
    }

    /// Removes the entry at `start`; returns its range. The journal keeps the entry itself.
    fn take(&mut self, start: u64) -> Range<u64> {
        let e = self.store.remove(start).expect("take: the caller found this entry");
        self.count_out(e.len(), e.value.wired_count > 0);
        let range = e.range();
        self.log_removed(e);
        range
    }

    /// Changes the attributes of the entry at `start` in place.
    fn update(&mut self, start: u64, f: impl FnOnce(&mut Attrs<O>)) {
        let old = self.store.get(start).expect("update: the caller found this entry");
        let (len, was_wired) = (old.len(), old.value.wired_count > 0);
        self.log_replaced(start);
        self.log_inserted(start);
        let v = self.store.value_mut(start).expect("update: entry present");
        f(v);
        let now_wired = v.wired_count > 0;
        self.count_wiring(len, was_wired, now_wired);
    }

    /// Keeps `wired` right when `len` bytes go from wired (`was`) or not to wired (`now`) or not.
    fn count_wiring(&mut self, len: u64, was: bool, now: bool) {
        match (was, now) {
            (false, true) => self.wired += len,
            (true, false) => self.wired -= len,
            _ => {}
        }
    }

    /// Moves the bounds (and reservation) of the entry at `start`, adjusting its offset by how far the
    /// start moved.
    fn reshape(&mut self, start: u64, new_start: u64, new_end: u64, reserve: u64) {
        let old = self.store.get(start).expect("reshape: the caller found this entry");
        let offset = if new_start >= old.start {
            old.value.offset.wrapping_add(new_start - old.start)
        } else {
            old.value.offset.wrapping_sub(old.start - new_start)
        };
        let (len, wired) = (old.len(), old.value.wired_count > 0);
        self.count_out(len, wired);
        self.log_replaced(start);
        // In place when the order of starts is kept (the tree checks), else a move.
        self.store.set_bounds(start, new_start, new_end, reserve);
        self.store.value_mut(new_start).expect("reshape: entry present").offset = offset;
        self.log_inserted(new_start);
        self.size += new_end - new_start;
        if wired {
            self.wired += new_end - new_start;
        }
    }

    /// Splits the entry containing `addr` at `addr` (`vm_map_clip_start` / `vm_map_clip_end`); the
    /// stack reservation stays with the lower half. A no-op at an entry boundary or in a hole.
    fn clip(&mut self, addr: u64) {
        let Some(e) = self.store.containing(addr) else { return };
        if e.start == addr {
            return;
        }
        let upper = {
            let mut u = e.clone();
            u.value.offset = u.value.offset.wrapping_add(addr - e.start);
            u.start = addr;
            u.reserve_below = 0;
            u
        };
        let (start, reserve) = (e.start, e.reserve_below);
        self.reshape(start, start, addr, reserve);
        self.put(upper);
    }

    /// Clips at both ends of `r`, so that every entry overlapping `r` lies inside it; returns the start
    /// of the first one (walk on with [`VmMap::next_inside`]).
    fn clip_range(&mut self, r: &Range<u64>) -> Option<u64> {
        self.clip(r.start);
        self.clip(r.end);
        self.store.ceil(r.start).filter(|e| e.start < r.end).map(|e| e.start)
    }

    /// The start of the entry after the one at `start`, if it begins before `end`.
    fn next_inside(&self, start: u64, end: u64) -> Option<u64> {
        self.store.next(start).filter(|e| e.start < end).map(|e| e.start)
    }

    /// Merges every mergeable pair of adjacent entries touching `[r.start, r.end]`
    /// (`vm_map_simplify_entry` over a range).
    fn simplify(&mut self, r: &Range<u64>) {
        // A walk by position: one search to start, one after each merge (which moves items), none
        // per step.
        let first = self.store.floor_pos(r.start.saturating_sub(1)).or_else(|| self.store.ceil_pos(r.start));
        let Some(mut pos) = first else { return };
        loop {
            let e = self.store.item(pos).expect("simplify: a live position");
            if e.start > r.end {
                return;
            }
            let Some(np) = self.store.next_pos(pos) else { return };
            let next = self.store.item(np).expect("simplify: a live position");
            if e.mergeable_with(next) {
                let (s, end, reserve, next_start) = (e.start, next.end, e.reserve_below, next.start);
                self.take(next_start);
                self.reshape(s, s, end, reserve);
                pos = self.store.floor_pos(s).expect("simplify: the merged entry");
            } else {
                pos = np;
            }
        }
    }

    /// Pushes an effect, extending the previous one when it is the same change on the adjacent range.
    fn effect(&mut self, fx: Effect<O>) {
        use Effect::*;
        if !self.recording {
            return;
        }
        if let Some(last) = self.effects.last_mut() {
            let joined = match (last, &fx) {
                (Unmap(a), Unmap(b))
                | (Wire(a), Wire(b))
                | (Unwire(a), Unwire(b))
                | (Guard(a), Guard(b))
                | (Unguard(a), Unguard(b))
                | (Seal(a), Seal(b))
                | (WriteProtect(a), WriteProtect(b))
                    if a.end == b.start =>
                {
                    a.end = b.end;
                    true
                }
                (Protect(a, p), Protect(b, q)) if a.end == b.start && p == q => {
                    a.end = b.end;
                    true
                }
                (Inherit(a, p), Inherit(b, q)) if a.end == b.start && p == q => {
                    a.end = b.end;
                    true
                }
                _ => false,
            };
            if joined {
                return;
            }
        }
        self.effects.push(fx);
    }

    /// Checks every invariant of the map (see the module documentation). The error names the first
    /// violation. Costs O(n); meant for tests.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        self.store.check()?;
        let (mut size, mut wired) = (0u64, 0u64);
        let mut prev: Option<&Entry<O>> = None;
        for e in self.store.iter() {
            if !self.aligned(e.start) || !self.aligned(e.end) || !self.aligned(e.reserve_below) {
                return Err("entry not page-aligned");
            }
            if e.start < self.min || e.end > self.max {
                return Err("entry outside [min, max)");
            }
            if !e.value.max_prot.contains(e.value.prot) {
                return Err("prot exceeds max_prot");
            }
            if e.value.user_wired && e.value.wired_count == 0 {
                return Err("user-wired entry with wired_count 0");
            }
            if e.reserve_below > 0 && !e.value.flags.contains(EntryFlags::STACK) {
                return Err("stack reservation on a non-stack entry");
            }
            let floor = prev.map_or(self.min, |p| p.end);
            if e.start - floor < e.reserve_below {
                return Err("stack reservation overlaps an entry or leaves the map");
            }
            if let Some(p) = prev
                && p.mergeable_with(e)
            {
                return Err("two adjacent mergeable entries left unmerged");
            }
            size += e.len();
            if e.value.wired_count > 0 {
                wired += e.len();
            }
            prev = Some(e);
        }
        if size != self.size {
            return Err("size counter differs from the entries");
        }
        if wired != self.wired {
            return Err("wired counter differs from the entries");
        }
        Ok(())
    }
}
