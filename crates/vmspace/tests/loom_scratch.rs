//! Loom model of the scratch space's claim/release, explored over every interleaving loom allows
//! (bounded preemptions): the free list as it ships (`src/scratch/stack.rs`), the pool with its
//! per-slot state words (`src/scratch/pool.rs`), and — as the control — the seed's untagged CAS stack,
//! on which loom must find the ABA that hands one slot to two threads.
//!
//! Invariant checked: no slot is ever held by two threads; once every thread is done, the free list
//! holds exactly the slots not held, each once (counts conserved); a racing double release is refused
//! once and accepted once; a release racing with `retire` never puts a retired slot back in use.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p vmspace --test loom_scratch --release`
//! (`LOOM_MAX_PREEMPTIONS` overrides the bound set here).
#![cfg(loom)]

// The scratch space's own sources and the crate's loom shim, compiled into this crate (the pool and
// the stack are the library's private modules): `crate::primitive` is the shim here as in the
// library, so the code checked is the code that ships. The model drives the entry points the library
// uses: claims, releases through the slot's metadata address (`SlotRef`), the cache's
// `claim_owned_ref`.
#[allow(dead_code)]
#[path = "../src/scratch/pool.rs"]
mod pool;
#[path = "../src/primitive.rs"]
mod primitive;
#[allow(dead_code)]
#[path = "../src/scratch/stack.rs"]
mod stack;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::thread;
use pool::{Claimed, Pool, PoolError};
use stack::{EMPTY, Links, TaggedStack};

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// A free list of slot indices `0..n`, as the claim/release harness sees it.
trait FreeList: Send + Sync + 'static {
    fn pop(&self) -> Option<u32>;
    fn push(&self, i: u32);
}

struct Chain(Vec<AtomicU32>);

impl Links for Chain {
    fn link(&self, i: u32) -> &AtomicU32 {
        &self.0[i as usize]
    }
}

/// `0 → 1 → … → n-1`.
fn chain(n: u32) -> Chain {
    Chain((0..n).map(|i| AtomicU32::new(if i + 1 < n { i + 1 } else { EMPTY })).collect())
}

/// The shipped stack: tagged head.
struct Tagged(TaggedStack, Chain);

impl Tagged {
    fn new(n: u32) -> Tagged {
        let (s, c) = (TaggedStack::new(), chain(n));
        s.push_chain(&c, 0, n - 1);
        Tagged(s, c)
    }
}

impl FreeList for Tagged {
    fn pop(&self) -> Option<u32> {
        self.0.pop(&self.1)
    }
    fn push(&self, i: u32) {
        self.0.push(&self.1, i)
    }
}

/// The seed's free list: `p_dtrace_ptss_free_list` with a plain CAS on the head (no tag).
struct Untagged(AtomicU32, Chain);

impl Untagged {
    fn new(n: u32) -> Untagged {
        Untagged(AtomicU32::new(0), chain(n))
    }
}

