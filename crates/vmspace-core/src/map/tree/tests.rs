//! Unit tests at tiny node sizes (`LCAP = ICAP = 4` under `cfg(test)`, so short sequences build deep
//! trees): the tree against the `BTreeMap` store over random operation sequences, and the reservation,
//! fill and hint cases.
//!
//! Invariant: every step is followed by `Tree::check` and a full comparison with the store.

use super::node::LCAP;
use super::*;
use crate::map::store::{GapRequest, Item, Store, StoreFull};
use proptest::collection::vec;
use proptest::prelude::*;

const PAGE: u64 = 4096;
const GIB: u64 = 1 << 30;

fn item(start: u64, end: u64, reserve_below: u64, value: u32) -> Item<u32> {
    Item { start, end, reserve_below, value }
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        start: u64,
        pages: u64,
        rb: u64,
        v: u32,
    },
    Fill {
        start: u64,
        count: usize,
        pages: u64,
        gap: u64,
    },
    Remove {
        pick: usize,
    },
    RemoveAddr(u64),
    SetBounds {
        pick: usize,
        a: u64,
        b: u64,
        rb: u64,
    },
    Move {
        pick: usize,
        to: u64,
    },
    Value {
        pick: usize,
        v: u32,
    },
    /// Replace `count` consecutive items by up to three pieces of their span, cut at `cuts`, the
    /// last one shortened by `shrink` bytes (within its length).
    Replace {
        pick: usize,
        count: usize,
        pieces: usize,
        cuts: [u64; 2],
        shrink: u64,
        v: u32,
    },
}

/// Mostly page-aligned addresses, clustered on both sides of GiB boundaries so that items collide and
/// large alignments matter; sometimes anywhere, sometimes unaligned.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..8, 0u64..96).prop_map(|(g, p)| g * GIB + p * PAGE),
        2 => (1u64..8, 1u64..96).prop_map(|(g, p)| g * GIB - p * PAGE),
        2 => (0u64..(8 * GIB / PAGE)).prop_map(|p| p * PAGE),
        1 => 0u64..8 * GIB,
    ]
}

fn reserve_below() -> impl Strategy<Value = u64> {
    prop_oneof![6 => Just(0u64), 2 => (1u64..8).prop_map(|p| p * PAGE), 1 => 1u64..3 * PAGE]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (addr(), 1u64..12, reserve_below(), any::<u32>())
            .prop_map(|(start, pages, rb, v)| Op::Insert { start, pages, rb, v }),
        2 => (addr(), 1usize..40, 1u64..4, 0u64..4)
            .prop_map(|(start, count, pages, gap)| Op::Fill { start, count, pages, gap }),
        4 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        1 => addr().prop_map(Op::RemoveAddr),
        3 => (any::<usize>(), any::<u64>(), any::<u64>(), reserve_below())
            .prop_map(|(pick, a, b, rb)| Op::SetBounds { pick, a, b, rb }),
        1 => (any::<usize>(), addr()).prop_map(|(pick, to)| Op::Move { pick, to }),
        1 => (any::<usize>(), any::<u32>()).prop_map(|(pick, v)| Op::Value { pick, v }),
        3 => (
            any::<usize>(),
            1usize..4,
            1usize..4,
            any::<[u64; 2]>(),
            prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
            any::<u32>(),
        )
            .prop_map(|(pick, count, pieces, cuts, shrink, v)| {
                Op::Replace { pick, count, pieces, cuts, shrink, v }
            }),
    ]
}

fn bounds() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        Just((0, 8 * GIB)),
        Just((16 * PAGE, 8 * GIB - 3 * PAGE)),
        Just((0, u64::MAX)),
        Just((GIB, 4 * GIB + 5 * PAGE)),
    ]
}

