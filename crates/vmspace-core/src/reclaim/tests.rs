//! Unit tests of the ring: every operation and every error path, single-threaded (the concurrent
//! properties are in `tests/reclaim_stress.rs` and the loom model `tests/loom_reclaim.rs`).
//!
//! Invariant checked throughout: what the reclaimer hands to its callback is exactly the whole pages of
//! the live entries, oldest id first, and the producer's view of every id agrees with it.

extern crate std;

use std::vec;
use std::vec::Vec;

use super::layout::{RawEntry, entry_check};
use super::primitive::RELAXED;
use super::*;

const PAGE: u64 = 4096;
type Calls = Vec<(u64, u64, Action)>;

fn ring(cap: u32) -> OwnedRing {
    OwnedRing::new(cap, cap).unwrap()
}

fn pair(r: &OwnedRing) -> (Producer<&OwnedRing>, Consumer<&OwnedRing>) {
    (Producer::attach(r, PAGE).unwrap(), Consumer::attach(r, PAGE).unwrap())
}

fn flush(c: &mut Consumer<&OwnedRing>, n: u64) -> (ReclaimReport<()>, Calls) {
    let mut calls = Vec::new();
    let r = c
        .flush(n, |a, l, act| {
            calls.push((a, l, act));
            Ok(())
        })
        .unwrap();
    (r, calls)
}

fn enter(p: &mut Producer<&OwnedRing>, addr: u64, size: u64, act: Action) -> ReclaimId {
    p.try_enter(addr, size, act, None).unwrap().id.unwrap()
}

#[test]
fn codes_states_and_actions_use_the_seed_values() {
    use ReclaimError::*;
    let codes: Vec<i32> = [
        InvalidArgument,
        NotSupported,
        InvalidRegionSize,
        InvalidCapacity,
        InvalidId,
        ResourceShortage,
        InvalidRing,
    ]
    .iter()
    .map(|e| e.code())
    .collect();
    assert_eq!(
        codes,
        [0x2000_4001, 0x2000_4002, 0x2000_4003, 0x2000_4004, 0x2000_4005, 0x2000_4006, 0x2000_4007]
    );
    assert_eq!(
        [ReclaimState::Unreclaimed, ReclaimState::Freed, ReclaimState::Deallocated, ReclaimState::Busy]
            .map(|s| s.raw()),
        [1, 2, 3, 4]
    );
    assert_eq!(
        [ReclaimState::Unreclaimed, ReclaimState::Freed, ReclaimState::Deallocated, ReclaimState::Busy]
            .map(|s| s.is_reusable()),
        [true, true, false, false]
    );
    assert_eq!((Action::Free.raw(), Action::Deallocate.raw()), (1, 2));
    assert_eq!(Action::from_raw(0), None);
    assert_eq!(Action::from_raw(3), None);
    assert_eq!(Action::from_raw(2), Some(Action::Deallocate));
    assert_eq!(ReclaimId::NULL.get(), u64::MAX);
    assert_eq!(std::format!("{}", InvalidRing), "invalid (corrupted or poisoned) reclaim ring");
}

#[test]
fn round_capacity_table() {
    let table: &[(u32, u64, u32, u32)] = &[
        (0, 4096, u32::MAX, 252), // a full page, as xnu
        (1, 4096, u32::MAX, 252),
        (252, 4096, u32::MAX, 252),
        (253, 4096, u32::MAX, 508),
        (512, 4096, u32::MAX, 764),
        (1, 16384, u32::MAX, 1020),
        (1021, 16384, u32::MAX, 2044),
        (1, 65536, u32::MAX, 4092),
        (1000, 4096, 300, 300), // clamped at the caller's maximum
        (u32::MAX, 4096, u32::MAX, MAX_CAPACITY),
        (MAX_CAPACITY, 4096, u32::MAX, MAX_CAPACITY),
        (5, 0, 100, 5), // page size 0 counts as 1
        (5, 1, u32::MAX, 5),
    ];
    for &(n, page, max, want) in table {
        assert_eq!(round_capacity(n, page, max), want, "round_capacity({n}, {page}, {max})");
    }
    assert_eq!(MAX_CAPACITY, 8_388_604);
    assert_eq!(ring_bytes(252), 4096);
}

#[test]
fn allocate_argument_matrix() {
    use ReclaimError::*;
    assert_eq!(OwnedRing::new(0, 1).unwrap_err(), InvalidArgument);
    assert_eq!(OwnedRing::new(1, 0).unwrap_err(), InvalidArgument);
    assert_eq!(OwnedRing::new(2, 1).unwrap_err(), InvalidArgument);
    assert_eq!(OwnedRing::new(1, MAX_CAPACITY + 1).unwrap_err(), InvalidCapacity);
    let r = OwnedRing::new(1, 1).unwrap();
    assert_eq!(r.view().max_capacity(), 1);
    let r = OwnedRing::new(3, 10).unwrap();
    assert_eq!((r.view().header_capacity(), r.view().max_capacity()), (3, 10));
    assert_eq!(r.view().initialize(0).unwrap_err(), InvalidCapacity);
    assert_eq!(r.view().initialize(11).unwrap_err(), InvalidCapacity);
}

#[test]
fn initial_state() {
    let r = ring(8);
    let (p, mut c) = pair(&r);
    assert_eq!((p.capacity(), c.capacity()), (8, 8));
    assert_eq!(r.view().indices(), Indices { head: 0, busy: 0, tail: 0 });
    assert!(p.is_empty());
    assert_eq!(p.next_id(), ReclaimId(0));
    assert_eq!(p.uncancelled_bytes(), 0);
    assert_eq!(p.query_state(ReclaimId(0), Action::Free), Err(ReclaimError::InvalidId));
    let (rep, calls) = flush(&mut c, 1);
    assert_eq!(rep, zero_report());
    assert!(calls.is_empty());
    assert!(!c.is_poisoned());
}

