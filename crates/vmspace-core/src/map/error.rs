//! Typed errors: the seed's `KERN_*` return codes, one variant per cause.

use core::fmt;

/// Why a map operation was refused. A refused operation changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmError {
    /// `KERN_INVALID_ARGUMENT`: unaligned or inverted range, zero length where one is needed,
    /// overflowing `start + len`, bad alignment, or an operation the entry's kind refuses.
    InvalidArgument,
    /// `KERN_INVALID_ADDRESS`: outside `[min, max)`, or a hole where the range must be fully mapped.
    InvalidAddress,
    /// `KERN_NO_SPACE`: the range is occupied, no gap fits, or a stack cannot grow further.
    NoSpace,
    /// `KERN_PROTECTION_FAILURE`: protection beyond max protection, or an access the entry forbids.
    ProtectionFailure,
    /// `KERN_RESOURCE_SHORTAGE`: no memory for entries (allocation failed or forbidden).
    ResourceShortage,
    /// Linux `EPERM` on sealed memory (`mseal`): the entry can never be changed or removed.
    Sealed,
    /// The address lies in a stack's growth reservation: `grow_stack` first (a fault's answer).
    StackGrowthNeeded,
    /// The access hit a guard region (Linux `MADV_GUARD_INSTALL`).
    GuardHit,
}

impl VmError {
    /// The seed's `KERN_*` code for this error (`KERN_FAILURE`, 5, for the Linux-only causes).
    pub const fn kern_code(self) -> i32 {
        match self {
            VmError::InvalidAddress => 1,
            VmError::ProtectionFailure | VmError::GuardHit => 2,
            VmError::NoSpace => 3,
            VmError::InvalidArgument => 4,
            VmError::ResourceShortage => 6,
            VmError::Sealed | VmError::StackGrowthNeeded => 5,
        }
    }
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmError::InvalidArgument => "invalid argument",
            VmError::InvalidAddress => "invalid address (outside the map or not fully mapped)",
            VmError::NoSpace => "no space",
            VmError::ProtectionFailure => "protection failure",
            VmError::ResourceShortage => "resource shortage",
            VmError::Sealed => "memory is sealed",
            VmError::StackGrowthNeeded => "address is in a stack's growth reservation",
            VmError::GuardHit => "access to a guard region",
        })
    }
}

impl core::error::Error for VmError {}
