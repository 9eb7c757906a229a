//! Validation of a call before the map plans it: what Linux cannot do (the map would accept it, the
//! kernel has no way to give it), and the checks of calls that do not change the map (`populate`).
//!
//! Invariant: nothing here changes the map or the kernel; a call refused here has done nothing. The
//! map's own validation (ranges, protections, seals) runs in the map operation itself (`plan.rs`).

use std::ops::Range;

use vmspace_core::{EntryFlags, Inherit, MapSpec, Prot, VmError, VmMap};

use crate::backing::Backing;
use crate::error::Error;
use crate::os;

/// Linux-specific checks and defaults on a spec: shared backings are inherited shared.
pub(super) fn linux_spec(mut spec: MapSpec<Backing>) -> Result<MapSpec<Backing>, Error> {
    match (spec.inherit, spec.object.is_shared()) {
        (Inherit::Copy, true) => spec.inherit = Inherit::Share,
        (Inherit::Share, false) => {
            return Err(Error::NotSupported("Linux cannot share private memory with a child"));
        }
        (Inherit::Zero, _) if !os::features().wipe_on_fork => {
            return Err(Error::NotSupported("MADV_WIPEONFORK needs Linux 4.14"));
        }
        _ => {}
    }
    if spec.flags.contains(EntryFlags::SEALED) && !os::features().mseal {
        return Err(Error::NotSupported("mseal needs Linux 6.10"));
    }
    Ok(spec)
}

/// Whether the kernel has the inheritance `inherit` at all (zero needs `MADV_WIPEONFORK`).
pub(super) fn inherit_known(inherit: Inherit) -> Result<(), Error> {
    if inherit == Inherit::Zero && !os::features().wipe_on_fork {
        return Err(Error::NotSupported("MADV_WIPEONFORK needs Linux 4.14"));
    }
    Ok(())
}

/// Whether the kernel can give `range` the inheritance `inherit`: share and copy are decided by the
/// backing on Linux, so share is refused on private memory and copy on shared memory.
pub(super) fn inherit(m: &VmMap<Backing>, range: &Range<u64>, inherit: Inherit) -> Result<(), Error> {
    let refused = m.overlapping(range.clone()).find_map(|e| match (inherit, e.object().is_shared()) {
        (Inherit::Share, false) => Some("Linux cannot share private memory with a child"),
        (Inherit::Copy, true) => Some("Linux cannot copy shared memory to a child"),
        _ => None,
    });
    refused.map_or(Ok(()), |why| Err(Error::NotSupported(why)))
}

/// Whether the kernel can seal at all.
pub(super) fn seal() -> Result<(), Error> {
    if os::features().mseal { Ok(()) } else { Err(Error::NotSupported("mseal needs Linux 6.10")) }
}

/// `populate`'s checks, as every call's: unaligned or inverted → `InvalidArgument`; outside the space
/// or a hole → `InvalidAddress`; a page without the access (`write`: read and write, else read) or a
/// guard page → `ProtectionFailure`. `Ok(false)`: empty, nothing to do.
pub(super) fn populate(m: &VmMap<Backing>, range: &Range<u64>, write: bool) -> Result<bool, VmError> {
    let want = if write { Prot::RW } else { Prot::READ };
    let ps = m.page_size();
    if range.end < range.start || !range.start.is_multiple_of(ps) || !range.end.is_multiple_of(ps) {
        return Err(VmError::InvalidArgument);
    }
    if range.start == range.end {
        return Ok(false);
    }
    if range.start < m.min() || range.end > m.max() {
        return Err(VmError::InvalidAddress);
    }
    let mut at = range.start;
    let mut refused = false;
    for e in m.overlapping(range.clone()) {
        if e.start > at {
            return Err(VmError::InvalidAddress);
        }
        refused |= !e.prot().contains(want) || e.flags().contains(EntryFlags::GUARD);
        at = e.end;
    }
    if at < range.end {
        return Err(VmError::InvalidAddress);
    }
    if refused { Err(VmError::ProtectionFailure) } else { Ok(true) }
}
