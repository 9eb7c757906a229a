//! The atomics the ring is written with: `core::sync::atomic` normally, `loom::sync::atomic` when the
//! module is compiled into the loom model (`tests/loom_reclaim.rs` under `--cfg loom`), as crossbeam does.
//!
//! Invariant: the protocol code imports every atomic type, every fence and every spin hint from here and
//! from nowhere else, so the code loom checks is the code that ships.
//!
//! The loom build is `all(loom, test)`: the model test includes this module's source into its own crate
//! (where loom is a dev-dependency), while the library itself, built with `--cfg loom` as the test's
//! dependency, keeps the core atomics.

#[cfg(all(loom, test))]
pub(crate) use loom::{
    hint::spin_loop,
    sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence},
};

#[cfg(not(all(loom, test)))]
pub(crate) use core::{
    hint::spin_loop,
    sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence},
};

/// `Ordering::Relaxed`, the only ordering the ring's loads and stores use: all ordering comes from the
/// explicit fences.
pub(crate) const RELAXED: Ordering = Ordering::Relaxed;
