//! The atomics the scratch space's free list and slot states are written with: `core::sync::atomic`
//! normally, `loom::sync::atomic` when this module is compiled into the loom model
//! (`tests/loom_scratch.rs` under `--cfg loom`), as the reclaim ring's `primitive` module does.
//!
//! Invariant: `stack.rs` and `pool.rs` import every atomic type from here and from nowhere else, so the
//! code loom checks is the code that ships. The loom build is `all(loom, test)`: the model test includes
//! these files into its own crate (where loom is a dev-dependency), while the library itself, built with
//! `--cfg loom` as the test's dependency, keeps the core atomics.

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

#[cfg(not(all(loom, test)))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
