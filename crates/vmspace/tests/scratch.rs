//! The scratch space on real memory: code written through the alias runs at the executable view,
//! neither view is writable and executable, pages hold page_size / slot_size slots and are reused,
//! releases are checked, a failed page allocation leaves nothing behind, threads never share a slot,
//! and a thread's `current()` slot goes back at thread exit.

mod scratch_support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use scratch_support::{call, emit, vma_at};
use vmspace::scratch::{ScratchError, ScratchSlot, ScratchSpace};
use vmspace::{AddressSpace, Prot};

const PS: usize = 4096;

fn space() -> AddressSpace {
    AddressSpace::reserve(1 << 24).unwrap()
}

fn agree(s: &AddressSpace) {
    let d = s.kernel_differences().unwrap();
    assert!(d.is_empty(), "map and kernel disagree:\n{}\n{s}", d.join("\n"));
}

#[test]
fn code_written_through_the_alias_runs_at_addr() {
    let s = space();
    let scratch = ScratchSpace::enable(&s).unwrap();
    let a = scratch.claim().unwrap();
    let b = scratch.claim().unwrap();
    assert_eq!(a.len(), 64);
    emit(&a.view(), 0x1234_5678);
    emit(&b.view(), 42);
    assert_eq!(call(a.addr()), 0x1234_5678);
    assert_eq!(call(b.addr()), 42);
    // Rewriting a slot changes what runs there.
    emit(&a.view(), 7);
    assert_eq!(call(a.addr()), 7);
    // The thread's own slot works the same way.
    let cur = scratch.current().unwrap();
    emit(&cur, 99);
    assert_eq!(call(cur.addr()), 99);
    assert_eq!(scratch.current().unwrap(), cur, "current() is stable on one thread");
    scratch.release(a).unwrap();
    scratch.release(b).unwrap();
}

#[test]
fn no_page_is_writable_and_executable() {
    let s = space();
    let scratch = ScratchSpace::enable(&s).unwrap();
    let slot = scratch.claim().unwrap();
    let (x, w) = (vma_at(slot.addr()).unwrap(), vma_at(slot.write_addr()).unwrap());
    assert_eq!(x.prot, Prot::RX, "executable view");
    assert_eq!(w.prot, Prot::RW, "writable alias");
    assert!(x.shared && w.shared, "one memfd mapped shared twice");
    assert!(x.has("dc") && w.has("dc"), "both views are MADV_DONTFORK");
    // The map forbids adding the missing right to either view.
    let (xa, wa) = (slot.addr() & !(PS as u64 - 1), slot.write_addr() & !(PS as u64 - 1));
    assert!(s.protect(xa..xa + PS as u64, Prot::ALL).is_err());
    assert!(s.protect(wa..wa + PS as u64, Prot::ALL).is_err());
    for v in vmspace::smaps::read_self().unwrap() {
        if v.range.start < s.range().end && v.range.end > s.range().start {
            assert!(!(v.prot.contains(Prot::WRITE) && v.prot.contains(Prot::EXECUTE)), "{v:?}");
        }
    }
    agree(&s);
    scratch.release(slot).unwrap();
}

#[test]
fn a_page_holds_page_size_over_slot_size_slots_and_is_reused() {
    for size in [16, 64, 128, 4096] {
        let s = space();
        let scratch = ScratchSpace::builder().slot_size(size).enable(&s).unwrap();
        let n = PS / size;
        assert_eq!(scratch.entries_per_page(), n);
        assert_eq!(scratch.pages(), 0, "nothing is allocated before the first claim");
        let first: Vec<ScratchSlot> = (0..n).map(|_| scratch.claim().unwrap()).collect();
        assert_eq!(scratch.pages(), 1, "slot size {size}");
        let addrs: HashSet<u64> = first.iter().map(|s| s.addr()).collect();
        assert_eq!(addrs.len(), n, "distinct slots");
        let base = first.iter().map(|s| s.addr()).min().unwrap();
        for slot in &first {
            assert_eq!(slot.len(), size);
            assert_eq!((slot.addr() - base) % size as u64, 0);
            assert!(slot.addr() - base < PS as u64, "all in one page");
            assert_eq!(
                slot.write_addr() - slot.addr(),
                first[0].write_addr() - first[0].addr(),
                "the alias is the same page"
            );
        }
        let extra = scratch.claim().unwrap();
        assert_eq!(scratch.pages(), 2, "one more claim allocates a second page");
        assert!(!addrs.contains(&extra.addr()));
        for slot in first.iter().chain([&extra]) {
            scratch.release(*slot).unwrap();
        }
        let again: Vec<ScratchSlot> = (0..=n).map(|_| scratch.claim().unwrap()).collect();
        assert_eq!(scratch.pages(), 2, "claims after releasing everything reuse slots");
        let reused: HashSet<u64> = again.iter().map(|s| s.addr()).collect();
        assert_eq!(reused.len(), n + 1);
        assert!(reused.is_subset(&addrs.iter().copied().chain([extra.addr()]).collect()));
        agree(&s);
    }
}