fn req() -> impl Strategy<Value = GapRequest> {
    let len = prop_oneof![
        6 => (1u64..48).prop_map(|p| p * PAGE),
        1 => 1u64..4 * PAGE,
        1 => (1u64..3).prop_map(|g| g * GIB),
        1 => Just(2u64 << 20),
    ];
    let align = prop_oneof![8 => (0u32..=18).prop_map(|k| PAGE << k), 1 => Just(1u64), 1 => Just(3 * PAGE)];
    let window = prop_oneof![
        3 => (addr(), addr()).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => Just((0u64, u64::MAX)),
        1 => (addr(), addr()),
    ];
    (len, align, window, any::<bool>()).prop_map(|(len, align, (lo, hi), top_down)| GapRequest {
        len,
        align,
        lo,
        hi,
        top_down,
    })
}

fn fits(s: &Store<u32>, start: u64, end: u64, skip: Option<u64>) -> bool {
    start < end
        && start >= s_min(s)
        && end <= s_max(s)
        && s.overlapping(start, end).all(|it| Some(it.start) == skip)
}

// The store keeps its bounds private; recover them from its gap list on an empty map or the test state.
fn s_min(s: &Store<u32>) -> u64 {
    BOUNDS.with(|b| b.get().0).max(s.iter().next().map_or(0, |_| 0))
}
fn s_max(_s: &Store<u32>) -> u64 {
    BOUNDS.with(|b| b.get().1)
}
std::thread_local! {
    static BOUNDS: core::cell::Cell<(u64, u64)> = const { core::cell::Cell::new((0, 0)) };
}

fn nth_start(s: &Store<u32>, pick: usize) -> Option<u64> {
    let n = s.len();
    (n > 0).then(|| s.iter().nth(pick % n).unwrap().start)
}

fn apply(t: &mut Tree<u32>, s: &mut Store<u32>, op: &Op) {
    let (min, max) = BOUNDS.with(|b| b.get());
    match *op {
        Op::Insert { start, pages, rb, v } => {
            if let Some(end) = start.checked_add(pages * PAGE)
                && fits(s, start, end, None)
            {
                t.insert(item(start, end, rb, v));
                s.insert(item(start, end, rb, v));
            }
        }
        Op::Fill { start, count, pages, gap } => {
            for k in 0..count as u64 {
                let st = start.saturating_add(k * (pages + gap) * PAGE);
                if let Some(end) = st.checked_add(pages * PAGE)
                    && fits(s, st, end, None)
                {
                    t.insert(item(st, end, 0, k as u32));
                    s.insert(item(st, end, 0, k as u32));
                }
            }
        }
        Op::Remove { pick } => {
            if let Some(st) = nth_start(s, pick) {
                assert_eq!(t.remove(st), s.remove(st));
            }
        }
        Op::RemoveAddr(a) => assert_eq!(t.remove(a), s.remove(a)),
        Op::SetBounds { pick, a, b, rb } => {
            let Some(st) = nth_start(s, pick) else { return };
            let lo = s.prev(st).map_or(min, |p| p.end);
            let hi = s.next(st).map_or(max, |n| n.start);
            let span = hi - lo;
            let ns = lo + ((a % span) & !(PAGE - 1));
            let mut ne = ns + 1 + b % (hi - ns);
            if ne.next_multiple_of(PAGE) <= hi {
                ne = ne.next_multiple_of(PAGE);
            }
            t.set_bounds(st, ns, ne, rb);
            s.set_bounds(st, ns, ne, rb);
        }
        Op::Move { pick, to } => {
            let Some(st) = nth_start(s, pick) else { return };
            let it = s.get(st).unwrap().clone();
            if let Some(end) = to.checked_add(it.end - it.start)
                && fits(s, to, end, Some(st))
            {
                t.set_bounds(st, to, end, it.reserve_below);
                s.set_bounds(st, to, end, it.reserve_below);
            }
        }
        Op::Value { pick, v } => {
            if let Some(st) = nth_start(s, pick) {
                *t.value_mut(st).unwrap() = v;
                *s.value_mut(st).unwrap() = v;
            }
            assert_eq!(t.value_mut(u64::MAX).is_none(), s.value_mut(u64::MAX).is_none());
        }
        Op::Replace { pick, count, pieces, cuts, shrink, v } => {
            let Some(st) = nth_start(s, pick) else { return };
            let old: Vec<Item<u32>> = s.iter().filter(|it| it.start >= st).take(count).cloned().collect();
            let end = old.last().unwrap().end;
            let mut points: Vec<u64> = cuts
                .iter()
                .take(pieces - 1)
                .filter(|_| end - st >= 2)
                .map(|c| st + 1 + c % (end - st - 1))
                .collect();
            points.sort_unstable();
            points.dedup();
            points.insert(0, st);
            points.push(end);
            let mut new = [None, None, None];
            for (k, w) in points.windows(2).enumerate() {
                let rb = if k == 0 { old[0].reserve_below } else { 0 };
                new[k] = Some(item(w[0], w[1], rb, v.wrapping_add(k as u32)));
            }
            let last = points.len() - 2;
            let it = new[last].as_mut().unwrap();
            it.end -= shrink % (it.end - it.start);
            for o in &old {
                s.remove(o.start);
            }
            for it in new.iter().flatten() {
                s.insert(it.clone());
            }
            // By start, or by the position a lookup gave (a stale one, taken before an unrelated
            // lookup moved nothing, must work the same).
            if v % 2 == 0 {
                t.replace_run(st, old.len(), new);
            } else {
                let at = t.containing_pos(st).expect("the run's first item");
                assert_eq!(t.item(at).map(|it| it.start), Some(st));
                assert_eq!(
                    t.prev_pos(at).and_then(|p| t.item(p)).map(|it| it.start),
                    s.prev(st).map(|it| it.start)
                );
                let last = (1..old.len()).try_fold(at, |p, _| t.next_pos(p));
                assert_eq!(last.and_then(|p| t.item(p)).map(|it| it.start), Some(old[old.len() - 1].start));
                t.replace_run_at(at, old.len(), new);
            }
        }
    }
}

