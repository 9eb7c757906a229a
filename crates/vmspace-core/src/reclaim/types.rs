//! The seed's vocabulary: actions, states, ids, errors and the results of the producer's calls.
//!
//! Invariant: every value here is plain data with the seed's numeric encoding (`mach_vm_reclaim_action_t`,
//! `mach_vm_reclaim_state_t`, `mach_vm_reclaim_error_t`), so a value crosses the shared ring or a C
//! boundary unchanged; no constructor here can produce an encoding the seed does not define.

use core::fmt;

/// `mach_vm_reclaim_action_t`: what the reclaimer does with a region when it reclaims it.
///
/// The discriminants are the seed's (`VM_RECLAIM_FREE = 1`, `VM_RECLAIM_DEALLOCATE = 2`); zero is not an
/// action, and a slot whose action byte is zero is a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Action {
    /// `VM_RECLAIM_FREE`: discard the contents but keep the mapping (`MADV_FREE` /
    /// `MADV_FREE_REUSABLE`). After reclamation the memory is still usable (it reads as zero or as old data).
    Free = 1,
    /// `VM_RECLAIM_DEALLOCATE`: remove the mapping and its memory (`munmap`).
    Deallocate = 2,
}

impl Action {
    /// The seed's `mach_vm_reclaim_action_t` encoding of a raw byte: `Some` for 1 and 2, `None` otherwise.
    pub const fn from_raw(raw: u8) -> Option<Action> {
        match raw {
            1 => Some(Action::Free),
            2 => Some(Action::Deallocate),
            _ => None,
        }
    }

    /// The raw `mach_vm_reclaim_action_t` byte stored in a ring entry.
    pub const fn raw(self) -> u8 {
        self as u8
    }

    /// The state a region entered with this action is in once the reclaimer has passed it
    /// (`VM_RECLAIM_FREED` or `VM_RECLAIM_DEALLOCATED`).
    pub const fn reclaimed_state(self) -> ReclaimState {
        match self {
            Action::Free => ReclaimState::Freed,
            Action::Deallocate => ReclaimState::Deallocated,
        }
    }
}

/// `mach_vm_reclaim_state_t`: the state of a region in the ring, as `try_cancel` and `query_state` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ReclaimState {
    /// `VM_RECLAIM_UNRECLAIMED`: the reclaimer has not touched the region; after a successful cancel the
    /// caller owns it again, contents intact.
    Unreclaimed = 1,
    /// `VM_RECLAIM_FREED`: the region was reclaimed with [`Action::Free`]: still mapped, contents lost.
    Freed = 2,
    /// `VM_RECLAIM_DEALLOCATED`: the region was reclaimed with [`Action::Deallocate`]: it is unmapped.
    Deallocated = 3,
    /// `VM_RECLAIM_BUSY`: the reclaimer holds the entry right now; it will end `Freed` or `Deallocated`.
    Busy = 4,
}

impl ReclaimState {
    /// `mach_vm_reclaim_is_reusable`: whether the caller may use the memory again — true exactly for
    /// [`Unreclaimed`](ReclaimState::Unreclaimed) (contents intact) and [`Freed`](ReclaimState::Freed)
    /// (still mapped, contents undefined).
    pub const fn is_reusable(self) -> bool {
        matches!(self, ReclaimState::Unreclaimed | ReclaimState::Freed)
    }

    /// The seed's numeric `mach_vm_reclaim_state_t` value.
    pub const fn raw(self) -> u32 {
        self as u32
    }
}

/// `mach_vm_reclaim_id_t`: the id of an entry, the value of the ring's `tail` when it was appended.
///
/// Ids are monotonic over the life of a ring and never reused except through the explicit reuse path of
/// [`Producer::try_enter`](super::Producer::try_enter). The entry's slot is `id % capacity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReclaimId(pub u64);

impl ReclaimId {
    /// `VM_RECLAIM_ID_NULL` (`UINT64_MAX`): the seed's "no id". The Rust API uses `Option<ReclaimId>`
    /// instead; this value is only for crossing a C boundary and is refused as an id.
    pub const NULL: ReclaimId = ReclaimId(u64::MAX);

