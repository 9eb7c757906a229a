//! The map's operations on ranges: insert, find_space, remove, protect, inherit, madvise, wiring,
//! guard, seal, submap. Each validates everything first, then changes the map (see `mod.rs`).

use core::ops::Range;

use super::effect::Effect;
use super::entry::{Attrs, Entry};
use super::error::VmError;
use super::store::GapRequest;
use super::types::{Advice, Behavior, EntryFlags, Inherit, MapKind, MapObject, MapSpec, Prot, SubmapId};
use super::{Item, VmMap};

/// A free-space request with every option (`vm_map_findspace`'s start, length, alignment and flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindSpec {
    /// Bytes wanted: page-aligned, non-zero.
    pub len: u64,
    /// Alignment of the result: a power of two; values below the page size mean page alignment.
    pub align: u64,
    /// Preferred address: bottom-up, the first fit at or above it is taken before any fit below it;
    /// top-down, the last fit ending at or below it before any fit above it.
    pub hint: Option<u64>,
    /// Hard bounds `[lo, hi)` the result must lie in (default: the whole map).
    pub bounds: Option<Range<u64>>,
    /// Highest fit instead of lowest (Linux's default layout; xnu's `last_free`).
    pub top_down: bool,
}

impl FindSpec {
    /// `len` bytes, page-aligned, first fit from the bottom of the map.
    pub fn new(len: u64) -> Self {
        FindSpec { len, align: 0, hint: None, bounds: None, top_down: false }
    }
}

impl<O: MapObject> VmMap<O> {
    /// Maps `range` with `spec` (`vm_map_insert`).
    ///
    /// Errors: unaligned, inverted or empty range, or an offset that is unaligned or overflows →
    /// `InvalidArgument`; outside `[min, max)` → `InvalidAddress`; `prot ⊄ max_prot` →
    /// `ProtectionFailure`; any page already mapped → `NoSpace` (touching is fine). Mapping into a
    /// stack's growth reservation is allowed and shrinks the reservation. The new entry merges with
    /// equal neighbours. With `wire_future` set it is user-wired.
    pub fn insert(&mut self, range: Range<u64>, spec: MapSpec<O>) -> Result<(), VmError> {
        self.begin();
        self.check_insert(&range, &spec)?;
        self.ensure(1)?;
        self.begin();
        self.store.begin_batch();
        self.insert_checked(range, spec);
        self.store.end_batch();
        self.commit();
        Ok(())
    }

    fn check_insert(&self, range: &Range<u64>, spec: &MapSpec<O>) -> Result<(), VmError> {
        if self.check_range(range)? {
            return Err(VmError::InvalidArgument);
        }
        if !spec.object.is_anonymous()
            && (!self.aligned(spec.offset) || spec.offset.checked_add(range.end - range.start).is_none())
        {
            return Err(VmError::InvalidArgument);
        }
        if !spec.max_prot.contains(spec.prot) {
            return Err(VmError::ProtectionFailure);
        }
        if self.store.overlapping(range.start, range.end).next().is_some() {
            return Err(VmError::NoSpace);
        }
        Ok(())
    }

    /// Inserts a validated range: shrinks an intruded stack reservation, wires under `wire_future`,
    /// records effects, merges.
    pub(super) fn insert_checked(&mut self, range: Range<u64>, spec: MapSpec<O>) {
        if let Some(above) = self.store.ceil(range.end)
            && above.start - above.reserve_below < range.end
        {
            let (s, e) = (above.start, above.end);
            self.reshape(s, s, e, s - range.end);
        }
        let mut attrs = Attrs::from_spec(spec);
        if self.wire_future {
            attrs.wired_count = 1;
            attrs.user_wired = true;
        }
        let wired = attrs.wired_count > 0;
        let item = Item { start: range.start, end: range.end, reserve_below: 0, value: attrs };
        self.effect(Effect::Map(item.clone()));
        if wired {
            self.effect(Effect::Wire(range.clone()));
        }
        self.put(item);
        self.simplify(&range);
    }

