//! The exported functions, one per seed function, with the seed's names and signatures.
//!
//! Invariant: each body checks its pointers before it writes through them, writes its out-values
//! only as the seed says (`*id = VM_RECLAIM_ID_NULL` on every unsuccessful `try_enter`,
//! `*should_update_kernel_accounting = false` first), and runs inside [`guard`], so a panic becomes an
//! error code instead of unwinding into C.

use std::panic::{AssertUnwindSafe, catch_unwind};

use vms::reclaim::{ReclaimId, ReclaimRing};

use crate::abi::*;
use crate::ring;

/// The opaque `mach_vm_reclaim_ring_t` (`struct mach_vm_reclaim_ring_s *`).
#[repr(C)]
pub struct MachVmReclaimRing {
    _opaque: [u8; 0],
}

/// `mach_vm_reclaim_ring_t`.
pub type RingHandle = *mut MachVmReclaimRing;

/// Runs `f`; a panic answers `on_panic` (never unwinds into C).
fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

fn result(r: Result<(), MachError>) -> MachError {
    r.err().unwrap_or(VM_RECLAIM_SUCCESS)
}

/// `mach_vm_reclaim_ring_allocate(ring, initial_capacity, max_capacity)`: the process's one ring.
///
/// `ring == NULL`, a zero capacity or `initial > max` → `VM_RECLAIM_INVALID_ARGUMENT`;
/// `max > VM_RECLAIM_MAX_CAPACITY` → `VM_RECLAIM_INVALID_CAPACITY`; a second ring (also after a fork:
/// the child inherits the parent's) → `VM_RECLAIM_RESOURCE_SHORTAGE`. Its kernel side is a
/// `vm-reclaim` thread (see the README for its policy and environment knobs).
///
/// # Safety
/// `ring` is null or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mach_vm_reclaim_ring_allocate(
    ring: *mut RingHandle,
    initial: ReclaimCount,
    max: ReclaimCount,
) -> MachError {
    guard(VM_RECLAIM_RESOURCE_SHORTAGE, || {
        if ring.is_null() {
            return VM_RECLAIM_INVALID_ARGUMENT;
        }
        // SAFETY: non-null, and valid for a write by the caller's contract.
        unsafe { *ring = std::ptr::null_mut() };
        match ring::allocate(initial, max) {
            Ok(h) => {
                // SAFETY: as above.
                unsafe { *ring = h as RingHandle };
                VM_RECLAIM_SUCCESS
            }
            Err(e) => e,
        }
    })
}

/// `mach_vm_reclaim_ring_resize(ring, capacity)`: `capacity` of 0 or above the maximum →
/// `VM_RECLAIM_INVALID_CAPACITY`. Unlike xnu (which drains the ring), entries that fit the new
/// capacity stay in the ring with their ids; only the oldest that do not fit are reclaimed.
///
/// # Safety
/// None beyond the seed's: `ring` is only compared, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mach_vm_reclaim_ring_resize(ring: RingHandle, capacity: ReclaimCount) -> MachError {
    guard(VM_RECLAIM_RESOURCE_SHORTAGE, || {
        result(ring::with(ring as usize, |r| r.resize(capacity).map(drop).map_err(code)))
    })
}

/// `mach_vm_reclaim_ring_capacity(ring, &capacity)`.
///
/// # Safety
/// `capacity` is null or valid for writing a `mach_vm_reclaim_count_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mach_vm_reclaim_ring_capacity(
    ring: RingHandle,
    capacity: *mut ReclaimCount,
) -> MachError {
    guard(VM_RECLAIM_RESOURCE_SHORTAGE, || {
        result(ring::with(ring as usize, |r| {
            if capacity.is_null() {
                return Err(VM_RECLAIM_INVALID_ARGUMENT);
            }
            // SAFETY: non-null and valid by the caller's contract.
            unsafe { *capacity = r.capacity() };
            Ok(())
        }))
    })
}

/// `mach_vm_reclaim_round_capacity(count)`: the most entries that fit the pages `count` entries
/// need, at most `VM_RECLAIM_MAX_CAPACITY`.
#[unsafe(no_mangle)]
pub extern "C" fn mach_vm_reclaim_round_capacity(count: ReclaimCount) -> ReclaimCount {
    guard(0, || ReclaimRing::round_capacity(count))
}

/// `mach_vm_reclaim_ring_flush(ring, n)`: reclaim the `n` oldest entries now; `n == 0` →
/// `VM_RECLAIM_INVALID_ARGUMENT`. Thread-safe with every other call.
///
/// # Safety
/// None beyond the seed's: `ring` is only compared.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mach_vm_reclaim_ring_flush(ring: RingHandle, n: ReclaimCount) -> MachError {
    guard(VM_RECLAIM_RESOURCE_SHORTAGE, || {
        result(ring::with(ring as usize, |r| r.flush(n as u64).map(drop).map_err(code)))
    })
}