    /// The raw `mach_vm_reclaim_id_t`.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ReclaimId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// `mach_vm_reclaim_error_t`: why a ring operation was refused. A refused producer operation leaves the
/// ring exactly as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReclaimError {
    /// `VM_RECLAIM_INVALID_ARGUMENT`: a bad argument (zero capacity, `initial > max`, zero-length or
    /// address-wrapping region, a cancel whose address, size or action does not match the entry,
    /// `flush(0)`).
    InvalidArgument,
    /// `VM_RECLAIM_NOT_SUPPORTED`: the platform cannot do deferred reclamation.
    NotSupported,
    /// `VM_RECLAIM_INVALID_REGION_SIZE`: the region is larger than `VM_RECLAIM_REGION_SIZE_MAX`
    /// (`u32::MAX` bytes).
    InvalidRegionSize,
    /// `VM_RECLAIM_INVALID_CAPACITY`: a capacity of zero, above the ring's maximum, or above
    /// [`MAX_CAPACITY`](super::MAX_CAPACITY).
    InvalidCapacity,
    /// `VM_RECLAIM_INVALID_ID`: the id was never entered (it is at or beyond `tail`), is `VM_RECLAIM_ID_NULL`,
    /// names a slot that is already a hole (a double cancel), or a reuse names a slot still occupied.
    InvalidId,
    /// `VM_RECLAIM_RESOURCE_SHORTAGE`: no memory for the ring, or a ring already exists where only one may.
    ResourceShortage,
    /// `VM_RECLAIM_INVALID_RING`: the shared header failed validation (bad magic or version, indices that
    /// cannot come from the protocol); the reclaimer has poisoned the ring and will not follow it.
    InvalidRing,
}

/// `err_vm | err_sub(1)`: the base of the seed's `mach_vm_reclaim_error_t` codes.
const ERR_VM_RECLAIM: i32 = (8 << 26) | (1 << 14);

impl ReclaimError {
    /// The seed's numeric `mach_vm_reclaim_error_t` (`err_vm | err_sub(1) | n`, e.g. `0x2000_4001` for
    /// `VM_RECLAIM_INVALID_ARGUMENT`).
    pub const fn code(self) -> i32 {
        ERR_VM_RECLAIM
            | match self {
                ReclaimError::InvalidArgument => 1,
                ReclaimError::NotSupported => 2,
                ReclaimError::InvalidRegionSize => 3,
                ReclaimError::InvalidCapacity => 4,
                ReclaimError::InvalidId => 5,
                ReclaimError::ResourceShortage => 6,
                ReclaimError::InvalidRing => 7,
            }
    }
}

impl fmt::Display for ReclaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReclaimError::InvalidArgument => "invalid argument",
            ReclaimError::NotSupported => "deferred reclamation is not supported",
            ReclaimError::InvalidRegionSize => "region size exceeds VM_RECLAIM_REGION_SIZE_MAX",
            ReclaimError::InvalidCapacity => "invalid ring capacity",
            ReclaimError::InvalidId => "invalid reclaim id",
            ReclaimError::ResourceShortage => "resource shortage",
            ReclaimError::InvalidRing => "invalid (corrupted or poisoned) reclaim ring",
        })
    }
}

impl core::error::Error for ReclaimError {}

/// The result of `mach_vm_reclaim_try_enter`: the id (`None` when the ring is full or a reuse id was
/// already passed by the reclaimer — the seed's `VM_RECLAIM_ID_NULL`) and `should_update_kernel_accounting`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Entered {
    /// The entry's id, or `None`: the region was not entered and the caller still owns it.
    pub id: Option<ReclaimId>,
    /// `should_update_kernel_accounting`: the caller should report the ring's bytes to the reclaimer
    /// (`mach_vm_reclaim_update_kernel_accounting`) once it has dropped its own locks.
    pub update_accounting: bool,
}

/// The result of `mach_vm_reclaim_try_cancel`: the region's state after the attempt, and
/// `should_update_kernel_accounting`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Cancelled {
    /// The region's state: reuse the memory only if [`ReclaimState::is_reusable`].
    pub state: ReclaimState,
    /// `should_update_kernel_accounting`, as for [`Entered::update_accounting`].
    pub update_accounting: bool,
}
