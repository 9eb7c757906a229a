//! One test per operation and per error path. Every error case checks that the map is exactly as it
//! was: same entries, same counters, same timestamp, no effects.

// Inverted ranges are bad input these tests pass on purpose.
#![allow(clippy::reversed_empty_ranges)]

use vmspace_core::{
    Access, Advice, Behavior, Effect, EntryFlags, FindSpec, Growth, Inherit, MapKind, MapObject, MapSpec,
    Prot, SubmapId, VmError, VmMap,
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

/// A snapshot of everything observable, to compare before and after a refused operation.
fn snapshot<O: MapObject>(m: &VmMap<O>) -> String {
    format!("{m}\n{:?}", m.entries().collect::<Vec<_>>())
}

/// Runs `op`, which must fail with `want`, and checks that nothing changed.
fn refused<O: MapObject, T: std::fmt::Debug>(
    m: &mut VmMap<O>,
    want: VmError,
    op: impl FnOnce(&mut VmMap<O>) -> Result<T, VmError>,
) {
    let before = snapshot(m);
    let ts = m.timestamp();
    let got = op(m);
    assert_eq!(got.unwrap_err(), want);
    assert_eq!(snapshot(m), before, "a refused operation changed the map");
    assert_eq!(m.timestamp(), ts);
    assert!(m.effects().is_empty());
    m.check_invariants().unwrap();
}

#[test]
fn new_rejects_bad_bounds() {
    assert_eq!(VmMap::<()>::new(MAX, MIN).unwrap_err(), VmError::InvalidArgument);
    assert_eq!(VmMap::<()>::new(MIN, MIN).unwrap_err(), VmError::InvalidArgument);
    assert_eq!(VmMap::<()>::new(MIN + 1, MAX).unwrap_err(), VmError::InvalidArgument);
    assert_eq!(VmMap::<()>::with_page_size(0, 1 << 20, 3000).unwrap_err(), VmError::InvalidArgument);
    let m: VmMap = VmMap::with_page_size(0, 1 << 30, 16384).unwrap();
    assert_eq!(m.page_size(), 16384);
    assert!(m.is_empty());
}

#[test]
fn insert_and_errors() {
    let mut m = map();
    m.insert(MIN..MIN + 4 * PS, rw()).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m.size(), 4 * PS);
    assert_eq!(m.effects().len(), 1);
    assert!(matches!(&m.effects()[0], Effect::Map(e) if e.range() == (MIN..MIN + 4 * PS)));
    refused(&mut m, VmError::InvalidArgument, |m| m.insert(MIN + 10 * PS..MIN + 10 * PS, rw()));
    refused(&mut m, VmError::InvalidArgument, |m| m.insert(MIN + 10 * PS + 1..MIN + 11 * PS, rw()));
    refused(&mut m, VmError::InvalidArgument, |m| m.insert(MIN + 11 * PS..MIN + 10 * PS, rw()));
    refused(&mut m, VmError::InvalidAddress, |m| m.insert(MIN - PS..MIN, rw()));
    refused(&mut m, VmError::InvalidAddress, |m| m.insert(MAX - PS..MAX + PS, rw()));
    refused(&mut m, VmError::ProtectionFailure, |m| {
        m.insert(MIN + 10 * PS..MIN + 11 * PS, MapSpec::new(Prot::RW, Prot::READ))
    });
    // Overlap at the start, the end, containment, exact duplicate: NoSpace. Touching is fine.
    refused(&mut m, VmError::NoSpace, |m| m.insert(MIN + 3 * PS..MIN + 5 * PS, rw()));
    refused(&mut m, VmError::NoSpace, |m| m.insert(MIN..MIN + PS, rw()));
    refused(&mut m, VmError::NoSpace, |m| m.insert(MIN + PS..MIN + 2 * PS, rw()));
    refused(&mut m, VmError::NoSpace, |m| m.insert(MIN..MIN + 4 * PS, rw()));
    m.insert(MIN + 4 * PS..MIN + 5 * PS, rw()).unwrap();
    assert_eq!(m.len(), 1, "an equal neighbour merges");
    m.insert(MIN + 5 * PS..MIN + 6 * PS, MapSpec::new(Prot::READ, Prot::ALL)).unwrap();
    assert_eq!(m.len(), 2, "a different neighbour does not");
}

