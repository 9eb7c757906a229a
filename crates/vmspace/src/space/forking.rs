//! Every `fork(2)` of the process — through [`crate::fork::fork`] or any other caller of libc's
//! `fork` — holds the spaces still across it, by `pthread_atfork` hooks registered with the first
//! space.
//!
//! Invariant: the child inherits no half-held state of vmspace's. Before the fork the forking thread
//! holds the table of spaces and every space's write lock (so no change is half-way); the reader marks
//! and fault handlers in flight of other threads — which the child does not have — are reset in the
//! child before anything could wait on them. The fork never waits while holding a lock another waiting
//! thread needs: it takes the write locks all or none (new changes hold back meanwhile, so it is not
//! starved), and the parent gives every lock back before it marks its maps copy-on-write, one space at
//! a time. Other holders of locks whose holders may wait for a space (the large-block allocators)
//! join with [`also_hold`]: their locks are taken before the spaces' and given back before anything
//! waits again.
//!
//! A fork from inside a read of a space (a `with_map` closure) or a change to one cannot be held so
//! (it would wait for itself): the hooks then leave the spaces alone; [`crate::fork::fork`] refuses it.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use vmspace_core::VmMap;

use crate::backing::Backing;
use crate::os::{self, process};
use crate::publish::WriteGuard;
use crate::registry;

use super::shared::{Shared, reading_any};

/// What the forking thread holds across one fork.
struct Holding {
    /// Dropped first (field order): they borrow `spaces`' maps.
    guards: Vec<WriteGuard<'static, VmMap<Backing>>>,
    announced: registry::Announced,
    held: registry::Held,
    spaces: Vec<Arc<Shared>>,
}

/// The forking thread's [`Holding`] between the hooks before and after `fork(2)`.
struct HoldingCell(UnsafeCell<Option<Holding>>);
// SAFETY: written by `prepare` only while it holds the table (inside the value), and taken by the
// parent or child hook on the same thread (atfork hooks run on the forking thread); another forker
// waits for the table in its own `prepare` before it touches the cell, and the value is taken out
// before the table is let go.
unsafe impl Sync for HoldingCell {}
static HOLDING: HoldingCell = HoldingCell(UnsafeCell::new(None));

/// Locks held across a fork besides the spaces': `(take, give back)`, called before the spaces' are
/// taken and after they are given back (in the parent before the copy-on-write marks).
struct Also {
    /// Set by the one caller that claims the slot.
    claimed: AtomicBool,
    take: AtomicUsize,
    give_back: AtomicUsize,
    /// Set after both functions are stored: a fork between the two stores calls neither.
    ready: AtomicBool,
}
static ALSO: [Also; 4] = [const {
    Also {
        claimed: AtomicBool::new(false),
        take: AtomicUsize::new(0),
        give_back: AtomicUsize::new(0),
        ready: AtomicBool::new(false),
    }
}; 4];

/// Holds more locks across every fork (see the module doc); at most four pairs per process, each
/// registered once (a pair already registered is not added again). Returns false when full.
/// `give_back` must be harmless without a `take` before it: a pair registered during a fork may see
/// only the second hook.
pub(crate) fn also_hold(take: fn(), give_back: fn()) -> bool {
    watch();
    for slot in &ALSO {
        if slot.ready.load(Ordering::SeqCst) && slot.take.load(Ordering::SeqCst) == take as usize {
            return true;
        }
    }
    let Some(slot) = ALSO.iter().find(|s| !s.claimed.swap(true, Ordering::SeqCst)) else {
        return false;
    };
    slot.take.store(take as usize, Ordering::SeqCst);
    slot.give_back.store(give_back as usize, Ordering::SeqCst);
    slot.ready.store(true, Ordering::SeqCst);
    true
}

/// Calls every `take` (`which` = 0) or `give back` (1) of [`also_hold`].
fn also(which: usize) {
    for slot in &ALSO {
        if !slot.ready.load(Ordering::SeqCst) {
            continue;
        }
        let f = if which == 0 { &slot.take } else { &slot.give_back }.load(Ordering::SeqCst);
        // SAFETY: a ready slot holds two `fn()` stored by `also_hold` before `ready` was set.
        let f: fn() = unsafe { std::mem::transmute::<usize, fn()>(f) };
        f();
    }
}

