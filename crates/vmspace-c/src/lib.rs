//! The seed's C interface: xnu's `vm_reclaim.h` (`mach_vm_reclaim_*`) exported from `libvmspace.so` /
//! `libvmspace.a`, over [`vms::reclaim::ReclaimRing`] with a [`vms::reclaim::Reclaimer`] thread as the
//! ring's kernel side. The header is `include/vm_reclaim.h`; the pkg-config file `vmspace.pc.in`.
//!
//! Invariant: no call trusts a pointer it was given. A ring handle is compared with the one live ring's
//! handle before anything is read through it (a stale, forged or null handle is `VM_RECLAIM_INVALID_RING`),
//! out-pointers are checked for null before they are written, and every exported body runs inside
//! `catch_unwind`, so no panic crosses into C (a panic answers `VM_RECLAIM_RESOURCE_SHORTAGE`, or
//! `false` / 0 where the seed returns no error).

mod abi;
mod exports;
mod ring;

pub use abi::*;
pub use exports::*;
