//! Lookups: the entry at an address (`vm_map_lookup_entry`), a fault's view of it (`vm_map_lookup`),
//! and whole-range protection checks (`vm_map_check_protection`).

use core::ops::Range;

use super::VmMap;
use super::entry::Entry;
use super::error::VmError;
use super::types::{Access, EntryFlags, MapKind, MapObject, Prot, SubmapId};

/// What a fault needs to know about the memory it touched (`vm_map_lookup`'s out parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault<O> {
    /// The range of the entry that holds the address.
    pub entry: Range<u64>,
    /// The backing object.
    pub object: O,
    /// The offset in the object of the faulting page.
    pub offset: u64,
    /// The protection to map the page with: without write while the entry still needs a copy.
    pub prot: Prot,
    /// Whether the entry is wired (the fault should bring in the whole entry).
    pub wired: bool,
    /// The submap to continue in, when the entry belongs to one (protection was not checked).
    pub submap: Option<SubmapId>,
}

impl<O: MapObject> VmMap<O> {
    /// The entry containing `addr` (`vm_map_lookup_entry`), remembering it as the next lookup's hint.
    pub fn lookup_entry(&self, addr: u64) -> Option<&Entry<O>> {
        self.store.containing(addr)
    }

    /// Resolves a fault at `addr` for `access` (`vm_map_lookup`).
    ///
    /// Allowed protection is the entry's protection, or its maximum for a forced write
    /// (`override_write`). Errors: unmapped → `InvalidAddress`, or `StackGrowthNeeded` when `addr` is in
    /// a stack's reservation; guard region → `GuardHit`; access beyond the allowed protection, or a
    /// normal write to user-wired copy-on-write memory → `ProtectionFailure`. A write to an entry that
    /// needs a copy makes it private (NEEDS_COPY cleared: the seed's shadow object); a read of such an
    /// entry returns the protection without write, so the next write faults again.
    pub fn lookup(&mut self, addr: u64, access: impl Into<Access>) -> Result<Fault<O>, VmError> {
        self.begin();
        let access = access.into();
        let Some(e) = self.store.containing(addr) else {
            let reserved = self
                .store
                .ceil(addr)
                .is_some_and(|n| n.reserve_below > 0 && addr >= n.start - n.reserve_below);
            return Err(if reserved { VmError::StackGrowthNeeded } else { VmError::InvalidAddress });
        };
        let page = addr & !(self.page_size - 1);
        let a = &e.value;
        let offset = a.offset.wrapping_add(page - e.start);
        if let MapKind::Submap(id) = a.kind {
            return Ok(Fault {
                entry: e.range(),
                object: a.object.clone(),
                offset,
                prot: a.prot,
                wired: false,
                submap: Some(id),
            });
        }
        if a.flags.contains(EntryFlags::GUARD) {
            return Err(VmError::GuardHit);
        }
        let allowed = if access.override_write { a.max_prot } else { a.prot };
        if !allowed.contains(access.prot) {
            return Err(VmError::ProtectionFailure);
        }
        let write = access.prot.contains(Prot::WRITE);
        if write && !access.override_write && a.user_wired && a.flags.contains(EntryFlags::COW) {
            return Err(VmError::ProtectionFailure);
        }
        let mut fault = Fault {
            entry: e.range(),
            object: a.object.clone(),
            offset,
            prot: allowed,
            wired: a.wired_count > 0,
            submap: None,
        };
        if a.flags.contains(EntryFlags::NEEDS_COPY) {
            if write {
                let (start, range) = (e.start, e.range());
                self.begin();
                self.update(start, |a| a.flags.set(EntryFlags::NEEDS_COPY, false));
                self.simplify(&range);
                self.commit();
            } else {
                fault.prot = fault.prot - Prot::WRITE;
            }
        }
        Ok(fault)
    }

    /// Whether every page of `range` is mapped with at least `prot` (`vm_map_check_protection`). The
    /// start must be mapped even for an empty range; a bad range is simply `false`.
    pub fn check_protection(&self, range: Range<u64>, prot: Prot) -> bool {
        if range.end < range.start || self.lookup_entry(range.start).is_none() {
            return false;
        }
        let mut at = range.start;
        for e in self.store.overlapping(range.start, range.end.max(range.start + 1)) {
            if e.start > at || !e.value.prot.contains(prot) {
                return false;
            }
            at = e.end;
        }
        at >= range.end
    }
}
