//! Loom model of the reclaim ring's handshake: enter, cancel and reuse on one thread against a reclaim
//! chunk on another, explored over every interleaving loom allows (bounded preemptions).
//!
//! Invariant checked: a cancel and a reclaim never both win one entry — a region the reclaimer hands to
//! its callback was never given back by a cancel (`Unreclaimed`), and once the reclaimer has finished the
//! ring, every region whose cancel answered `Busy` has been reclaimed exactly once (both sides may back off
//! in one round; the entry then stays in the ring for the next pass); the reclaimer never reads a
//! half-written entry (nothing is skipped) and never reclaims a region that was not live.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p vmspace-core --test loom_reclaim --release`
//! (`LOOM_MAX_PREEMPTIONS` overrides the bound set here).
#![cfg(loom)]

extern crate alloc;

// The ring's own source, compiled into this crate so that its `primitive` module picks loom's atomics
// (loom is a dev-dependency, which the library itself cannot see).
#[allow(dead_code, unused_imports)]
#[path = "../src/reclaim/mod.rs"]
mod reclaim;

use loom::thread;
use reclaim::{Action, Consumer, OwnedRing, Producer, ReclaimReport, ReclaimState};
use std::sync::Arc;

const PAGE: u64 = 4096;
const A: u64 = 0x10000;
const B: u64 = 0x20000;
const C: u64 = 0x30000;

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

type Ring = Arc<OwnedRing>;

fn setup(cap: u32) -> (Producer<Ring>, Consumer<Ring>) {
    let ring = Arc::new(OwnedRing::new(cap, cap).unwrap());
    (Producer::attach(ring.clone(), PAGE).unwrap(), Consumer::attach(ring, PAGE).unwrap())
}

/// One reclaim chunk on another thread: its report, the regions it reclaimed, and the reclaimer back.
fn spawn_chunk(
    mut c: Consumer<Ring>,
    max: u32,
) -> thread::JoinHandle<(ReclaimReport<()>, Vec<u64>, Consumer<Ring>)> {
    thread::spawn(move || {
        let mut got = Vec::new();
        let rep = c
            .reclaim_chunk(max, |addr, len, _| {
                assert_eq!(len, PAGE);
                got.push(addr);
                Ok(())
            })
            .unwrap();
        (rep, got, c)
    })
}

fn finish(c: &mut Consumer<Ring>) -> Vec<u64> {
    let mut got = Vec::new();
    let rep = c
        .flush(64, |addr, _, _| {
            got.push(addr);
            Ok::<(), ()>(())
        })
        .unwrap();
    assert!(!rep.aborted && rep.skipped == 0);
    got
}

/// Two live entries; the producer cancels both (newest first, so the pull-back cuts into the chunk)
/// while the reclaimer claims a chunk.
#[test]
fn cancel_and_reclaim_never_both_win() {
    model(|| {
        let (mut p, c) = setup(4);
        let a = p.try_enter(A, PAGE, Action::Free, None).unwrap().id.unwrap();
        let b = p.try_enter(B, PAGE, Action::Deallocate, None).unwrap().id.unwrap();
        let t = spawn_chunk(c, 16);
        let sb = p.try_cancel(b, B, PAGE, Action::Deallocate).unwrap().state;
        let sa = p.try_cancel(a, A, PAGE, Action::Free).unwrap().state;
        let (rep, first, mut c) = t.join().unwrap();
        assert_eq!(rep.skipped, 0);
        // Never both: what the chunk reclaimed, the cancel did not get back.
        for (addr, state) in [(A, sa), (B, sb)] {
            if first.contains(&addr) {
                assert_ne!(state, ReclaimState::Unreclaimed, "{addr:#x} reclaimed and cancelled");
            }
        }
        // Both may lose (the chunk backs off a pulled-back tail while the cancel sees `busy`): such an
        // entry stays in the ring, and once the reclaimer has finished, every `Busy` is reclaimed and
        // every `Unreclaimed` is not — each exactly once.
        let mut got = first;
        got.extend(finish(&mut c));
        for (id, addr, act, state) in [(a, A, Action::Free, sa), (b, B, Action::Deallocate, sb)] {
            let n = got.iter().filter(|&&x| x == addr).count();
            assert_eq!(
                n,
                usize::from(state != ReclaimState::Unreclaimed),
                "{addr:#x}: {state:?}, got {got:?}"
            );
            if state != ReclaimState::Unreclaimed {
                assert_eq!(p.query_state(id, act).unwrap(), act.reclaimed_state());
            }
        }
        assert!(p.is_empty());
    });
}

