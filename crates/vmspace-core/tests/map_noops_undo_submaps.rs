//! Three rules of the map's bookkeeping, one section each: a call that changes nothing is invisible
//! (timestamp, effects, undo); `undo` reverts everything the last call changed, `wire_future` included;
//! a submap entry is never split by a range operation, and a refusal changes nothing.

use vmspace_core::{
    Advice, Behavior, Effect, Entry, EntryFlags, Inherit, MapKind, MapSpec, Prot, SubmapId, VmError, VmMap,
};

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

// ---- 10. submap entries are never split; refusals change nothing ----

/// [0,2) RW, the submap [2,6), [6,8) RW.
fn with_submap() -> VmMap {
    let mut m = map();
    m.insert(page(0)..page(8), rw()).unwrap();
    m.submap(page(2)..page(6), SubmapId(7)).unwrap();
    m
}

fn refused_invalid(m: &mut VmMap, what: &str, op: impl FnOnce(&mut VmMap) -> Result<(), VmError>) {
    let before = state(m);
    assert_eq!(op(m), Err(VmError::InvalidArgument), "{what}");
    assert_eq!(state(m), before, "{what}: a refusal changed the map");
    assert!(m.effects().is_empty(), "{what}: a refusal yielded effects");
    assert!(!m.undo(), "{what}: a refusal leaves nothing to undo");
    m.check_invariants().unwrap();
}

