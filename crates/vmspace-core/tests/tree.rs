//! The arena entry tree (`map::tree::Tree`) against the `BTreeMap` store (`map::store::Store`) at the
//! production node sizes: maps of thousands of items (a tree three levels deep), random operations, and
//! every query compared, `find_gap` for random lengths, power-of-two alignments from 4 KiB to 1 GiB,
//! bounds and both directions. (The unit tests in `src/map/tree/tests.rs` run the same comparison with
//! tiny nodes.)

use proptest::collection::vec;
use proptest::prelude::*;
use vmspace_core::map::store::{GapRequest, Item, Store};
use vmspace_core::map::tree::Tree;

/// Counts this thread's allocations, so a test can show that a stretch of code allocated nothing.
struct Counting;

std::thread_local! {
    static ALLOCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards every call unchanged to the system allocator; the counter is a const-initialised
// thread-local `Cell`, which neither allocates nor re-enters the allocator.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System.alloc` / `realloc` with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(|c| c.get())
}

const PAGE: u64 = 4096;
const GIB: u64 = 1 << 30;
const MIN: u64 = 0x10_0000;
const MAX: u64 = 64 * GIB;

fn item(start: u64, end: u64, reserve_below: u64, value: u32) -> Item<u32> {
    Item { start, end, reserve_below, value }
}

fn free(s: &Store<u32>, start: u64, end: u64, skip: Option<u64>) -> bool {
    start < end && start >= MIN && end <= MAX && s.overlapping(start, end).all(|it| Some(it.start) == skip)
}

/// A fragmented map: `n` items of 1..8 pages separated by gaps of 1..8 pages (a few much larger, a few
/// with a stack reservation below), inserted in address order or shuffled.
fn build(n: usize, seed: u64, shuffled: bool) -> (Tree<u32>, Store<u32>) {
    let mut g = seed | 1;
    let mut rnd = move || {
        g ^= g << 13;
        g ^= g >> 7;
        g ^= g << 17;
        g
    };
    let mut items = Vec::with_capacity(n);
    let mut at = MIN;
    for k in 0..n {
        let gap = if rnd() % 97 == 0 { (64 + rnd() % 1024) * PAGE } else { (1 + rnd() % 8) * PAGE };
        let start = at + gap;
        let end = start + (1 + rnd() % 8) * PAGE;
        let rb = if rnd() % 13 == 0 { (rnd() % 4) * PAGE } else { 0 };
        items.push(item(start, end, rb, k as u32));
        at = end;
    }
    if shuffled {
        for i in (1..items.len()).rev() {
            items.swap(i, (rnd() % (i as u64 + 1)) as usize);
        }
    }
    let mut t = Tree::new(MIN, MAX);
    let mut s = Store::new(MIN, MAX);
    for it in items {
        t.insert(it.clone());
        s.insert(it);
    }
    (t, s)
}

#[derive(Clone, Debug)]
enum Op {
    Insert { at: u64, pages: u64, rb: u64 },
    Remove { pick: usize },
    RemoveRun { pick: usize, count: usize },
    Clip { pick: usize, front: bool, pages: u64 },
    Move { pick: usize, at: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..(1 << 20), 1u64..8, prop_oneof![4 => Just(0u64), 1 => 1u64..4])
            .prop_map(|(at, pages, rb)| Op::Insert { at, pages, rb: rb * PAGE }),
        3 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        1 => (any::<usize>(), 1usize..200).prop_map(|(pick, count)| Op::RemoveRun { pick, count }),
        3 => (any::<usize>(), any::<bool>(), 0u64..8).prop_map(|(pick, front, pages)| Op::Clip { pick, front, pages }),
        1 => (any::<usize>(), 0u64..(1 << 20)).prop_map(|(pick, at)| Op::Move { pick, at }),
    ]
}

fn req() -> impl Strategy<Value = GapRequest> {
    (
        prop_oneof![6 => (1u64..40).prop_map(|p| p * PAGE), 1 => (1u64..1024).prop_map(|p| p * PAGE), 1 => Just(GIB)],
        0u32..=18,
        0u64..(1 << 21),
        0u64..(1 << 21),
        any::<bool>(),
    )
        .prop_map(|(len, k, a, b, top_down)| GapRequest {
            len,
            align: PAGE << k,
            lo: MIN + a.min(b) * PAGE,
            hi: if a == b { u64::MAX } else { MIN + a.max(b) * PAGE },
            top_down,
        })
}

fn nth(s: &Store<u32>, pick: usize) -> Option<Item<u32>> {
    let n = s.len();
    (n > 0).then(|| s.iter().nth(pick % n).unwrap().clone())
}