    /// The lowest page-aligned address where `len` bytes aligned to `align` fit (`vm_map_findspace`,
    /// first fit, bottom-up). Never inside a stack's growth reservation.
    ///
    /// Errors: `len` zero or unaligned, `align` not a power of two → `InvalidArgument`; no gap fits →
    /// `NoSpace`.
    pub fn find_space(&self, len: u64, align: u64) -> Result<u64, VmError> {
        self.find_space_with(&FindSpec { align, ..FindSpec::new(len) })
    }

    /// [`VmMap::find_space`] with a hint, bounds and direction.
    pub fn find_space_with(&self, spec: &FindSpec) -> Result<u64, VmError> {
        if spec.len == 0 || !self.aligned(spec.len) || (spec.align > 1 && !spec.align.is_power_of_two()) {
            return Err(VmError::InvalidArgument);
        }
        let align = spec.align.max(self.page_size);
        let (lo, hi) = match &spec.bounds {
            Some(b) => {
                if b.end < b.start {
                    return Err(VmError::InvalidArgument);
                }
                (b.start.max(self.min), b.end.min(self.max))
            }
            None => (self.min, self.max),
        };
        let req = |lo: u64, hi: u64| GapRequest { len: spec.len, align, lo, hi, top_down: spec.top_down };
        let found = match spec.hint {
            Some(h) if !spec.top_down => {
                self.store.find_gap(&req(h.max(lo), hi)).or_else(|| self.store.find_gap(&req(lo, hi)))
            }
            Some(h) => self.store.find_gap(&req(lo, h.min(hi))).or_else(|| self.store.find_gap(&req(lo, hi))),
            None => self.store.find_gap(&req(lo, hi)),
        };
        found.ok_or(VmError::NoSpace)
    }

    /// Finds space for `len` bytes aligned to `align` and maps it with `spec` (`vm_map_find` with
    /// `fitit`). Returns the address.
    pub fn map_anywhere(&mut self, len: u64, align: u64, spec: MapSpec<O>) -> Result<u64, VmError> {
        self.map_with(&FindSpec { align, ..FindSpec::new(len) }, spec)
    }

    /// [`VmMap::map_anywhere`] with a hint, bounds and direction.
    pub fn map_with(&mut self, find: &FindSpec, spec: MapSpec<O>) -> Result<u64, VmError> {
        self.begin();
        let at = self.find_space_with(find)?;
        self.insert(at..at + find.len, spec)?;
        Ok(at)
    }

    /// Unmaps every page of `range` (`vm_map_remove` / `vm_map_delete`). Holes are fine (POSIX,
    /// FreeBSD); wired memory is unwired first, silently, as DragonFly does.
    ///
    /// Errors: unaligned or inverted → `InvalidArgument`; outside the map → `InvalidAddress`; any sealed
    /// page → `Sealed`; a submap only partly covered → `InvalidArgument` (a whole one is removed). A
    /// stack's reservation goes with the entry that carries it (its lowest piece).
    pub fn remove(&mut self, range: Range<u64>) -> Result<(), VmError> {
        self.begin();
        if self.check_range(&range)? {
            return Ok(());
        }
        for e in self.store.overlapping(range.start, range.end) {
            if e.value.flags.contains(EntryFlags::SEALED) {
                return Err(VmError::Sealed);
            }
            if Self::partial_submap(e, &range) {
                return Err(VmError::InvalidArgument);
            }
        }
        self.remove_checked(&range)
    }

    /// Takes every entry of a validated `range` out (clipping at its ends), an `Unmap` effect each.
    pub(super) fn remove_checked(&mut self, range: &Range<u64>) -> Result<(), VmError> {
        self.ensure(2)?;
        self.begin();
        self.store.begin_batch();
        self.clip(range.start);
        self.clip(range.end);
        // The successor comes from the entry's position (no search); a further entry is found again by
        // its start once the take has moved items.
        let mut cur = self.store.ceil_pos(range.start);
        while let Some(at) = cur {
            let e = self.store.item(at).expect("remove: a live position");
            if e.start >= range.end {
                break;
            }
            let start = e.start;
            let next = self.store.next_pos(at).and_then(|n| self.store.item(n)).map(|n| n.start);
            let r = self.take(start);
            self.effect(Effect::Unmap(r));
            cur = next.filter(|&n| n < range.end).and_then(|n| self.store.ceil_pos(n));
        }
        self.store.end_batch();
        self.commit();
        Ok(())
    }

