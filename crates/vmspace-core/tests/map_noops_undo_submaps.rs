//! Rules of the map's bookkeeping, one section each: a call that changes nothing is invisible
//! (timestamp, effects, undo); `undo` reverts everything the last call changed, `wire_future` included.

use vmspace_core::{Advice, Effect, Entry, Inherit, MapSpec, Prot, VmError, VmMap};

const PS: u64 = 4096;
const MIN: u64 = 0x1000_0000;
const MAX: u64 = 0x2000_0000;

fn rw() -> MapSpec {
    MapSpec::new(Prot::RW, Prot::ALL)
}

fn map() -> VmMap {
    VmMap::new(MIN, MAX).unwrap()
}

fn page(n: u64) -> u64 {
    MIN + n * PS
}

/// Everything a caller can observe of the map's state.
#[derive(Debug, PartialEq)]
struct State {
    entries: Vec<Entry>,
    size: u64,
    wired: u64,
    timestamp: u64,
    wire_future: bool,
}

fn state(m: &VmMap) -> State {
    State {
        entries: m.entries().cloned().collect(),
        size: m.size(),
        wired: m.wired_size(),
        timestamp: m.timestamp(),
        wire_future: m.wire_future(),
    }
}

// ---- 8. a call that changes nothing is invisible ----

/// A map with a real change just made (so `undo` would have something to revert), then `op`, which
/// must succeed and change nothing: state, timestamp and effects as before, and `undo` refusing.
/// `undo` refers to the last call only, so the earlier real change stays (its OS step succeeded).
fn no_op(m: &mut VmMap, what: &str, op: impl FnOnce(&mut VmMap) -> Result<(), VmError>) {
    m.insert(page(100)..page(101), rw()).unwrap();
    m.remove(page(100)..page(101)).unwrap();
    let before = state(m);
    op(m).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(state(m), before, "{what} changed the map or its timestamp");
    assert!(m.effects().is_empty(), "{what} yielded effects: {:?}", m.effects());
    assert!(!m.undo(), "{what}: undo after a call that changed nothing must refuse");
    assert_eq!(state(m), before, "{what}: the refused undo changed the map");
    m.check_invariants().unwrap();
}

/// Entries [0,2) RW, [2,4) READ with NOSYNC and Random, [4,6) RW user-wired, [6,8) RW guarded,
/// [8,10) RW sealed, inherit None on [10,12).
fn varied() -> VmMap {
    let mut m = map();
    m.insert(page(0)..page(12), rw()).unwrap();
    m.protect(page(2)..page(4), Prot::READ).unwrap();
    m.madvise(page(2)..page(4), Advice::NoSync).unwrap();
    m.madvise(page(2)..page(4), Advice::Random).unwrap();
    m.wire(page(4)..page(6)).unwrap();
    m.guard(page(6)..page(8)).unwrap();
    m.seal(page(8)..page(10)).unwrap();
    m.inherit(page(10)..page(12), Inherit::None).unwrap();
    m
}

#[test]
fn attribute_changes_to_what_is_already_there_are_no_ops() {
    let mut m = varied();
    let n = m.len();
    // Inside one entry, across a whole entry, and across several entries that all already agree.
    no_op(&mut m, "protect inside an entry", |m| m.protect(page(1)..page(2), Prot::RW));
    no_op(&mut m, "protect of a whole entry", |m| m.protect(page(2)..page(4), Prot::READ));
    no_op(&mut m, "protect across equal entries", |m| m.protect(page(4)..page(8), Prot::RW));
    no_op(&mut m, "protect_max to the same max", |m| m.protect_max(page(0)..page(8), Prot::ALL));
    no_op(&mut m, "inherit to the same", |m| m.inherit(page(0)..page(8), Inherit::Copy));
    no_op(&mut m, "inherit None again", |m| m.inherit(page(11)..page(12), Inherit::None));
    no_op(&mut m, "madvise Random again", |m| m.madvise(page(2)..page(4), Advice::Random));
    no_op(&mut m, "madvise Normal on normal", |m| m.madvise(page(0)..page(2), Advice::Normal));
    no_op(&mut m, "madvise NoSync again", |m| m.madvise(page(3)..page(4), Advice::NoSync));
    no_op(&mut m, "madvise AutoSync on synced", |m| m.madvise(page(0)..page(2), Advice::AutoSync));
    no_op(&mut m, "madvise Core on dumped", |m| m.madvise(page(0)..page(12), Advice::Core));
    no_op(&mut m, "wire of user-wired memory", |m| m.wire(page(4)..page(6)));
    no_op(&mut m, "wire of part of it", |m| m.wire(page(5)..page(6)));
    no_op(&mut m, "unwire of unwired memory", |m| m.unwire(page(0)..page(4)));
    no_op(&mut m, "guard of guarded memory", |m| m.guard(page(6)..page(7)));
    no_op(&mut m, "unguard where no guard", |m| m.unguard(page(0)..page(6)));
    no_op(&mut m, "seal of sealed memory", |m| m.seal(page(8)..page(10)));
    assert_eq!(m.len(), n);
}

