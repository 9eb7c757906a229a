//! Property test: random operation sequences applied to the map and to the page-by-page reference
//! model must give the same results, the same errors and the same pages, with every invariant holding
//! after every step. A replica repeats every call through `VmMap::replay` (no journal, no effects) and
//! must stay equal to the map. `PROPTEST_CASES` overrides the number of sequences (10,000 by default).

mod model;

use model::{Model, PS};
use proptest::prelude::*;
use vmspace_core::{Access, Advice, Behavior, Entry, Inherit, MapSpec, Prot, VmError, VmMap};

const MIN: u64 = 0x40_0000;
const PAGES: usize = 48;

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u64, Spec),
    MapAnywhere(u64, u64, Spec),
    FindSpace(u64, u64),
    Remove(u64, u64),
    Protect(u64, u64, Prot),
    ProtectMax(u64, u64, Prot),
    Inherit(u64, u64, Inherit),
    Madvise(u64, u64, Advice),
    Wire(u64, u64),
    Unwire(u64, u64),
    WireAll,
    UnwireAll,
    Guard(u64, u64),
    Unguard(u64, u64),
    Seal(u64, u64),
    Stack(u64, u64, u64, Spec),
    GrowStack(u64),
    Lookup(u64, Prot, bool),
    Fork(bool),
    WireFuture(bool),
    StackLimit(u64),
    Undo,
}

#[derive(Clone, Debug)]
struct Spec(Prot, Prot, Inherit, Behavior);

impl Spec {
    fn get(&self) -> MapSpec {
        MapSpec::new(self.0, self.1).with_inherit(self.2).with_behavior(self.3)
    }
}

fn prot() -> impl Strategy<Value = Prot> {
    (0u8..8).prop_map(|b| Prot::from_bits(b).unwrap())
}

/// An address: mostly page-aligned inside the map, sometimes just outside or unaligned.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => (0..=PAGES as u64).prop_map(|p| MIN + p * PS),
        1 => (0..4u64).prop_map(|p| MIN - PS * (p + 1)),
        1 => (0..4u64).prop_map(|p| MIN + (PAGES as u64 + 1 + p) * PS),
        1 => (0..=PAGES as u64, 1..PS).prop_map(|(p, o)| MIN + p * PS + o),
    ]
}

/// A range: mostly a few pages from a start, sometimes inverted or empty.
fn range() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        10 => (addr(), 0..8u64).prop_map(|(a, n)| (a, a + n * PS)),
        1 => (addr(), addr()),
        1 => Just((MIN, MIN + PAGES as u64 * PS)),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let prot_pair = prop_oneof![
        4 => Just((Prot::RW, Prot::ALL)),
        1 => Just((Prot::READ, Prot::RW)),
        1 => (prot(), prot()),
    ];
    let inherit = prop_oneof![4 => Just(Inherit::Copy), 1 => Just(Inherit::Share), 1 => Just(Inherit::None), 1 => Just(Inherit::Zero)];
    let behavior = prop_oneof![4 => Just(Behavior::Normal), 1 => Just(Behavior::Random)];
    (prot_pair, inherit, behavior).prop_map(|((p, m), i, b)| Spec(p, m, i, b))
}

fn advice() -> impl Strategy<Value = Advice> {
    prop::sample::select(vec![
        Advice::Normal,
        Advice::Sequential,
        Advice::Random,
        Advice::NoSync,
        Advice::AutoSync,
        Advice::NoCore,
        Advice::Core,
        Advice::WillNeed,
        Advice::DontNeed,
        Advice::Free,
    ])
}

fn inherit() -> impl Strategy<Value = Inherit> {
    prop::sample::select(vec![Inherit::Share, Inherit::Copy, Inherit::None, Inherit::Zero])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (range(), spec()).prop_map(|((s, e), sp)| Op::Insert(s, e, sp)),
        3 => (1..6u64, prop::sample::select(vec![0u64, PS, 2 * PS, 4 * PS, 8 * PS, 3 * PS]), spec())
            .prop_map(|(n, a, sp)| Op::MapAnywhere(n * PS, a, sp)),
        1 => (0..8u64, prop::sample::select(vec![0u64, 1, PS, 4 * PS, 16 * PS, 5 * PS])).prop_map(|(n, a)| Op::FindSpace(n * PS, a)),
        3 => range().prop_map(|(s, e)| Op::Remove(s, e)),
        4 => (range(), prot()).prop_map(|((s, e), p)| Op::Protect(s, e, p)),
        2 => (range(), prot()).prop_map(|((s, e), p)| Op::ProtectMax(s, e, p)),
        2 => (range(), inherit()).prop_map(|((s, e), i)| Op::Inherit(s, e, i)),
        2 => (range(), advice()).prop_map(|((s, e), a)| Op::Madvise(s, e, a)),
        2 => range().prop_map(|(s, e)| Op::Wire(s, e)),
        2 => range().prop_map(|(s, e)| Op::Unwire(s, e)),
        1 => Just(Op::WireAll),
        1 => Just(Op::UnwireAll),
        1 => range().prop_map(|(s, e)| Op::Guard(s, e)),
        1 => range().prop_map(|(s, e)| Op::Unguard(s, e)),
        1 => range().prop_map(|(s, e)| Op::Seal(s, e)),
        2 => (addr(), 1..20u64, 1..4u64, spec()).prop_map(|(b, m, i, sp)| Op::Stack(b, m * PS, i * PS, sp)),
        3 => addr().prop_map(Op::GrowStack),
        2 => (addr(), prot(), any::<bool>()).prop_map(|(a, p, o)| Op::Lookup(a, p, o)),
        1 => any::<bool>().prop_map(Op::Fork),
        1 => any::<bool>().prop_map(Op::WireFuture),
        1 => prop::sample::select(vec![u64::MAX, 4 * PS, 12 * PS]).prop_map(Op::StackLimit),
        1 => Just(Op::Undo),
    ]
}