#[test]
fn bad_settings_are_refused() {
    let s = space();
    for size in [0, 8, 15, 48, 8192] {
        match ScratchSpace::builder().slot_size(size).enable(&s) {
            Err(ScratchError::InvalidSlotSize(n)) => assert_eq!(n, size),
            other => panic!("slot size {size}: {other:?}"),
        }
    }
    assert!(matches!(ScratchSpace::builder().max_pages(0).enable(&s), Err(ScratchError::InvalidMaxPages(0))));
    let small = ScratchSpace::builder().slot_size(PS).max_pages(2).enable(&s).unwrap();
    let _a = small.claim().unwrap();
    let _b = small.claim().unwrap();
    assert!(matches!(small.claim(), Err(ScratchError::Exhausted)));
    assert_eq!(small.pages(), 2);
}

#[test]
fn bad_releases_are_errors_and_change_nothing() {
    let s = space();
    let one = ScratchSpace::enable(&s).unwrap();
    let two = ScratchSpace::enable(&s).unwrap();
    let a = one.claim().unwrap();
    let copy = a;
    one.release(a).unwrap();
    assert!(matches!(one.release(copy), Err(ScratchError::DoubleRelease)));
    // The slot is handed out again; the stale copy still cannot release the new holder's claim.
    let b = one.claim().unwrap();
    assert_eq!(b.addr(), a.addr(), "LIFO reuse");
    assert!(matches!(one.release(a), Err(ScratchError::DoubleRelease)));
    let c = two.claim().unwrap();
    assert!(matches!(one.release(c), Err(ScratchError::ForeignSlot)));
    assert!(matches!(two.release(b), Err(ScratchError::ForeignSlot)));
    // None of this disturbed the free list: every slot comes out exactly once.
    let n = one.entries_per_page();
    let rest: HashSet<u64> = (1..n).map(|_| one.claim().unwrap().addr()).collect();
    assert_eq!(rest.len(), n - 1);
    assert!(!rest.contains(&b.addr()));
    assert_eq!(one.pages(), 1);
    one.release(b).unwrap();
    two.release(c).unwrap();
}

#[test]
fn exec_exit_unmaps_everything_and_retires_every_slot() {
    let s = space();
    let before = s.regions().len();
    let scratch = ScratchSpace::enable(&s).unwrap();
    let n = scratch.entries_per_page();
    let held: Vec<ScratchSlot> = (0..n + 1).map(|_| scratch.claim().unwrap()).collect();
    let cur = scratch.current().unwrap();
    scratch.release(held[0]).unwrap();
    assert_eq!(scratch.pages(), 2);
    assert_eq!(s.regions().len(), before + 4, "two views per page");
    scratch.exec_exit().unwrap();
    assert_eq!(scratch.pages(), 0);
    assert_eq!(s.regions().len(), before, "both views of every page are unmapped");
    assert!(s.lookup_entry(held[1].addr()).is_none() && s.lookup_entry(held[1].write_addr()).is_none());
    agree(&s);
    for slot in &held[1..] {
        assert!(matches!(scratch.release(*slot), Err(ScratchError::Stale)));
    }
    assert!(matches!(scratch.release(held[0]), Err(ScratchError::Stale)));
    // The space starts over: a claim allocates a fresh page, current() claims anew.
    let fresh = scratch.claim().unwrap();
    assert_eq!(scratch.pages(), 1);
    emit(&fresh.view(), 5);
    assert_eq!(call(fresh.addr()), 5);
    let cur2 = scratch.current().unwrap();
    assert_ne!(cur2, cur);
    emit(&cur2, 6);
    assert_eq!(call(cur2.addr()), 6);
    scratch.release(fresh).unwrap();
    assert_eq!(scratch.pages_allocated(), 3);
    drop(scratch);
    assert_eq!(s.regions().len(), before, "dropping the scratch space unmaps its pages");
}

