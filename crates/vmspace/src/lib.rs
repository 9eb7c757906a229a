//! vmspace: the `vmspace-core` address map driving real memory of this process on Linux.
//!
//! [`AddressSpace`] owns a reserved range and keeps the map and the kernel equal through every call
//! (the seed's `struct vmspace`). The core types are re-exported, so a user needs only this crate.

pub mod alloc;
pub mod backing;
pub mod error;
pub mod fault;
pub mod fork;
pub mod os;
mod primitive;
pub mod procmaps;
pub mod publish;
pub mod reclaim;
mod registry;
pub mod scratch;
pub mod smaps;
pub mod space;

pub use backing::Backing;
pub use error::Error;
pub use space::{AddressSpace, Options, Stats};
pub use vmspace_core::*;