/// Applies `op` to `map` as the map-side half of a step (Fork and Undo are handled by `run`).
fn on_map(map: &mut VmMap, op: &Op) -> Result<String, VmError> {
    let none = |r: Result<(), VmError>| r.map(|_| String::new());
    match op {
        Op::Insert(s, e, sp) => none(map.insert(*s..*e, sp.get())),
        Op::MapAnywhere(len, align, sp) => {
            map.map_anywhere(*len, *align, sp.get()).map(|a| format!("{a:#x}"))
        }
        Op::FindSpace(len, align) => map.find_space(*len, *align).map(|a| format!("{a:#x}")),
        Op::Remove(s, e) => none(map.remove(*s..*e)),
        Op::Protect(s, e, p) => none(map.protect(*s..*e, *p)),
        Op::ProtectMax(s, e, p) => none(map.protect_max(*s..*e, *p)),
        Op::Inherit(s, e, i) => none(map.inherit(*s..*e, *i)),
        Op::Madvise(s, e, a) => none(map.madvise(*s..*e, *a)),
        Op::Wire(s, e) => none(map.wire(*s..*e)),
        Op::Unwire(s, e) => none(map.unwire(*s..*e)),
        Op::WireAll => none(map.wire_all()),
        Op::UnwireAll => none(map.unwire_all()),
        Op::Guard(s, e) => none(map.guard(*s..*e)),
        Op::Unguard(s, e) => none(map.unguard(*s..*e)),
        Op::Seal(s, e) => none(map.seal(*s..*e)),
        Op::Stack(b, m, i, sp) => map.stack(*b, *m, *i, sp.get()).map(|r| format!("{r:?}")),
        Op::GrowStack(a) => map.grow_stack(*a).map(|g| format!("{g:?}")),
        Op::Lookup(a, p, o) => {
            map.lookup(*a, Access { prot: *p, override_write: *o }).map(|f| format!("{}", f.prot))
        }
        Op::Fork(_) | Op::Undo => unreachable!("run forks and undoes itself"),
        Op::WireFuture(on) => {
            map.set_wire_future(*on);
            Ok(String::new())
        }
        Op::StackLimit(l) => {
            map.set_stack_limit(*l);
            Ok(String::new())
        }
    }
}

/// What a call can change: entries, counters and `wire_future`. The timestamp moves exactly when this
/// does.
type MapState = (Vec<Entry>, u64, u64, bool);

fn map_state(map: &VmMap) -> MapState {
    (map.entries().cloned().collect(), map.size(), map.wired_size(), map.wire_future())
}

/// After a successful call: the timestamp moved exactly when the map changed, and a call that changed
/// nothing asked nothing of the OS (but memory advice, which is about the pages, not the map).
fn assert_timestamp_follows_change(map: &VmMap, before: &MapState, ts: u64, op: &Op) {
    let same = map_state(map) == *before;
    assert_eq!(
        map.timestamp() == ts,
        same,
        "the timestamp moves exactly when the map changes: {op:?}\n{map}"
    );
    let memory_advice = matches!(op, Op::Madvise(_, _, a) if !a.changes_entries());
    if same && !memory_advice {
        assert!(map.effects().is_empty(), "a call that changed nothing yields no effects: {op:?}");
    }
}

/// The replica agrees with the map: entries, counters and timestamp; and it recorded nothing.
fn assert_replica(map: &VmMap, replica: &VmMap, op: &Op) {
    let (a, b): (Vec<_>, Vec<_>) = (map.entries().collect(), replica.entries().collect());
    assert_eq!(a, b, "replica after {op:?}\n{map}\n{replica}");
    assert_eq!(
        (map.size(), map.wired_size(), map.timestamp(), map.len()),
        (replica.size(), replica.wired_size(), replica.timestamp(), replica.len()),
        "replica counters after {op:?}"
    );
    assert!(replica.effects().is_empty(), "a replay records no effects");
    replica.check_invariants().unwrap_or_else(|e| panic!("replica invariant: {e}\n{replica}"));
}

