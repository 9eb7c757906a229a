//! Effects: the changes an operation asks of the machine (the seed's `pmap` calls), so that a kernel,
//! an emulator or the Linux crate applies exactly what the map decided.

use core::ops::Range;

use super::entry::Entry;
use super::types::{Advice, Inherit, Prot, SubmapId};

/// One change the OS must make. A successful operation yields its effects in order (see
/// [`VmMap::effects`](super::VmMap::effects)); a failed one yields none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect<O> {
    /// Create this mapping (`pmap_enter` of a new entry): the entry's range and attributes, as inserted.
    Map(Entry<O>),
    /// Remove the mapping of this range (`pmap_remove`); memory is gone.
    Unmap(Range<u64>),
    /// Change the protection of this range (`pmap_protect`).
    Protect(Range<u64>, Prot),
    /// Change the inheritance of this range.
    Inherit(Range<u64>, Inherit),
    /// Apply this advice to this range.
    Advise(Range<u64>, Advice),
    /// User-wire this range (`mlock`): it was not user-wired before.
    Wire(Range<u64>),
    /// Undo the user wiring of this range (`munlock`).
    Unwire(Range<u64>),
    /// Install guard pages over this range (`MADV_GUARD_INSTALL`).
    Guard(Range<u64>),
    /// Remove the guard pages of this range (`MADV_GUARD_REMOVE`).
    Unguard(Range<u64>),
    /// Seal this range (`mseal`).
    Seal(Range<u64>),
    /// Write-protect this range so the next write faults (fork's copy-on-write, `pmap_protect` without
    /// write).
    WriteProtect(Range<u64>),
    /// Write back dirty pages of this range, and drop cached ones if `true` (`msync`, `vm_map_clean`).
    Clean(Range<u64>, bool),
    /// The range now belongs to a submap.
    Submap(Range<u64>, SubmapId),
}
