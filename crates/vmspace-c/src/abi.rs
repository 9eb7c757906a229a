//! The seed's C types and numeric values (`vm_reclaim.h`, `mach/error.h`), as the header spells them.
//!
//! Invariant: every constant here equals the header's; `tests/c/abi.c` prints the header's values and
//! the test compares them with these.

use vms::reclaim::{Action, ReclaimError, ReclaimState};

/// `mach_error_t` (`kern_return_t`): a Mach error code.
pub type MachError = i32;
/// `mach_vm_reclaim_count_t`: a number of ring entries.
pub type ReclaimCount = u32;
/// `mach_vm_reclaim_id_t`: an entry's id.
pub type ReclaimIdRaw = u64;
/// `mach_vm_reclaim_action_t` (`uint8_t`).
pub type ReclaimAction = u8;
/// `mach_vm_reclaim_state_t` (`uint32_t`).
pub type ReclaimStateRaw = u32;

/// `ERR_SUCCESS` / `VM_RECLAIM_SUCCESS`.
pub const VM_RECLAIM_SUCCESS: MachError = 0;
/// `err_vm` (`err_system(0x8)`, `mach/error.h`).
pub const ERR_VM: MachError = 0x8 << 26;
/// `err_vm_reclaim(0)`: `err_vm | err_sub(1)`.
pub const ERR_VM_RECLAIM: MachError = ERR_VM | (1 << 14);
/// `VM_RECLAIM_INVALID_ARGUMENT` (`err_vm_reclaim(1)` = 0x20004001).
pub const VM_RECLAIM_INVALID_ARGUMENT: MachError = ERR_VM_RECLAIM | 1;
/// `VM_RECLAIM_NOT_SUPPORTED` (`err_vm_reclaim(2)`).
pub const VM_RECLAIM_NOT_SUPPORTED: MachError = ERR_VM_RECLAIM | 2;
/// `VM_RECLAIM_INVALID_REGION_SIZE` (`err_vm_reclaim(3)`).
pub const VM_RECLAIM_INVALID_REGION_SIZE: MachError = ERR_VM_RECLAIM | 3;
/// `VM_RECLAIM_INVALID_CAPACITY` (`err_vm_reclaim(4)`).
pub const VM_RECLAIM_INVALID_CAPACITY: MachError = ERR_VM_RECLAIM | 4;
/// `VM_RECLAIM_INVALID_ID` (`err_vm_reclaim(5)`).
pub const VM_RECLAIM_INVALID_ID: MachError = ERR_VM_RECLAIM | 5;
/// `VM_RECLAIM_RESOURCE_SHORTAGE` (`err_vm_reclaim(6)`).
pub const VM_RECLAIM_RESOURCE_SHORTAGE: MachError = ERR_VM_RECLAIM | 6;
/// `VM_RECLAIM_INVALID_RING` (`err_vm_reclaim(7)` = 0x20004007).
pub const VM_RECLAIM_INVALID_RING: MachError = ERR_VM_RECLAIM | 7;

/// `VM_RECLAIM_FREE`.
pub const VM_RECLAIM_FREE: ReclaimAction = 1;
/// `VM_RECLAIM_DEALLOCATE`.
pub const VM_RECLAIM_DEALLOCATE: ReclaimAction = 2;
/// `VM_RECLAIM_UNRECLAIMED`.
pub const VM_RECLAIM_UNRECLAIMED: ReclaimStateRaw = 1;
/// `VM_RECLAIM_FREED`.
pub const VM_RECLAIM_FREED: ReclaimStateRaw = 2;
/// `VM_RECLAIM_DEALLOCATED`.
pub const VM_RECLAIM_DEALLOCATED: ReclaimStateRaw = 3;
/// `VM_RECLAIM_BUSY`.
pub const VM_RECLAIM_BUSY: ReclaimStateRaw = 4;
/// `VM_RECLAIM_ID_NULL` (`UINT64_MAX`).
pub const VM_RECLAIM_ID_NULL: ReclaimIdRaw = u64::MAX;
/// `VM_RECLAIM_REGION_SIZE_MAX` (`UINT32_MAX` bytes).
pub const VM_RECLAIM_REGION_SIZE_MAX: u64 = u32::MAX as u64;

/// The seed's code for a Rust error (the same values as [`ReclaimError::code`]).
pub(crate) const fn code(e: ReclaimError) -> MachError {
    match e {
        ReclaimError::InvalidArgument => VM_RECLAIM_INVALID_ARGUMENT,
        ReclaimError::NotSupported => VM_RECLAIM_NOT_SUPPORTED,
        ReclaimError::InvalidRegionSize => VM_RECLAIM_INVALID_REGION_SIZE,
        ReclaimError::InvalidCapacity => VM_RECLAIM_INVALID_CAPACITY,
        ReclaimError::InvalidId => VM_RECLAIM_INVALID_ID,
        ReclaimError::ResourceShortage => VM_RECLAIM_RESOURCE_SHORTAGE,
        ReclaimError::InvalidRing => VM_RECLAIM_INVALID_RING,
    }
}

/// A C action byte as an [`Action`]; anything but 1 and 2 is `VM_RECLAIM_INVALID_ARGUMENT`.
pub(crate) fn action(raw: ReclaimAction) -> Result<Action, MachError> {
    Action::from_raw(raw).ok_or(VM_RECLAIM_INVALID_ARGUMENT)
}

/// The seed's state value.
pub(crate) const fn state(s: ReclaimState) -> ReclaimStateRaw {
    s.raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_mach_error_h() {
        // err_system(x) = (x & 0x3f) << 26, err_sub(x) = (x & 0xfff) << 14, err_vm = err_system(0x8).
        assert_eq!(VM_RECLAIM_INVALID_ARGUMENT, 0x2000_4001);
        assert_eq!(VM_RECLAIM_INVALID_RING, 0x2000_4007);
        for e in [
            ReclaimError::InvalidArgument,
            ReclaimError::NotSupported,
            ReclaimError::InvalidRegionSize,
            ReclaimError::InvalidCapacity,
            ReclaimError::InvalidId,
            ReclaimError::ResourceShortage,
            ReclaimError::InvalidRing,
        ] {
            assert_eq!(code(e), e.code());
        }
    }
}