fn run(ops: Vec<Op>) {
    let mut map: VmMap = VmMap::new(MIN, MIN + PAGES as u64 * PS).unwrap();
    map.set_stack_growth(2 * PS);
    let mut replica = map.clone();
    let mut model = Model::new(MIN, PAGES);
    model.stack_growth = 2 * PS;
    // The state before the last operation, for `undo`.
    let mut before: Option<Model> = None;
    for (step, op) in ops.into_iter().enumerate() {
        let saved = model.clone();
        let ts = map.timestamp();
        let state = map_state(&map);
        let want: Result<String, _> = match &op {
            Op::Insert(s, e, sp) => model.insert(*s..*e, &sp.get()).map(|_| String::new()),
            Op::MapAnywhere(len, align, sp) => model
                .find_space(*len, *align)
                .and_then(|a| model.insert(a..a + len, &sp.get()).map(|_| a))
                .map(|a| format!("{a:#x}")),
            Op::FindSpace(len, align) => model.find_space(*len, *align).map(|a| format!("{a:#x}")),
            Op::Remove(s, e) => model.remove(*s..*e).map(|_| String::new()),
            Op::Protect(s, e, p) => model.protect(*s..*e, *p).map(|_| String::new()),
            Op::ProtectMax(s, e, p) => model.protect_max(*s..*e, *p).map(|_| String::new()),
            Op::Inherit(s, e, i) => model.inherit(*s..*e, *i).map(|_| String::new()),
            Op::Madvise(s, e, a) => model.madvise(*s..*e, *a).map(|_| String::new()),
            Op::Wire(s, e) => model.wire(*s..*e).map(|_| String::new()),
            Op::Unwire(s, e) => model.unwire(*s..*e).map(|_| String::new()),
            Op::WireAll => model.wire_all().map(|_| String::new()),
            Op::UnwireAll => model.unwire_all().map(|_| String::new()),
            Op::Guard(s, e) => model.guard(*s..*e).map(|_| String::new()),
            Op::Unguard(s, e) => model.unguard(*s..*e).map(|_| String::new()),
            Op::Seal(s, e) => model.seal(*s..*e).map(|_| String::new()),
            Op::Stack(b, m, i, sp) => model.stack(*b, *m, *i, &sp.get()).map(|r| format!("{r:?}")),
            Op::GrowStack(a) => model.grow_stack(*a).map(|g| format!("{g:?}")),
            Op::Lookup(a, p, o) => model.lookup(*a, *p, *o).map(|p| format!("{p}")),
            Op::Fork(keep_child) => {
                let child_map = map.fork().unwrap();
                let child_replica = replica.replay(|m| m.fork().unwrap());
                assert_replica(&map, &replica, &op);
                assert_replica(&child_map, &child_replica, &op);
                let child_model = model.fork();
                child_model.assert_same(&child_map);
                if *keep_child {
                    map = child_map;
                    replica = map.clone();
                    model = child_model;
                    before = None;
                    model.assert_same(&map);
                    continue;
                }
                model.assert_same(&map);
                assert_timestamp_follows_change(&map, &state, ts, &op);
                before = (map.timestamp() != ts).then_some(saved);
                continue;
            }
            Op::WireFuture(on) => {
                model.wire_future = *on;
                Ok(String::new())
            }
            Op::StackLimit(l) => {
                model.stack_limit = *l;
                Ok(String::new())
            }
            Op::Undo => {
                let did = map.undo();
                assert_eq!(
                    did,
                    before.is_some(),
                    "undo reverts the last call exactly when it changed the map"
                );
                if let Some(b) = before.take() {
                    model = b;
                }
                model.assert_same(&map);
                assert!(!map.undo(), "one level of undo only");
                // A replica has nothing to undo: it is copied again, as a left-right pair would do.
                replica = map.clone();
                continue;
            }
        };
        let got = on_map(&mut map, &op);
        assert_eq!(got, want, "step {step}: {op:?}\n{map}");
        if got.is_ok() {
            let again = replica.replay(|m| on_map(m, &op));
            assert_eq!(again, got, "the replay of {op:?} answers as the call did");
        }
        assert_replica(&map, &replica, &op);
        if matches!(op, Op::FindSpace(..)) {
            // A query: no effects of its own, and `undo` still refers to the call before it.
            model.assert_same(&map);
            continue;
        }
        if got.is_ok() {
            assert_timestamp_follows_change(&map, &state, ts, &op);
        } else {
            assert!(map.effects().is_empty(), "a failed operation yields no effects: {op:?}");
            assert_eq!(map.timestamp(), ts, "a failed operation leaves the timestamp: {op:?}");
            assert_eq!(model.pages, saved.pages, "the model changed on error");
        }
        model.assert_same(&map);
        // `undo` reverts exactly the last call, when it changed the map.
        before = (map.timestamp() != ts).then_some(saved);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000),
        max_shrink_iters: 2_000,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    #[test]
    fn map_agrees_with_page_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