/// Registers the hooks, once per process (when the first space is made).
pub(crate) fn watch() {
    // A `Once`, not a flag: no caller goes on to make a space before the hooks are in.
    static WATCHING: std::sync::Once = std::sync::Once::new();
    WATCHING.call_once(|| {
        let _ = process::at_fork(Some(prepare), Some(parent), Some(child));
    });
}

/// Before `fork(2)`: every once-per-process probe done, the table and every write lock held.
unsafe extern "C" fn prepare() {
    if crate::publish::writes_held() > 0 {
        return;
    }
    // A probe half-done by another thread at the fork would leave the child waiting for it forever.
    let _ = (os::features(), os::madvise_batching(), os::pagemap::shows_guards());
    let _ = (crate::smaps::shows_reservations(), process::watch_forks());
    also(0);
    if reading_any() {
        return;
    }
    let held = registry::hold();
    let spaces: Vec<Arc<Shared>> = held.members();
    // A thread on a vmspace stack must not need to grow it while it holds every space's lock.
    for s in &spaces {
        s.ensure_headroom();
    }
    let tid = process::thread_id();
    let announced = held.announce_fork();
    let mut guards: Vec<WriteGuard<'static, VmMap<Backing>>> = Vec::with_capacity(spaces.len());
    loop {
        let mut busy = false;
        for s in &spaces {
            // SAFETY: the guard borrows a map of a space kept alive by `spaces`, in the same
            // `Holding` and dropped after the guards (field order): `'static` stands for that.
            let maps: &'static crate::publish::LeftRight<VmMap<Backing>> = unsafe { &*(&s.maps as *const _) };
            match maps.try_write_now(tid) {
                Ok(Some(g)) => guards.push(g),
                // Held by another thread (or, impossibly here, by this one: it holds none).
                _ => {
                    busy = true;
                    break;
                }
            }
        }
        if !busy {
            break;
        }
        guards.clear();
        std::thread::yield_now();
    }
    let holding = Holding { guards, announced, held, spaces };
    // SAFETY: we hold the table (inside `holding`): the cell is ours (see `HoldingCell`).
    unsafe { *HOLDING.0.get() = Some(holding) };
}

/// Takes what `prepare` left, if it held anything.
fn take() -> Option<Holding> {
    // SAFETY: only the forking thread, after its own `prepare`, runs the hooks that call this; the
    // table is still held (inside the value) until it is dropped after being taken out.
    unsafe { (*HOLDING.0.get()).take() }
}

/// In the child: every space's map follows what this kernel has, before the locks go.
unsafe extern "C" fn child() {
    let Some(h) = take() else {
        also(1);
        return;
    };
    h.held.reset_in_child();
    let Holding { mut guards, announced, held, spaces } = h;
    // The count it stands for was reset with the table.
    std::mem::forget(announced);
    for (s, g) in spaces.iter().zip(guards.iter_mut()) {
        // SAFETY: this is the child, which has only this thread; it holds the write lock (g) and is
        // inside no read (checked in `prepare`).
        unsafe { s.reset_after_fork(g) };
        s.after_fork_child(g);
    }
    drop(guards);
    drop(held);
    also(1);
}

/// In the parent: the locks and the table go, then each map marks its copies copy-on-write — which
/// waits for the map's readers, and a reader may itself be waiting (a stack growth) for another space's
/// lock or for the fork to end.
unsafe extern "C" fn parent() {
    let Some(h) = take() else {
        also(1);
        return;
    };
    let Holding { guards, announced, held, spaces } = h;
    drop(guards);
    drop(held);
    drop(announced);
    also(1);
    let tid = process::thread_id();
    for s in &spaces {
        if let Ok(mut g) = s.maps.try_write(tid) {
            s.after_fork_parent(&mut g);
        }
    }
}
