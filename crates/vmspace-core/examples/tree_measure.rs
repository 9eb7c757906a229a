//! Quick numbers for the arena entry tree (`map::tree::Tree`) beside a `BTreeMap<u64, (u64, u8)>` range map:
//! ns per lookup (random, sequential, repeated), ns per aligned `find_gap` in a fragmented map, ns per
//! insert + remove, and bytes per item as the allocator sees them, at 1e3, 1e5 and 1e6 items.
//!
//! Not a benchmark harness (that is `cargo bench`): one process, medians of a few rounds.
//!
//! ```text
//! cargo run --release -p vmspace-core --example tree_measure
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use vmspace_core::map::store::{GapRequest, Item};
use vmspace_core::map::tree::Tree;

/// Live heap bytes, as requested from the allocator.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a plain atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PAGE: u64 = 4096;
const MIN: u64 = 0x10_0000;
const MAX: u64 = 1 << 47;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A fragmented map: items of 1..8 pages between gaps of 1..8 pages; one gap in 500 is 4..8 MiB.
fn layout(n: usize, rng: &mut Rng) -> Vec<(u64, u64)> {
    let mut v = Vec::with_capacity(n);
    let mut at = MIN;
    for _ in 0..n {
        let gap = if rng.next().is_multiple_of(500) {
            (1024 + rng.next() % 1024) * PAGE
        } else {
            (1 + rng.next() % 8) * PAGE
        };
        let start = at + gap;
        let end = start + (1 + rng.next() % 8) * PAGE;
        v.push((start, end));
        at = end;
    }
    v
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
}

/// Median over `rounds` of the ns per call of `f` run `iters` times.
fn ns_per(rounds: usize, iters: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut v: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn build_tree(items: &[(u64, u64)]) -> Tree<u8> {
    let mut t = Tree::new(MIN, MAX);
    for &(s, e) in items {
        t.insert(Item { start: s, end: e, reserve_below: 0, value: 3 });
    }
    t
}

fn build_btree(items: &[(u64, u64)]) -> BTreeMap<u64, (u64, u8)> {
    let mut m = BTreeMap::new();
    for &(s, e) in items {
        m.insert(s, (e, 3u8));
    }
    m
}

fn bytes_per_item<T>(n: usize, build: impl FnOnce() -> T) -> (f64, T) {
    let before = LIVE.load(Ordering::Relaxed);
    let t = build();
    let after = LIVE.load(Ordering::Relaxed);
    ((after - before) as f64 / n as f64, t)
}

fn main() {
    println!("vmspace-core map::tree::Tree<u8> vs BTreeMap<u64, (u64, u8)>; median ns per operation\n");
    println!(
        "{:>9} | {:>17} | {:>17} | {:>9} | {:>19} | {:>11} | {:>21} | {:>21}",
        "items",
        "lookup rnd T / B",
        "lookup seq T / B",
        "repeat T",
        "find_gap T / B-scan",
        "ins+rm T",
        "bytes/item seq T / B",
        "bytes/item rnd T / B"
    );
    for &n in &[1_000usize, 100_000, 1_000_000] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let items = layout(n, &mut rng);
        let mut shuffled = items.clone();
        shuffle(&mut shuffled, &mut rng);

        let (tb_seq, t) = bytes_per_item(n, || build_tree(&items));
        let (bb_seq, b) = bytes_per_item(n, || build_btree(&items));
        let (tb_rnd, t_rnd) = bytes_per_item(n, || build_tree(&shuffled));
        let (bb_rnd, b_rnd) = bytes_per_item(n, || build_btree(&shuffled));
        t.check().expect("tree invariants");
        t_rnd.check().expect("tree invariants");
        drop((t_rnd, b_rnd));

        // Random addresses inside random items.
        const Q: usize = 1 << 20;
        let probes: Vec<u64> = (0..Q)
            .map(|_| {
                let (s, e) = items[(rng.next() % n as u64) as usize];
                s + rng.next() % (e - s)
            })
            .collect();
        let lookup_t = ns_per(5, Q, |i| {
            black_box(t.containing(probes[i]));
        });
        let lookup_b = ns_per(5, Q, |i| {
            let a = probes[i];
            black_box(b.range(..=a).next_back().filter(|(_, v)| a < v.0));
        });
        // Sequential: every page of the map in order, wrapping around.
        let pages: Vec<u64> =
            items.iter().flat_map(|&(s, e)| (s..e).step_by(PAGE as usize)).take(Q).collect();
        let np = pages.len();
        let seq_t = ns_per(5, Q, |i| {
            black_box(t.containing(pages[i % np]));
        });
        let seq_b = ns_per(5, Q, |i| {
            let a = pages[i % np];
            black_box(b.range(..=a).next_back().filter(|(_, v)| a < v.0));
        });
        let rep = probes[7];
        let rep_t = ns_per(5, Q, |_| {
            black_box(t.containing(black_box(rep)));
        });

        // Aligned find_gap: 1 MiB at 2 MiB alignment from a random lower bound, alternating directions.
        // Only the large gaps fit, so the search has to skip the small ones.
        let span = items[n - 1].1 - MIN;
        let reqs: Vec<GapRequest> = (0..4096)
            .map(|k| GapRequest {
                len: 1 << 20,
                align: 2 << 20,
                lo: if k % 2 == 0 { MIN + rng.next() % span } else { MIN },
                hi: if k % 2 == 0 { MAX } else { MIN + rng.next() % span },
                top_down: k % 2 == 1,
            })
            .collect();
        let fg_t = ns_per(5, 1 << 16, |i| {
            black_box(t.find_gap(&reqs[i % reqs.len()]));
        });
        // The peer: a linear scan over the BTreeMap's gaps from the lower bound (bottom-up requests only).
        let scan_iters = if n >= 1_000_000 { 64 } else { 1024 };
        let fg_b = ns_per(3, scan_iters, |i| {
            let r = &reqs[(2 * i) % reqs.len()];
            let mut prev_end = b.range(..r.lo).next_back().map_or(MIN, |(_, v)| v.0);
            let mut found = None;
            for (&s, v) in b.range(r.lo..) {
                let a = prev_end.max(r.lo).next_multiple_of(r.align);
                if a + r.len <= s {
                    found = Some(a);
                    break;
                }
                prev_end = v.0;
            }
            black_box(found);
        });

        // Insert and remove a one-page item in a random small gap.
        let holes: Vec<u64> = (0..4096)
            .map(|_| {
                let k = (rng.next() % (n as u64 - 1)) as usize;
                items[k].1
            })
            .collect();
        let mut tm = t.clone();
        let ir_t = ns_per(5, 1 << 16, |i| {
            let a = holes[i % holes.len()];
            tm.insert(Item { start: a, end: a + PAGE, reserve_below: 0, value: 1 });
            black_box(tm.remove(a));
        });

        println!(
            "{:>9} | {:>7.1} / {:>7.1} | {:>7.1} / {:>7.1} | {:>9.1} | {:>7.1} / {:>9.0} | {:>11.1} | {:>9.1} / {:>9.1} | {:>9.1} / {:>9.1}",
            n, lookup_t, lookup_b, seq_t, seq_b, rep_t, fg_t, fg_b, ir_t, tb_seq, bb_seq, tb_rnd, bb_rnd
        );
    }
}