#[test]
fn a_failed_page_allocation_leaves_nothing_behind() {
    let s = space();
    let scratch = ScratchSpace::builder().slot_size(PS).enable(&s).unwrap();
    let keep = scratch.claim().unwrap();
    let regions = s.regions();
    let mut failures = 0;
    for n in 0.. {
        s.inject_failure_after(Some(n));
        let r = scratch.claim();
        s.inject_failure_after(None);
        match r {
            Err(ScratchError::Space(_)) => {
                failures += 1;
                assert_eq!(s.regions(), regions, "failure after {n} calls left a mapping");
                assert_eq!(scratch.pages(), 1);
                agree(&s);
            }
            Ok(slot) => {
                assert_eq!(scratch.pages(), 2);
                emit(&slot.view(), 3);
                assert_eq!(call(slot.addr()), 3);
                scratch.release(slot).unwrap();
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(n < 32);
    }
    assert!(failures >= 2, "both mappings' system calls were failed in turn ({failures})");
    scratch.release(keep).unwrap();
}

#[test]
fn threads_never_share_a_slot_and_counts_are_conserved() {
    threads_never_share_a_slot(true);
}

#[test]
fn threads_never_share_a_slot_without_the_thread_cache() {
    threads_never_share_a_slot(false);
}

fn threads_never_share_a_slot(thread_cache: bool) {
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 20_000;
    let s = space();
    let scratch = ScratchSpace::builder().slot_size(256).thread_cache(thread_cache).enable(&s).unwrap();
    let n = scratch.entries_per_page();
    // Owner of every slot index that can exist here, 0 when free.
    let owners: Vec<AtomicU64> = (0..4096).map(|_| AtomicU64::new(0)).collect();
    let barrier = Barrier::new(THREADS as usize);
    std::thread::scope(|sc| {
        let mut handles = Vec::new();
        for t in 1..=THREADS {
            let (scratch, owners, barrier) = (&scratch, &owners, &barrier);
            handles.push(sc.spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                for r in 0..ROUNDS {
                    // Hold up to three slots at a time, in varying patterns.
                    let slot = scratch.claim().unwrap();
                    let prev = owners[slot.index() as usize].swap(t, Ordering::Relaxed);
                    assert_eq!(prev, 0, "slot {} held by {prev} and {t}", slot.index());
                    let tag = (t << 32) | r;
                    // SAFETY: the slot is ours; write through the alias, read through the RX view.
                    unsafe { std::ptr::write_volatile(slot.write_addr() as *mut u64, tag) };
                    std::hint::spin_loop();
                    // SAFETY: as above; the executable view is readable.
                    assert_eq!(unsafe { std::ptr::read_volatile(slot.addr() as *const u64) }, tag);
                    mine.push(slot);
                    if mine.len() > (r % 3) as usize {
                        let s = mine.remove(0);
                        // SAFETY: still ours until released.
                        assert_eq!(unsafe { std::ptr::read_volatile(s.addr() as *const u64) } >> 32, t);
                        assert_eq!(owners[s.index() as usize].swap(0, Ordering::Relaxed), t);
                        scratch.release(s).unwrap();
                    }
                }
                for s in mine {
                    assert_eq!(owners[s.index() as usize].swap(0, Ordering::Relaxed), t);
                    scratch.release(s).unwrap();
                }
                // This thread's current() slot is released when it exits.
                let cur = scratch.current().unwrap();
                emit(&cur, t as u32);
                assert_eq!(call(cur.addr()), t as u32);
            }));
        }
        // An explicit join waits for the thread's end, thread-local destructors included (the
        // scope's implicit join only waits for the closure).
        for h in handles {
            h.join().unwrap();
        }
    });
    // Every thread has exited: every slot of every page is free, and comes out exactly once.
    let pages = scratch.pages();
    assert!(pages >= 1 && pages as u64 <= THREADS * 4 / n as u64 + 2, "{pages} pages");
    let all: Vec<ScratchSlot> = (0..pages * n).map(|_| scratch.claim().unwrap()).collect();
    assert_eq!(scratch.pages(), pages, "no slot was lost: claiming them all allocates nothing");
    // The main thread's cache: releasing one and claiming it back allocates nothing either.
    scratch.release(all[0]).unwrap();
    assert_eq!(scratch.claim().unwrap().addr(), all[0].addr());
    assert_eq!(all.iter().map(|s| s.addr()).collect::<HashSet<_>>().len(), pages * n);
    let _extra = scratch.claim().unwrap();
    assert_eq!(scratch.pages(), pages + 1);
}