fn zero_report() -> ReclaimReport<()> {
    ReclaimReport::default()
}

#[test]
fn single_entry_lifecycle() {
    for act in [Action::Free, Action::Deallocate] {
        let r = ring(8);
        let (mut p, mut c) = pair(&r);
        let e = p.try_enter(0x10000, 0x3000, act, None).unwrap();
        assert_eq!(e.id, Some(ReclaimId(0)));
        assert_eq!(p.query_state(ReclaimId(0), act), Ok(ReclaimState::Unreclaimed));
        assert_eq!(p.len(), 1);
        let (rep, calls) = flush(&mut c, 1);
        assert_eq!(calls, [(0x10000, 0x3000, act)]);
        assert_eq!((rep.reclaimed, rep.bytes, rep.trimmed_bytes), (1, 0x3000, 0x3000));
        assert_eq!(p.query_state(ReclaimId(0), act), Ok(act.reclaimed_state()));
        let st = p.try_cancel(ReclaimId(0), 0x10000, 0x3000, act).unwrap();
        assert_eq!(st, Cancelled { state: act.reclaimed_state(), update_accounting: false });
        assert_eq!(st.state.is_reusable(), act == Action::Free);
        assert!(p.is_empty());
        assert_eq!(c.reclaimed_bytes(), 0x3000);
    }
}

#[test]
fn fill_to_capacity_then_no_id() {
    let r = ring(4);
    let (mut p, mut c) = pair(&r);
    for i in 0..4 {
        assert_eq!(enter(&mut p, 0x10000 * (i + 1), PAGE, Action::Deallocate), ReclaimId(i));
    }
    let full = p.try_enter(0x90000, PAGE, Action::Deallocate, None).unwrap();
    assert_eq!(full, Entered { id: None, update_accounting: false });
    assert_eq!(p.uncancelled_bytes(), 4 * PAGE); // the refused region is not counted
    // A cancelled hole still occupies its slot until the reclaimer passes it.
    let _ = p.try_cancel(ReclaimId(3), 0x40000, PAGE, Action::Deallocate).unwrap();
    assert_eq!(p.try_enter(0x90000, PAGE, Action::Deallocate, None).unwrap().id, None);
    let (rep, calls) = flush(&mut c, 1);
    assert_eq!((rep.reclaimed, calls[0].0), (1, 0x10000));
    assert_eq!(enter(&mut p, 0x90000, PAGE, Action::Deallocate), ReclaimId(4)); // slot 0 again
    let (rep, calls) = flush(&mut c, 100);
    assert_eq!((rep.reclaimed, rep.holes), (3, 1));
    assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), [0x20000, 0x30000, 0x90000]);
}

#[test]
fn cancel_unreclaimed_then_reclaimed_states() {
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    let a = enter(&mut p, 0x10000, 0x2000, Action::Free);
    let b = enter(&mut p, 0x20000, 0x2000, Action::Deallocate);
    let ca = p.try_cancel(a, 0x10000, 0x2000, Action::Free).unwrap();
    assert_eq!(ca.state, ReclaimState::Unreclaimed);
    assert!(ca.state.is_reusable());
    // A second cancel finds a hole: misuse, reported, not a trap.
    assert_eq!(p.try_cancel(a, 0x10000, 0x2000, Action::Free), Err(ReclaimError::InvalidId));
    assert_eq!(p.query_state(a, Action::Free), Ok(ReclaimState::Unreclaimed)); // xnu: holes read unreclaimed
    let (rep, calls) = flush(&mut c, 10);
    assert_eq!((rep.reclaimed, rep.holes), (1, 1));
    assert_eq!(calls, [(0x20000, 0x2000, Action::Deallocate)]);
    let cb = p.try_cancel(b, 0x20000, 0x2000, Action::Deallocate).unwrap();
    assert_eq!(cb.state, ReclaimState::Deallocated);
    assert!(!cb.state.is_reusable());
    // Freed is reusable.
    let f = enter(&mut p, 0x30000, 0x1000, Action::Free);
    let _ = flush(&mut c, 10);
    let cf = p.try_cancel(f, 0x30000, 0x1000, Action::Free).unwrap();
    assert_eq!(cf.state, ReclaimState::Freed);
    assert!(cf.state.is_reusable());
}