fn compare(t: &Tree<u32>, s: &Store<u32>, probes: &[u64], reqs: &[GapRequest]) {
    if let Err(e) = t.check() {
        panic!("tree check: {e}\n{t:?}");
    }
    s.check().unwrap();
    assert_eq!(t.len(), s.len());
    assert_eq!(t.is_empty(), s.is_empty());
    let ti: Vec<_> = t.iter().cloned().collect();
    let si: Vec<_> = s.iter().cloned().collect();
    assert_eq!(ti, si);
    assert!(t.iter().rev().eq(s.iter().rev()));
    // Both ends at once.
    let (mut a, mut b) = (t.iter(), s.iter());
    for k in 0..si.len() + 2 {
        if k % 2 == 0 {
            assert_eq!(a.next(), b.next());
        } else {
            assert_eq!(a.next_back(), b.next_back());
        }
    }
    assert!(t.gaps().eq(s.gaps()));
    assert_eq!(t.largest_gap(), s.largest_gap());

    let mut ps = probes.to_vec();
    for it in s.iter() {
        ps.extend([
            it.start,
            it.end - 1,
            it.end,
            it.start.wrapping_sub(1),
            it.start.saturating_sub(it.reserve_below),
        ]);
    }
    ps.extend([0, u64::MAX, 1]);
    for &p in &ps {
        assert_eq!(t.containing(p), s.containing(p), "containing {p:#x}");
        assert_eq!(t.floor(p), s.floor(p), "floor {p:#x}");
        assert_eq!(t.ceil(p), s.ceil(p), "ceil {p:#x}");
        assert_eq!(t.prev(p), s.prev(p), "prev {p:#x}");
        assert_eq!(t.next(p), s.next(p), "next {p:#x}");
        assert_eq!(t.get(p), s.get(p), "get {p:#x}");
    }
    // Sequential and backward lookups go through the hint's neighbours.
    ps.sort_unstable();
    for &p in ps.iter().chain(ps.iter().rev()) {
        assert_eq!(t.containing(p), s.containing(p), "containing (sorted) {p:#x}");
    }
    for w in probes.windows(2) {
        let (x, y) = (w[0].min(w[1]), w[0].max(w[1]));
        assert!(t.overlapping(x, y).eq(s.overlapping(x, y)), "overlapping {x:#x}..{y:#x}");
    }
    for it in s.iter().take(8) {
        assert!(t.overlapping(it.start, it.start).eq(s.overlapping(it.start, it.start)));
        assert!(
            t.overlapping(it.end - 1, it.end + 5 * PAGE).eq(s.overlapping(it.end - 1, it.end + 5 * PAGE))
        );
    }
    let mut all = reqs.to_vec();
    // Exact fits: each gap's own length, at several alignments, in the whole map and in the gap alone.
    for (k, (gs, ge)) in s.gaps().take(6).enumerate() {
        let align = [1, PAGE, 2 << 20, GIB][k % 4];
        for td in [false, true] {
            all.push(GapRequest { len: ge - gs, align, lo: 0, hi: u64::MAX, top_down: td });
            all.push(GapRequest { len: ge - gs, align: 1, lo: gs, hi: ge, top_down: td });
            all.push(GapRequest {
                len: (ge - gs).div_ceil(2),
                align: PAGE,
                lo: gs + 1,
                hi: ge,
                top_down: td,
            });
        }
    }
    for r in &all {
        for td in [false, true] {
            let r = GapRequest { top_down: td, ..*r };
            assert_eq!(t.find_gap(&r), s.find_gap(&r), "find_gap {r:x?}");
        }
    }
}