#[test]
fn object_offsets_decide_merging() {
    #[derive(Clone, Debug, PartialEq)]
    enum Obj {
        Anon,
        File(u32),
    }
    impl MapObject for Obj {
        fn anonymous() -> Self {
            Obj::Anon
        }
        fn is_anonymous(&self) -> bool {
            *self == Obj::Anon
        }
    }
    let mut m: VmMap<Obj> = VmMap::new(MIN, MAX).unwrap();
    let file = |off| MapSpec::new(Prot::READ, Prot::ALL).with_object(Obj::File(7), off);
    m.insert(MIN..MIN + PS, file(0)).unwrap();
    m.insert(MIN + PS..MIN + 2 * PS, file(PS)).unwrap();
    assert_eq!(m.len(), 1, "contiguous offsets of one file merge");
    m.insert(MIN + 2 * PS..MIN + 3 * PS, file(10 * PS)).unwrap();
    assert_eq!(m.len(), 2, "a jump in offset does not");
    refused(&mut m, VmError::InvalidArgument, |m| m.insert(MIN + 8 * PS..MIN + 9 * PS, file(1)));
    refused(&mut m, VmError::InvalidArgument, |m| {
        m.insert(MIN + 8 * PS..MIN + 9 * PS, file(u64::MAX - PS + 1))
    });
    // Clipping keeps offsets: protect the middle page and look at the offsets.
    m.protect(MIN + PS..MIN + 2 * PS, Prot::NONE).unwrap();
    let offs: Vec<u64> = m.entries().map(|e| e.offset()).collect();
    assert_eq!(offs, vec![0, PS, 10 * PS]);
    m.protect(MIN + PS..MIN + 2 * PS, Prot::READ).unwrap();
    assert_eq!(m.len(), 2);
    refused(&mut m, VmError::InvalidArgument, |m| m.inherit(MIN..MIN + PS, Inherit::Zero));
    refused(&mut m, VmError::InvalidArgument, |m| m.madvise(MIN..MIN + PS, Advice::Free));
}

#[test]
fn find_space_and_map_anywhere() {
    let mut m = map();
    assert_eq!(m.find_space(PS, 0).unwrap(), MIN);
    assert_eq!(m.find_space(PS, 1 << 21).unwrap(), MIN);
    m.insert(MIN..MIN + PS, rw()).unwrap();
    assert_eq!(m.find_space(PS, PS).unwrap(), MIN + PS);
    assert_eq!(m.find_space(PS, 1 << 21).unwrap(), MIN + (1 << 21));
    assert_eq!(m.find_space(0, PS).unwrap_err(), VmError::InvalidArgument);
    assert_eq!(m.find_space(PS + 1, PS).unwrap_err(), VmError::InvalidArgument);
    assert_eq!(m.find_space(PS, 3 * PS).unwrap_err(), VmError::InvalidArgument);
    assert_eq!(m.find_space(MAX - MIN, PS).unwrap_err(), VmError::NoSpace);
    let top = m.find_space_with(&FindSpec { top_down: true, ..FindSpec::new(PS) }).unwrap();
    assert_eq!(top, MAX - PS);
    let hinted = m.find_space_with(&FindSpec { hint: Some(MIN + 0x10_0000), ..FindSpec::new(PS) }).unwrap();
    assert_eq!(hinted, MIN + 0x10_0000);
    let bounded = m
        .find_space_with(&FindSpec { bounds: Some(MIN + 8 * PS..MIN + 9 * PS), ..FindSpec::new(PS) })
        .unwrap();
    assert_eq!(bounded, MIN + 8 * PS);
    assert_eq!(
        m.find_space_with(&FindSpec { bounds: Some(MIN..MIN + PS), ..FindSpec::new(PS) }).unwrap_err(),
        VmError::NoSpace
    );
    let a = m.map_anywhere(3 * PS, 0, rw()).unwrap();
    assert_eq!(a, MIN + PS);
    assert_eq!(m.len(), 1);
    let before = snapshot(&m);
    assert_eq!(m.map_anywhere(MAX, 0, rw()).unwrap_err(), VmError::NoSpace);
    assert_eq!(snapshot(&m), before);
}