#[test]
fn misuse_is_an_error_and_changes_nothing() {
    use ReclaimError::*;
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    let id = enter(&mut p, 0x10000, 0x2000, Action::Deallocate);
    let before = r.view().indices();
    assert_eq!(p.try_cancel(ReclaimId(1), 0x10000, 0x2000, Action::Deallocate), Err(InvalidId)); // never entered
    assert_eq!(p.try_cancel(ReclaimId(99), 0x10000, 0x2000, Action::Deallocate), Err(InvalidId));
    assert_eq!(p.try_cancel(ReclaimId::NULL, 0x10000, 0x2000, Action::Deallocate), Err(InvalidId));
    assert_eq!(p.try_cancel(id, 0x11000, 0x2000, Action::Deallocate), Err(InvalidArgument));
    assert_eq!(p.try_cancel(id, 0x10000, 0x1000, Action::Deallocate), Err(InvalidArgument));
    assert_eq!(p.try_cancel(id, 0x10000, 0x2000, Action::Free), Err(InvalidArgument));
    assert_eq!(p.try_cancel(id, 0x10000, 1 << 32, Action::Deallocate), Err(InvalidRegionSize));
    assert_eq!(p.query_state(ReclaimId::NULL, Action::Free), Err(InvalidId));
    assert_eq!(p.query_state(ReclaimId(1), Action::Free), Err(InvalidId));
    assert_eq!(p.try_enter(0x10000, 0, Action::Free, None), Err(InvalidArgument));
    assert_eq!(p.try_enter(u64::MAX - 0xfff, 0x1000, Action::Free, None), Err(InvalidArgument));
    assert_eq!(p.try_enter(0x10000, 0x1000, Action::Free, Some(ReclaimId(5))), Err(InvalidId));
    assert_eq!(p.try_enter(0x10000, 0x1000, Action::Free, Some(ReclaimId::NULL)), Err(InvalidId));
    assert_eq!(p.try_enter(0x10000, 0x1000, Action::Free, Some(id)), Err(InvalidId)); // slot occupied
    assert_eq!(r.view().indices(), before);
    assert_eq!(p.uncancelled_bytes(), 0x2000);
    // The entry is intact and still reclaimable.
    let (_, calls) = flush(&mut c, 10);
    assert_eq!(calls, [(0x10000, 0x2000, Action::Deallocate)]);
    assert_eq!(c.flush(0, |_, _, _| Ok::<(), ()>(())).unwrap_err(), InvalidArgument);
}

#[test]
fn region_size_limit() {
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    let max = u32::MAX as u64;
    assert_eq!(p.try_enter(0x1000, max + 1, Action::Deallocate, None), Err(ReclaimError::InvalidRegionSize));
    let id = enter(&mut p, 0x1000, max, Action::Deallocate);
    assert_eq!(p.uncancelled_bytes(), max);
    let (rep, calls) = flush(&mut c, 1);
    // [0x1000, 0x1000 + 0xffff_ffff): the whole pages are [0x1000, 0x1_0000_0000).
    assert_eq!(calls, [(0x1000, 0x1_0000_0000 - 0x1000, Action::Deallocate)]);
    assert_eq!(rep.bytes, max);
    assert_eq!(p.query_state(id, Action::Deallocate), Ok(ReclaimState::Deallocated));
}

#[test]
fn unaligned_regions_give_back_only_whole_pages() {
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    enter(&mut p, 0x1800, 0x3000, Action::Free); // [0x1800, 0x4800) → [0x2000, 0x4000)
    enter(&mut p, 0x5800, 0x800, Action::Free); // inside one page: nothing whole
    enter(&mut p, 0x7001, 0x1fff, Action::Free); // [0x7001, 0x9000) → [0x8000, 0x9000)
    enter(&mut p, 0xa000, 0xfff, Action::Free); // one byte short of a page
    enter(&mut p, u64::MAX - 0x800, 0x800, Action::Free); // the last partial page
    let (rep, calls) = flush(&mut c, 10);
    assert_eq!(calls, [(0x2000, 0x2000, Action::Free), (0x8000, 0x1000, Action::Free)]);
    assert_eq!((rep.reclaimed, rep.skipped, rep.trimmed_bytes), (2, 3, 0x3000));
    assert_eq!(rep.bytes, 0x3000 + 0x1fff);
    assert!(p.is_empty());
}

#[test]
fn flush_larger_than_the_ring_and_on_an_empty_ring() {
    let r = ring(20);
    let (mut p, mut c) = pair(&r);
    let (rep, _) = flush(&mut c, 1000);
    assert_eq!(rep, zero_report());
    for i in 0..20 {
        enter(&mut p, (i + 1) << 20, PAGE, Action::Deallocate);
    }
    let (rep, calls) = flush(&mut c, 1000);
    assert_eq!(rep.reclaimed, 20);
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0)); // oldest first
    assert!(p.is_empty());
    let (rep, _) = flush(&mut c, u64::MAX);
    assert_eq!(rep.processed(), 0);
    // flush(n) stops at n even mid-chunk.
    for i in 0..20 {
        enter(&mut p, (i + 1) << 20, PAGE, Action::Deallocate);
    }
    assert_eq!(flush(&mut c, 17).0.reclaimed, 17);
    assert_eq!(p.len(), 3);
    let rep = c.drain(|_, _, _| Ok::<(), ()>(())).unwrap();
    assert_eq!(rep.reclaimed, 3);
}

#[test]
fn reclaim_chunk_claims_at_most_a_chunk() {
    let r = ring(64);
    let (mut p, mut c) = pair(&r);
    for i in 0..40 {
        enter(&mut p, (i + 1) << 20, PAGE, Action::Free);
    }
    let rep = c.reclaim_chunk(1000, |_, _, _| Ok::<(), ()>(())).unwrap();
    assert_eq!(rep.reclaimed, CHUNK_SIZE as u64);
    let rep = c.reclaim_chunk(3, |_, _, _| Ok::<(), ()>(())).unwrap();
    assert_eq!(rep.reclaimed, 3);
    assert_eq!(c.head(), 19);
    assert_eq!(r.view().indices(), Indices { head: 19, busy: 19, tail: 40 });
    let rep = c.reclaim_chunk(0, |_, _, _| Ok::<(), ()>(())).unwrap();
    assert_eq!(rep.processed(), 0);
}