fn run(bounds: (u64, u64), ops: &[Op], probes: &[u64], reqs: &[GapRequest]) {
    BOUNDS.with(|b| b.set(bounds));
    let mut t = Tree::new(bounds.0, bounds.1);
    let mut s = Store::new(bounds.0, bounds.1);
    compare(&t, &s, probes, reqs);
    for (k, op) in ops.iter().enumerate() {
        apply(&mut t, &mut s, op);
        compare(&t, &s, probes, reqs);
        if k % 16 == 15 {
            let c = t.clone();
            compare(&c, &s, probes, reqs);
        }
    }
    // The same operations in batches of five: lookups stay exact inside a batch, and after its end
    // the tree (gap summaries included) equals the store again.
    let mut t = Tree::new(bounds.0, bounds.1);
    let mut s = Store::new(bounds.0, bounds.1);
    for batch in ops.chunks(5) {
        t.begin_batch();
        for op in batch {
            apply(&mut t, &mut s, op);
            for &p in probes {
                assert_eq!(t.containing(p), s.containing(p), "containing {p:#x} inside a batch");
                assert_eq!(t.floor(p), s.floor(p), "floor {p:#x} inside a batch");
                assert_eq!(t.ceil(p), s.ceil(p), "ceil {p:#x} inside a batch");
            }
        }
        t.end_batch();
        compare(&t, &s, probes, reqs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn tree_matches_store(
        bounds in bounds(),
        ops in vec(op(), 1..90),
        probes in vec(addr(), 8),
        reqs in vec(req(), 10),
    ) {
        run(bounds, &ops, &probes, &reqs);
    }
}

/// A tiny deterministic generator for the long sequences below.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 17
    }
}

/// Thousands of operations grow the tiny-node tree to height 6+ and shrink it again.
#[test]
fn long_sequence_grows_and_shrinks() {
    let bounds = (0, 64 * GIB);
    BOUNDS.with(|b| b.set(bounds));
    let mut t = Tree::new(bounds.0, bounds.1);
    let mut s = Store::new(bounds.0, bounds.1);
    let mut g = Lcg(7);
    let mut max_height = 0;
    for step in 0..6000u64 {
        let growing = (step / 1500) % 2 == 0;
        let r = g.next() % 10;
        let op = if r < 6 && growing || r < 3 {
            Op::Insert {
                start: (g.next() % (1 << 16)) * PAGE,
                pages: 1 + g.next() % 4,
                rb: 0,
                v: step as u32,
            }
        } else if r < 8 {
            Op::Remove { pick: g.next() as usize }
        } else {
            Op::SetBounds { pick: g.next() as usize, a: g.next(), b: g.next(), rb: (g.next() % 3) * PAGE }
        };
        apply(&mut t, &mut s, &op);
        t.check().unwrap();
        max_height = max_height.max(t.height);
        if step % 250 == 0 {
            let reqs: Vec<_> = (0..20)
                .map(|k| GapRequest {
                    len: (1 + g.next() % 8) * PAGE,
                    align: PAGE << (g.next() % 12),
                    lo: (g.next() % (1 << 16)) * PAGE,
                    hi: u64::MAX,
                    top_down: k % 2 == 0,
                })
                .collect();
            compare(&t, &s, &[0, 5 * PAGE, 1 << 28], &reqs);
        }
    }
    assert!(max_height >= 5, "height {max_height}");
    while let Some(st) = nth_start(&s, 0) {
        assert_eq!(t.remove(st), s.remove(st));
    }
    t.check().unwrap();
    assert!(t.is_empty() && t.root == NIL);
    assert_eq!(t.leaves.len(), t.free_leaves.count);
}