#[test]
fn remove_accepts_holes_and_refuses_seals() {
    let mut m = map();
    m.insert(MIN..MIN + 2 * PS, rw()).unwrap();
    m.insert(MIN + 4 * PS..MIN + 6 * PS, rw()).unwrap();
    m.remove(MIN + PS..MIN + 5 * PS).unwrap();
    assert_eq!(
        m.entries().map(|e| e.range()).collect::<Vec<_>>(),
        vec![MIN..MIN + PS, MIN + 5 * PS..MIN + 6 * PS]
    );
    assert_eq!(
        m.effects(),
        &[Effect::Unmap(MIN + PS..MIN + 2 * PS), Effect::Unmap(MIN + 4 * PS..MIN + 5 * PS)]
    );
    let ts = m.timestamp();
    m.remove(MIN + 100 * PS..MIN + 200 * PS).unwrap();
    assert_eq!(m.timestamp(), ts, "removing nothing changes nothing");
    m.remove(MIN..MIN).unwrap();
    refused(&mut m, VmError::InvalidArgument, |m| m.remove(MIN + 1..MIN + PS));
    refused(&mut m, VmError::InvalidAddress, |m| m.remove(MIN - PS..MIN + PS));
    m.seal(MIN..MIN + PS).unwrap();
    refused(&mut m, VmError::Sealed, |m| m.remove(MIN..MIN + 6 * PS));
    m.wire(MIN + 5 * PS..MIN + 6 * PS).unwrap();
    m.remove(MIN + 5 * PS..MIN + 6 * PS).unwrap();
    assert_eq!(m.wired_size(), 0, "removing wired memory unwires it");
}

#[test]
fn protect_splits_and_merges_back() {
    let mut m = map();
    m.insert(MIN..MIN + 8 * PS, rw()).unwrap();
    m.protect(MIN + 3 * PS..MIN + 4 * PS, Prot::READ).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m.effects(), &[Effect::Protect(MIN + 3 * PS..MIN + 4 * PS, Prot::READ)]);
    assert_eq!(m.lookup_entry(MIN + 3 * PS).unwrap().prot(), Prot::READ);
    m.protect(MIN + 3 * PS..MIN + 4 * PS, Prot::RW).unwrap();
    assert_eq!(m.len(), 1);
    m.check_invariants().unwrap();
    refused(&mut m, VmError::InvalidAddress, |m| m.protect(MIN + 7 * PS..MIN + 9 * PS, Prot::READ));
    refused(&mut m, VmError::InvalidAddress, |m| m.protect(MIN + 20 * PS..MIN + 21 * PS, Prot::READ));
    refused(&mut m, VmError::InvalidArgument, |m| m.protect(MIN + 1..MIN + PS, Prot::READ));
    m.protect_max(MIN..MIN + 2 * PS, Prot::READ).unwrap();
    assert_eq!(m.lookup_entry(MIN).unwrap().prot(), Prot::READ, "prot becomes old ∩ new max");
    refused(&mut m, VmError::ProtectionFailure, |m| m.protect(MIN..MIN + 8 * PS, Prot::RW));
    refused(&mut m, VmError::ProtectionFailure, |m| m.protect_max(MIN..MIN + PS, Prot::RW));
    m.seal(MIN + 6 * PS..MIN + 8 * PS).unwrap();
    refused(&mut m, VmError::Sealed, |m| m.protect(MIN + 2 * PS..MIN + 8 * PS, Prot::READ));
    m.protect(MIN..MIN, Prot::NONE).unwrap();
}

