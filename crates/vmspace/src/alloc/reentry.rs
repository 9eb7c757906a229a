//! Which threads bypass the large path: the allocator's own bookkeeping, the reclaimer thread, a
//! thread inside a change to an address space, and the thread holding every lock across a fork. Their
//! allocations go to the wrapped allocator.
//!
//! Invariant: while a thread is inside the large path (an `Inside` guard lives) or holds the fork's
//! locks, `bypass` is true on it, so the allocator never recurses into its own locks.

use std::cell::Cell;

thread_local! {
    /// This thread took the locks itself (`fork::fork`), so the atfork prepare hook must not again.
    static PREPARED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread took every allocator lock for a fork (and still holds them).
pub(super) fn prepared() -> bool {
    PREPARED.try_with(Cell::get).unwrap_or(false)
}

/// Sets whether this thread holds every allocator lock for a fork; returns what it was.
pub(super) fn set_prepared(on: bool) -> bool {
    PREPARED.try_with(|c| c.replace(on)).unwrap_or(false)
}

thread_local! {
    /// Whether this thread is inside the allocator's large path (or is the reclaimer thread): then every
    /// allocation goes to the wrapped allocator. 0 unknown, 1 normal, 2 inside, 3 reclaimer thread.
    static MODE: Cell<u8> = const { Cell::new(0) };
}

/// Whether this thread must bypass the large path: inside the allocator, on the reclaimer thread, or
/// inside a change to any address space (which holds that space's write lock: the large path takes
/// the allocator's locks and then its own space's lock, so entering it there could take two locks in
/// both orders, and a fork that takes every lock would wait for ever).
pub(super) fn bypass() -> bool {
    // Also while this thread holds every allocator lock across a fork (it would wait for itself).
    if crate::publish::writes_held() > 0 || prepared() {
        return true;
    }
    MODE.with(|m| match m.get() {
        0 => {
            let r = is_reclaimer_thread();
            m.set(if r { 3 } else { 1 });
            r
        }
        1 => false,
        _ => true,
    })
}

/// Whether the calling thread is a `vm-reclaim` thread (asked of the kernel: no allocation, no std
/// thread handle, so it works while a thread is being torn down).
fn is_reclaimer_thread() -> bool {
    crate::os::process::thread_name().starts_with(b"vm-reclaim")
}

/// Sets the re-entrancy flag for the scope.
pub(super) struct Inside(u8);

impl Inside {
    pub(super) fn enter() -> Inside {
        let prev = MODE.with(|m| m.replace(2));
        Inside(prev)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let prev = self.0;
        MODE.with(|m| m.set(prev));
    }
}