#[test]
fn id_wrap_across_many_capacities() {
    for cap in [1u32, 2, 3, 5, 7, 16, 17] {
        let r = ring(cap);
        let (mut p, mut c) = pair(&r);
        let mut next = 0u64;
        let mut live: Vec<(ReclaimId, u64)> = Vec::new();
        for round in 0..(40 * cap as u64 + 50) {
            // Enter until full.
            loop {
                let addr = (next + 1) << 16;
                match p.try_enter(addr, PAGE, Action::Deallocate, None).unwrap().id {
                    Some(id) => {
                        assert_eq!(id, ReclaimId(next));
                        live.push((id, addr));
                        next += 1;
                    }
                    None => break,
                }
            }
            assert_eq!(p.len(), cap as u64);
            // Cancel every third live entry, then reclaim a few: what comes out is the oldest live.
            if round % 3 == 0 {
                let (id, addr) = live.remove(live.len() / 2);
                let st = p.try_cancel(id, addr, PAGE, Action::Deallocate).unwrap().state;
                assert_eq!(st, ReclaimState::Unreclaimed);
            }
            let k = 1 + round % 3;
            let (rep, calls) = flush(&mut c, k);
            for (addr, ..) in &calls {
                let (id, a) = live.remove(0);
                assert_eq!(*addr, a, "cap {cap} id {id}");
                assert_eq!(p.query_state(id, Action::Deallocate), Ok(ReclaimState::Deallocated));
            }
            assert_eq!(rep.reclaimed, calls.len() as u64);
            for (id, _) in &live {
                assert_eq!(p.query_state(*id, Action::Deallocate), Ok(ReclaimState::Unreclaimed));
            }
        }
        assert!(next > 10 * cap as u64);
    }
}

