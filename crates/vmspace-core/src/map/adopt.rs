//! Taking the OS's word for it: when an OS step failed half-way and could not be put back (a seal that
//! took, an unmap that dropped half a range, a `vm.max_map_count` that refuses the repair), the map is
//! made to say what the OS reports instead. DragonFly and xnu have no counterpart: their pmap cannot
//! refuse. Both calls bypass the checks a user's call gets (max protection, seals), are journaled
//! (`undo` reverts them) and yield no effects: the OS already is this way.

use core::ops::Range;

use super::VmMap;
use super::error::VmError;
use super::types::{Behavior, EntryFlags, Inherit, MapKind, MapObject, Prot};

/// What the OS reports for a range, every attribute it can report back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The protection the pages have.
    pub prot: Prot,
    /// Whether they are locked (user-wired).
    pub wired: bool,
    /// What a child gets of them.
    pub inherit: Inherit,
    /// Their paging behaviour.
    pub behavior: Behavior,
    /// Excluded from core dumps.
    pub nocoredump: bool,
    /// Sealed.
    pub sealed: bool,
    /// Guard pages, or `None` when the OS cannot tell (the map's word stands).
    pub guard: Option<bool>,
}

impl<O: MapObject> VmMap<O> {
    /// Makes every page of `range` carry `seen`'s attributes. A protection beyond the max protection
    /// raises the max; user wiring is set or cleared (kernel wirings stay); the seal is set or cleared.
    ///
    /// Errors: the range's shape as for every call (`InvalidArgument`, `InvalidAddress`); a hole →
    /// `InvalidAddress`; a submap → `InvalidArgument`. Nothing changes on error.
    pub fn adopt(&mut self, range: Range<u64>, seen: &Observed) -> Result<(), VmError> {
        self.begin();
        if self.check_range(&range)? {
            return Ok(());
        }
        self.check_mapped(&range, |e| {
            if matches!(e.value.kind, MapKind::Submap(_)) { Err(VmError::InvalidArgument) } else { Ok(()) }
        })?;
        let differs = |a: &super::Attrs<O>| {
            a.prot != seen.prot
                || a.user_wired != seen.wired
                || a.inherit != seen.inherit
                || a.behavior != seen.behavior
                || a.flags.contains(EntryFlags::NOCOREDUMP) != seen.nocoredump
                || a.flags.contains(EntryFlags::SEALED) != seen.sealed
                || seen.guard.is_some_and(|g| a.flags.contains(EntryFlags::GUARD) != g)
        };
        if !self.store.overlapping(range.start, range.end).any(|e| differs(&e.value)) {
            // The map already says what the OS has: a no-op, like every call that changes nothing.
            return Ok(());
        }
        self.ensure(2)?;
        self.begin();
        self.store.begin_batch();
        let mut cur = self.clip_range(&range);
        while let Some(s) = cur {
            if self.store.get(s).is_some_and(|e| differs(&e.value)) {
                self.update(s, |a| {
                    a.prot = seen.prot;
                    a.max_prot |= seen.prot;
                    if a.user_wired != seen.wired {
                        a.user_wired = seen.wired;
                        a.wired_count = if seen.wired { a.wired_count + 1 } else { a.wired_count - 1 };
                    }
                    a.inherit = seen.inherit;
                    a.behavior = seen.behavior;
                    a.flags.set(EntryFlags::NOCOREDUMP, seen.nocoredump);
                    a.flags.set(EntryFlags::SEALED, seen.sealed);
                    if let Some(g) = seen.guard {
                        a.flags.set(EntryFlags::GUARD, g);
                    }
                });
            }
            cur = self.next_inside(s, range.end);
        }
        self.simplify(&range);
        self.store.end_batch();
        self.commit();
        self.effects.clear();
        Ok(())
    }

    /// Forgets every page of `range`: its entries go, sealed ones too, with no effects (the OS says
    /// nothing is mapped there any more). Holes are fine. A stack's reservation goes with the entry that
    /// carries it.
    ///
    /// Errors: the range's shape as for every call; a submap only partly covered → `InvalidArgument`.
    pub fn forget(&mut self, range: Range<u64>) -> Result<(), VmError> {
        self.begin();
        if self.check_range(&range)? {
            return Ok(());
        }
        if self.store.overlapping(range.start, range.end).any(|e| Self::partial_submap(e, &range)) {
            return Err(VmError::InvalidArgument);
        }
        // Removal as `remove` does it, seals or not; its effects are dropped: the OS already did it.
        self.remove_checked(&range)?;
        self.effects.clear();
        Ok(())
    }
}
