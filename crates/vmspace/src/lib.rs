//! vmspace: the `vmspace-core` address map driving real memory of this process on Linux.
//!
//! The core types are re-exported so a user needs only this crate.

pub use vmspace_core::*;
