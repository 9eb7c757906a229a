//! The map against a straightforward `BTreeMap<u64, (end, prot)>` range map and the `rangemap` crate,
//! built in the same run at 1e3, 1e5 and 1e6 entries: random lookup, sequential lookup, insert + remove
//! of a disjoint range, protect split + merge of a middle page, aligned find_space in a fragmented map
//! (the peers scan their gaps linearly), and bytes per entry (counted by the allocator).
//! `cargo bench -p vmspace-bench --bench map`; `VMSPACE_BENCH_SIZES=1000,100000` picks the sizes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use vmspace_bench::record::protect as bt_protect;
use vmspace_bench::timing::interleaved;

use criterion::{Criterion, criterion_group, criterion_main};
use rangemap::RangeMap;
use vmspace_core::{MapSpec, Prot, VmMap};

/// Counts live heap bytes, to measure memory per entry.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const PS: u64 = 4096;
/// Each entry is 4 pages followed by a 1-page hole every 8th entry: fragmented, with merges prevented
/// by alternating protections.
const ENTRY: u64 = 4 * PS;

fn addr_of(i: u64) -> u64 {
    0x1000_0000 + i * ENTRY + (i / 8) * PS
}

fn prot_of(i: u64) -> Prot {
    if i.is_multiple_of(2) { Prot::RW } else { Prot::READ }
}

fn build_vm(n: u64) -> VmMap {
    let mut m: VmMap = VmMap::new(0x1000_0000, 0x1000_0000 + (n + 64) * 2 * ENTRY).unwrap();
    for i in 0..n {
        let a = addr_of(i);
        m.insert(a..a + ENTRY, MapSpec::new(prot_of(i), Prot::ALL)).unwrap();
    }
    m
}

fn build_btree(n: u64) -> BTreeMap<u64, (u64, u8)> {
    (0..n).map(|i| (addr_of(i), (addr_of(i) + ENTRY, prot_of(i).bits()))).collect()
}

fn build_rangemap(n: u64) -> RangeMap<u64, u8> {
    let mut m = RangeMap::new();
    for i in 0..n {
        m.insert(addr_of(i)..addr_of(i) + ENTRY, prot_of(i).bits());
    }
    m
}

/// The straightforward range map's lookup.
fn bt_lookup(m: &BTreeMap<u64, (u64, u8)>, a: u64) -> Option<u8> {
    m.range(..=a).next_back().filter(|(_, (e, _))| a < *e).map(|(_, (_, p))| *p)
}

/// Protects the page at `p` to `new` and back to `old` in each map: a split 1→3 and a merge 3→1.
fn vm_flip(vm: &mut VmMap, p: u64, new: Prot, old: Prot) {
    vm.protect(black_box(p..p + PS), new).unwrap();
    vm.protect(p..p + PS, old).unwrap();
}

fn bt_flip(bt: &mut BTreeMap<u64, (u64, u8)>, p: u64, new: Prot, old: Prot) {
    bt_protect(bt, black_box(p), p + PS, new.bits());
    bt_protect(bt, p, p + PS, old.bits());
}

fn rm_flip(rm: &mut RangeMap<u64, u8>, p: u64, new: Prot, old: Prot) {
    rm.insert(black_box(p..p + PS), new.bits());
    rm.insert(p..p + PS, old.bits());
}