#[test]
fn busy_while_the_reclaimer_holds_the_entry() {
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    let a = enter(&mut p, 0x10000, PAGE, Action::Deallocate);
    let b = enter(&mut p, 0x20000, PAGE, Action::Deallocate);
    let hole = enter(&mut p, 0x30000, PAGE, Action::Free);
    let _ = p.try_cancel(hole, 0x30000, PAGE, Action::Free).unwrap();
    let outside = enter(&mut p, 0x40000, PAGE, Action::Free);
    let mut seen = Vec::new();
    // Claim three ids; while the callback runs, the producer sees them busy.
    let rep = c
        .reclaim_chunk(3, |addr, _, _| {
            seen.push(addr);
            if addr == 0x10000 {
                let cb = p.try_cancel(b, 0x20000, PAGE, Action::Deallocate).unwrap();
                assert_eq!(cb.state, ReclaimState::Busy);
                assert!(!cb.state.is_reusable());
                assert_eq!(p.query_state(a, Action::Deallocate), Ok(ReclaimState::Busy));
                // Reusing a hole the reclaimer holds: no id, the caller keeps its region.
                assert_eq!(p.try_enter(0x50000, PAGE, Action::Free, Some(hole)).unwrap().id, None);
                // An id beyond the claim is still the producer's.
                let co = p.try_cancel(outside, 0x40000, PAGE, Action::Free).unwrap();
                assert_eq!(co.state, ReclaimState::Unreclaimed);
            }
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(seen, [0x10000, 0x20000]); // the busy cancel did not stop the reclaim
    assert_eq!((rep.reclaimed, rep.holes), (2, 1));
    assert_eq!(p.query_state(b, Action::Deallocate), Ok(ReclaimState::Deallocated));
    assert_eq!(p.try_cancel(b, 0x20000, PAGE, Action::Deallocate).unwrap().state, ReclaimState::Deallocated);
    let (rep, _) = flush(&mut c, 10);
    assert_eq!((rep.reclaimed, rep.holes), (0, 1));
}

#[test]
fn reuse_a_cancelled_id() {
    let r = ring(4);
    let (mut p, mut c) = pair(&r);
    let a = enter(&mut p, 0x10000, PAGE, Action::Deallocate);
    let b = enter(&mut p, 0x20000, PAGE, Action::Deallocate);
    let d = enter(&mut p, 0x30000, PAGE, Action::Deallocate);
    let _ = p.try_cancel(b, 0x20000, PAGE, Action::Deallocate).unwrap();
    let e = p.try_enter(0x70000, 2 * PAGE, Action::Free, Some(b)).unwrap();
    assert_eq!(e.id, Some(b));
    assert_eq!(p.next_id(), ReclaimId(3)); // tail restored
    assert_eq!(p.query_state(b, Action::Free), Ok(ReclaimState::Unreclaimed));
    // The old region no longer matches; the new one does.
    assert_eq!(p.try_cancel(b, 0x20000, PAGE, Action::Deallocate), Err(ReclaimError::InvalidArgument));
    let (_, calls) = flush(&mut c, 10);
    assert_eq!(
        calls,
        [
            (0x10000, PAGE, Action::Deallocate),
            (0x70000, 2 * PAGE, Action::Free),
            (0x30000, PAGE, Action::Deallocate)
        ]
    );
    // A reuse of an id the reclaimer passed gets no id.
    assert_eq!(
        p.try_enter(0x80000, PAGE, Action::Free, Some(a)).unwrap(),
        Entered { id: None, update_accounting: false }
    );
    let _ = d;
}

#[test]
fn accounting_follows_v2_and_saturates() {
    let r = ring(16);
    let (mut p, mut c) = pair(&r);
    // More than one page away from the last report → tell the reclaimer (and count it reported).
    assert!(!p.try_enter(0x10000, PAGE, Action::Free, None).unwrap().update_accounting); // |4096 - 0| = page
    let e = p.try_enter(0x20000, 1, Action::Free, None).unwrap();
    assert!(e.update_accounting); // 4097 > page
    assert_eq!(r.view().header().last_accounting.load(RELAXED), PAGE + 1);
    assert!(!p.try_enter(0x30000, 100, Action::Free, None).unwrap().update_accounting);
    let big = p.try_enter(0x100000, 0x10000, Action::Free, None).unwrap();
    assert!(big.update_accounting);
    let cb = p.try_cancel(big.id.unwrap(), 0x100000, 0x10000, Action::Free).unwrap();
    assert!(cb.update_accounting);
    assert_eq!(p.uncancelled_bytes(), PAGE + 101);
    assert_eq!(p.accounting_report(), PAGE + 101);
    // The reclaimer's estimate: reported minus reclaimed, saturating.
    let _ = flush(&mut c, 1);
    assert_eq!(c.reclaimed_bytes(), PAGE);
    assert_eq!(c.estimate_reclaimable(p.uncancelled_bytes()), 101);
    assert_eq!(c.estimate_reclaimable(5), 0); // stale report
    // A corrupted counter cannot be driven below zero by a cancel.
    let id = enter(&mut p, 0x200000, 3 * PAGE, Action::Free);
    r.view().header().va_in_buffer.store(5, RELAXED);
    let cc = p.try_cancel(id, 0x200000, 3 * PAGE, Action::Free).unwrap();
    assert_eq!((cc.state, p.uncancelled_bytes()), (ReclaimState::Unreclaimed, 0));
}

#[test]
fn callback_errors_are_counted_and_passed() {
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    for i in 1..=4u64 {
        enter(&mut p, i << 20, PAGE, Action::Deallocate);
    }
    let rep = c.flush(10, |addr, _, _| if addr == 2 << 20 { Err(addr) } else { Ok(()) }).unwrap();
    assert_eq!((rep.reclaimed, rep.failed, rep.last_error), (3, 1, Some(2 << 20)));
    assert!(p.is_empty()); // not wedged
    assert_eq!(c.reclaimed_bytes(), 4 * PAGE);
}

#[test]
fn malformed_entries_are_skipped_not_followed() {
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    let ids: Vec<_> = (1..=6u64).map(|i| enter(&mut p, i << 20, PAGE, Action::Free)).collect();
    let slot = |id: ReclaimId| r.view().slot(id.0, 8);
    let mut e = slot(ids[0]).read();
    e.action = 7; // unknown action (check recomputed, so only the action is wrong)
    e.check = entry_check(e.address, e.size, e.action);
    slot(ids[0]).write(e);
    let mut e = slot(ids[1]).read();
    e.address ^= 0x4000_0000; // one byte changed: the check catches it
    slot(ids[1]).write(e);
    let mut e = slot(ids[2]).read();
    e.size = 0;
    e.check = entry_check(e.address, 0, e.action);
    slot(ids[2]).write(e);
    slot(ids[3]).write(RawEntry {
        address: u64::MAX - 10,
        size: 100,
        action: 1,
        check: entry_check(u64::MAX - 10, 100, 1),
    });
    let (rep, calls) = flush(&mut c, 100);
    assert_eq!(calls, [(5 << 20, PAGE, Action::Free), (6 << 20, PAGE, Action::Free)]);
    assert_eq!((rep.skipped, rep.reclaimed), (4, 2));
    assert!(p.is_empty());
    assert!(!c.is_poisoned());
}

#[test]
fn entry_check_catches_every_single_byte_change() {
    let samples = [
        RawEntry::new(0x7f12_3456_7000, 0x4000, Action::Free),
        RawEntry::new(0, 1, Action::Deallocate),
        RawEntry::new(u64::MAX - 0x1000, u32::MAX, Action::Deallocate),
    ];
    for e in samples {
        assert!(e.is_intact());
        let mut bytes = [0u8; 13];
        bytes[..8].copy_from_slice(&e.address.to_le_bytes());
        bytes[8..12].copy_from_slice(&e.size.to_le_bytes());
        bytes[12] = e.action;
        for i in 0..13 {
            for delta in 1..=255u8 {
                let mut b = bytes;
                b[i] ^= delta;
                let addr = u64::from_le_bytes(b[..8].try_into().unwrap());
                let size = u32::from_le_bytes(b[8..12].try_into().unwrap());
                assert_ne!(entry_check(addr, size, b[12]), e.check, "byte {i} delta {delta}");
            }
        }
    }
}

/// The sixteen bytes of an entry as stored: address, size, action, check (little-endian).
fn entry_bytes(address: u64, size: u32, action: u8) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&address.to_le_bytes());
    b[8..12].copy_from_slice(&size.to_le_bytes());
    b[12] = action;
    b[13..].copy_from_slice(&entry_check(address, size, action).to_le_bytes()[..3]);
    b
}

/// Whether sixteen stored bytes pass the check.
fn bytes_intact(b: &[u8; 16]) -> bool {
    let addr = u64::from_le_bytes(b[..8].try_into().unwrap());
    let size = u32::from_le_bytes(b[8..12].try_into().unwrap());
    u32::from_le_bytes([b[13], b[14], b[15], 0]) == entry_check(addr, size, b[12])
}