/// A hole cancelled earlier is reused for a new region while the reclaimer claims a chunk: the new
/// region is reclaimed only if the reuse succeeded, and then exactly once.
#[test]
fn reuse_and_reclaim_never_both_win() {
    model(|| {
        let (mut p, c) = setup(4);
        let a = p.try_enter(A, PAGE, Action::Free, None).unwrap().id.unwrap();
        let _b = p.try_enter(B, PAGE, Action::Free, None).unwrap().id.unwrap();
        assert_eq!(p.try_cancel(a, A, PAGE, Action::Free).unwrap().state, ReclaimState::Unreclaimed);
        let t = spawn_chunk(c, 16);
        let reused = p.try_enter(C, PAGE, Action::Free, Some(a)).unwrap().id;
        let (rep, mut got, mut c) = t.join().unwrap();
        assert_eq!(rep.skipped, 0);
        got.extend(finish(&mut c));
        assert!(!got.contains(&A));
        assert_eq!(got.iter().filter(|&&x| x == B).count(), 1);
        match reused {
            Some(id) => {
                assert_eq!(id, a);
                assert_eq!(got.iter().filter(|&&x| x == C).count(), 1);
            }
            None => assert!(!got.contains(&C)),
        }
    });
}

/// A cancel and a reuse of the same id against a reclaimer: the reuse only ever lands in a slot the
/// reclaimer has not claimed, and a cancel that answered `Unreclaimed` keeps its region.
#[test]
fn cancel_then_reuse_against_a_chunk() {
    model(|| {
        let (mut p, c) = setup(2);
        let a = p.try_enter(A, PAGE, Action::Deallocate, None).unwrap().id.unwrap();
        let t = spawn_chunk(c, 16);
        let sa = p.try_cancel(a, A, PAGE, Action::Deallocate).unwrap().state;
        let reused = if sa == ReclaimState::Unreclaimed {
            p.try_enter(C, PAGE, Action::Deallocate, Some(a)).unwrap().id
        } else {
            None
        };
        let (rep, mut got, mut c) = t.join().unwrap();
        assert_eq!(rep.skipped, 0);
        if got.contains(&A) {
            assert_ne!(sa, ReclaimState::Unreclaimed);
        }
        got.extend(finish(&mut c));
        // `Busy` ends reclaimed, `Unreclaimed` never is; the reused slot's region exactly when reused.
        assert_eq!(got.iter().filter(|&&x| x == A).count(), usize::from(sa != ReclaimState::Unreclaimed));
        assert_eq!(got.iter().filter(|&&x| x == C).count(), usize::from(reused.is_some()));
        if sa != ReclaimState::Unreclaimed {
            assert_eq!(p.query_state(a, Action::Deallocate).unwrap(), ReclaimState::Deallocated);
        }
    });
}

/// Appends while the reclaimer works, including into a slot the reclaimer has just finished with: the
/// reclaimer never sees a torn entry, and every region entered is reclaimed exactly once.
#[test]
fn append_against_a_chunk() {
    model(|| {
        let (mut p, c) = setup(2);
        p.try_enter(A, PAGE, Action::Free, None).unwrap().id.unwrap();
        let t = spawn_chunk(c, 16);
        let b = p.try_enter(B, PAGE, Action::Free, None).unwrap().id;
        let cc = p.try_enter(C, PAGE, Action::Free, None).unwrap().id; // fits only if slot 0 was passed
        let (rep, mut got, mut c) = t.join().unwrap();
        assert_eq!(rep.skipped, 0);
        got.extend(finish(&mut c));
        let mut want = vec![A];
        if b.is_some() {
            want.push(B);
        }
        if cc.is_some() {
            want.push(C);
        }
        assert_eq!(got, want);
    });
}

/// The reclaimer passes an id (two chunks, so `busy` and `head` both move twice) while the producer
/// asks about it and cancels it: an answer from below `head` is checked against `busy` (a `head` above
/// `busy` would be a scribble, `InvalidRing`), and an honest reclaimer never fails that check — every
/// call succeeds, the answers only move forward, and the region is reclaimed exactly when the cancel
/// did not get it back.
#[test]
fn passed_ids_are_never_taken_for_a_scribbled_head() {
    model(|| {
        let (mut p, mut c) = setup(2);
        let a = p.try_enter(A, PAGE, Action::Free, None).unwrap().id.unwrap();
        let b = p.try_enter(B, PAGE, Action::Free, None).unwrap().id.unwrap();
        let t = thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..2 {
                let _ = c
                    .reclaim_chunk(1, |addr, _, _| {
                        got.push(addr);
                        Ok::<(), ()>(())
                    })
                    .unwrap();
            }
            (got, c)
        });
        let qa = p.query_state(a, Action::Free).unwrap();
        let sb = p.try_cancel(b, B, PAGE, Action::Free).unwrap().state;
        let sa = p.try_cancel(a, A, PAGE, Action::Free).unwrap().state;
        let (mut got, mut c) = t.join().unwrap();
        got.extend(finish(&mut c));
        if qa != ReclaimState::Unreclaimed {
            assert_ne!(sa, ReclaimState::Unreclaimed, "{qa:?} then {sa:?}");
        }
        for (addr, s) in [(A, sa), (B, sb)] {
            let n = got.iter().filter(|&&x| x == addr).count();
            assert_eq!(n, usize::from(s != ReclaimState::Unreclaimed), "{addr:#x}: {s:?}, got {got:?}");
        }
    });
}