    /// Sets the protection of every page of `range` (`vm_map_protect` with `set_max` false).
    ///
    /// The whole range must be mapped (`InvalidAddress` otherwise: xnu's atomic rule, stricter than
    /// DragonFly's hole skipping). `prot ⊄ max_prot` of any entry → `ProtectionFailure`; any submap,
    /// whole or in part → `InvalidArgument` (as DragonFly); sealed → `Sealed`. Nothing changes on error.
    /// Pieces merge back with equal neighbours, so protecting a page and protecting it back leaves one
    /// entry. Protecting to the protection already there changes nothing: no effect, no timestamp step,
    /// nothing for [`VmMap::undo`].
    pub fn protect(&mut self, range: Range<u64>, prot: Prot) -> Result<(), VmError> {
        self.change(
            &range,
            |e| {
                Self::modifiable(e)?;
                if e.value.max_prot.contains(prot) { Ok(()) } else { Err(VmError::ProtectionFailure) }
            },
            |a| {
                let changed = a.prot != prot;
                a.prot = prot;
                changed.then_some(Effect::Protect(0..0, prot))
            },
        )
    }

    /// Lowers the maximum protection of every page of `range` (`vm_map_protect` with `set_max` true);
    /// the current protection becomes `old ∩ max_prot`.
    ///
    /// Raising the maximum (`max_prot ⊄ old max`) → `ProtectionFailure`; otherwise as
    /// [`VmMap::protect`] (submaps refused, the same maximum a no-op).
    pub fn protect_max(&mut self, range: Range<u64>, max_prot: Prot) -> Result<(), VmError> {
        self.change(
            &range,
            |e| {
                Self::modifiable(e)?;
                if e.value.max_prot.contains(max_prot) { Ok(()) } else { Err(VmError::ProtectionFailure) }
            },
            |a| {
                a.max_prot = max_prot;
                let prot = a.prot & max_prot;
                let changed = a.prot != prot;
                a.prot = prot;
                changed.then_some(Effect::Protect(0..0, prot))
            },
        )
    }

    fn modifiable(e: &Entry<O>) -> Result<(), VmError> {
        if matches!(e.value.kind, MapKind::Submap(_)) {
            return Err(VmError::InvalidArgument);
        }
        if e.value.flags.contains(EntryFlags::SEALED) {
            return Err(VmError::Sealed);
        }
        Ok(())
    }

    /// Sets the inheritance of every page of `range` (`vm_map_inherit`).
    ///
    /// The whole range must be mapped (`InvalidAddress`); sealed → `Sealed`; `Inherit::Zero` on memory
    /// that is not anonymous → `InvalidArgument` (Linux's `MADV_WIPEONFORK` rule); part of a submap
    /// entry → `InvalidArgument` (a whole one takes the inheritance, as in DragonFly). The inheritance
    /// already there is a no-op.
    pub fn inherit(&mut self, range: Range<u64>, inherit: Inherit) -> Result<(), VmError> {
        self.change(
            &range,
            |e| {
                if e.value.flags.contains(EntryFlags::SEALED) {
                    return Err(VmError::Sealed);
                }
                if inherit == Inherit::Zero && !e.value.object.is_anonymous() {
                    return Err(VmError::InvalidArgument);
                }
                Ok(())
            },
            |a| {
                let changed = a.inherit != inherit;
                a.inherit = inherit;
                changed.then_some(Effect::Inherit(0..0, inherit))
            },
        )
    }

