//! Failure injection, the test hook of the kernel step: a space can be told that its `n`-th next system
//! call fails, with which errno and how much of it takes effect first.
//!
//! Invariant: an armed switch fires exactly once, on the call it counted down to, and is off after
//! it; an unarmed switch changes no call.

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU64, Ordering};

/// `remaining` value meaning "no failure injected".
pub(crate) const NO_FAILURE: u64 = u64::MAX;

/// How an injected failure behaves: the call is not made, made in full, or made over the first half
/// of its range, and then reports the error — the three shapes a real failure half-way can take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Nothing is done (the kernel refused up front).
    #[default]
    Before,
    /// The call takes effect, then reports the error (a later part of it failed).
    After,
    /// The first half of the range (in whole pages) takes effect, then the error.
    Half,
}

/// The failure-injection switch of one space (a test hook).
pub(crate) struct Injection {
    /// System calls still allowed before one fails; `NO_FAILURE` when off.
    remaining: AtomicU64,
    errno: AtomicI32,
    mode: AtomicU8,
}

impl Injection {
    /// Off; the errno, once armed, defaults to `ENOMEM` (12).
    pub(crate) const fn off() -> Self {
        Injection { remaining: AtomicU64::new(NO_FAILURE), errno: AtomicI32::new(12), mode: AtomicU8::new(0) }
    }

    pub(crate) fn set(&self, after: Option<u64>, errno: i32, mode: FailureMode) {
        self.errno.store(errno, Ordering::SeqCst);
        self.mode.store(mode as u8, Ordering::SeqCst);
        self.remaining.store(after.unwrap_or(NO_FAILURE), Ordering::SeqCst);
    }

    /// Whether a failure is still to come (the calls made so far did not reach it).
    pub(crate) fn armed(&self) -> bool {
        self.remaining.load(Ordering::SeqCst) != NO_FAILURE
    }

    /// Counts one call; `Some((errno, mode))` when this one must fail.
    pub(super) fn fire(&self) -> Option<(i32, FailureMode)> {
        match self.remaining.load(Ordering::Relaxed) {
            NO_FAILURE => None,
            0 => {
                self.remaining.store(NO_FAILURE, Ordering::Relaxed);
                let mode = match self.mode.load(Ordering::Relaxed) {
                    1 => FailureMode::After,
                    2 => FailureMode::Half,
                    _ => FailureMode::Before,
                };
                Some((self.errno.load(Ordering::Relaxed), mode))
            }
            n => {
                self.remaining.store(n - 1, Ordering::Relaxed);
                None
            }
        }
    }
}