#[test]
fn inherit_madvise_and_their_errors() {
    let mut m = map();
    m.insert(MIN..MIN + 4 * PS, rw()).unwrap();
    m.inherit(MIN..MIN + PS, Inherit::None).unwrap();
    m.inherit(MIN + PS..MIN + 2 * PS, Inherit::Zero).unwrap();
    assert_eq!(m.len(), 3);
    refused(&mut m, VmError::InvalidAddress, |m| m.inherit(MIN..MIN + 5 * PS, Inherit::Share));
    m.madvise(MIN + 2 * PS..MIN + 4 * PS, Advice::Sequential).unwrap();
    assert_eq!(m.lookup_entry(MIN + 3 * PS).unwrap().behavior(), Behavior::Sequential);
    assert_eq!(m.effects(), &[Effect::Advise(MIN + 2 * PS..MIN + 4 * PS, Advice::Sequential)]);
    m.madvise(MIN + 2 * PS..MIN + 4 * PS, Advice::NoCore).unwrap();
    assert!(m.lookup_entry(MIN + 3 * PS).unwrap().flags().contains(EntryFlags::NOCOREDUMP));
    let n = m.len();
    m.madvise(MIN..MIN + 4 * PS, Advice::WillNeed).unwrap();
    assert_eq!(m.len(), n, "memory advice does not touch entries");
    assert_eq!(m.effects(), &[Effect::Advise(MIN..MIN + 4 * PS, Advice::WillNeed)]);
    refused(&mut m, VmError::InvalidAddress, |m| m.madvise(MIN..MIN + 5 * PS, Advice::DontNeed));
    m.wire(MIN..MIN + PS).unwrap();
    refused(&mut m, VmError::InvalidArgument, |m| m.madvise(MIN..MIN + PS, Advice::DontNeed));
    m.seal(MIN + 3 * PS..MIN + 4 * PS).unwrap();
    refused(&mut m, VmError::Sealed, |m| m.madvise(MIN + 3 * PS..MIN + 4 * PS, Advice::Free));
    refused(&mut m, VmError::Sealed, |m| m.inherit(MIN + 3 * PS..MIN + 4 * PS, Inherit::Copy));
    m.madvise(MIN + 3 * PS..MIN + 4 * PS, Advice::Random).unwrap();
}

#[test]
fn wiring_is_a_boolean_layer_over_kernel_counts() {
    let mut m = map();
    m.insert(MIN..MIN + 4 * PS, rw()).unwrap();
    m.wire(MIN..MIN + 2 * PS).unwrap();
    assert_eq!(m.effects(), &[Effect::Wire(MIN..MIN + 2 * PS)]);
    m.wire(MIN..MIN + 2 * PS).unwrap();
    assert!(m.effects().is_empty(), "wiring twice changes nothing");
    assert_eq!(m.lookup_entry(MIN).unwrap().wired_count(), 1);
    m.wire_kernel(MIN + PS..MIN + 3 * PS).unwrap();
    assert_eq!(m.lookup_entry(MIN + PS).unwrap().wired_count(), 2);
    assert_eq!(m.wired_size(), 3 * PS);
    m.unwire(MIN..MIN + 4 * PS).unwrap();
    assert_eq!(m.lookup_entry(MIN).unwrap().wired_count(), 0);
    assert_eq!(m.lookup_entry(MIN + PS).unwrap().wired_count(), 1, "the kernel's wiring stays");
    assert_eq!(m.wired_size(), 2 * PS);
    refused(&mut m, VmError::InvalidArgument, |m| m.unwire_kernel(MIN..MIN + 2 * PS));
    m.unwire_kernel(MIN + PS..MIN + 3 * PS).unwrap();
    assert_eq!(m.wired_size(), 0);
    assert_eq!(m.len(), 1);
    refused(&mut m, VmError::InvalidAddress, |m| m.wire(MIN..MIN + 5 * PS));
    refused(&mut m, VmError::InvalidAddress, |m| m.unwire(MIN + 8 * PS..MIN + 9 * PS));
    // wire_future wires new mappings; unwire_all clears it and every user wiring.
    m.set_wire_future(true);
    m.insert(MIN + 8 * PS..MIN + 9 * PS, rw()).unwrap();
    assert!(m.lookup_entry(MIN + 8 * PS).unwrap().user_wired());
    m.wire_all().unwrap();
    assert_eq!(m.wired_size(), 5 * PS);
    m.unwire_all().unwrap();
    assert!(!m.wire_future());
    assert_eq!(m.wired_size(), 0);
}

#[test]
fn guard_and_seal() {
    let mut m = map();
    m.insert(MIN..MIN + 4 * PS, rw()).unwrap();
    m.guard(MIN..MIN + PS).unwrap();
    assert_eq!(m.effects(), &[Effect::Guard(MIN..MIN + PS)]);
    assert_eq!(m.lookup(MIN, Prot::READ).unwrap_err(), VmError::GuardHit);
    m.unguard(MIN..MIN + PS).unwrap();
    assert_eq!(m.effects(), &[Effect::Unguard(MIN..MIN + PS)]);
    assert_eq!(m.len(), 1);
    m.seal(MIN + PS..MIN + 2 * PS).unwrap();
    refused(&mut m, VmError::Sealed, |m| m.guard(MIN..MIN + 2 * PS));
    refused(&mut m, VmError::InvalidAddress, |m| m.seal(MIN..MIN + 5 * PS));
    m.wire(MIN..MIN + 4 * PS).unwrap();
}