#[test]
fn reservation_forbidden_and_spent_is_an_error() {
    let mut t: Tree<u32> = Tree::new(0, 1 << 40);
    t.set_alloc_allowed(false);
    assert_eq!(t.ensure_spare(1), Err(StoreFull));
    assert_eq!(t.reserve(4), Err(StoreFull));
    assert_eq!(t.ensure_spare(0), Ok(()));
    t.set_alloc_allowed(true);
    assert_eq!(t.ensure_spare(4), Ok(()));
    t.set_alloc_allowed(false);
    // Spend the reservation without ever asking again: it runs out with an error, never a panic.
    let mut refused = false;
    for k in 0..10_000u64 {
        if t.ensure_spare(4).is_err() {
            refused = true;
            break;
        }
        t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, 0));
    }
    assert!(refused, "a spent reservation with allocation forbidden must be refused");
    t.check().unwrap();
}

#[test]
fn reserved_inserts_do_not_allocate() {
    let mut g = Lcg(3);
    for &(prefill, n) in &[(0usize, 1usize), (0, 50), (10, 4), (300, 4), (300, 200), (2000, 33)] {
        let mut t: Tree<u32> = Tree::new(0, 1 << 40);
        // Every other page slot of a large space; the reserved inserts go into random free slots.
        let mut used = alloc::collections::BTreeSet::new();
        while used.len() < prefill {
            let slot = g.next() % 100_000;
            if used.insert(slot) {
                t.insert(item(slot * 2 * PAGE, slot * 2 * PAGE + PAGE, 0, 0));
            }
        }
        t.release();
        assert_eq!(t.reserve(n), Ok(()));
        t.set_alloc_allowed(false);
        assert_eq!(t.ensure_spare(n), Ok(()));
        let caps = (t.leaves.capacity(), t.inners.capacity());
        let mut done = 0;
        while done < n {
            let slot = g.next() % 100_000;
            if used.insert(slot) {
                t.insert(item(slot * 2 * PAGE, slot * 2 * PAGE + PAGE, 0, 0));
                done += 1;
                assert_eq!(
                    (t.leaves.capacity(), t.inners.capacity()),
                    caps,
                    "insert {done} of {n} allocated"
                );
            }
        }
        t.check().unwrap();
        t.set_alloc_allowed(true);
        t.release();
        t.check().unwrap();
    }
}

#[test]
fn appending_keeps_leaves_full_and_release_trims() {
    let mut t: Tree<u32> = Tree::new(0, 1 << 40);
    for k in 0..1000u64 {
        t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, 0));
    }
    t.check().unwrap();
    // Every leaf but the last keeps `LCAP - 1` items.
    let live = t.leaves.len() - t.free_leaves.count;
    assert!(live <= 1000 / (LCAP - 1) + 1, "{live} leaves for 1000 appended items");
    t.reserve(5000).unwrap();
    let big = t.leaves.capacity();
    t.release();
    assert!(t.leaves.capacity() < big);
    // Remove everything: nodes go to the free lists, release gives the tail back.
    for k in 0..1000u64 {
        t.remove(k * 2 * PAGE).unwrap();
    }
    t.check().unwrap();
    t.release();
    t.check().unwrap();
    assert!(t.leaves.len() <= LEAF_SLOP && t.inners.len() <= INNER_SLOP);
}

