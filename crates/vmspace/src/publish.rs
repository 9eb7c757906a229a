//! Left-right publication: two copies of a value, one that readers use and one that the writer changes,
//! so that readers never wait for a writer, never take a lock and never allocate — which is what a
//! signal handler needs to look up the address that faulted.
//!
//! Invariant: a reader only ever reads the copy `active` named when it announced itself in
//! `readers[i]`, and the writer only changes copy `i` after it has seen `readers[i] == 0` while
//! `active != i`. Announcing is `readers[i] += 1`, `fence(SeqCst)`, then re-checking `active == i`; the
//! writer flips `active`, `fence(SeqCst)`, then reads `readers[i]`. The two fences order the two
//! store-then-load pairs (Dekker's pattern), so either the reader sees the flip and backs out, or the
//! writer sees the reader and waits for it. Hence no reader ever sees a copy half-changed. Data of a
//! copy is published by the flip (release/acquire) and returned by the reader's exit (release, seen
//! by the writer's acquire load of the count).
//!
//! Writing is: change the inactive copy, flip `active`, wait for the old copy's readers to leave,
//! then bring the old copy up to date by replaying the same (deterministic) change on it.

use crate::primitive::{AtomicU64, AtomicUsize, Ordering, UnsafeCell, fence, spin_wait};

/// Two copies of `T` with wait-free reads and one writer at a time.
pub struct LeftRight<T> {
    copies: [UnsafeCell<T>; 2],
    active: AtomicUsize,
    readers: [AtomicUsize; 2],
    /// The thread id of the writer holding the write lock, 0 when free.
    writer: AtomicU64,
}

// SAFETY: readers only get `&T` of a copy the writer does not touch while they are counted (module
// invariant), and the writer gets `&mut T` of a copy no reader is counted on, under the write lock;
// so `T: Send + Sync` suffices for sharing across threads.
unsafe impl<T: Send + Sync> Sync for LeftRight<T> {}
// SAFETY: owning the value moves both copies; `T: Send` suffices.
unsafe impl<T: Send> Send for LeftRight<T> {}

/// What [`LeftRight::try_write`] says when the write lock is held by the calling thread itself (a
/// fault taken inside a write: it must not wait for itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldByMe;

impl<T: Clone> LeftRight<T> {
    /// Two copies of `value`.
    pub fn new(value: T) -> Self {
        LeftRight {
            copies: [UnsafeCell::new(value.clone()), UnsafeCell::new(value)],
            active: AtomicUsize::new(0),
            readers: [AtomicUsize::new(0), AtomicUsize::new(0)],
            writer: AtomicU64::new(0),
        }
    }

    /// Reads the active copy. Never blocks on a writer (it may retry if a flip happens at the very
    /// moment it announces itself), never allocates, and is async-signal-safe.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let i = loop {
            let i = self.active.load(Ordering::Acquire);
            self.readers[i].fetch_add(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if self.active.load(Ordering::Acquire) == i {
                break i;
            }
            self.readers[i].fetch_sub(1, Ordering::Release);
        };
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Release);
            }
        }
        let _leave = Leave(&self.readers[i]);
        // SAFETY: this reader is counted on copy `i`, which the writer does not change until the count
        // drops to zero (module invariant).
        self.copies[i].with(|p| f(unsafe { &*p }))
    }

    /// Takes the write lock, spinning (and yielding) while another thread holds it; `Err(HeldByMe)` if
    /// the calling thread holds it already. Async-signal-safe: no allocation, no futex.
    pub fn try_write(&self, tid: u64) -> Result<WriteGuard<'_, T>, HeldByMe> {
        debug_assert_ne!(tid, 0);
        loop {
            match self.writer.compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(WriteGuard::taken(self)),
                Err(owner) if owner == tid => return Err(HeldByMe),
                Err(_) => spin_wait(),
            }
        }
    }
}

impl<T> LeftRight<T> {
    /// Whether the thread `tid` holds the write lock.
    pub fn held_by(&self, tid: u64) -> bool {
        self.writer.load(Ordering::Relaxed) == tid
    }