#[test]
fn stacks_reserve_grow_and_stop() {
    let mut m = map();
    m.set_stack_growth(2 * PS);
    let base = MIN + 16 * PS;
    let top = base + 16 * PS;
    let mapped = m.stack(base, 16 * PS, 2 * PS, rw()).unwrap();
    assert_eq!(mapped, top - 2 * PS..top);
    let e = m.lookup_entry(top - PS).unwrap();
    assert!(e.flags().contains(EntryFlags::STACK));
    assert_eq!(e.avail_ssize(), 14 * PS);
    // find_space never hands out the reservation.
    m.insert(MIN..base, rw()).unwrap();
    assert_eq!(m.find_space(PS, 0).unwrap(), top);
    assert_eq!(m.lookup(top - 5 * PS, Prot::READ).unwrap_err(), VmError::StackGrowthNeeded);
    assert_eq!(m.grow_stack(top - PS).unwrap(), Growth::Mapped);
    assert_eq!(m.grow_stack(MAX - PS).unwrap(), Growth::NotStack);
    assert_eq!(m.grow_stack(top - 3 * PS + 8).unwrap(), Growth::Grew(top - 4 * PS..top - 2 * PS));
    assert_eq!(m.lookup_entry(top - 4 * PS).unwrap().avail_ssize(), 12 * PS);
    assert_eq!(m.len(), 2, "growth extends the stack entry");
    m.set_stack_limit(8 * PS);
    refused(&mut m, VmError::NoSpace, |m| m.grow_stack(top - 9 * PS));
    assert!(matches!(m.grow_stack(top - 8 * PS).unwrap(), Growth::Grew(_)));
    refused(&mut m, VmError::NoSpace, |m| m.grow_stack(top - 9 * PS));
    // Mapping into a reservation shrinks it.
    m.set_stack_limit(u64::MAX);
    m.remove(MIN..base).unwrap();
    m.insert(base..base + 4 * PS, MapSpec::new(Prot::READ, Prot::ALL)).unwrap();
    assert_eq!(m.lookup_entry(top - 8 * PS).unwrap().avail_ssize(), 4 * PS);
    assert_eq!(m.grow_stack(base + 4 * PS).unwrap(), Growth::Grew(base + 4 * PS..top - 8 * PS));
    assert_eq!(m.grow_stack(base + 3 * PS).unwrap(), Growth::Mapped);
    // Errors.
    refused(&mut m, VmError::InvalidArgument, |m| m.stack(MAX - 4 * PS, 0, 0, rw()));
    refused(&mut m, VmError::InvalidArgument, |m| m.stack(MAX - 4 * PS, PS, 2 * PS, rw()));
    refused(&mut m, VmError::InvalidArgument, |m| m.stack(u64::MAX - PS + 1, 4 * PS, PS, rw()));
    refused(&mut m, VmError::InvalidAddress, |m| m.stack(MAX - 2 * PS, 4 * PS, PS, rw()));
    refused(&mut m, VmError::NoSpace, |m| m.stack(base, 4 * PS, PS, rw()));
    let s = m.stack_anywhere(8 * PS, PS, rw()).unwrap();
    refused(&mut m, VmError::NoSpace, |m| m.stack(s + 2 * PS, 2 * PS, PS, rw()));
}

#[test]
fn lookup_resolves_copy_on_write() {
    let mut m = map();
    m.insert(MIN..MIN + 2 * PS, rw().copy_on_write()).unwrap();
    let f = m.lookup(MIN + 10, Prot::READ).unwrap();
    assert_eq!(f.prot, Prot::READ, "a read of needs-copy memory maps it without write");
    assert_eq!(f.entry, MIN..MIN + 2 * PS);
    assert_eq!(f.offset, 0);
    assert!(m.lookup_entry(MIN).unwrap().flags().contains(EntryFlags::NEEDS_COPY));
    let f = m.lookup(MIN + PS + 10, Prot::WRITE).unwrap();
    assert_eq!(f.prot, Prot::RW);
    assert_eq!(f.offset, PS);
    assert!(!m.lookup_entry(MIN).unwrap().flags().contains(EntryFlags::NEEDS_COPY));
    assert_eq!(m.lookup(MIN, Prot::EXECUTE).unwrap_err(), VmError::ProtectionFailure);
    let forced = m.lookup(MIN, Access { prot: Prot::EXECUTE, override_write: true }).unwrap();
    assert_eq!(forced.prot, Prot::ALL, "a forced access is checked against max protection");
    assert_eq!(m.lookup(MIN + 4 * PS, Prot::READ).unwrap_err(), VmError::InvalidAddress);
    m.wire(MIN..MIN + PS).unwrap();
    assert_eq!(m.lookup(MIN, Prot::WRITE).unwrap_err(), VmError::ProtectionFailure, "user-wired COW write");
    assert!(m.check_protection(MIN..MIN + 2 * PS, Prot::RW));
    assert!(!m.check_protection(MIN..MIN + 3 * PS, Prot::READ));
    assert!(m.check_protection(MIN..MIN, Prot::READ));
    assert!(!m.check_protection(MIN + 4 * PS..MIN + 4 * PS, Prot::NONE));
    assert!(!m.check_protection(MIN + PS..MIN, Prot::NONE));
}