#[test]
fn entry_check_catches_every_change_of_up_to_three_bytes() {
    // The check is GF(2)-affine, so a change is missed exactly when its syndrome (the xor of the
    // check's change and the stored check's change) is zero. For every three byte positions of the
    // sixteen, the 24 one-bit changes there must have independent syndromes: then no change confined
    // to those bytes is missed, whatever its values.
    let zero = entry_check(0, 0, 0);
    let syndrome = |byte: usize, bit: u32| -> u32 {
        if byte < 13 {
            let mut d = [0u8; 13];
            d[byte] = 1 << bit;
            let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
            let size = u32::from_le_bytes(d[8..12].try_into().unwrap());
            entry_check(addr, size, d[12]) ^ zero
        } else {
            1 << (8 * (byte - 13) as u32 + bit)
        }
    };
    let rank = |vs: &[u32]| {
        let mut basis: Vec<u32> = Vec::new();
        for &v in vs {
            let v = basis.iter().fold(v, |v, &b| v.min(v ^ b));
            if v != 0 {
                basis.push(v);
            }
        }
        basis.len()
    };
    let mut triples = 0;
    for i in 0..16 {
        for j in i + 1..16 {
            for k in j + 1..16 {
                let vs: Vec<u32> =
                    [i, j, k].iter().flat_map(|&p| (0..8).map(move |b| syndrome(p, b))).collect();
                assert_eq!(rank(&vs), 24, "bytes {i}, {j}, {k}: some change there passes the check");
                triples += 1;
            }
        }
    }
    assert_eq!(triples, 560);
    // And directly, on random entries and random changes of one to three bytes (and more, where a
    // miss is possible but should be about 2^-24: none in this many).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut missed_wide = 0;
    for n in 0..300_000u64 {
        let b = entry_bytes(next(), next() as u32, next() as u8);
        assert!(bytes_intact(&b));
        let width = 1 + (n % 6) as usize;
        let mut c = b;
        let mut changed = 0;
        while changed < width {
            let p = (next() % 16) as usize;
            if c[p] == b[p] {
                c[p] ^= 1 + (next() % 255) as u8;
                changed += 1;
            }
        }
        if bytes_intact(&c) {
            assert!(width > 3, "a change of {width} bytes passed: {b:?} -> {c:?}");
            missed_wide += 1;
        }
    }
    assert!(missed_wide <= 1, "{missed_wide} wide changes passed");
}

#[test]
fn corrupted_header_poisons_the_ring() {
    type Corrupt = fn(&RingHeader);
    let cases: [(&str, Corrupt); 6] = [
        ("head moved", |h| h.head.store(1, RELAXED)),
        ("busy moved", |h| h.busy.store(5, RELAXED)),
        ("busy behind head", |h| {
            h.head.store(2, RELAXED);
            h.busy.store(1, RELAXED)
        }),
        ("tail beyond capacity", |h| h.tail.store(1000, RELAXED)),
        ("tail far behind head", |h| h.tail.store(u64::MAX, RELAXED)),
        ("magic", |h| h.magic.store(0xdead, RELAXED)),
    ];
    for (what, corrupt) in cases {
        let r = ring(8);
        let (mut p, mut c) = pair(&r);
        for i in 1..=3u64 {
            enter(&mut p, i << 20, PAGE, Action::Free);
        }
        corrupt(r.view().header());
        let mut called = false;
        let res = c.flush(10, |_, _, _| {
            called = true;
            Ok::<(), ()>(())
        });
        assert_eq!(res.unwrap_err(), ReclaimError::InvalidRing, "{what}");
        assert!(!called, "{what}");
        assert!(c.is_poisoned());
        // Poisoned for good, even if the header is repaired.
        r.view().initialize(8).unwrap();
        assert_eq!(c.reclaim_chunk(1, |_, _, _| Ok::<(), ()>(())).unwrap_err(), ReclaimError::InvalidRing);
    }
}

#[test]
fn a_pulled_back_tail_aborts_instead_of_poisoning() {
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    for i in 1..=6u64 {
        enter(&mut p, i << 20, PAGE, Action::Free);
    }
    let _ = flush(&mut c, 4);
    // What a producer mid-cancel of id 2 (read head 2 before the reclaimer moved it to 4) looks like.
    r.view().header().tail.store(2, RELAXED);
    let rep = c.reclaim_chunk(16, |_, _, _| Ok::<(), ()>(())).unwrap();
    assert!(rep.aborted);
    assert_eq!(rep.processed(), 0);
    let rep = c.flush(16, |_, _, _| Ok::<(), ()>(())).unwrap();
    assert!(rep.aborted); // gave up after its retries
    r.view().header().tail.store(6, RELAXED);
    assert_eq!(flush(&mut c, 16).0.reclaimed, 2);
    assert!(!c.is_poisoned());
}

#[test]
fn producer_refuses_impossible_indices() {
    let r = ring(8);
    let (mut p, _c) = pair(&r);
    let id = enter(&mut p, 0x10000, PAGE, Action::Free);
    r.view().header().head.store(50, RELAXED);
    assert_eq!(p.try_enter(0x20000, PAGE, Action::Free, None), Err(ReclaimError::InvalidRing));
    assert_eq!(p.query_state(id, Action::Free), Err(ReclaimError::InvalidRing));
    r.view().header().head.store(0, RELAXED);
    r.view().header().busy.store(50, RELAXED);
    assert_eq!(p.try_cancel(id, 0x10000, PAGE, Action::Free), Err(ReclaimError::InvalidRing));
    assert_eq!(r.view().indices().tail, 1); // restored on the error path
}