#[test]
fn thread_exit_releases_the_current_slot() {
    let s = space();
    let scratch = Arc::new(ScratchSpace::builder().slot_size(PS / 4).build().unwrap());
    drop(s);
    let n = scratch.entries_per_page();
    let mut seen = HashSet::new();
    for round in 0..20u32 {
        let sc = scratch.clone();
        let v = std::thread::spawn(move || {
            let v = sc.current().unwrap();
            emit(&v, round);
            assert_eq!(call(v.addr()), round);
            assert_eq!(sc.current().unwrap(), v);
            v
        })
        .join()
        .unwrap();
        seen.insert(v.addr());
    }
    assert_eq!(scratch.pages(), 1, "each exiting thread gave its slot back");
    assert_eq!(seen.len(), 1, "the next thread got the same slot back (LIFO)");
    // Threads alive at once hold distinct slots; after they exit all n slots are free again.
    let barrier = Arc::new(Barrier::new(n));
    let views: Vec<_> = (0..n)
        .map(|_| {
            let (sc, b) = (scratch.clone(), barrier.clone());
            std::thread::spawn(move || {
                let v = sc.current().unwrap();
                b.wait();
                v.addr()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(views.iter().collect::<HashSet<_>>().len(), n);
    let all: Vec<_> = (0..n).map(|_| scratch.claim().unwrap()).collect();
    assert_eq!(scratch.pages(), 1);
    for s in all {
        scratch.release(s).unwrap();
    }
}

/// The thread cache serves the space released to last: a slot cached for another space goes back to
/// that space (or away with it, when it was dropped) instead of keeping the cache to itself.
#[test]
fn the_thread_cache_follows_the_space_released_to_last() {
    let (sa, sb) = (space(), space());
    let a = ScratchSpace::enable(&sa).unwrap();
    let b = ScratchSpace::enable(&sb).unwrap();
    // Whether another thread's claim of `scratch` gets the slot `index` (the top of its free list).
    let elsewhere = |scratch: &ScratchSpace<'_>, index| {
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let got = scratch.claim().unwrap();
                let same = got.index() == index;
                scratch.release(got).unwrap();
                same
            })
            .join()
            .unwrap()
        })
    };
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let x = a.claim().unwrap();
            a.release(x).unwrap(); // into this thread's cache
            assert!(!elsewhere(&a, x.index()), "A's slot sits in this thread's cache");
            let y = b.claim().unwrap();
            b.release(y).unwrap(); // takes the cache; A's slot goes back to A
            assert!(elsewhere(&a, x.index()), "A's slot is on A's free list again");
            assert!(!elsewhere(&b, y.index()), "B's slot sits in this thread's cache");
            assert_eq!(b.claim().unwrap().index(), y.index(), "and comes back to this thread");
        })
        .join()
        .unwrap()
    });
    // A space dropped while its slot is cached does not keep the cache either.
    let sc2 = space();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let c = ScratchSpace::enable(&sc2).unwrap();
            let z = c.claim().unwrap();
            c.release(z).unwrap(); // cached, then the space goes
            drop(c);
            let y = b.claim().unwrap();
            b.release(y).unwrap();
            assert!(!elsewhere(&b, y.index()), "B's slot is cached after the dropped space's");
        })
        .join()
        .unwrap()
    });
}

#[test]
fn the_thread_cache_keeps_every_check() {
    let s = space();
    let scratch = ScratchSpace::enable(&s).unwrap();
    let a = scratch.claim().unwrap();
    scratch.release(a).unwrap(); // into this thread's cache
    assert!(matches!(scratch.release(a), Err(ScratchError::DoubleRelease)));
    let b = scratch.claim().unwrap();
    assert_eq!(b.index(), a.index(), "the cached slot comes back first");
    assert!(matches!(scratch.release(a), Err(ScratchError::DoubleRelease)), "a stale copy");
    scratch.release(b).unwrap();
    // exec_exit retires the cached slot too: the next claim is on a fresh page.
    scratch.exec_exit().unwrap();
    let c = scratch.claim().unwrap();
    assert_ne!(c.index(), a.index());
    assert_eq!((scratch.pages(), scratch.pages_allocated()), (1, 2));
    // A slot released on another thread sits in that thread's cache, then goes back to the free list
    // when that thread exits.
    let n = scratch.entries_per_page();
    let rest: Vec<ScratchSlot> = (1..n).map(|_| scratch.claim().unwrap()).collect();
    std::thread::scope(|sc| sc.spawn(|| scratch.release(c).unwrap()).join().unwrap());
    assert_eq!(scratch.claim().unwrap().index(), c.index());
    assert_eq!(scratch.pages(), 1);
    for r in rest {
        scratch.release(r).unwrap();
    }
}
