//! Fork awareness: a process-wide fork generation, and the grow lock (the seed's `sprlock`) that a
//! forked child can take even if a thread of the parent held it at the moment of the fork.
//!
//! The generation (`crate::os::process::generation`) is bumped in every child by a `pthread_atfork` child
//! handler (registered once, at the latest when the first scratch space is made), so that one relaxed
//! load tells a scratch space whether it is still in the process that allocated its pages. `getpid()`
//! would tell the same but is a system call on every claim.
//!
//! The grow lock's word is 0 when free and `generation + 1` of the holder otherwise. A word from an
//! older generation was set by a thread of an ancestor process, which does not exist here: the lock is
//! free for the taking (and whatever that thread was doing is thrown away by the child's reset).

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use crate::os::process::{generation, watch_forks};

/// A lock for the cold paths (page allocation, exec/exit, the child's reset): spins briefly, then
/// yields. Held for a few system calls at most.
pub(crate) struct ForkLock {
    word: AtomicU64,
}

/// Holds a [`ForkLock`]; unlocks on drop.
pub(crate) struct ForkGuard<'a>(&'a ForkLock);

impl ForkLock {
    /// A free lock.
    pub(crate) const fn new() -> ForkLock {
        ForkLock { word: AtomicU64::new(0) }
    }

    /// Takes the lock.
    pub(crate) fn lock(&self) -> ForkGuard<'_> {
        let mut spins = 0u32;
        loop {
            let mine = generation() + 1;
            let word = self.word.load(Ordering::Relaxed);
            // Free, or held by a thread of an ancestor process (an older generation).
            if word != mine {
                if self.word.compare_exchange(word, mine, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    return ForkGuard(self);
                }
                continue;
            }
            if spins < 100 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for ForkGuard<'_> {
    fn drop(&mut self) {
        self.0.word.store(0, Ordering::Release);
    }
}