    /// Applies `advice` to every page of `range` (`vm_map_madvise`).
    ///
    /// The whole range must be mapped (`InvalidAddress`). Advice that changes entries (behaviour,
    /// NOSYNC, NOCOREDUMP) clips and merges, skipping whole submap entries (as DragonFly), and is a no-op
    /// where every entry already has it; advice on memory (WillNeed, DontNeed, Free) leaves the map as
    /// it is and only yields an effect. Part of a submap entry → `InvalidArgument`; destructive advice
    /// on sealed memory → `Sealed`; DontNeed or Free on wired memory, and Free on memory that is not
    /// anonymous → `InvalidArgument` (Linux's EINVAL).
    pub fn madvise(&mut self, range: Range<u64>, advice: Advice) -> Result<(), VmError> {
        self.begin();
        let check = |e: &Entry<O>| {
            if advice.is_destructive() && e.value.flags.contains(EntryFlags::SEALED) {
                return Err(VmError::Sealed);
            }
            if matches!(advice, Advice::DontNeed | Advice::Free) && e.value.wired_count > 0 {
                return Err(VmError::InvalidArgument);
            }
            if advice == Advice::Free && !e.value.object.is_anonymous() {
                return Err(VmError::InvalidArgument);
            }
            Ok(())
        };
        if !advice.changes_entries() {
            if self.check_range(&range)? {
                return Ok(());
            }
            self.check_mapped(&range, check)?;
            self.begin();
            self.effect(Effect::Advise(range, advice));
            self.commit();
            return Ok(());
        }
        let r = range.clone();
        self.change(&range, check, |a| {
            if matches!(a.kind, MapKind::Submap(_)) {
                return None;
            }
            let before = (a.behavior, a.flags);
            match advice {
                Advice::Normal => a.behavior = Behavior::Normal,
                Advice::Sequential => a.behavior = Behavior::Sequential,
                Advice::Random => a.behavior = Behavior::Random,
                Advice::NoSync => a.flags.set(EntryFlags::NOSYNC, true),
                Advice::AutoSync => a.flags.set(EntryFlags::NOSYNC, false),
                Advice::NoCore => a.flags.set(EntryFlags::NOCOREDUMP, true),
                Advice::Core => a.flags.set(EntryFlags::NOCOREDUMP, false),
                Advice::WillNeed | Advice::DontNeed | Advice::Free => {}
            }
            (before != (a.behavior, a.flags)).then_some(Effect::Advise(0..0, advice))
        })?;
        // One effect for the whole range: the OS applies advice to a range, not to entries.
        if !self.effects.is_empty() {
            self.effects.clear();
            self.effects.push(Effect::Advise(r, advice));
        }
        Ok(())
    }

    /// User-wires every page of `range` (`mlock`; DragonFly's `vm_map_unwire(.., FALSE)`).
    ///
    /// User wiring is one boolean layer over the kernel's wired count: wiring user-wired memory again is
    /// a no-op, and one [`VmMap::unwire`] undoes any number of `wire`s. A writable copy-on-write entry is
    /// made private now (NEEDS_COPY cleared), as wired memory must not be copied at fault time. The whole
    /// range must be mapped (`InvalidAddress`); any submap, whole or in part → `InvalidArgument`.
    pub fn wire(&mut self, range: Range<u64>) -> Result<(), VmError> {
        self.change(&range, Self::wirable, |a| {
            if a.user_wired {
                return None;
            }
            a.user_wired = true;
            a.wired_count += 1;
            if a.prot.contains(Prot::WRITE) {
                a.flags.set(EntryFlags::NEEDS_COPY, false);
            }
            (a.wired_count == 1).then_some(Effect::Wire(0..0))
        })
    }

    /// Whether more wiring can go on `e`: not a submap (its pages are the submap's to wire, and a
    /// silent skip would be a lie about wiring), and the count has room.
    fn wirable(e: &Entry<O>) -> Result<(), VmError> {
        if matches!(e.value.kind, MapKind::Submap(_)) {
            return Err(VmError::InvalidArgument);
        }
        if e.value.wired_count == u32::MAX { Err(VmError::ResourceShortage) } else { Ok(()) }
    }

    /// Undoes the user wiring of every page of `range` (`munlock`). Memory that is not user-wired is
    /// left as it is, without error (Linux and FreeBSD; DragonFly refuses), so a whole submap entry
    /// (never wired) is too. The whole range must be mapped (`InvalidAddress`); part of a submap entry →
    /// `InvalidArgument`.
    pub fn unwire(&mut self, range: Range<u64>) -> Result<(), VmError> {
        self.change(
            &range,
            |_| Ok(()),
            |a| {
                if !a.user_wired {
                    return None;
                }
                a.user_wired = false;
                a.wired_count -= 1;
                (a.wired_count == 0).then_some(Effect::Unwire(0..0))
            },
        )
    }