impl FreeList for Untagged {
    fn pop(&self) -> Option<u32> {
        let mut head = self.0.load(Ordering::Acquire);
        loop {
            if head == EMPTY {
                return None;
            }
            let next = self.1.link(head).load(Ordering::Relaxed);
            match self.0.compare_exchange(head, next, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return Some(head),
                Err(now) => head = now,
            }
        }
    }
    fn push(&self, i: u32) {
        let mut head = self.0.load(Ordering::Relaxed);
        loop {
            self.1.link(i).store(head, Ordering::Relaxed);
            match self.0.compare_exchange(head, i, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

/// Claim/release through `list` with an ownership flag per slot that cries out when a slot is held
/// twice.
struct Harness<L> {
    list: L,
    held: Vec<AtomicBool>,
}

impl<L: FreeList> Harness<L> {
    fn claim(&self) -> Option<u32> {
        let i = self.list.pop()?;
        assert!(!self.held[i as usize].swap(true, Ordering::Relaxed), "ABA: slot {i} held by two threads");
        Some(i)
    }
    fn release(&self, i: u32) {
        assert!(self.held[i as usize].swap(false, Ordering::Relaxed), "slot {i} released while free");
        self.list.push(i);
    }
    /// After every thread is done: the free list holds exactly the slots not held, each once.
    fn check_conserved(&self) {
        let n = self.held.len();
        let mut seen = vec![false; n];
        for _ in 0..=n {
            let Some(i) = self.list.pop() else { break };
            assert!(
                !self.held[i as usize].load(Ordering::Relaxed),
                "ABA: slot {i} in the free list while held"
            );
            assert!(!std::mem::replace(&mut seen[i as usize], true), "slot {i} in the free list twice");
        }
        assert!(self.list.pop().is_none(), "the free list has a cycle");
        let held = self.held.iter().filter(|h| h.load(Ordering::Relaxed)).count();
        assert_eq!(seen.iter().filter(|s| **s).count() + held, n, "slots lost");
    }
}

/// The ABA schedule of the seed's comment: T1 pops A (reading `A.next = B`) and releases it, while T2
/// pops A, pops B and releases A; T1's stale CAS would make B the head while T2 holds it.
fn aba_scenario<L: FreeList>(make: fn(u32) -> L) {
    model(move || {
        let h = Arc::new(Harness { list: make(3), held: (0..3).map(|_| AtomicBool::new(false)).collect() });
        let h1 = h.clone();
        let t1 = thread::spawn(move || {
            if let Some(a) = h1.claim() {
                h1.release(a);
            }
        });
        let a = h.claim().unwrap();
        let b = h.claim();
        h.release(a);
        t1.join().unwrap();
        // T2 still holds b: no one else may get it.
        if let Some(c) = h.claim() {
            assert_ne!(Some(c), b);
            h.release(c);
        }
        h.check_conserved();
        if let Some(b) = b {
            h.release(b);
        }
    });
}

#[test]
#[should_panic(expected = "ABA: slot")]
fn the_seeds_untagged_stack_hands_one_slot_to_two_threads() {
    aba_scenario(Untagged::new);
}

#[test]
fn the_tagged_stack_never_does() {
    aba_scenario(Tagged::new);
}

/// Two claimers and a releaser on the shipped stack, with the stack shared by three threads.
#[test]
fn tagged_stack_three_threads_conserve_slots() {
    model(|| {
        let h = Arc::new(Harness {
            list: Tagged::new(2),
            held: (0..2).map(|_| AtomicBool::new(false)).collect(),
        });
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let h = h.clone();
                thread::spawn(move || {
                    if let Some(i) = h.claim() {
                        h.release(i);
                    }
                })
            })
            .collect();
        if let Some(i) = h.claim() {
            h.release(i);
        }
        for t in ts {
            t.join().unwrap();
        }
        h.check_conserved();
    });
}

/// A pool of one page of `n` slots (fake addresses: the pool never touches them).
fn pool(n_shift: u32) -> Pool {
    let p = Pool::new(n_shift, 64, 4);
    p.add_page(0x10000, 0x20000);
    p
}

/// Releases `c` as the library does without a thread cache (`Inner::release_uncached`): the state CAS
/// through the slot's metadata address, then the push of its index.
fn release(p: &Pool, c: &Claimed) -> Result<(), PoolError> {
    // SAFETY: `c` came from a claim of `p`.
    unsafe { p.mark_free_ref(c.slot, c.seq) }?;
    // SAFETY: as above.
    p.push(unsafe { p.index_of_ref(c.slot) });
    Ok(())
}

/// Claims everything left; checks it is `expect` distinct slots of live pages.
fn drain(p: &Pool, expect: usize) {
    let mut got = Vec::new();
    while let Some(c) = p.claim() {
        assert!(!got.contains(&c.index), "slot {} handed out twice", c.index);
        got.push(c.index);
        assert!(got.len() <= expect, "more slots than exist");
    }
    assert_eq!(got.len(), expect);
}

/// The pool as it ships (tagged stack + state words): the ABA schedule again, with the claimer's
/// state store and the releaser's state CAS in the interleavings.
#[test]
fn pool_claim_release_aba_schedule() {
    model(|| {
        let p = Arc::new(pool(1)); // two slots
        let p1 = p.clone();
        let t1 = thread::spawn(move || {
            // None when the other thread holds both slots.
            if let Some(c) = p1.claim() {
                release(&p1, &c).unwrap();
            }
        });
        let a = p.claim();
        let b = p.claim();
        if let Some(a) = a {
            release(&p, &a).unwrap();
        }
        t1.join().unwrap();
        let held = usize::from(b.is_some());
        if let (Some(a), Some(b)) = (a, b) {
            assert_ne!(a.index, b.index);
        }
        drain(&p, 2 - held);
    });
}

/// Two threads release copies of one handle at once: one wins, the other gets `DoubleRelease`, and
/// the slot is in the free list once.
#[test]
fn pool_racing_double_release() {
    model(|| {
        let p = Arc::new(pool(1));
        let c = p.claim().unwrap();
        let p1 = p.clone();
        let t1 = thread::spawn(move || release(&p1, &c));
        let mine = release(&p, &c);
        let theirs = t1.join().unwrap();
        assert!(
            matches!(
                (mine, theirs),
                (Ok(()), Err(PoolError::DoubleRelease)) | (Err(PoolError::DoubleRelease), Ok(()))
            ),
            "{mine:?} {theirs:?}"
        );
        drain(&p, 2);
    });
}

/// A release racing with `retire` (exec_exit) and a new page: the retired slot is refused or, if it
/// slips into the new free list, dropped by the claim that pops it; no slot is handed out twice.
#[test]
fn pool_release_racing_retire() {
    model(|| {
        let p = Arc::new(pool(1));
        let c = p.claim().unwrap();
        let p1 = p.clone();
        let t1 = thread::spawn(move || release(&p1, &c));
        drop(p.retire());
        p.add_page(0x30000, 0x40000);
        let r = t1.join().unwrap();
        assert!(matches!(r, Ok(()) | Err(PoolError::Stale)), "{r:?}");
        // Only the new page's two slots can come out.
        let mut got = Vec::new();
        while let Some(c) = p.claim() {
            assert!(c.index >= 2, "retired slot {} handed out", c.index);
            assert!(!got.contains(&c.index));
            got.push(c.index);
        }
        assert_eq!(got.len(), 2);
        assert!(matches!(release(&p, &c), Err(PoolError::Stale)));
    });
}

/// The thread cache's protocol: T1 releases into its own cache (`mark_free_ref`, keeping the
/// `SlotRef`) and claims the slot back from there (`claim_owned_ref`) while T2 releases a copy of the
/// same handle (`mark_free_ref` + `push`): exactly one release wins, and the slot is never both in the free list and
/// reclaimed from the cache.
#[test]
fn pool_cached_slot_against_a_racing_copy() {
    model(|| {
        let p = Arc::new(pool(1));
        let c = p.claim().unwrap();
        let p1 = p.clone();
        // SAFETY (both threads): `c` came from a claim of `p`.
        let t1 = thread::spawn(move || match unsafe { p1.mark_free_ref(c.slot, c.seq) } {
            Ok(()) => {
                let again = unsafe { p1.claim_owned_ref(c.slot) }.unwrap();
                release(&p1, &again).unwrap();
                true
            }
            Err(e) => {
                assert_eq!(e, PoolError::DoubleRelease);
                false
            }
        });
        let mine = match unsafe { p.mark_free_ref(c.slot, c.seq) } {
            Ok(()) => {
                p.push(unsafe { p.index_of_ref(c.slot) });
                true
            }
            Err(e) => {
                assert_eq!(e, PoolError::DoubleRelease);
                false
            }
        };
        let theirs = t1.join().unwrap();
        assert!(mine ^ theirs, "exactly one release wins ({mine}, {theirs})");
        drain(&p, 2);
    });
}