#[test]
fn whole_map_and_other_calls_that_change_nothing_are_no_ops() {
    let mut m = map();
    m.insert(page(0)..page(2), rw()).unwrap();
    m.insert(page(4)..page(6), MapSpec::new(Prot::READ, Prot::ALL)).unwrap();
    no_op(&mut m, "unwire_all of nothing wired", |m| m.unwire_all());
    m.wire_all().unwrap();
    no_op(&mut m, "wire_all of all wired", |m| m.wire_all());
    no_op(&mut m, "set_wire_future to the same", |m| {
        m.set_wire_future(false);
        Ok(())
    });
    no_op(&mut m, "remove of a hole", |m| m.remove(page(2)..page(4)));
    no_op(&mut m, "lookup with nothing to resolve", |m| m.lookup(page(0), Prot::READ).map(|_| ()));
    no_op(&mut m, "grow_stack of a mapped address", |m| m.grow_stack(page(0)).map(|_| ()));
    no_op(&mut m, "grow_stack outside any stack", |m| m.grow_stack(page(3)).map(|_| ()));
}

#[test]
fn memory_advice_and_clean_yield_their_effect_without_changing_the_map() {
    let mut m = map();
    m.insert(page(0)..page(4), rw()).unwrap();
    m.protect(page(0)..page(1), Prot::READ).unwrap();
    let before = state(&m);
    for advice in [Advice::WillNeed, Advice::DontNeed, Advice::Free] {
        m.madvise(page(0)..page(4), advice).unwrap();
        assert_eq!(state(&m), before, "{advice:?} changed the map");
        assert_eq!(m.effects(), &[Effect::Advise(page(0)..page(4), advice)], "the OS still has work");
        assert!(!m.undo(), "{advice:?}: nothing in the map to undo");
    }
    m.clean(page(0)..page(4), true).unwrap();
    assert_eq!(state(&m), before);
    assert_eq!(m.effects(), &[Effect::Clean(page(0)..page(4), true)]);
    assert!(!m.undo());
}

#[test]
fn a_partly_new_change_is_one_step_and_undoes_whole() {
    let mut m = varied();
    let before = state(&m);
    // [0,2) and [4,6) are already RW, [2,4) becomes RW: a real change.
    m.protect(page(0)..page(6), Prot::RW).unwrap();
    assert_eq!(m.timestamp(), before.timestamp + 1);
    assert_eq!(m.effects(), &[Effect::Protect(page(2)..page(4), Prot::RW)]);
    assert!(m.undo());
    assert_eq!(state(&m), before);
}

// ---- 9. undo reverts everything the last call changed, wire_future included ----

#[test]
fn undo_of_unwire_all_restores_wire_future_and_the_wiring() {
    let mut m = map();
    m.set_wire_future(true);
    m.insert(page(0)..page(2), rw()).unwrap();
    m.insert(page(4)..page(6), rw()).unwrap();
    let before = state(&m);
    assert!(before.wire_future);
    assert_eq!(before.wired, 4 * PS);
    m.unwire_all().unwrap();
    assert!(!m.wire_future());
    assert_eq!(m.wired_size(), 0);
    assert_eq!(m.effects(), &[Effect::Unwire(page(0)..page(2)), Effect::Unwire(page(4)..page(6))]);
    assert!(m.undo());
    assert_eq!(state(&m), before, "undo of unwire_all puts wire_future back with the wiring");
    assert!(!m.undo(), "one level");
}

#[test]
fn unwire_all_that_only_clears_wire_future_is_a_change_undo_reverts() {
    let mut m = map();
    m.insert(page(0)..page(2), rw()).unwrap();
    m.set_wire_future(true);
    let before = state(&m);
    m.unwire_all().unwrap();
    assert!(!m.wire_future());
    assert_eq!(m.timestamp(), before.timestamp + 1);
    assert!(m.undo());
    assert_eq!(state(&m), before);
}

#[test]
fn set_wire_future_is_a_change_undo_reverts() {
    let mut m = map();
    m.insert(page(0)..page(2), rw()).unwrap();
    let ts = m.timestamp();
    m.set_wire_future(true);
    assert_eq!(m.timestamp(), ts + 1, "MAP_WIREFUTURE is part of the map");
    assert!(m.undo());
    assert!(!m.wire_future());
    assert_eq!(m.timestamp(), ts);
    // And the call before it is not undone by a second undo.
    assert!(!m.undo());
    assert_eq!(m.len(), 1);
}

#[test]
fn undo_of_wire_all_reverts_every_run_in_one_step() {
    let mut m = map();
    m.insert(page(0)..page(2), rw()).unwrap();
    m.insert(page(4)..page(6), rw()).unwrap();
    m.set_wire_future(true);
    let before = state(&m);
    m.wire_all().unwrap();
    assert_eq!(m.wired_size(), 4 * PS);
    assert!(m.undo());
    assert_eq!(state(&m), before);
}

#[test]
fn a_whole_map_call_is_one_timestamp_step_however_many_runs() {
    let mut m = map();
    for i in 0..3 {
        m.insert(page(4 * i)..page(4 * i + 2), rw()).unwrap();
    }
    let ts = m.timestamp();
    m.wire_all().unwrap();
    assert_eq!(m.timestamp(), ts + 1, "wire_all over three runs");
    m.unwire_all().unwrap();
    assert_eq!(m.timestamp(), ts + 2, "unwire_all over three runs");
}

#[test]
fn settings_that_are_not_map_state_leave_undo_with_nothing() {
    let mut m = map();
    m.insert(page(0)..page(2), rw()).unwrap();
    let before = state(&m);
    m.set_stack_limit(8 * PS);
    assert_eq!(state(&m), before);
    assert!(!m.undo(), "undo refers to the last call; a limit is not the map's to revert");
    m.set_stack_growth(PS);
    assert_eq!(state(&m), before);
    assert!(!m.undo());
}