    /// Adds a kernel wiring to every page of `range` (`vm_map_wire`); kernel wirings nest. Errors as
    /// [`VmMap::wire`].
    pub fn wire_kernel(&mut self, range: Range<u64>) -> Result<(), VmError> {
        self.change(&range, Self::wirable, |a| {
            a.wired_count += 1;
            if a.prot.contains(Prot::WRITE) {
                a.flags.set(EntryFlags::NEEDS_COPY, false);
            }
            (a.wired_count == 1).then_some(Effect::Wire(0..0))
        })
    }

    /// Removes a kernel wiring from every page of `range` (`vm_map_wire` with `KM_PAGEABLE`). Every page
    /// must carry one (`InvalidArgument` otherwise, nothing changed: a submap entry never does).
    pub fn unwire_kernel(&mut self, range: Range<u64>) -> Result<(), VmError> {
        self.change(
            &range,
            |e| {
                if e.value.wired_count > u32::from(e.value.user_wired) {
                    Ok(())
                } else {
                    Err(VmError::InvalidArgument)
                }
            },
            |a| {
                a.wired_count -= 1;
                (a.wired_count == 0).then_some(Effect::Unwire(0..0))
            },
        )
    }

    /// User-wires every mapped page (`mlockall(MCL_CURRENT)`, DragonFly `vm_map_wire` over the whole
    /// map); holes and submap entries are skipped. One call: one timestamp step, and [`VmMap::undo`]
    /// reverts all of it.
    pub fn wire_all(&mut self) -> Result<(), VmError> {
        self.begin();
        self.for_all_entries(|m, r| m.wire(r))?;
        self.commit();
        Ok(())
    }

    /// Clears `wire_future` and undoes the user wiring of every page (`munlockall`). One call: one
    /// timestamp step, and [`VmMap::undo`] puts back the wiring and `wire_future` together.
    pub fn unwire_all(&mut self) -> Result<(), VmError> {
        self.begin();
        self.for_all_entries(|m, r| m.unwire(r))?;
        // Last, so a failure above has no setting to put back; `begin` saved it for `undo`.
        if self.wire_future {
            self.wire_future = false;
            self.steps += 1;
        }
        self.commit();
        Ok(())
    }

    /// Applies `op` to each maximal run of mapped pages outside submaps (wiring a submap is the
    /// submap's business), as one operation: after the caller's `begin`,
    /// it leaves one journal, one set of effects, the counters saved before the call and the steps
    /// taken, for the caller's `commit`. A failure rolls back the runs already done.
    fn for_all_entries(
        &mut self,
        mut op: impl FnMut(&mut Self, Range<u64>) -> Result<(), VmError>,
    ) -> Result<(), VmError> {
        let runs: alloc::vec::Vec<Range<u64>> = {
            let mut v: alloc::vec::Vec<Range<u64>> = alloc::vec::Vec::new();
            for e in self.store.iter().filter(|e| !matches!(e.value.kind, MapKind::Submap(_))) {
                match v.last_mut() {
                    Some(r) if r.end == e.start => r.end = e.end,
                    _ => v.push(e.range()),
                }
            }
            v
        };
        let (mut journal, mut effects) = (alloc::vec::Vec::new(), alloc::vec::Vec::new());
        // Each run's call begins (overwriting `saved` and `steps`) and commits (moving the timestamp)
        // on its own: keep the whole call's, so it is one step.
        let (saved, ts) = (self.saved, self.timestamp);
        let mut steps = 0;
        for r in runs {
            let result = op(self, r);
            journal.append(&mut self.journal);
            effects.append(&mut self.effects);
            steps += self.steps;
            self.timestamp = ts;
            if let Err(err) = result {
                // Roll back the runs already done, so the whole call stays atomic. A replay keeps no
                // journal to roll back with (it repeats calls that succeeded): its counters must then
                // keep describing its entries.
                if self.recording {
                    self.journal = journal;
                    self.saved = saved;
                    self.rollback();
                }
                self.steps = 0;
                return Err(err);
            }
        }
        self.journal = journal;
        self.effects = effects;
        self.saved = saved;
        self.steps = steps;
        Ok(())
    }

