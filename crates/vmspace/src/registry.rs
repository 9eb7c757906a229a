//! The one table of live address spaces: the fault handler finds the space an address belongs to in
//! it without a lock, and `fork` finds every space to hold across `fork(2)` in it. It knows spaces only
//! as their reservation and an opaque value (the space's shared state), so it depends on nothing above
//! it.
//!
//! Invariant: a member is in `ALL` from `register` to `unregister`, and in at most one slot, which the
//! handler may read only while it is counted in `IN_HANDLER`: `unregister` empties the slot first,
//! then waits for the count to reach zero, so once it returns no handler holds the member. `fork`
//! holds `ALL` across `fork(2)`, so no member is registered or unregistered half-way in a child; the
//! count of handlers in flight is reset in the child, whose other threads (and their handlers) are gone.

use std::any::Any;
use std::ops::Range;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// How many spaces the fault handler can see at once (see [`crate::fault::FAULT_SLOTS`]).
pub(crate) const SLOTS: usize = 256;

/// A member as the handler sees it: its reservation, then the pointer (null when free), published
/// last.
struct Slot {
    start: AtomicU64,
    end: AtomicU64,
    member: AtomicPtr<()>,
}

static SLOT: [Slot; SLOTS] = [const {
    Slot { start: AtomicU64::new(0), end: AtomicU64::new(0), member: AtomicPtr::new(std::ptr::null_mut()) }
}; SLOTS];
/// Fault handlers between counting themselves and leaving the table.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// A fork is taking every member's write lock: new changes wait, so it is not starved.
static FORK_PENDING: AtomicUsize = AtomicUsize::new(0);
/// Every live member, slot or not.
static ALL: Mutex<Vec<Weak<dyn Any + Send + Sync>>> = Mutex::new(Vec::new());

fn all() -> MutexGuard<'static, Vec<Weak<dyn Any + Send + Sync>>> {
    ALL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds a member whose memory is `outer`; returns the slot the fault handler sees it in, or `None`
/// when all are taken (the space works, but its faults are not explained and its stacks cannot grow).
pub(crate) fn register<T: Any + Send + Sync>(member: &Arc<T>, outer: Range<u64>) -> Option<usize> {
    let mut all = all();
    all.retain(|w| w.strong_count() > 0);
    let weak: Weak<dyn Any + Send + Sync> = Arc::downgrade(member) as Weak<dyn Any + Send + Sync>;
    all.push(weak);
    // Slots are taken and given back under ALL, so the one found free stays free until it is filled.
    let slot = SLOT.iter().position(|s| s.member.load(Ordering::SeqCst).is_null())?;
    SLOT[slot].start.store(outer.start, Ordering::SeqCst);
    SLOT[slot].end.store(outer.end, Ordering::SeqCst);
    SLOT[slot].member.store(Arc::as_ptr(member) as *mut (), Ordering::SeqCst);
    Some(slot)
}

/// Removes a member: no handler can still be looking at it once this returns, and `fork` no longer
/// sees it.
pub(crate) fn unregister<T: Any + Send + Sync>(member: &T, slot: Option<usize>) {
    let mut all = all();
    if let Some(slot) = slot {
        SLOT[slot].member.store(std::ptr::null_mut(), Ordering::SeqCst);
        // A handler counts itself before it loads a slot, so once the count is zero after the store, no
        // handler holds this member.
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
    let me = member as *const T as *const ();
    all.retain(|w| w.strong_count() > 0 && !std::ptr::addr_eq(w.as_ptr(), me));
}

/// Runs `f` on the member whose memory holds `addr`, if the handler can see one. Async-signal-safe:
/// atomics only.
///
/// # Safety
/// Every member registered is a `T` (the caller's type: one type of member per program).
pub(crate) unsafe fn with_member_at<T, R>(addr: u64, f: impl FnOnce(&T) -> R) -> Option<R> {
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let found = SLOT.iter().find_map(|s| {
        let p = s.member.load(Ordering::SeqCst);
        let inside = s.start.load(Ordering::SeqCst) <= addr && addr < s.end.load(Ordering::SeqCst);
        (!p.is_null() && inside).then_some(p)
    });
    // SAFETY: a registered member stays alive until `unregister` has seen IN_HANDLER at zero, and we
    // counted ourselves before loading the slot; it is a `T` (the caller's promise).
    let r = found.map(|p| f(unsafe { &*(p as *const T) }));
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    r
}

/// The table held across a `fork(2)`: no member comes or goes until it is dropped.
pub(crate) struct Held(MutexGuard<'static, Vec<Weak<dyn Any + Send + Sync>>>);

/// Takes the table for a fork.
pub(crate) fn hold() -> Held {
    Held(all())
}

impl Held {
    /// Every live member of type `T`.
    pub(crate) fn members<T: Any + Send + Sync>(&self) -> Vec<Arc<T>> {
        self.0.iter().filter_map(Weak::upgrade).filter_map(|a| a.downcast::<T>().ok()).collect()
    }

    /// In the child of a fork, before anything waits on the table: the handlers that were in flight
    /// ran on threads the child does not have, and the fork they waited for is done.
    pub(crate) fn reset_in_child(&self) {
        IN_HANDLER.store(0, Ordering::SeqCst);
        FORK_PENDING.store(0, Ordering::SeqCst);
    }

    /// Says a fork is waiting for the members' write locks, until the returned value is dropped: calls
    /// that are about to take one wait ([`wait_for_fork`]), so the fork gets them all soon.
    pub(crate) fn announce_fork(&self) -> Announced {
        FORK_PENDING.fetch_add(1, Ordering::SeqCst);
        Announced(())
    }
}

/// A fork announced by [`Held::announce_fork`].
pub(crate) struct Announced(());

impl Drop for Announced {
    fn drop(&mut self) {
        FORK_PENDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (yielding) while a fork is taking the members' write locks. Called by a change before it
/// takes its lock, holding none of the table's locks itself.
pub(crate) fn wait_for_fork() {
    while FORK_PENDING.load(Ordering::Relaxed) != 0 {
        std::thread::yield_now();
    }
}
