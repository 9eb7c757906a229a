//! Per-thread state: the calling thread's slot (the seed's `uthread->t_dtrace_scratch`), and a
//! one-slot cache of a freed slot.
//!
//! * `current`: claimed on first use, released by a thread-local destructor when the thread exits
//!   (the seed's uthread cleanup), claimed anew when an `exec_exit` or a fork retired the one it had.
//! * The cache: a release keeps the freed slot here when the cache is empty, and the thread's next
//!   claim of the same space takes it back, so a thread that claims and releases in turn touches no
//!   shared cache line but the slot's own state word. The cached slot is free (its state word says
//!   so, so copies of old handles still cannot release it) but owned by this thread, outside the free
//!   list; at thread exit it goes onto the free list. Cost: up to one free slot per thread (of one
//!   space at a time) is out of other threads' reach.
//!
//! Each thread keeps a short list, one entry per scratch space it used: a `Weak` to the space's shared
//! state (so a thread never keeps a space alive), and each slot with the space's retire epoch when it
//! was taken. A slot whose epoch is no longer the space's was retired with its page: it is dropped.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Weak};

use super::pool::SlotRef;
use super::slot::{ScratchError, ScratchSlot, SlotView};

/// What this thread's state needs of a scratch space's shared state (`scratch.rs`'s `Inner`), so
/// that this module imports nothing from its parent.
pub(super) trait Owner: Send + Sync + 'static {
    /// Tells this space's slots from other spaces' (ids start at 1).
    fn id(&self) -> u64;
    /// The retire epoch: bumped whenever the pool retires its pages.
    fn epoch(&self) -> u64;
    /// Whether the pool's pages belong to this process (not to the parent of a fork).
    fn in_this_process(&self) -> bool;
    /// Puts a free slot of this space (one this thread's cache held) on the shared free list.
    fn push_ref(&self, slot: SlotRef);
    /// Releases `slot` onto the shared free list, never into a thread's cache.
    fn release_uncached(&self, slot: ScratchSlot) -> Result<(), ScratchError>;
}

struct Held {
    inner: Weak<dyn Owner>,
    /// This thread's slot, and the epoch it was claimed in.
    current: Option<(ScratchSlot, u64)>,
}

struct Registry(RefCell<Vec<Held>>);

impl Drop for Registry {
    /// Thread exit: every slot goes back to its space (errors mean the space retired it already).
    fn drop(&mut self) {
        let cached = CACHE.with(|c| {
            // From now on a release on this thread (from a later destructor) bypasses the cache.
            c.registered.set(CLOSED);
            c.space.replace(NONE)
        });
        for held in self.0.get_mut().drain(..) {
            let Some(inner) = held.inner.upgrade() else { continue };
            if let Some((slot, _)) = held.current {
                // This thread's locals are gone, so the slot cannot go to the cache: the free list.
                let _ = inner.release_uncached(slot);
            }
            if cached == inner.id() {
                let (slot, epoch) = CACHE.with(|c| (c.slot.get(), c.epoch.get()));
                give_back(&*inner, slot, epoch);
            }
        }
    }
}

/// Puts a slot the cache held for `inner` (freed in `epoch`) on `inner`'s free list, unless its page
/// was retired since or this is a fork child (then the slot is gone with its page).
fn give_back(inner: &dyn Owner, slot: SlotRef, epoch: u64) {
    if epoch == inner.epoch() && inner.in_this_process() {
        // The cache held `slot` for the space whose id it recorded, `inner`'s.
        inner.push_ref(slot);
    }
}

/// The one-slot cache of a freed slot: plain cells with a constant initialiser and no destructor, so
/// that reaching them is one thread-pointer-relative access (no lazy registration, no `RefCell`).
/// The `Registry` destructor empties it when the thread exits.
struct Cache {
    /// The id of the space the cached slot belongs to, or `NONE`.
    space: Cell<u64>,
    slot: Cell<SlotRef>,
    /// The space's retire epoch when the slot was freed.
    epoch: Cell<u64>,
    /// A space id known to have an entry in `HELD` (so the thread-exit destructor will find the
    /// cached slot's space), or `CLOSED` once that destructor has run.
    registered: Cell<u64>,
}

/// No space (ids start at 1).
const NONE: u64 = 0;
/// The thread's `Registry` is gone: nothing may be cached any more.
const CLOSED: u64 = u64::MAX;