    /// Writes back and optionally invalidates every page of `range` (`vm_map_clean`, `msync`). The map
    /// does not change; the effect tells the OS what to flush.
    ///
    /// The whole range must be mapped (`InvalidAddress`; DragonFly's msync says EINVAL, POSIX and Linux
    /// ENOMEM); any submap, whole or in part → `InvalidArgument`; `invalidate` over wired memory →
    /// `InvalidArgument` (Linux and FreeBSD answer EBUSY).
    pub fn clean(&mut self, range: Range<u64>, invalidate: bool) -> Result<(), VmError> {
        self.begin();
        if self.check_range(&range)? {
            return Ok(());
        }
        self.check_mapped(&range, |e| {
            if matches!(e.value.kind, MapKind::Submap(_)) || (invalidate && e.value.wired_count > 0) {
                Err(VmError::InvalidArgument)
            } else {
                Ok(())
            }
        })?;
        self.effect(Effect::Clean(range, invalidate));
        Ok(())
    }

    /// Turns every page of `range` into a guard region (Linux `MADV_GUARD_INSTALL`): any access is a
    /// guard hit, and the contents are dropped. The whole range must be mapped; sealed → `Sealed`;
    /// any submap, whole or in part, or wired memory → `InvalidArgument` (Linux refuses guards on
    /// locked memory).
    pub fn guard(&mut self, range: Range<u64>) -> Result<(), VmError> {
        self.change(
            &range,
            |e| {
                Self::modifiable(e)?;
                if e.value.wired_count > 0 { Err(VmError::InvalidArgument) } else { Ok(()) }
            },
            |a| {
                let changed = !a.flags.contains(EntryFlags::GUARD);
                a.flags.set(EntryFlags::GUARD, true);
                changed.then_some(Effect::Guard(0..0))
            },
        )
    }

    /// Removes guard regions from `range` (Linux `MADV_GUARD_REMOVE`). The whole range must be mapped;
    /// sealed → `Sealed`; any submap → `InvalidArgument`. Where no guard is, nothing changes.
    pub fn unguard(&mut self, range: Range<u64>) -> Result<(), VmError> {
        self.change(&range, Self::modifiable, |a| {
            let changed = a.flags.contains(EntryFlags::GUARD);
            a.flags.set(EntryFlags::GUARD, false);
            changed.then_some(Effect::Unguard(0..0))
        })
    }

    /// Seals every page of `range` (Linux `mseal`): from now on it can never be unmapped, re-protected,
    /// given other inheritance, guarded or destructively advised. The whole range must be mapped; part
    /// of a submap entry → `InvalidArgument` (a whole one is sealed). Sealed memory stays as it is.
    pub fn seal(&mut self, range: Range<u64>) -> Result<(), VmError> {
        self.change(
            &range,
            |_| Ok(()),
            |a| {
                let changed = !a.flags.contains(EntryFlags::SEALED);
                a.flags.set(EntryFlags::SEALED, true);
                changed.then_some(Effect::Seal(0..0))
            },
        )
    }

    /// Hands `range` to a submap (`vm_map_submap`). The range must lie inside one entry that is
    /// anonymous, not copy-on-write, not wired, not sealed and not a stack's (`InvalidArgument`
    /// otherwise: a stack's growth would extend the submap); the entry is clipped to the range and
    /// becomes a submap entry that never merges and is never forked.
    /// No later range operation splits it: each refuses a range that covers only part of it.
    pub fn submap(&mut self, range: Range<u64>, submap: SubmapId) -> Result<(), VmError> {
        self.begin();
        if self.check_range(&range)? {
            return Ok(());
        }
        let e = self.store.containing(range.start).ok_or(VmError::InvalidAddress)?;
        if e.end < range.end {
            return Err(match self.check_mapped(&range, |_| Ok(())) {
                Err(VmError::InvalidAddress) => VmError::InvalidAddress,
                _ => VmError::InvalidArgument,
            });
        }
        let a = &e.value;
        if a.kind != MapKind::Normal
            || a.flags.intersects(EntryFlags::COW | EntryFlags::SEALED | EntryFlags::STACK)
            || !a.object.is_anonymous()
            || a.wired_count > 0
        {
            return Err(VmError::InvalidArgument);
        }
        self.ensure(2)?;
        self.begin();
        let mut cur = self.clip_range(&range);
        while let Some(s) = cur {
            self.update(s, |a| a.kind = MapKind::Submap(submap));
            cur = self.next_inside(s, range.end);
        }
        self.effect(Effect::Submap(range, submap));
        self.commit();
        Ok(())
    }

