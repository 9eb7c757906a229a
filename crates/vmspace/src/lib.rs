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

/// The calling thread's id (`gettid`), for the write lock's owner. Cached per thread with the fork
/// generation it was read in (a forked child's thread has a new id): `gettid` is a system call, and
/// it was a fifth of the cost of an `AddressSpace::protect`.
pub(crate) fn thread_id() -> u64 {
    use std::cell::Cell;
    thread_local! {
        /// `(fork generation, tid)`; tid 0 is unset.
        static TID: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    // A hit is two plain loads, so the fault handler (which asks for this) touches no lock; an entry
    // is only cached once the fork handler is known to be registered.
    let generation = fork::generation();
    if let Ok(Some(tid)) = TID.try_with(|c| match c.get() {
        (g, tid) if g == generation && tid != 0 => Some(tid),
        _ => None,
    }) {
        return tid;
    }
    let tid = os::process::gettid();
    if fork::watch_forks().is_ok() {
        let _ = TID.try_with(|c| c.set((generation, tid)));
    }
    tid
}