#[test]
fn fork_follows_inheritance() {
    let mut m = map();
    m.insert(MIN..MIN + PS, rw().with_inherit(Inherit::Share).copy_on_write()).unwrap();
    m.insert(MIN + PS..MIN + 2 * PS, rw()).unwrap();
    m.insert(MIN + 2 * PS..MIN + 3 * PS, rw().with_inherit(Inherit::None)).unwrap();
    m.insert(MIN + 3 * PS..MIN + 4 * PS, rw().with_inherit(Inherit::Zero).with_behavior(Behavior::Random))
        .unwrap();
    m.insert(MIN + 5 * PS..MIN + 6 * PS, MapSpec::new(Prot::READ, Prot::ALL)).unwrap();
    m.wire(MIN + 5 * PS..MIN + 6 * PS).unwrap();
    let child = m.fork().unwrap();
    child.check_invariants().unwrap();
    m.check_invariants().unwrap();
    let share = child.lookup_entry(MIN).unwrap();
    assert!(
        !share.flags().contains(EntryFlags::NEEDS_COPY),
        "shared needs-copy memory is made private first"
    );
    assert!(!m.lookup_entry(MIN).unwrap().flags().contains(EntryFlags::NEEDS_COPY));
    let copy = child.lookup_entry(MIN + PS).unwrap();
    assert!(copy.flags().contains(EntryFlags::COW | EntryFlags::NEEDS_COPY));
    assert!(m.lookup_entry(MIN + PS).unwrap().flags().contains(EntryFlags::COW | EntryFlags::NEEDS_COPY));
    assert!(child.lookup_entry(MIN + 2 * PS).is_none(), "none leaves a hole");
    assert!(!child.lookup_entry(MIN + 3 * PS).unwrap().flags().contains(EntryFlags::COW));
    let wired = child.lookup_entry(MIN + 5 * PS).unwrap();
    assert_eq!(wired.wired_count(), 0, "wiring is not inherited");
    assert!(
        !m.lookup_entry(MIN + 5 * PS).unwrap().flags().contains(EntryFlags::NEEDS_COPY),
        "wired parent untouched"
    );
    assert_eq!(child.size(), 4 * PS, "size recomputed from the child's entries");
    assert_eq!(child.wired_size(), 0);
    assert!(
        m.effects().iter().any(|e| matches!(e, Effect::WriteProtect(r) if *r == (MIN + PS..MIN + 2 * PS)))
    );
}

#[test]
fn submaps() {
    let mut m = map();
    m.insert(MIN..MIN + 8 * PS, rw()).unwrap();
    m.submap(MIN + 2 * PS..MIN + 4 * PS, SubmapId(9)).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m.lookup_entry(MIN + 2 * PS).unwrap().kind(), MapKind::Submap(SubmapId(9)));
    assert_eq!(m.lookup(MIN + 3 * PS, Prot::WRITE).unwrap().submap, Some(SubmapId(9)));
    refused(&mut m, VmError::InvalidArgument, |m| m.protect(MIN..MIN + 8 * PS, Prot::READ));
    refused(&mut m, VmError::InvalidArgument, |m| m.remove(MIN + 3 * PS..MIN + 8 * PS));
    refused(&mut m, VmError::InvalidArgument, |m| m.fork());
    refused(&mut m, VmError::InvalidArgument, |m| m.submap(MIN + 3 * PS..MIN + 5 * PS, SubmapId(1)));
    refused(&mut m, VmError::InvalidAddress, |m| m.submap(MIN + 7 * PS..MIN + 9 * PS, SubmapId(1)));
    m.madvise(MIN..MIN + 8 * PS, Advice::Random).unwrap();
    assert_eq!(m.lookup_entry(MIN + 2 * PS).unwrap().behavior(), Behavior::Normal, "madvise skips submaps");
    m.remove(MIN + 2 * PS..MIN + 4 * PS).unwrap();
    m.insert(MIN + 2 * PS..MIN + 4 * PS, rw().copy_on_write()).unwrap();
    refused(&mut m, VmError::InvalidArgument, |m| m.submap(MIN + 2 * PS..MIN + 3 * PS, SubmapId(1)));
}