type RangeOp = (&'static str, fn(&mut VmMap, std::ops::Range<u64>) -> Result<(), VmError>);

const RANGE_OPS: &[RangeOp] = &[
    ("protect", |m, r| m.protect(r, Prot::READ)),
    ("protect_max", |m, r| m.protect_max(r, Prot::READ)),
    ("inherit", |m, r| m.inherit(r, Inherit::Share)),
    ("madvise Random", |m, r| m.madvise(r, Advice::Random)),
    ("madvise NoCore", |m, r| m.madvise(r, Advice::NoCore)),
    ("madvise WillNeed", |m, r| m.madvise(r, Advice::WillNeed)),
    ("madvise DontNeed", |m, r| m.madvise(r, Advice::DontNeed)),
    ("wire", |m, r| m.wire(r)),
    ("unwire", |m, r| m.unwire(r)),
    ("wire_kernel", |m, r| m.wire_kernel(r)),
    ("unwire_kernel", |m, r| m.unwire_kernel(r)),
    ("guard", |m, r| m.guard(r)),
    ("unguard", |m, r| m.unguard(r)),
    ("seal", |m, r| m.seal(r)),
    ("clean", |m, r| m.clean(r, false)),
    ("remove", |m, r| m.remove(r)),
    ("submap", |m, r| m.submap(r, SubmapId(8))),
];

#[test]
fn every_range_op_on_part_of_a_submap_entry_is_refused() {
    // Inside it, over its start, over its end, from a normal entry into it and out of it.
    let partial = [page(3)..page(5), page(2)..page(3), page(5)..page(6), page(0)..page(3), page(4)..page(8)];
    for (name, op) in RANGE_OPS {
        for r in &partial {
            let mut m = with_submap();
            refused_invalid(&mut m, &format!("{name} {r:x?}"), |m| op(m, r.clone()));
            assert_eq!(m.len(), 3, "{name}: the submap entry stays whole");
        }
    }
}

#[test]
fn range_ops_on_whole_submap_entries() {
    let sub = page(2)..page(6);
    let whole = page(0)..page(8);
    // The pages belong to the submap: changing their protection, guards, wiring or flushing them
    // through the parent has no meaning.
    for name in
        ["protect", "protect_max", "guard", "unguard", "clean", "wire", "wire_kernel", "unwire_kernel"]
    {
        let op = RANGE_OPS.iter().find(|(n, _)| *n == name).unwrap().1;
        for r in [sub.clone(), whole.clone()] {
            let mut m = with_submap();
            refused_invalid(&mut m, &format!("{name} {r:x?}"), |m| op(m, r.clone()));
        }
    }
    let sub_entry = |m: &VmMap| m.lookup_entry(page(2)).unwrap().clone();
    // inherit and seal are the entry's own attributes: applied, the entry stays one piece.
    let mut m = with_submap();
    m.inherit(whole.clone(), Inherit::Share).unwrap();
    assert_eq!(sub_entry(&m).inherit(), Inherit::Share);
    assert_eq!(sub_entry(&m).range(), sub);
    let mut m = with_submap();
    m.seal(sub.clone()).unwrap();
    assert!(sub_entry(&m).flags().contains(EntryFlags::SEALED));
    assert_eq!(sub_entry(&m).range(), sub);
    // madvise skips submaps for entry advice, and advises the range for memory advice.
    let mut m = with_submap();
    m.madvise(whole.clone(), Advice::Sequential).unwrap();
    assert_eq!(sub_entry(&m).behavior(), Behavior::Normal);
    assert_eq!(m.lookup_entry(page(0)).unwrap().behavior(), Behavior::Sequential);
    let before = state(&m);
    m.madvise(sub.clone(), Advice::Random).unwrap();
    assert_eq!(state(&m), before, "entry advice on only a submap changes nothing");
    assert!(!m.undo());
    m.madvise(sub.clone(), Advice::WillNeed).unwrap();
    assert_eq!(m.effects(), &[Effect::Advise(sub.clone(), Advice::WillNeed)]);
    // unwire: a submap entry is never wired, so there is nothing to do.
    let mut m = with_submap();
    let before = state(&m);
    m.unwire(whole.clone()).unwrap();
    assert_eq!(state(&m), before);
    // wire_all and unwire_all skip it.
    m.wire_all().unwrap();
    assert_eq!(m.wired_size(), 4 * PS);
    assert_eq!(sub_entry(&m).wired_count(), 0);
    assert_eq!(m.effects(), &[Effect::Wire(page(0)..page(2)), Effect::Wire(page(6)..page(8))]);
    m.unwire_all().unwrap();
    assert_eq!(m.wired_size(), 0);
    // remove takes it whole.
    m.remove(sub.clone()).unwrap();
    assert!(m.lookup_entry(page(2)).is_none());
    m.check_invariants().unwrap();
}

#[test]
fn the_submap_entry_keeps_its_kind_through_refusals() {
    let mut m = with_submap();
    let _ = m.madvise(page(3)..page(4), Advice::Random);
    let _ = m.inherit(page(3)..page(4), Inherit::None);
    let _ = m.wire(page(3)..page(4));
    let e = m.lookup_entry(page(2)).unwrap();
    assert_eq!((e.range(), e.kind()), (page(2)..page(6), MapKind::Submap(SubmapId(7))));
}

#[test]
fn no_range_op_over_any_range_splits_a_submap_or_half_changes_the_map() {
    // Every range of [0, 10) pages (the map is [0, 8) with the submap at [2, 6), then a hole).
    for (name, op) in RANGE_OPS {
        for a in 0..10 {
            for b in a + 1..=10 {
                let mut m = with_submap();
                let before = state(&m);
                let r = page(a)..page(b);
                let got = op(&mut m, r.clone());
                m.check_invariants().unwrap();
                let what = format!("{name} pages {a}..{b}: {got:?}");
                let partial = a < 6 && b > 2 && !(a <= 2 && b >= 6);
                if partial {
                    assert_eq!(got, Err(VmError::InvalidArgument), "{what}");
                }
                let mut now = state(&m);
                now.timestamp = before.timestamp;
                if got.is_err() || now == before {
                    // Refused, or nothing to do: nothing changed, not even the timestamp.
                    assert_eq!(state(&m), before, "{what}");
                    assert!(!m.undo(), "{what}");
                }
                if got.is_err() {
                    assert!(m.effects().is_empty(), "{what}");
                }
                if let Some(e) = m.lookup_entry(page(2)) {
                    assert_eq!(e.range(), page(2)..page(6), "{what}: the submap entry was split");
                }
            }
        }
    }
}

// ---- every error path, every range: a refusal changes nothing ----

/// [0,2) RW, the submap [2,4), [4,6) sealed, [6,8) user-wired, [8,10) guarded, [10,12) READ with
/// max READ, a hole [12,14), a stack mapped at [18,20) with its reservation [14,18), copy-on-write
/// memory at [20,22), then free space.
fn rich() -> VmMap {
    let mut m = map();
    m.insert(page(0)..page(12), rw()).unwrap();
    m.submap(page(2)..page(4), SubmapId(1)).unwrap();
    m.seal(page(4)..page(6)).unwrap();
    m.wire(page(6)..page(8)).unwrap();
    m.guard(page(8)..page(10)).unwrap();
    m.protect_max(page(10)..page(12), Prot::READ).unwrap();
    m.stack(page(14), 6 * PS, 2 * PS, rw()).unwrap();
    m.insert(page(20)..page(22), rw().copy_on_write()).unwrap();
    m.set_stack_growth(PS);
    m
}

/// Runs `op` on a fresh `rich` map and checks the outcome: a refusal changes nothing (state,
/// timestamp, effects, undo); a success that changed nothing is invisible the same way (but for the
/// effects of memory advice and `clean`, which are about the pages); the invariants hold either way.
fn outcome<T: std::fmt::Debug>(
    what: &str,
    effects_ok: bool,
    op: impl FnOnce(&mut VmMap) -> Result<T, VmError>,
) {
    let mut m = rich();
    let before = state(&m);
    let got = op(&mut m);
    m.check_invariants().unwrap_or_else(|e| panic!("{what}: {got:?}: {e}"));
    let mut now = state(&m);
    now.timestamp = before.timestamp;
    let unchanged = now == before;
    if got.is_err() {
        assert_eq!(state(&m), before, "{what}: {got:?} changed the map");
        assert!(m.effects().is_empty(), "{what}: {got:?} yielded effects");
    }
    if got.is_err() || unchanged {
        assert_eq!(m.timestamp(), before.timestamp, "{what}: {got:?} moved the timestamp");
        assert!(!m.undo(), "{what}: {got:?} left something to undo");
        if !effects_ok {
            assert!(m.effects().is_empty(), "{what}: {got:?} changed nothing but yielded effects");
        }
    } else {
        assert_eq!(m.timestamp(), before.timestamp + 1, "{what}: {got:?}: one call, one step");
        assert!(m.undo(), "{what}: {got:?}: a change undo cannot revert");
        assert_eq!(state(&m), before, "{what}: undo did not put everything back");
    }
}

#[test]
fn every_call_over_every_range_is_all_or_nothing() {
    let n = 24;
    for (name, op) in RANGE_OPS {
        let effects_ok =
            name.starts_with("madvise WillNeed") || name.starts_with("madvise DontNeed") || *name == "clean";
        for a in 0..n {
            for b in a..=n {
                outcome(&format!("{name} pages {a}..{b}"), effects_ok, |m| op(m, page(a)..page(b)));
            }
        }
    }
    for a in 0..n {
        for b in a..=n {
            let r = page(a)..page(b);
            outcome(&format!("insert {a}..{b}"), false, |m| m.insert(r.clone(), rw()));
            outcome(&format!("stack {a}..{b}"), false, |m| m.stack(r.start, r.end - r.start, PS, rw()));
        }
    }
    for a in 0..n {
        for addr in [page(a), page(a) + 8] {
            outcome(&format!("grow_stack {addr:#x}"), false, |m| m.grow_stack(addr));
            for prot in [Prot::READ, Prot::WRITE, Prot::EXECUTE] {
                outcome(&format!("lookup {addr:#x} {prot}"), false, |m| m.lookup(addr, prot).map(|_| ()));
            }
        }
    }
    outcome("fork with a submap", false, |m| m.fork().map(|_| ()));
    outcome("wire_all", false, |m| m.wire_all());
    outcome("unwire_all", false, |m| m.unwire_all());
    // Misshapen ranges.
    for r in [page(1) + 1..page(2), page(2)..page(1), MIN - PS..page(1), page(0)..MAX + PS] {
        for (name, op) in RANGE_OPS {
            outcome(&format!("{name} {r:x?}"), false, |m| op(m, r.clone()));
        }
    }
}

/// A stack's entries never become a submap: the stack would grow by extending the submap entry.
#[test]
fn a_stack_entry_is_not_handed_to_a_submap() {
    let mut m = map();
    let mapped = m.stack(page(0), 16 * PS, 4 * PS, rw()).unwrap();
    let before = state(&m);
    assert_eq!(m.submap(mapped.clone(), SubmapId(1)), Err(VmError::InvalidArgument));
    assert_eq!(m.submap(mapped.start..mapped.start + PS, SubmapId(1)), Err(VmError::InvalidArgument));
    assert_eq!(state(&m), before, "a refused submap changed the map");
    m.check_invariants().unwrap();
}