/// `mach_vm_reclaim_try_enter(ring, start, size, action, &id, &should_update)`.
///
/// `id == NULL` → `VM_RECLAIM_INVALID_ID` (as xnu); `should_update == NULL` →
/// `VM_RECLAIM_INVALID_ARGUMENT`; `size > VM_RECLAIM_REGION_SIZE_MAX` →
/// `VM_RECLAIM_INVALID_REGION_SIZE`; a bad action, zero size or wrapping range →
/// `VM_RECLAIM_INVALID_ARGUMENT`; a reuse id that is not a cancelled slot → `VM_RECLAIM_INVALID_ID`.
/// `*id` is `VM_RECLAIM_ID_NULL` after every call that did not enter the region (a full ring is
/// success with `VM_RECLAIM_ID_NULL`).
///
/// # Safety
/// `id` and `should_update` are null or valid for reads and writes of their types.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mach_vm_reclaim_try_enter(
    ring: RingHandle,
    start: u64,
    size: u64,
    action: ReclaimAction,
    id: *mut ReclaimIdRaw,
    should_update: *mut bool,
) -> MachError {
    guard(VM_RECLAIM_RESOURCE_SHORTAGE, || {
        if !should_update.is_null() {
            // SAFETY: non-null and valid by the caller's contract.
            unsafe { *should_update = false };
        }
        if id.is_null() {
            return VM_RECLAIM_INVALID_ID;
        }
        // SAFETY: non-null and valid by the caller's contract.
        let requested = unsafe { *id };
        // SAFETY: as above.
        unsafe { *id = VM_RECLAIM_ID_NULL };
        if should_update.is_null() {
            return VM_RECLAIM_INVALID_ARGUMENT;
        }
        result(ring::with(ring as usize, |r| {
            if size > VM_RECLAIM_REGION_SIZE_MAX {
                return Err(VM_RECLAIM_INVALID_REGION_SIZE);
            }
            let action = crate::abi::action(action)?;
            let reuse = (requested != VM_RECLAIM_ID_NULL).then_some(ReclaimId(requested));
            let e = r.try_enter(start, size, action, reuse).map_err(code)?;
            // SAFETY: both non-null and valid by the caller's contract.
            unsafe {
                *id = e.id.map_or(VM_RECLAIM_ID_NULL, ReclaimId::get);
                *should_update = e.update_accounting;
            }
            Ok(())
        }))
    })
}

/// `mach_vm_reclaim_try_cancel(ring, id, start, size, action, &state, &should_update)`: take `id`
/// back; reuse the region only if `mach_vm_reclaim_is_reusable(state)`.
///
/// `VM_RECLAIM_ID_NULL`, an id never entered or a double cancel → `VM_RECLAIM_INVALID_ID`; a region
/// or action other than the entry's, or a null out-pointer → `VM_RECLAIM_INVALID_ARGUMENT`; `size`
/// over the maximum → `VM_RECLAIM_INVALID_REGION_SIZE` (xnu traps on misuse; this never does).
///
/// # Safety
/// `state` and `should_update` are null or valid for writes of their types.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mach_vm_reclaim_try_cancel(
    ring: RingHandle,
    id: ReclaimIdRaw,
    start: u64,
    size: u64,
    action: ReclaimAction,
    state: *mut ReclaimStateRaw,
    should_update: *mut bool,
) -> MachError {
    guard(VM_RECLAIM_RESOURCE_SHORTAGE, || {
        if !should_update.is_null() {
            // SAFETY: non-null and valid by the caller's contract.
            unsafe { *should_update = false };
        }
        result(ring::with(ring as usize, |r| {
            if id == VM_RECLAIM_ID_NULL {
                return Err(VM_RECLAIM_INVALID_ID);
            }
            if state.is_null() || should_update.is_null() {
                return Err(VM_RECLAIM_INVALID_ARGUMENT);
            }
            let action = crate::abi::action(action)?;
            let c = r.try_cancel(ReclaimId(id), start, size, action).map_err(code)?;
            // SAFETY: both non-null and valid by the caller's contract.
            unsafe {
                *state = crate::abi::state(c.state);
                *should_update = c.update_accounting;
            }
            Ok(())
        }))
    })
}

/// `mach_vm_reclaim_query_state(ring, id, action, &state)`: racy by nature, as in xnu; an id never
/// entered is `VM_RECLAIM_INVALID_ID` (xnu says UNRECLAIMED).
///
/// # Safety
/// `state` is null or valid for writing a `mach_vm_reclaim_state_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mach_vm_reclaim_query_state(
    ring: RingHandle,
    id: ReclaimIdRaw,
    action: ReclaimAction,
    state: *mut ReclaimStateRaw,
) -> MachError {
    guard(VM_RECLAIM_RESOURCE_SHORTAGE, || {
        result(ring::with(ring as usize, |r| {
            if id == VM_RECLAIM_ID_NULL {
                return Err(VM_RECLAIM_INVALID_ID);
            }
            if state.is_null() {
                return Err(VM_RECLAIM_INVALID_ARGUMENT);
            }
            let action = crate::abi::action(action)?;
            let s = r.query_state(ReclaimId(id), action).map_err(code)?;
            // SAFETY: non-null and valid by the caller's contract.
            unsafe { *state = crate::abi::state(s) };
            Ok(())
        }))
    })
}

/// `mach_vm_reclaim_is_reusable(state)`: true exactly for `VM_RECLAIM_UNRECLAIMED` and
/// `VM_RECLAIM_FREED` (any other value, valid or not, is false).
#[unsafe(no_mangle)]
pub extern "C" fn mach_vm_reclaim_is_reusable(state: ReclaimStateRaw) -> bool {
    state == VM_RECLAIM_UNRECLAIMED || state == VM_RECLAIM_FREED
}

/// `mach_vm_reclaim_update_kernel_accounting(ring)`: report the ring's bytes and run the trim policy
/// on this thread (as xnu may): call it with no locks of your own held. Thread-safe.
///
/// # Safety
/// None beyond the seed's: `ring` is only compared.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mach_vm_reclaim_update_kernel_accounting(ring: RingHandle) -> MachError {
    guard(VM_RECLAIM_RESOURCE_SHORTAGE, || {
        result(ring::with(ring as usize, |r| r.update_kernel_accounting().map(drop).map_err(code)))
    })
}