    /// The shared shape of every attribute change over a fully mapped range: check the range, check
    /// every entry with `check`, clip, apply `apply` to each piece (which returns the effect to record,
    /// with a placeholder range), merge.
    fn change(
        &mut self,
        range: &Range<u64>,
        mut check: impl FnMut(&Entry<O>) -> Result<(), VmError>,
        mut apply: impl FnMut(&mut Attrs<O>) -> Option<Effect<O>>,
    ) -> Result<(), VmError> {
        self.begin();
        if self.check_range(range)? {
            return Ok(());
        }
        if self.change_inside_one(range, &mut check, &mut apply)? {
            return Ok(());
        }
        // Whether `apply` alters any entry (tried on a copy): a call that alters none is a no-op, and
        // must not clip, journal or move the timestamp (clipping alone would leave a journal to undo).
        let mut changes = false;
        self.check_mapped(range, |e| {
            check(e)?;
            if !changes {
                let mut a = e.value.clone();
                let _ = apply(&mut a);
                changes = a != e.value;
            }
            Ok(())
        })?;
        if !changes {
            return Ok(());
        }
        self.ensure(2)?;
        self.begin();
        // Clips, updates and merges only move boundaries between touching entries: one batch fixes the
        // tree's gap summaries once at the end.
        self.store.begin_batch();
        let mut cur = self.clip_range(range);
        while let Some(s) = cur {
            let end = self.store.get(s).map_or(s, |e| e.end);
            let mut fx = None;
            self.update(s, |a| fx = apply(a));
            if let Some(fx) = fx {
                self.effect(with_range(fx, s..end));
            }
            cur = self.next_inside(s, range.end);
        }
        self.simplify(range);
        self.store.end_batch();
        self.commit();
        Ok(())
    }

