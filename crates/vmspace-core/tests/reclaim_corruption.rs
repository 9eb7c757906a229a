//! Corruption of the reclaim ring's shared memory: random writes into the header and the entries, then
//! the reclaimer runs.
//!
//! Invariant checked: the reclaimer either reports `InvalidRing` (and poisons the ring) or skips what it
//! cannot trust, and its callback is never called with a range outside a region that was live (entered,
//! not cancelled, not yet reclaimed) when the memory was corrupted — nor twice for one region.

use proptest::prelude::*;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use vmspace_core::reclaim::{
    Action, Consumer, ENTRY_SIZE, HEADER_SIZE, Producer, ReclaimError, ReclaimId, ReclaimState, RingView,
};

const PAGE: u64 = 4096;
const STRIDE: u64 = 1 << 20; // region k lives in [k * STRIDE, (k + 1) * STRIDE)

#[derive(Clone, Debug)]
enum Op {
    Enter { pages: u64, offset: u64, free: bool },
    Cancel(usize),
    Reclaim(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..4u64, prop_oneof![Just(0u64), 1..PAGE], any::<bool>())
            .prop_map(|(pages, offset, free)| Op::Enter { pages, offset, free }),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => (1..20u64).prop_map(Op::Reclaim),
    ]
}

#[derive(Clone, Debug)]
enum Write {
    Byte(usize, u8),
    Word(usize, u64),
    /// Nudge one of the indices (head 24, tail 32, busy 40) by a small amount: the plausible-looking case.
    Index(usize, i8),
}

fn write(len: usize) -> impl Strategy<Value = Write> {
    prop_oneof![
        (0..len, any::<u8>()).prop_map(|(o, b)| Write::Byte(o, b)),
        (0..len / 8, any::<u64>()).prop_map(|(w, v)| Write::Word(w * 8, v)),
        (0..3usize, any::<i8>()).prop_map(|(i, d)| Write::Index(24 + 8 * i, d)),
    ]
}

struct Region {
    addr: u64,
    size: u64,
    action: Action,
    id: ReclaimId,
}

fn check(cap: u32, ops: Vec<Op>, writes: Vec<Write>) -> Result<(), TestCaseError> {
    let len = HEADER_SIZE + cap as usize * ENTRY_SIZE;
    let mut buf = vec![0u64; len / 8];
    let base = buf.as_mut_ptr() as *mut u8;
    // SAFETY: `buf` outlives the view (it is dropped at the end of this function, after every use), and
    // the memory is only accessed through atomics (the view, and the corrupting writes below).
    let view = unsafe { RingView::from_raw_parts(base, len) }.unwrap();
    view.initialize(cap).unwrap();
    let mut p = Producer::attach(view, PAGE).unwrap();
    let mut c = Consumer::attach(view, PAGE).unwrap();

    let mut regions: Vec<Region> = Vec::new();
    let mut live: Vec<usize> = Vec::new(); // indexes into regions
    let mut reclaimed: Vec<(u64, u64)> = Vec::new();
    let record = |reclaimed: &mut Vec<(u64, u64)>, c: &mut Consumer<RingView<'_>>, n: u64| {
        c.flush(n, |a, l, _| {
            reclaimed.push((a, l));
            Ok::<(), ()>(())
        })
    };
    for op in ops {
        match op {
            Op::Enter { pages, offset, free } => {
                let k = regions.len() as u64 + 1;
                let (addr, size) = (k * STRIDE + offset, pages * PAGE);
                let action = if free { Action::Free } else { Action::Deallocate };
                if let Some(id) = p.try_enter(addr, size, action, None).unwrap().id {
                    live.push(regions.len());
                    regions.push(Region { addr, size, action, id });
                }
            }
            Op::Cancel(i) if !live.is_empty() => {
                let r = &regions[live[i % live.len()]];
                let st = p.try_cancel(r.id, r.addr, r.size, r.action).unwrap().state;
                if st == ReclaimState::Unreclaimed {
                    live.remove(i % live.len());
                }
            }
            Op::Cancel(_) => {}
            Op::Reclaim(n) => {
                let rep = record(&mut reclaimed, &mut c, n).unwrap();
                prop_assert_eq!(rep.failed, 0);
            }
        }
    }
    // Regions still live (not cancelled, not reclaimed) are all the reclaimer may touch from now on.
    let before = reclaimed.len();
    let done: Vec<u64> = reclaimed.iter().map(|&(a, _)| a / STRIDE).collect();
    let allowed: Vec<&Region> =
        live.iter().map(|&i| &regions[i]).filter(|r| !done.contains(&(r.addr / STRIDE))).collect();

    for w in &writes {
        // SAFETY: offsets are inside `buf`; single-threaded, so these atomic writes race with nothing.
        unsafe {
            match *w {
                Write::Byte(o, b) => AtomicU8::from_ptr(base.add(o)).store(b, Ordering::Relaxed),
                Write::Word(o, v) => AtomicU64::from_ptr(base.add(o) as *mut u64).store(v, Ordering::Relaxed),
                Write::Index(o, d) => {
                    let a = AtomicU64::from_ptr(base.add(o) as *mut u64);
                    a.store(a.load(Ordering::Relaxed).wrapping_add(d as i64 as u64), Ordering::Relaxed);
                }
            }
        }
    }

    for _ in 0..4 {
        match record(&mut reclaimed, &mut c, 64) {
            Ok(_) => {}
            Err(e) => {
                prop_assert_eq!(e, ReclaimError::InvalidRing);
                prop_assert!(c.is_poisoned());
            }
        }
    }
    for &(a, l) in &reclaimed[before..] {
        let inside = allowed.iter().any(|r| a >= r.addr && a + l <= r.addr + r.size);
        prop_assert!(inside, "reclaimed [{:#x}, +{:#x}) outside the live regions", a, l);
    }
    let mut ks: Vec<u64> = reclaimed.iter().map(|&(a, _)| a / STRIDE).collect();
    ks.sort_unstable();
    let n = ks.len();
    ks.dedup();
    prop_assert_eq!(ks.len(), n, "a region was reclaimed twice");
    // `buf` is declared before the view's users, so it is dropped after them.
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn corruption_never_reclaims_outside_the_live_regions(
        cap in 1u32..24,
        ops in prop::collection::vec(op(), 0..60),
        writes in prop::collection::vec(write(HEADER_SIZE + ENTRY_SIZE), 1..6),
    ) {
        // Offsets beyond the ring (a small `cap`) wrap into it.
        let len = HEADER_SIZE + cap as usize * ENTRY_SIZE;
        let writes = writes
            .into_iter()
            .map(|w| match w {
                Write::Byte(o, b) => Write::Byte(o % len, b),
                Write::Word(o, v) => Write::Word((o % len) & !7, v),
                i => i,
            })
            .collect();
        check(cap, ops, writes)?;
    }
}

/// Corruption with the entries region in view: writes aimed only at the entries.
#[test]
fn entry_writes_are_skipped() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..Default::default()
    });
    let strat = (
        1u32..24,
        prop::collection::vec(op(), 0..60),
        prop::collection::vec((0usize..24 * ENTRY_SIZE, any::<u64>(), any::<bool>()), 1..6),
    );
    runner
        .run(&strat, |(cap, ops, ws)| {
            let span = cap as usize * ENTRY_SIZE;
            let writes = ws
                .into_iter()
                .map(|(o, v, byte)| {
                    let o = HEADER_SIZE + o % span;
                    if byte { Write::Byte(o, v as u8) } else { Write::Word(o & !7, v) }
                })
                .collect();
            check(cap, ops, writes)
        })
        .unwrap();
}