#[test]
fn attach_validates_the_header() {
    let r = ring(8);
    r.view().header().magic.store(0, RELAXED);
    assert_eq!(Producer::attach(&r, PAGE).unwrap_err(), ReclaimError::InvalidRing);
    assert_eq!(Consumer::attach(&r, PAGE).unwrap_err(), ReclaimError::InvalidRing);
    let r = ring(8);
    assert_eq!(Consumer::attach(&r, 3000).unwrap_err(), ReclaimError::InvalidArgument);
    r.view().header().capacity.store(9, RELAXED);
    assert_eq!(Producer::attach(&r, PAGE).unwrap_err(), ReclaimError::InvalidRing);
    let r = ring(8);
    let (mut p, _) = pair(&r);
    for i in 1..=3u64 {
        enter(&mut p, i << 20, PAGE, Action::Free);
    }
    // A reclaimer that died holding a claim: a new one resets busy and reclaims those entries.
    r.view().header().busy.store(2, RELAXED);
    let mut c = Consumer::attach(&r, PAGE).unwrap();
    assert_eq!(r.view().indices().busy, 0);
    assert_eq!(flush(&mut c, 10).0.reclaimed, 3);
    // A forked child's producer continues after the inherited ids.
    let p2 = Producer::attach(&r, PAGE).unwrap();
    assert_eq!(p2.next_id(), ReclaimId(3));
}