    /// Forgets every reader mark: in the child of a `fork(2)`, the readers that were counted ran on
    /// threads the child does not have, and nothing would ever clear their marks.
    ///
    /// # Safety
    /// Only in a fork child, before any thread is started in it, while the caller holds the write lock
    /// and is not itself inside [`LeftRight::read`] of this value.
    pub unsafe fn reset_readers_in_child(&self) {
        for r in &self.readers {
            r.store(0, Ordering::Relaxed);
        }
    }
}

impl<T> LeftRight<T> {
    /// Takes the write lock if it is free now: `Ok(None)` when another thread holds it,
    /// `Err(HeldByMe)` when the calling thread does. Never waits.
    pub fn try_write_now(&self, tid: u64) -> Result<Option<WriteGuard<'_, T>>, HeldByMe> {
        debug_assert_ne!(tid, 0);
        match self.writer.compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Ok(Some(WriteGuard::taken(self))),
            Err(owner) if owner == tid => Err(HeldByMe),
            Err(_) => Ok(None),
        }
    }
}

/// The write lock, held. Changes go through [`WriteGuard::write`].
pub struct WriteGuard<'a, T> {
    lr: &'a LeftRight<T>,
}

impl<T> WriteGuard<'_, T> {
    /// Runs `f` on the copy readers see now (it never changes while the lock is held).
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let i = self.lr.active.load(Ordering::Relaxed);
        // SAFETY: only the lock holder changes copies, and it is us; we only read here.
        self.lr.copies[i].with(|p| f(unsafe { &*p }))
    }

    /// Publishes a change: `change` runs on the inactive copy and says whether it changed it; if so,
    /// the copies flip and, once the old copy's readers have left, `replay` brings that copy up to
    /// date. A change that changed nothing publishes nothing.
    ///
    /// `replay` must leave the second copy equal to the first (the map's operations are deterministic,
    /// so running the same operation again does).
    pub fn write<R>(
        &mut self,
        change: impl FnOnce(&mut T) -> (R, bool),
        replay: impl FnOnce(&mut T, &T),
    ) -> R {
        let lr = self.lr;
        // Only the lock holder stores `active`, and it is us.
        let i = lr.active.load(Ordering::Relaxed);
        let j = 1 - i;
        // Readers that entered `j` before the last flip must be gone before we touch it.
        while lr.readers[j].load(Ordering::Acquire) != 0 {
            spin_wait();
        }
        // SAFETY: `j` is inactive and has no counted readers; new readers back out (they see `i`).
        let (r, changed) = lr.copies[j].with_mut(|p| change(unsafe { &mut *p }));
        if !changed {
            return r;
        }
        lr.active.store(j, Ordering::Release);
        fence(Ordering::SeqCst);
        while lr.readers[i].load(Ordering::Acquire) != 0 {
            spin_wait();
        }
        // SAFETY: `i` is now inactive with no counted readers; `j` is only read.
        lr.copies[i].with_mut(|dst| lr.copies[j].with(|src| unsafe { replay(&mut *dst, &*src) }));
        r
    }
}

/// How many write locks (of any `LeftRight`) the calling thread holds: an allocator that itself
/// changes a space must not be entered from inside a change (`alloc.rs` sends such allocations to the
/// system allocator), or two locks could be taken in both orders.
#[cfg(not(loom))]
pub fn writes_held() -> usize {
    WRITES_HELD.try_with(std::cell::Cell::get).unwrap_or(0)
}

/// Under loom the models' threads share one OS thread (a thread-local count would be shared), and
/// no model forks or allocates through `LargeAlloc`: none is counted.
#[cfg(loom)]
pub fn writes_held() -> usize {
    0
}

#[cfg(not(loom))]
std::thread_local! {
    static WRITES_HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<'a, T> WriteGuard<'a, T> {
    fn taken(lr: &'a LeftRight<T>) -> Self {
        #[cfg(not(loom))]
        let _ = WRITES_HELD.try_with(|c| c.set(c.get() + 1));
        WriteGuard { lr }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        #[cfg(not(loom))]
        let _ = WRITES_HELD.try_with(|c| c.set(c.get().saturating_sub(1)));
        self.lr.writer.store(0, Ordering::Release);
    }
}