fn apply(t: &mut Tree<u32>, s: &mut Store<u32>, op: &Op) {
    match *op {
        Op::Insert { at, pages, rb } => {
            let start = MIN + at * PAGE;
            let end = start + pages * PAGE;
            if free(s, start, end, None) {
                t.insert(item(start, end, rb, 7));
                s.insert(item(start, end, rb, 7));
            }
        }
        Op::Remove { pick } => {
            if let Some(it) = nth(s, pick) {
                assert_eq!(t.remove(it.start), s.remove(it.start));
            }
        }
        Op::RemoveRun { pick, count } => {
            if let Some(it) = nth(s, pick) {
                let starts: Vec<u64> =
                    s.iter().skip_while(|x| x.start < it.start).take(count).map(|x| x.start).collect();
                for st in starts {
                    assert_eq!(t.remove(st), s.remove(st));
                }
            }
        }
        Op::Clip { pick, front, pages } => {
            if let Some(it) = nth(s, pick) {
                let (mut ns, mut ne) = (it.start, it.end);
                if front {
                    ns = (ns + pages * PAGE).min(ne - PAGE);
                } else {
                    ne = (ne + pages * PAGE).min(s.next(it.start).map_or(MAX, |n| n.start));
                }
                t.set_bounds(it.start, ns, ne, it.reserve_below);
                s.set_bounds(it.start, ns, ne, it.reserve_below);
            }
        }
        Op::Move { pick, at } => {
            if let Some(it) = nth(s, pick) {
                let start = MIN + at * PAGE;
                let end = start + (it.end - it.start);
                if free(s, start, end, Some(it.start)) {
                    t.set_bounds(it.start, start, end, 0);
                    s.set_bounds(it.start, start, end, 0);
                }
            }
        }
    }
}

fn compare(t: &Tree<u32>, s: &Store<u32>, probes: &[u64], reqs: &[GapRequest]) {
    t.check().unwrap();
    assert_eq!(t.len(), s.len());
    assert!(t.iter().eq(s.iter()));
    assert!(t.iter().rev().eq(s.iter().rev()));
    assert!(t.gaps().eq(s.gaps()));
    assert_eq!(t.largest_gap(), s.largest_gap());
    for &p in probes {
        let p = MIN + p * PAGE / 2;
        assert_eq!(t.containing(p), s.containing(p));
        assert_eq!(t.floor(p), s.floor(p));
        assert_eq!(t.ceil(p), s.ceil(p));
        assert_eq!(t.prev(p), s.prev(p));
        assert_eq!(t.next(p), s.next(p));
        assert!(t.overlapping(p, p + 64 * PAGE).eq(s.overlapping(p, p + 64 * PAGE)));
    }
    for r in reqs {
        assert_eq!(t.find_gap(r), s.find_gap(r), "{r:x?}");
    }
    // The largest gap, exactly, at every alignment it allows: the augmentation must lead straight to it.
    let big = t.largest_gap();
    for align in [PAGE, 2 << 20, GIB] {
        for top_down in [false, true] {
            let r = GapRequest { len: big, align, lo: 0, hi: u64::MAX, top_down };
            assert_eq!(t.find_gap(&r), s.find_gap(&r));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn large_tree_matches_store(
        n in 500usize..4000,
        seed in any::<u64>(),
        shuffled in any::<bool>(),
        ops in vec(op(), 1..60),
        probes in vec(0u64..(1 << 21), 16),
        reqs in vec(req(), 24),
    ) {
        let (mut t, mut s) = build(n, seed, shuffled);
        compare(&t, &s, &probes, &reqs);
        for op in &ops {
            apply(&mut t, &mut s, op);
            compare(&t, &s, &probes, &reqs);
        }
        let c = t.clone();
        compare(&c, &s, &probes, &reqs);
    }
}

#[test]
fn reserve_then_insert_without_allocating() {
    let (mut t, mut s) = build(5000, 11, true);
    t.reserve(1000).unwrap();
    t.set_alloc_allowed(false);
    t.ensure_spare(1000).unwrap();
    // One-page items in the gaps, spread over the whole map (every other gap slot), 1000 of them.
    let mut slots = Vec::new();
    for (gs, ge) in s.gaps() {
        let mut a = gs.next_multiple_of(PAGE);
        while a + PAGE <= ge {
            slots.push(a);
            a += 2 * PAGE;
        }
    }
    let step = slots.len() / 1000;
    let chosen: Vec<u64> = slots.iter().step_by(step.max(1)).take(1000).copied().collect();
    assert_eq!(chosen.len(), 1000);
    let before = allocs();
    for &a in &chosen {
        t.insert(item(a, a + PAGE, 0, 1));
    }
    assert_eq!(allocs(), before, "reserved inserts allocated");
    for &a in &chosen {
        s.insert(item(a, a + PAGE, 0, 1));
    }
    compare(&t, &s, &[0, 100, 100_000], &[]);
    // Spent: with allocation forbidden, a large request is refused, not a panic.
    assert!(t.ensure_spare(100_000).is_err());
    t.set_alloc_allowed(true);
    t.release();
    t.check().unwrap();
}