#[test]
fn resize_keeps_ids_when_they_fit() {
    let r = OwnedRing::new(4, 16).unwrap();
    let (mut p, mut c) = pair(&r);
    for i in 0..4u64 {
        enter(&mut p, (i + 1) << 20, PAGE, Action::Free);
    }
    let _ = flush(&mut c, 2);
    for i in 4..6u64 {
        enter(&mut p, (i + 1) << 20, PAGE, Action::Free); // ids 4, 5 wrap to slots 0, 1
    }
    let _ = p.try_cancel(ReclaimId(3), 4 << 20, PAGE, Action::Free).unwrap(); // a hole moves too
    let rep = resize(&mut p, &mut c, 16, |_, _, _| Ok::<(), ()>(())).unwrap();
    assert_eq!((rep.moved, rep.drained.processed()), (4, 0));
    assert_eq!((p.capacity(), c.capacity(), r.view().header_capacity()), (16, 16, 16));
    assert_eq!(p.query_state(ReclaimId(2), Action::Free), Ok(ReclaimState::Unreclaimed));
    assert_eq!(
        p.try_cancel(ReclaimId(4), 5 << 20, PAGE, Action::Free).unwrap().state,
        ReclaimState::Unreclaimed
    );
    let re = p.try_enter(0x4000_0000, PAGE, Action::Free, Some(ReclaimId(3))).unwrap();
    assert_eq!(re.id, Some(ReclaimId(3)));
    for i in 6..18u64 {
        assert!(p.try_enter((i + 1) << 20, PAGE, Action::Free, None).unwrap().id.is_some());
    }
    assert_eq!(p.try_enter(0x9000_0000, PAGE, Action::Free, None).unwrap().id, None); // 16 live: full
    let (rep, calls) = flush(&mut c, 100);
    assert_eq!(
        calls[..3],
        [(3 << 20, PAGE, Action::Free), (0x4000_0000, PAGE, Action::Free), (6 << 20, PAGE, Action::Free)]
    );
    assert_eq!((rep.reclaimed, rep.holes), (15, 1));
    // Shrink to the live count keeps everything; below it drains only the oldest.
    for i in 0..6u64 {
        enter(&mut p, (i + 100) << 20, PAGE, Action::Deallocate);
    }
    let first = ReclaimId(18);
    let mut drained = Vec::new();
    let rep = resize(&mut p, &mut c, 4, |a, _, _| {
        drained.push(a);
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!((rep.moved, rep.drained.reclaimed), (4, 2));
    assert_eq!(drained, [100 << 20, 101 << 20]);
    assert_eq!(p.query_state(first, Action::Deallocate), Ok(ReclaimState::Deallocated));
    assert_eq!(
        p.try_cancel(ReclaimId(20), 102 << 20, PAGE, Action::Deallocate).unwrap().state,
        ReclaimState::Unreclaimed
    );
    let (_, calls) = flush(&mut c, 100);
    assert_eq!(calls.iter().map(|c| c.0 >> 20).collect::<Vec<_>>(), [103, 104, 105]);
}

#[test]
fn resize_errors() {
    let r = OwnedRing::new(4, 8).unwrap();
    let other = OwnedRing::new(4, 8).unwrap();
    let (mut p, mut c) = pair(&r);
    let mut c2 = Consumer::attach(&other, PAGE).unwrap();
    let ok = |_: u64, _: u64, _: Action| Ok::<(), ()>(());
    assert_eq!(resize(&mut p, &mut c, 0, ok).unwrap_err(), ReclaimError::InvalidCapacity);
    assert_eq!(resize(&mut p, &mut c, 9, ok).unwrap_err(), ReclaimError::InvalidCapacity);
    assert_eq!(resize(&mut p, &mut c2, 8, ok).unwrap_err(), ReclaimError::InvalidArgument);
    r.view().header().tail.store(3, RELAXED); // a producer call in flight elsewhere
    assert_eq!(resize(&mut p, &mut c, 8, ok).unwrap_err(), ReclaimError::InvalidRing);
}

#[test]
fn from_raw_parts_over_plain_memory() {
    let mut buf = vec![0u64; (HEADER_SIZE + 10 * ENTRY_SIZE) / 8 + 1];
    let base = buf.as_mut_ptr() as *mut u8;
    let len = buf.len() * 8;
    // SAFETY: `buf` outlives every view below and is only touched through them.
    unsafe {
        assert_eq!(
            RingView::from_raw_parts(core::ptr::null_mut(), len).unwrap_err(),
            ReclaimError::InvalidArgument
        );
        assert_eq!(
            RingView::from_raw_parts(base.add(4), len - 4).unwrap_err(),
            ReclaimError::InvalidArgument
        );
        assert_eq!(
            RingView::from_raw_parts(base, HEADER_SIZE + 15).unwrap_err(),
            ReclaimError::InvalidCapacity
        );
        let v = RingView::from_raw_parts(base, len).unwrap();
        assert_eq!(v.max_capacity(), 10);
        assert_eq!(Producer::attach(v, PAGE).unwrap_err(), ReclaimError::InvalidRing); // zeroed: no magic
        v.initialize(10).unwrap();
        let mut p = Producer::attach(v, PAGE).unwrap();
        let mut c = Consumer::attach(v, PAGE).unwrap();
        let _ = p.try_enter(0x1234_5000, 0x2000, Action::Deallocate, None).unwrap();
        let mut got = Vec::new();
        let _ = c
            .flush(1, |a, l, _| {
                got.push((a, l));
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(got, [(0x1234_5000, 0x2000)]);
    }
    // The layout on the bytes: magic at 48, capacity at 16, tail at 32, entries at 64.
    let word = |i: usize| buf[i];
    assert_eq!(word(6) as u32, RING_MAGIC);
    assert_eq!(word(2) as u32, 10);
    assert_eq!(word(4), 1);
    assert_eq!(word(8), 0); // the reclaimed slot was cleared
}

#[test]
fn views_from_every_kind_of_memory() {
    let r = std::sync::Arc::new(ring(4));
    let mut p = Producer::attach(r.clone(), PAGE).unwrap();
    let mut c = Consumer::attach(std::boxed::Box::new(r.clone()), PAGE).unwrap();
    let _ = p.try_enter(0x1000, PAGE, Action::Free, None).unwrap();
    assert_eq!(c.flush(1, |_, _, _| Ok::<(), ()>(())).unwrap().reclaimed, 1);
    let header = RingHeader::default();
    let entries: Vec<Entry> = (0..3).map(|_| Entry::default()).collect();
    let v = RingView::new(&header, &entries);
    v.initialize(2).unwrap();
    let p2 = Producer::attach(v, PAGE).unwrap();
    assert_eq!(p2.capacity(), 2);
    assert_eq!(p.into_memory().view().max_capacity(), 4);
}

/// Defect 12 at the protocol level: a `head` scribbled up to `tail` makes every id look reclaimed. The
/// reclaimer's `busy` never trails a `head` it published, so the producer refuses to answer `Freed` /
/// `Deallocated` from such a header; `tail` is untouched and nothing is cancelled.
#[test]
fn a_head_above_busy_is_not_believed() {
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    let a = enter(&mut p, 0x10000, PAGE, Action::Deallocate);
    let b = enter(&mut p, 0x20000, PAGE, Action::Free);
    let h = r.view().header();
    h.head.store(2, RELAXED); // == tail; busy stays 0
    assert_eq!(p.try_cancel(a, 0x10000, PAGE, Action::Deallocate), Err(ReclaimError::InvalidRing));
    assert_eq!(p.query_state(b, Action::Free), Err(ReclaimError::InvalidRing));
    assert_eq!(r.view().indices().tail, 2);
    // The reclaimer is not fooled either: the shared head is not its own.
    assert_eq!(c.reclaim_chunk(16, |_, _, _| Ok::<(), ()>(())).unwrap_err(), ReclaimError::InvalidRing);

    // An honest ring with the same ids: after a real reclaim `busy == head`, and the answer stands.
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    let a = enter(&mut p, 0x10000, PAGE, Action::Deallocate);
    let b = enter(&mut p, 0x20000, PAGE, Action::Free);
    let _ = flush(&mut c, 1);
    let st = p.try_cancel(a, 0x10000, PAGE, Action::Deallocate).unwrap().state;
    assert_eq!(st, ReclaimState::Deallocated);
    // A `busy` scribbled below `head` on the handshake path: refused, `tail` restored.
    r.view().header().busy.store(0, RELAXED);
    assert_eq!(p.try_cancel(b, 0x20000, PAGE, Action::Free), Err(ReclaimError::InvalidRing));
    assert_eq!(p.try_enter(0x30000, PAGE, Action::Free, Some(b)), Err(ReclaimError::InvalidRing));
    assert_eq!(p.query_state(b, Action::Free), Err(ReclaimError::InvalidRing));
    assert_eq!(r.view().indices().tail, 2);
}

/// A flush passes at most `capacity` ids however fast entries keep coming (here: the callback enters
/// a new region for each one it reclaims, a producer that never lets the ring empty).
#[test]
fn a_flush_is_bounded_by_the_capacity_while_entries_keep_coming() {
    let r = ring(8);
    let (mut p, mut c) = pair(&r);
    for i in 0..4u64 {
        enter(&mut p, (i + 1) << 20, PAGE, Action::Free);
    }
    let mut calls = 0u64;
    let rep = c
        .drain(|_, _, _| {
            calls += 1;
            // Stop feeding after a while so a regression fails instead of running for ever.
            if calls < 1000 {
                let _ = p.try_enter((calls + 100) << 20, PAGE, Action::Free, None).unwrap();
            }
            Ok::<(), ()>(())
        })
        .unwrap();
    // The four that were there, and the four entered during the first chunk: one capacity's worth.
    assert_eq!(rep.processed(), 8, "{rep:?}");
    assert_eq!(calls, 8);
    assert!(!c.is_poisoned());
    assert_eq!(p.len(), 4); // entered during the second chunk: the next flush's
}