/// A linear scan over the range map's gaps for an aligned fit: what the peers offer for find_space.
fn gaps_scan<'a>(
    mut ranges: impl Iterator<Item = (u64, u64)> + 'a,
    min: u64,
    max: u64,
    len: u64,
    align: u64,
) -> Option<u64> {
    let mut prev = min;
    loop {
        let (s, e) = ranges.next().unwrap_or((max, max));
        let a = prev.div_ceil(align) * align;
        if a + len <= s {
            return Some(a);
        }
        if s == max {
            return None;
        }
        prev = e;
    }
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Prints one interleaved comparison row: vmspace's median and its ratio to each peer's.
fn ratio_row(what: &str, n: u64, m: &[f64]) {
    let peers = ["BTreeMap", "rangemap"];
    let mut line = format!("ratio {what}/{n}: vmspace {:.1} ns", m[0]);
    for (name, v) in peers.iter().zip(&m[1..]) {
        line += &format!(", {name} {v:.1} ns ({:.2}x)", m[0] / v);
    }
    println!("{line}");
}

fn sizes() -> Vec<u64> {
    std::env::var("VMSPACE_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000])
}

fn bench(c: &mut Criterion) {
    for n in sizes() {
        let before = LIVE.load(Ordering::Relaxed);
        let mut vm = build_vm(n);
        let vm_bytes = LIVE.load(Ordering::Relaxed) - before;
        let before = LIVE.load(Ordering::Relaxed);
        let mut bt = build_btree(n);
        let bt_bytes = LIVE.load(Ordering::Relaxed) - before;
        let before = LIVE.load(Ordering::Relaxed);
        let mut rm = build_rangemap(n);
        let rm_bytes = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "memory at {n} entries: vmspace {:.1} B/entry, BTreeMap {:.1} B/entry, rangemap {:.1} B/entry",
            vm_bytes as f64 / n as f64,
            bt_bytes as f64 / n as f64,
            rm_bytes as f64 / n as f64
        );
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let probes: Vec<u64> = (0..4096).map(|_| addr_of(rng(&mut seed) % n) + PS).collect();
        // The second page of a middle entry (even index: read-write).
        let p = addr_of((n / 2) & !1) + PS;

        // Interleaved medians and ratios (15 rounds), printed before criterion's own groups.
        {
            let (mut i, mut j, mut k) = (0usize, 0usize, 0usize);
            let m = interleaved(
                15,
                100_000,
                &mut [
                    &mut || {
                        i = (i + 1) & 4095;
                        black_box(vm.lookup_entry(probes[i]).map(|e| e.prot()));
                    },
                    &mut || {
                        j = (j + 1) & 4095;
                        black_box(bt_lookup(&bt, probes[j]));
                    },
                    &mut || {
                        k = (k + 1) & 4095;
                        black_box(rm.get(&probes[k]).copied());
                    },
                ],
            );
            ratio_row("lookup random", n, &m);
            let m = interleaved(
                15,
                20_000,
                &mut [
                    &mut || vm_flip(&mut vm, p, Prot::READ, Prot::RW),
                    &mut || bt_flip(&mut bt, p, Prot::READ, Prot::RW),
                    &mut || rm_flip(&mut rm, p, Prot::READ, Prot::RW),
                ],
            );
            ratio_row("protect split+merge", n, &m);
            // The same change at a random entry each time (the measurement: cold paths).
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let picks: Vec<(u64, Prot, Prot)> = (0..4096)
                .map(|_| {
                    let i = rng(&mut seed) % n;
                    let old = prot_of(i);
                    (addr_of(i) + PS, old, if old == Prot::RW { Prot::READ } else { Prot::RW })
                })
                .collect();
            let (mut i, mut j, mut k) = (0usize, 0usize, 0usize);
            let m = interleaved(
                15,
                20_000,
                &mut [
                    &mut || {
                        i = (i + 1) & 4095;
                        let (p, old, new) = picks[i];
                        vm_flip(&mut vm, p, new, old);
                    },
                    &mut || {
                        j = (j + 1) & 4095;
                        let (p, old, new) = picks[j];
                        bt_flip(&mut bt, p, new, old);
                    },
                    &mut || {
                        k = (k + 1) & 4095;
                        let (p, old, new) = picks[k];
                        rm_flip(&mut rm, p, new, old);
                    },
                ],
            );
            ratio_row("protect split+merge, random entry", n, &m);
        }

        let mut g = c.benchmark_group(format!("lookup random/{n}"));
        let mut i = 0;
        g.bench_function("vmspace", |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(vm.lookup_entry(probes[i]).map(|e| e.prot()))
            })
        });
        g.bench_function("btreemap", |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(bt_lookup(&bt, probes[i]))
            })
        });
        g.bench_function("rangemap", |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(rm.get(&probes[i]).copied())
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("lookup sequential/{n}"));
        let mut a = addr_of(0);
        let end = addr_of(n - 1);
        g.bench_function("vmspace", |b| {
            b.iter(|| {
                a = if a + PS >= end { addr_of(0) } else { a + PS };
                black_box(vm.lookup_entry(a).map(|e| e.prot()))
            })
        });
        g.bench_function("btreemap", |b| {
            b.iter(|| {
                a = if a + PS >= end { addr_of(0) } else { a + PS };
                black_box(bt_lookup(&bt, a))
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("protect split+merge/{n}"));
        g.bench_function("vmspace", |b| b.iter(|| vm_flip(&mut vm, p, Prot::READ, Prot::RW)));
        g.bench_function("btreemap", |b| b.iter(|| bt_flip(&mut bt, p, Prot::READ, Prot::RW)));
        g.bench_function("rangemap", |b| b.iter(|| rm_flip(&mut rm, p, Prot::READ, Prot::RW)));
        g.finish();

        // A disjoint range above every entry.
        let free = addr_of(n) + 16 * PS;
        let mut g = c.benchmark_group(format!("insert+remove/{n}"));
        g.bench_function("vmspace", |b| {
            b.iter(|| {
                vm.insert(black_box(free..free + PS), MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
                vm.remove(free..free + PS).unwrap();
            })
        });
        g.bench_function("btreemap", |b| {
            b.iter(|| {
                bt.insert(black_box(free), (free + PS, 3));
                bt.remove(&free);
            })
        });
        g.bench_function("rangemap", |b| {
            b.iter(|| {
                rm.insert(black_box(free..free + PS), 3);
                rm.remove(free..free + PS);
            })
        });
        g.finish();

        // Aligned find_space: the only 64 KiB-aligned 64 KiB holes are the trailing gap and one opened
        // here below the top four entries, which first fit must find through the tree (the trailing
        // gap is looked at directly, so a fit there alone would not measure the search).
        for i in n - 12..n - 4 {
            let a = addr_of(i);
            vm.remove(a..a + ENTRY).unwrap();
            bt.remove(&a);
            rm.remove(a..a + ENTRY);
        }
        let (min, max) = (vm.min(), vm.max());
        let found = vm.find_space(16 * PS, 16 * PS).unwrap();
        assert!(found < addr_of(n - 4), "the hole below the top, not the trailing gap");
        assert_eq!(Some(found), gaps_scan(bt.iter().map(|(s, (e, _))| (*s, *e)), min, max, 16 * PS, 16 * PS));
        let mut g = c.benchmark_group(format!("find_space 64K aligned/{n}"));
        g.bench_function("vmspace", |b| {
            b.iter(|| black_box(vm.find_space(black_box(16 * PS), 16 * PS).unwrap()))
        });
        g.bench_function("btreemap", |b| {
            b.iter(|| {
                black_box(gaps_scan(
                    bt.iter().map(|(s, (e, _))| (*s, *e)),
                    min,
                    max,
                    black_box(16 * PS),
                    16 * PS,
                ))
            })
        });
        g.bench_function("rangemap", |b| {
            b.iter(|| {
                black_box(gaps_scan(
                    rm.iter().map(|(r, _)| (r.start, r.end)),
                    min,
                    max,
                    black_box(16 * PS),
                    16 * PS,
                ))
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
