//! The crate's one loom shim: the atomics (and the cell and the wait) of its lock-free protocols —
//! the left-right publication (`publish.rs`) and the scratch space's free list and slot states
//! (`scratch/stack.rs`, `scratch/pool.rs`) — swapped for loom's under `cfg(loom)`, so the code loom
//! checks is the code that ships (as crossbeam does).
//!
//! Invariant: those files import every atomic type from here and from nowhere else. The loom models
//! (`tests/loom_publish.rs`, `tests/loom_scratch.rs`) run with `--cfg loom`, under which the library
//! takes loom's types; nothing else runs in that configuration. `tests/loom_scratch.rs` compiles
//! this file and the scratch files into its own crate, where `crate::primitive` is this file again.
#![allow(unused_imports, dead_code)]

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// Waits a little for another thread: a yield under loom (so the model explores the other thread),
/// `sched_yield` otherwise (async-signal-safe).
pub fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// An `UnsafeCell` with loom's closure API, so loom can see every access to the copies.
#[cfg(loom)]
pub use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` behind loom's closure API.
#[cfg(not(loom))]
#[derive(Debug)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared pointer to the value.
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a unique pointer to the value.
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
