//! vmspace-core: a kernel's virtual-memory address map (DragonFly BSD `vm_map.h`) and the deferred
//! reclamation ring protocol (xnu `vm_reclaim.h`) as exact data structures, `no_std` + `alloc`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod map;