#[test]
fn undo_restores_the_map() {
    let mut m = map();
    m.insert(MIN..MIN + 8 * PS, rw()).unwrap();
    let before = snapshot(&m);
    let ts = m.timestamp();
    m.protect(MIN + 2 * PS..MIN + 3 * PS, Prot::READ).unwrap();
    assert!(m.undo());
    assert_eq!(snapshot(&m), before);
    assert_eq!(m.timestamp(), ts);
    assert!(!m.undo());
    assert!(m.protect(MIN..MIN + 9 * PS, Prot::READ).is_err());
    assert!(!m.undo(), "a failed call leaves nothing to undo");
}

#[test]
fn sixteen_kib_pages() {
    let ps = 16384;
    let mut m: VmMap = VmMap::with_page_size(0, 1 << 30, ps).unwrap();
    assert_eq!(m.insert(0..4096, rw()).unwrap_err(), VmError::InvalidArgument);
    m.insert(0..ps, rw()).unwrap();
    assert_eq!(m.find_space(ps, 0).unwrap(), ps);
    assert_eq!(m.find_space(4096, 0).unwrap_err(), VmError::InvalidArgument);
    m.check_invariants().unwrap();
}

#[test]
fn display_reads_like_procstat() {
    let mut m = map();
    m.insert(MIN..MIN + 4 * PS, rw()).unwrap();
    m.stack(MIN + 16 * PS, 8 * PS, PS, rw()).unwrap();
    let s = m.to_string();
    assert!(s.contains("rw-/rwx"), "{s}");
    assert!(s.contains("(free)"), "{s}");
    assert!(s.contains("stack growth reservation"), "{s}");
    assert!(s.contains("2 entries"), "{s}");
}

#[test]
fn clean_checks_and_yields_one_effect() {
    let mut m = map();
    m.insert(MIN..MIN + 4 * PS, rw()).unwrap();
    m.clean(MIN..MIN + 4 * PS, false).unwrap();
    assert_eq!(m.effects(), &[Effect::Clean(MIN..MIN + 4 * PS, false)]);
    refused(&mut m, VmError::InvalidAddress, |m| m.clean(MIN..MIN + 5 * PS, false));
    m.wire(MIN..MIN + PS).unwrap();
    refused(&mut m, VmError::InvalidArgument, |m| m.clean(MIN..MIN + 4 * PS, true));
    m.clean(MIN..MIN + 4 * PS, false).unwrap();
}

#[test]
fn reserved_entries_let_a_no_alloc_context_work_and_exhaustion_is_an_error() {
    let mut m = map();
    for i in 0..64 {
        m.insert(MIN + 2 * i * PS..MIN + (2 * i + 1) * PS, rw()).unwrap();
    }
    m.reserve(8).unwrap();
    m.reserve_journal(64);
    m.set_alloc_allowed(false);
    // Reserved entries carry a few operations...
    for i in 0..4 {
        m.insert(MIN + (200 + 2 * i) * PS..MIN + (201 + 2 * i) * PS, MapSpec::new(Prot::READ, Prot::ALL))
            .unwrap();
    }
    // ...and when none are left (a fresh map with nothing reserved), the refusal is typed and clean.
    let mut fresh = map();
    fresh.set_alloc_allowed(false);
    refused(&mut fresh, VmError::ResourceShortage, |m| m.insert(MIN..MIN + PS, rw()));
    fresh.set_alloc_allowed(true);
    fresh.insert(MIN..MIN + PS, rw()).unwrap();
    m.set_alloc_allowed(true);
    m.release();
    m.check_invariants().unwrap();
}