#[test]
fn hint_survives_node_reuse() {
    let mut t: Tree<u32> = Tree::new(0, 1 << 40);
    for k in 0..200u64 {
        t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, k as u32));
    }
    assert_eq!(t.containing(7 * 2 * PAGE).map(|i| i.value), Some(7));
    for k in 0..150u64 {
        t.remove(k * 2 * PAGE);
    }
    for k in 0..150u64 {
        t.insert(item(k * 2 * PAGE + 100 * GIB, k * 2 * PAGE + PAGE + 100 * GIB, 0, 1000 + k as u32));
    }
    assert_eq!(t.containing(7 * 2 * PAGE), None);
    assert_eq!(t.containing(7 * 2 * PAGE + 100 * GIB).map(|i| i.value), Some(1007));
    assert_eq!(t.containing(8 * 2 * PAGE + 100 * GIB).map(|i| i.value), Some(1008));
    assert_eq!(t.containing(8 * 2 * PAGE + 100 * GIB + PAGE), None);
    let c = t.clone();
    assert_eq!(c.containing(199 * 2 * PAGE).map(|i| i.value), Some(199));
    c.check().unwrap();
}

/// Mapping and unmapping above everything, at a full last leaf, neither allocates nor frees a leaf
/// after the first split: the last leaf is not rebalanced while it has an item.
#[test]
fn insert_and_remove_at_the_top_do_not_split_every_time() {
    let mut t: Tree<u32> = Tree::new(0, 1 << 40);
    let n = 10 * LCAP as u64;
    for k in 0..n {
        t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, 0));
    }
    // Fill the last leaf exactly.
    let mut k = n;
    while t.leaves[t.last_leaf() as usize].len as usize != LCAP {
        t.insert(item(k * 2 * PAGE, k * 2 * PAGE + PAGE, 0, 0));
        k += 1;
    }
    let top = k * 2 * PAGE;
    t.insert(item(top, top + PAGE, 0, 1));
    t.remove(top).unwrap();
    let live = t.leaves.len() - t.free_leaves.count;
    let arena = t.leaves.len();
    for _ in 0..100 {
        t.insert(item(top, top + PAGE, 0, 1));
        t.check().unwrap();
        assert_eq!(t.leaves.len() - t.free_leaves.count, live, "the insertion split a leaf");
        t.remove(top).unwrap();
        t.check().unwrap();
    }
    assert_eq!(t.leaves.len() - t.free_leaves.count, live, "the cycle splits or merges leaves");
    assert_eq!(t.leaves.len(), arena);
    // Emptying the last leaf still merges it away.
    let last = t.last_leaf();
    let starts: Vec<u64> = t.leaves[last as usize].items().iter().map(|it| it.start).collect();
    for s in starts {
        t.remove(s).unwrap();
        t.check().unwrap();
    }
    assert_eq!(t.leaves.len() - t.free_leaves.count, live - 1);
}

/// Regression: a removal that leaves the first leaf underfull when leaf and root share an index.
#[test]
fn underfull_first_leaf_is_rebalanced() {
    let ops = [
        Op::Insert { start: 0, pages: 1, rb: 0, v: 0 },
        Op::Insert { start: 4096, pages: 1, rb: 0, v: 0 },
        Op::Insert { start: 24576, pages: 1, rb: 0, v: 0 },
        Op::SetBounds { pick: 269974295140417, a: 1054996338196197376, b: 0, rb: 0 },
        Op::Insert { start: 0, pages: 1, rb: 0, v: 0 },
        Op::Insert { start: 2147483648, pages: 1, rb: 0, v: 0 },
        Op::Insert { start: 28672, pages: 1, rb: 0, v: 0 },
        Op::Remove { pick: 113210014921035710 },
    ];
    run((0, 8 * GIB), &ops, &[0, GIB], &[]);
}