    /// [`VmMap::change`] when `range` lies inside one entry and the change alters it: the same result
    /// (pieces, merges with the neighbours, counters, journal, effect) with one tree replacement of the
    /// run [P] E [N] by its pieces (`Tree::replace_run`: one shift inside a leaf), where the general
    /// path clips, updates and simplifies with a lookup per step. Returns `Ok(true)` when it handled the
    /// call (a change that alters nothing is handled by doing nothing), `Ok(false)`, having changed
    /// nothing, when the general path must run; errors are the general path's.
    ///
    /// Why the neighbours need only two checks: the map is kept maximally merged, so the entry's outer
    /// pieces, which keep its attributes, cannot merge with what was already next to it; and the middle
    /// piece differs from the outer ones in an attribute `mergeable_with` compares (every attribute but
    /// `offset`, which the change does not touch). Only the middle piece, when it reaches an end of the
    /// entry, can merge with the neighbour there.
    fn change_inside_one(
        &mut self,
        range: &Range<u64>,
        check: &mut impl FnMut(&Entry<O>) -> Result<(), VmError>,
        apply: &mut impl FnMut(&mut Attrs<O>) -> Option<Effect<O>>,
    ) -> Result<bool, VmError> {
        let (s, t) = (range.start, range.end);
        // Positions found here stay valid until `replace_run_at`: nothing in between changes the tree
        // (`ensure` may grow the arenas, which keeps every index).
        let Some(at) = self.store.containing_pos(s) else { return Ok(false) };
        let Some(e) = self.store.item(at) else { return Ok(false) };
        if t > e.end {
            return Ok(false);
        }
        if Self::partial_submap(e, range) {
            return Err(VmError::InvalidArgument);
        }
        check(e)?;
        let mut a = e.value.clone();
        let fx = apply(&mut a);
        if a == e.value {
            // A no-op: nothing to clip, journal, apply or time-stamp.
            return Ok(true);
        }
        let e = e.clone();
        let (lower, upper) = (s > e.start, t < e.end);
        a.offset = e.value.offset.wrapping_add(s - e.start);
        // The middle piece keeps the stack reservation only when it is the lowest piece.
        let mid = Item { start: s, end: t, reserve_below: if lower { 0 } else { e.reserve_below }, value: a };
        // The neighbours that absorb the middle piece: the one below, or the one above by its end.
        let prev = if lower {
            None
        } else {
            self.store.prev_pos(at).and_then(|pp| {
                let p = self.store.item(pp)?;
                (p.end == s && p.mergeable_with(&mid)).then(|| (pp, p.clone()))
            })
        };
        let next = if upper {
            None
        } else {
            self.store.next_pos(at).and_then(|np| {
                let n = self.store.item(np)?;
                (n.start == t && mid.mergeable_with(n)).then_some((np, n.end))
            })
        };
        self.ensure(2)?;
        self.begin();
        self.store.begin_batch();
        let (was_wired, now_wired) = (e.value.wired_count > 0, mid.value.wired_count > 0);
        // The run of entries replaced, [P] E [N], and the pieces that replace it: E's lower piece, the
        // middle (joined with P or N when they merge) and E's upper piece. The run keeps its start.
        let old = [prev.as_ref().map(|(pp, _)| *pp), Some(at), next.map(|(np, _)| np)];
        let (first, count) = (prev.as_ref().map_or(at, |(pp, _)| *pp), old.into_iter().flatten().count());
        let mid_end = next.map_or(t, |(_, end)| end);
        let upper_piece = upper.then(|| {
            let mut value = e.value.clone();
            value.offset = e.value.offset.wrapping_add(t - e.start);
            Item { start: t, end: e.end, reserve_below: 0, value }
        });
        let pieces = match prev {
            Some((_, p)) => [Some(Item { end: mid_end, ..p }), upper_piece, None],
            None => [
                lower.then(|| Item {
                    start: e.start,
                    end: s,
                    reserve_below: e.reserve_below,
                    value: e.value.clone(),
                }),
                Some(Item { end: mid_end, ..mid }),
                upper_piece,
            ],
        };
        for pos in old.into_iter().flatten() {
            self.log_replaced_at(pos);
        }
        let starts = pieces.each_ref().map(|p| p.as_ref().map(|p| p.start));
        self.store.replace_run_at(first, count, pieces);
        for start in starts.into_iter().flatten() {
            self.log_inserted(start);
        }
        self.count_wiring(t - s, was_wired, now_wired);
        if let Some(fx) = fx {
            self.effect(with_range(fx, s..t));
        }
        // The pieces cover E's range exactly and merges join touching entries: every gap is as it was.
        self.store.end_batch_same_gaps();
        self.commit();
        Ok(true)
    }
}

/// Replaces the placeholder range of an effect built by an attribute change.
fn with_range<O>(fx: Effect<O>, r: Range<u64>) -> Effect<O> {
    match fx {
        Effect::Protect(_, p) => Effect::Protect(r, p),
        Effect::Inherit(_, i) => Effect::Inherit(r, i),
        Effect::Advise(_, a) => Effect::Advise(r, a),
        Effect::Wire(_) => Effect::Wire(r),
        Effect::Unwire(_) => Effect::Unwire(r),
        Effect::Guard(_) => Effect::Guard(r),
        Effect::Unguard(_) => Effect::Unguard(r),
        Effect::Seal(_) => Effect::Seal(r),
        Effect::Unmap(_) => Effect::Unmap(r),
        Effect::WriteProtect(_) => Effect::WriteProtect(r),
        Effect::Submap(_, id) => Effect::Submap(r, id),
        Effect::Map(e) => Effect::Map(e),
        Effect::Clean(_, inv) => Effect::Clean(r, inv),
    }
}