thread_local! {
    static HELD: Registry = const { Registry(RefCell::new(Vec::new())) };
    static CACHE: Cache = const {
        Cache {
            space: Cell::new(NONE),
            slot: Cell::new(SlotRef::NULL),
            epoch: Cell::new(0),
            registered: Cell::new(NONE),
        }
    };
}

fn same<O: Owner>(held: &Held, inner: &Arc<O>) -> bool {
    core::ptr::addr_eq(Weak::as_ptr(&held.inner), Arc::as_ptr(inner))
}

/// Runs `f` on this thread's entry for `inner` (made if missing); `None` while the thread's locals
/// are being destroyed.
#[inline]
fn with_entry<O: Owner, R>(inner: &Arc<O>, f: impl FnOnce(&mut Held) -> R) -> Option<R> {
    HELD.try_with(|reg| {
        let mut held = reg.0.borrow_mut();
        if let Some(h) = held.iter_mut().find(|h| same(h, inner)) {
            return f(h);
        }
        held.retain(|h| h.inner.strong_count() > 0);
        let weak: Weak<dyn Owner> = Arc::downgrade(inner) as Weak<dyn Owner>;
        held.push(Held { inner: weak, current: None });
        let last = held.len() - 1;
        f(&mut held[last])
    })
    .ok()
}

/// Takes the cached free slot, if this thread has one of `inner` from the current epoch (a stale one
/// is dropped).
#[inline]
pub(super) fn take_cached<O: Owner>(inner: &Arc<O>) -> Option<SlotRef> {
    CACHE.with(|c| {
        if c.space.get() != inner.id() {
            return None;
        }
        c.space.set(NONE);
        (c.epoch.get() == inner.epoch()).then(|| c.slot.get())
    })
}

/// Keeps a freed slot (already marked free) in this thread's cache; false if the cache holds a slot
/// of this space already or the thread is exiting (the caller then pushes it onto the free list). A
/// slot of another space is given back to that space first: the cache serves the space released to
/// last, and a space this thread stopped using (or that was dropped) does not keep it.
#[inline]
pub(super) fn put_cached<O: Owner>(inner: &Arc<O>, slot: SlotRef) -> bool {
    let (id, epoch) = (inner.id(), inner.epoch());
    CACHE.with(|c| {
        match c.space.get() {
            NONE => {}
            space if space == id => return false,
            _ => evict(c),
        }
        if c.registered.get() != id && !register(c, inner) {
            return false;
        }
        c.space.set(id);
        c.slot.set(slot);
        c.epoch.set(epoch);
        true
    })
}

/// Empties the cache of another space's slot: back to that space's free list if the space is still
/// alive (every space a slot can be cached for has an entry in `HELD`), dropped with it otherwise.
#[cold]
fn evict(c: &Cache) {
    let (old, slot, epoch) = (c.space.replace(NONE), c.slot.get(), c.epoch.get());
    let _ = HELD.try_with(|reg| {
        let Ok(held) = reg.0.try_borrow() else { return };
        if let Some(inner) = held.iter().filter_map(|h| h.inner.upgrade()).find(|i| i.id() == old) {
            give_back(&*inner, slot, epoch);
        }
    });
}

/// Makes sure `HELD` has an entry for `inner`, so that the thread-exit destructor gives a cached slot
/// back; false once that destructor has run.
#[cold]
fn register<O: Owner>(c: &Cache, inner: &Arc<O>) -> bool {
    if c.registered.get() == CLOSED || with_entry(inner, |_| ()).is_none() {
        return false;
    }
    c.registered.set(inner.id());
    true
}

/// This thread's slot of `inner`, if it has one that is still valid (its page not retired since, not
/// inherited from the parent of a fork): the fast path of `ScratchSpace::current`. `Err` while the
/// thread's locals are being destroyed.
#[inline]
pub(super) fn current<O: Owner>(inner: &Arc<O>) -> Result<Option<SlotView>, ScratchError> {
    HELD.try_with(|reg| {
        let held = reg.0.borrow();
        let (slot, epoch) = held.iter().find(|h| same(h, inner))?.current?;
        let valid = epoch == inner.epoch() && inner.in_this_process();
        valid.then_some(slot.view())
    })
    .map_err(|_| ScratchError::ThreadExiting)
}

/// Makes `slot`, claimed in `epoch`, this thread's slot of `inner` (a stale previous one was retired
/// with its page: nothing to give back); false while the thread's locals are being destroyed.
pub(super) fn set_current<O: Owner>(inner: &Arc<O>, slot: ScratchSlot, epoch: u64) -> bool {
    with_entry(inner, |h| h.current = Some((slot, epoch))).is_some()
}
