//! vmspace: the `vmspace-core` address map driving real memory of this process on Linux.
//!
//! [`AddressSpace`] owns a reserved range and keeps the map and the kernel equal through every call
//! (the seed's `struct vmspace`). The core types are re-exported, so a user needs only this crate.
//!
//! Feature `testing` (this crate's own tests only, through a dev-dependency on itself): makes the test
//! scaffolding public — `publish` (the left-right pair the loom model drives) and `smaps` (the
//! kernel's view of this process, which tests compare with the map). Without it both are private.

pub mod alloc;
pub mod backing;
pub mod error;
pub mod fault;
pub mod fork;
pub mod os;
mod primitive;
pub mod procmaps;
#[cfg(feature = "testing")]
pub mod publish;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
mod publish;
pub mod reclaim;
mod registry;
pub mod scratch;
#[cfg(feature = "testing")]
pub mod smaps;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
mod smaps;
pub mod space;

pub use backing::Backing;
pub use error::Error;
pub use space::{AddressSpace, Options, Stats};
pub use vmspace_core::*;
