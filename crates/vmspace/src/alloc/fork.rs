//! The allocator across `fork(2)`: every `LargeAlloc` state is in one table, and the forking thread
//! takes every lock of every state (table, ring, class caches, live maps) before the spaces' locks
//! and gives them back on both sides after.
//!
//! Invariant: a state is in the table from its first setup to its allocator's drop, both under the
//! table lock; between `fork_prepare` and `fork_release` the forking thread holds the table and every
//! lock of every state in it, so a child never inherits a lock held by a thread it does not have.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::reclaim::ReclaimRing;

use super::cache::{AddrMap, Cached, Live, State, lock};
use super::reentry::{Inside, prepared, set_prepared};

/// Every `LargeAlloc` state of this process (its address), for the fork hooks; held across `fork(2)`.
static FORK_TABLE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

pub(super) fn fork_table() -> MutexGuard<'static, Vec<usize>> {
    lock(&FORK_TABLE)
}

/// The locks held across one fork, by the forking thread.
struct Held {
    _table: MutexGuard<'static, Vec<usize>>,
    _rings: Vec<MutexGuard<'static, ReclaimRing>>,
    _classes: Vec<MutexGuard<'static, VecDeque<Cached>>>,
    _live: Vec<MutexGuard<'static, AddrMap<Live>>>,
}

/// Where the forking thread keeps its [`Held`] between the hooks before and after `fork(2)`.
struct HeldCell(std::cell::UnsafeCell<Option<Held>>);
// SAFETY: only the thread holding `FORK_TABLE` writes the cell (in `fork_prepare`), and only that thread
// takes it (in `fork_release`, on the same thread: atfork hooks and `fork::fork` run on the forking
// thread); another forker waits for the table before it touches the cell.
unsafe impl Sync for HeldCell {}
static HELD: HeldCell = HeldCell(std::cell::UnsafeCell::new(None));

/// Takes every lock of every `LargeAlloc`, in the allocator's order, to be held across a fork by the
/// calling thread (the spaces' fork hooks call it before they take the spaces' locks).
pub(crate) fn fork_prepare() {
    if prepared() {
        return;
    }
    let _g = Inside::enter();
    let table = fork_table();
    let (mut rings, mut classes, mut live) = (Vec::new(), Vec::new(), Vec::new());
    for &p in table.iter() {
        // SAFETY: a state stays in the table until its allocator's drop removes it under this lock,
        // which we hold until the guards below are dropped (in `fork_release`); so it lives as long as
        // they do, which is what the `'static` borrows stand for.
        let s: &'static State = unsafe { &*(p as *const State) };
        rings.push(lock(&s.ring));
        classes.extend(s.classes.iter().map(lock));
        live.extend(s.live.iter().map(lock));
    }
    let held = Held { _table: table, _rings: rings, _classes: classes, _live: live };
    // SAFETY: we hold the table (inside `held`): the cell is ours (see `HeldCell`).
    unsafe { *HELD.0.get() = Some(held) };
    set_prepared(true);
}

/// Releases what [`fork_prepare`] took (in the parent and in the child, after `fork(2)`). Nothing if
/// nothing is held by this thread.
pub(crate) fn fork_release() {
    if !set_prepared(false) {
        return;
    }
    let _g = Inside::enter();
    // SAFETY: this thread prepared (PREPARED), so it holds the table and the cell is its own; the value
    // is taken out before its guards (the table last) are dropped.
    let held = unsafe { (*HELD.0.get()).take() };
    drop(held);
}

/// Joins the spaces' fork hooks once (called before the table is first taken, so that every fork from
/// then on takes the table before `fork(2)`).
pub(super) fn watch_forks() {
    // A `Once`, not a flag: a second caller must not go on (and take the table) before the first has
    // registered the hooks.
    static WATCHING: std::sync::Once = std::sync::Once::new();
    WATCHING.call_once(|| {
        // One pair of four slots, registered once: it cannot be full.
        let registered = crate::space::also_hold_across_forks(fork_prepare, fork_release);
        debug_assert!(registered);
    });
}
