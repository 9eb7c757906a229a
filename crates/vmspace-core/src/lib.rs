//! vmspace-core: a kernel's virtual-memory address map (DragonFly BSD `vm_map.h`) and the deferred
//! reclamation ring protocol (xnu `vm_reclaim.h`) as exact data structures, `no_std` + `alloc`, with no
//! dependencies.
//!
//! ```
//! use vmspace_core::{VmMap, MapSpec, Prot};
//! let mut m: VmMap = VmMap::new(0x1000_0000, 0x2000_0000).unwrap();
//! let a = m.map_anywhere(0x4000, 0, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
//! m.protect(a + 0x1000..a + 0x2000, Prot::READ).unwrap();
//! assert_eq!(m.len(), 3);
//! m.protect(a + 0x1000..a + 0x2000, Prot::RW).unwrap();
//! assert_eq!(m.len(), 1); // merged back
//! m.check_invariants().unwrap();
//! ```
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod map;
pub mod reclaim;

pub use map::{
    Access, Advice, Attrs, Behavior, Effect, Entry, EntryFlags, Fault, FindSpec, Growth, HumanSize, Inherit,
    MapKind, MapObject, MapSpec, Observed, PAGE_SIZE, Prot, RESERVE_COUNT, RESERVE_SLOP, SubmapId, VmError,
    VmMap,
};
