//! Hostile rings on real memory: the ring's shared header and entries are scribbled (once, in a chosen
//! way, or at random times with random values while a producer thread and the reclaimer thread run),
//! and the ring must neither wait unboundedly nor reclaim anything the producer did not enter.
//!
//! Invariant checked: every call on a scribbled ring returns (a watchdog fails the test instead of
//! hanging it, and the reclaimer thread keeps finishing passes); every error is one a scribble can
//! explain — `InvalidRing` for a scribbled header, `InvalidId` / `InvalidArgument` for a scribbled
//! entry, none on an honest ring; and memory outside the entered regions — guard pages between them,
//! filled with a pattern — is still mapped and still holds its pattern afterwards, so no `madvise` or
//! `munmap` ever strayed outside what the producer entered. Honest rounds also check the regions
//! themselves: a cancel that answered `Unreclaimed` finds its data, one that answered `Freed` finds zeros
//! (`MADV_DONTNEED`).

#[path = "../../vmspace-core/tests/reclaim_scribble/mod.rs"]
mod reclaim_scribble;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use reclaim_scribble::{Beat, HANG, Kind, OPS, Rng, Scribbler, SetOnDrop, watch};
use vmspace::reclaim::{
    Action, FreeAdvice, Policy, ReclaimError, ReclaimId, ReclaimRing, ReclaimState, Reclaimer,
    ReclaimerConfig,
};
use vmspace::{AddressSpace, MapSpec, Prot, os};

const PS: u64 = 4096;

/// Header offsets (the layout table in `vmspace_core::reclaim`'s `layout.rs`).
const HEAD: u64 = 24;
const TAIL: u64 = 32;
const BUSY: u64 = 40;

/// Read-write private memory of `len` bytes, outside any `AddressSpace` (for unbound rings).
// `os`'s calls are becoming `unsafe fn`s; the block is needed with them and harmless without.
#[allow(unused_unsafe)]
fn arena(len: u64) -> u64 {
    let a = os::reserve(len).unwrap();
    // SAFETY: the reservation just made, the test's own; nothing holds a reference into it.
    unsafe { os::map_fixed(a, len, Prot::RW, os::Fixed::Anonymous) }.unwrap();
    a
}

#[allow(unused_unsafe)]
fn unmap(addr: u64, len: u64) {
    // SAFETY: memory `arena` mapped for this test, with no reference into it left.
    unsafe { os::unmap(addr, len) }.unwrap();
}

fn write(addr: u64, v: u64) {
    // SAFETY: only pages the test mapped read-write.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: only pages the test mapped read-write (checked still mapped where it matters).
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

/// The 64-bit header word of `ring` at `off`, as the atomic every party accesses it through.
fn header_word(ring: &ReclaimRing, off: u64) -> &'static AtomicU64 {
    let addr = ring.ring_range().start + off;
    // SAFETY: `off` is one of the header's 8-aligned u64 fields inside the ring's read-write mapping,
    // which every party accesses atomically; the callers use the reference only while the ring lives
    // (the `'static` is a convenience of this test, not a promise).
    unsafe { AtomicU64::from_ptr(addr as *mut u64) }
}

fn quiet_reclaimer() -> Reclaimer {
    Reclaimer::spawn(ReclaimerConfig {
        tick: Duration::from_secs(3600),
        pressure: None,
        ..Default::default()
    })
    .unwrap()
}

/// Run `f` on another thread; fail the test (without waiting for it) if it does not return within
/// [`HANG`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not return within {HANG:?}: an unbounded wait on the ring"),
    }
}

/// Defect 12: `head` scribbled up to `tail` makes every entered id look reclaimed; `try_cancel` then
/// waited for this process's reclaimer to finish a system call it will never make.
fn scribbled_head_cancel(also_busy: bool, query: bool) {
    let r = quiet_reclaimer();
    let mut ring = ReclaimRing::builder()
        .reclaimer(&r)
        .capacity(8, 8)
        .free_advice(FreeAdvice::DontNeed)
        .build()
        .unwrap();
    let len = 4 * PS;
    let a = arena(len);
    write(a, 0x5eed);
    let id = ring.try_enter(a, len, Action::Deallocate, None).unwrap().id.unwrap();
    let tail = header_word(&ring, TAIL).load(Ordering::Relaxed);
    assert_eq!(tail, id.0 + 1);
    header_word(&ring, HEAD).store(tail, Ordering::Relaxed);
    if also_busy {
        header_word(&ring, BUSY).store(tail, Ordering::Relaxed);
    }
    let (res, mut ring) = bounded("try_cancel on a ring with head == tail", move || {
        let res = if query {
            ring.query_state(id, Action::Deallocate)
        } else {
            ring.try_cancel(id, a, len, Action::Deallocate).map(|c| c.state)
        };
        (res, ring)
    });
    assert_eq!(res, Err(ReclaimError::InvalidRing), "a reclaimed answer the reclaimer never made");
    // The ring is not followed: the region is never reclaimed.
    let flushed = bounded("flush of a scribbled ring", move || (ring.flush(8).map(|r| r.reclaimed), ring));
    assert_eq!(flushed.0, Err(ReclaimError::InvalidRing));
    drop(flushed.1);
    assert!(os::resident_pages(a, len).is_ok(), "the region was unmapped");
    assert_eq!(read(a), 0x5eed, "the region was reclaimed");
    unmap(a, len);
}

#[test]
fn try_cancel_with_head_scribbled_to_tail_returns_invalid_ring() {
    scribbled_head_cancel(false, false);
}

#[test]
fn try_cancel_with_head_and_busy_scribbled_to_tail_returns_invalid_ring() {
    scribbled_head_cancel(true, false);
}

#[test]
fn query_state_with_head_and_busy_scribbled_to_tail_returns_invalid_ring() {
    scribbled_head_cancel(true, true);
}

#[test]
fn query_state_with_head_scribbled_to_tail_returns_invalid_ring() {
    scribbled_head_cancel(false, true);
}

// ---- The random family -------------------------------------------------------------------------

/// Regions per round: region `k` is the two pages after guard page `3k` (so guard, region, guard, ...).
const REGIONS: u64 = 192;
const ROUND_PAGES: u64 = 3 * REGIONS + 1;
const LIN_ROUNDS: u64 = 320;
const LIN_STEPS: u64 = 3000;
const LIN_MAX_STEPS: u64 = 60_000;
const GUARD_PATTERN: u64 = 0xA5A5_5A5A_C3C3_3C3C;

/// Where a round's memory lives: an `AddressSpace` for a bound ring (deallocation is `space.unmap`, so
/// the address range stays reserved), plain memory for an unbound one (then only `Free` is entered:
/// an unbound `munmap` would leave holes other mappings could take).
enum Arena {
    Space(Arc<AddressSpace>, u64),
    Plain(u64),
}

impl Arena {
    fn new(bound: bool) -> Arena {
        let len = ROUND_PAGES * PS;
        if bound {
            let space = Arc::new(AddressSpace::reserve(len + 2 * PS).unwrap());
            let a = space.map(len, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
            Arena::Space(space, a)
        } else {
            Arena::Plain(arena(len))
        }
    }

    fn base(&self) -> u64 {
        match self {
            Arena::Space(_, a) | Arena::Plain(a) => *a,
        }
    }

    fn guard(&self, k: u64) -> u64 {
        self.base() + 3 * k * PS
    }

    /// The two pages of region `k`.
    fn region(&self, k: u64) -> u64 {
        self.guard(k) + PS
    }

    fn fill_guards(&self) {
        for k in 0..=REGIONS {
            let g = self.guard(k);
            for w in (0..PS).step_by(8) {
                write(g + w, GUARD_PATTERN ^ (g + w));
            }
        }
    }

    /// Every guard page still mapped (and, in a space, still in the map) and still holding its pattern.
    fn check_guards(&self, what: &str) {
        for k in 0..=REGIONS {
            let g = self.guard(k);
            assert!(os::resident_pages(g, PS).is_ok(), "{what}: guard page {k} at {g:#x} was unmapped");
            if let Arena::Space(s, _) = self {
                assert!(s.lookup_entry(g).is_some(), "{what}: guard page {k} left the space's map");
            }
            for w in (0..PS).step_by(8) {
                let v = read(g + w);
                assert_eq!(
                    v,
                    GUARD_PATTERN ^ (g + w),
                    "{what}: guard page {k} at {g:#x}+{w:#x} was reclaimed"
                );
            }
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if let Arena::Plain(a) = self {
            unmap(*a, ROUND_PAGES * PS);
        }
    }
}

/// What the producer believes about a region.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Region {
    Owned,
    Live(ReclaimId, u64, u64, Action),
    /// Deallocated or lost to a `Busy` cancel: not touched again this round.
    Gone,
}

#[derive(Default)]
struct LinOut {
    steps: u64,
    errors: std::collections::HashMap<&'static str, u64>,
    unreclaimed: u64,
    freed: u64,
}

fn lin_explained(kind: Option<Kind>, e: ReclaimError) -> bool {
    matches!(
        (kind, e),
        (Some(_), ReclaimError::InvalidId | ReclaimError::InvalidArgument)
            | (Some(Kind::Anything), ReclaimError::InvalidRing)
    )
}

fn error_name(e: ReclaimError) -> &'static str {
    match e {
        ReclaimError::InvalidRing => "InvalidRing",
        ReclaimError::InvalidId => "InvalidId",
        ReclaimError::InvalidArgument => "InvalidArgument",
        _ => "other",
    }
}

struct RoundShared {
    stop: AtomicBool,
    scribbled: AtomicBool,
}

/// The producer's side of one round: the ring's whole public surface, at random. In an honest round
/// it tags each region before entering it and checks the tag after a cancel; in a hostile one it
/// never touches region memory (a scribbled `busy` can hand it a region the reclaimer is taking).
#[allow(clippy::too_many_arguments)]
fn lin_producer(
    mut ring: ReclaimRing,
    regions: Vec<u64>,
    bound: bool,
    kind: Option<Kind>,
    sh: Arc<RoundShared>,
    beat: Arc<Beat>,
    seed: u64,
) -> LinOut {
    let mut out = LinOut::default();
    {
        let _stop = SetOnDrop(&sh.stop);
        let mut rng = Rng::new(seed);
        let mut state = vec![Region::Owned; regions.len()];
        // The tag last written into each region (honest rounds); never read back from a region in the ring.
        let mut tags = vec![0u64; regions.len()];
        let mut tag = 1u64;
        let note = |out: &mut LinOut, e: ReclaimError, what: &str| {
            assert!(lin_explained(kind, e), "{what}: {e:?} on a ring scribbled {kind:?}");
            *out.errors.entry(error_name(e)).or_default() += 1;
        };
        let honest = kind.is_none();
        while out.steps < LIN_MAX_STEPS && (out.steps < LIN_STEPS || !sh.scribbled.load(Ordering::Acquire)) {
            out.steps += 1;
            let r = rng.next();
            let k = (r >> 8) as usize % regions.len();
            // The region: both pages, or from an offset inside the first; the second page is always whole.
            let area = regions[k];
            match (r % 16, state[k]) {
                (0..=5, Region::Owned) => {
                    let off = if r & 0x10 == 0 { 0 } else { 8 * ((r >> 20) % (PS / 8)) };
                    let (addr, size) = (area + off, 2 * PS - off);
                    let action = if bound && r & 0x20 != 0 { Action::Deallocate } else { Action::Free };
                    if honest {
                        tag += 1;
                        tags[k] = tag;
                        write(area + PS, tag);
                    }
                    match beat.call(|| ring.try_enter(addr, size, action, None)) {
                        Ok(e) => {
                            if let Some(id) = e.id {
                                state[k] = Region::Live(id, addr, size, action);
                            }
                            if e.update_accounting
                                && let Err(e) = beat.call(|| ring.update_kernel_accounting())
                            {
                                note(&mut out, e, "update_kernel_accounting");
                            }
                        }
                        Err(e) => note(&mut out, e, "try_enter"),
                    }
                }
                (6..=9, Region::Live(id, addr, size, action)) => {
                    let expect = tags[k];
                    match beat.call(|| ring.try_cancel(id, addr, size, action)) {
                        Ok(c) => {
                            state[k] = match c.state {
                                ReclaimState::Unreclaimed => {
                                    out.unreclaimed += 1;
                                    if honest {
                                        assert_eq!(
                                            read(area + PS),
                                            expect,
                                            "cancelled Unreclaimed, data gone"
                                        );
                                    }
                                    Region::Owned
                                }
                                ReclaimState::Freed => {
                                    out.freed += 1;
                                    if honest {
                                        assert_eq!(read(area + PS), 0, "Freed, but DONTNEED did not happen");
                                    }
                                    Region::Owned
                                }
                                ReclaimState::Busy | ReclaimState::Deallocated => Region::Gone,
                            };
                            if c.update_accounting
                                && let Err(e) = beat.call(|| ring.update_kernel_accounting())
                            {
                                note(&mut out, e, "update_kernel_accounting");
                            }
                        }
                        Err(e) => {
                            note(&mut out, e, "try_cancel");
                            state[k] = Region::Gone;
                        }
                    }
                }
                (10, Region::Live(id, _, _, action)) => {
                    if let Err(e) = beat.call(|| ring.query_state(id, action)) {
                        note(&mut out, e, "query_state");
                    }
                }
                (11, _) => {
                    if let Err(e) = beat.call(|| ring.update_kernel_accounting()) {
                        note(&mut out, e, "update_kernel_accounting");
                    }
                }
                (12, _) if r & 0x300 == 0 => {
                    if let Err(e) = beat.call(|| ring.flush(1 + (r >> 12) % 24)) {
                        note(&mut out, e, "flush");
                    }
                }
                (13, _) if r & 0x3f00 == 0 => {
                    let cap = 1 + (r >> 16) as u32 % ring.max_capacity();
                    if let Err(e) = beat.call(|| ring.resize(cap)) {
                        note(&mut out, e, "resize");
                    }
                }
                _ => {
                    let _ =
                        beat.call(|| (ring.stats(), ring.len(), ring.reclaimable_bytes(), ring.capacity()));
                }
            }
        }
    }
    // Stop the scribbler before the ring (and its memory) goes away.
    while !sh.scribbled.load(Ordering::Acquire) {
        thread::yield_now();
    }
    let stats = ring.stats();
    if kind.is_none() {
        assert_eq!(stats.skipped, 0, "an honest ring skipped entries");
    }
    // Dropping drains what is left (a scribbled ring answers InvalidRing and is left alone).
    beat.call(|| drop(ring));
    out
}

#[derive(Default)]
struct LinTotals {
    steps: u64,
    scribbles: [u64; OPS.len()],
    errors: std::collections::HashMap<&'static str, u64>,
    unreclaimed: u64,
    freed: u64,
    longest_ns: u64,
}

fn lin_round(n: u64, bound: bool, kind: Option<Kind>, r: &Reclaimer, t: &mut LinTotals) {
    let mut rng = Rng::new(0xC0FF_EE00_D15E_A5E5 ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ bound as u64);
    let arena = Arena::new(bound);
    arena.fill_guards();
    let regions: Vec<u64> = (0..REGIONS).map(|k| arena.region(k)).collect();
    let capacity = 1 + rng.below(48) as u32;
    let max = capacity + rng.below(16) as u32;
    let budget = Policy { budget: Some(rng.below(16) * PS), ..Policy::default() };
    let mut b = ReclaimRing::builder()
        .reclaimer(r)
        .capacity(capacity, max)
        .free_advice(FreeAdvice::DontNeed)
        .policy(budget)
        .batching(rng.below(2) == 0);
    if let Arena::Space(s, _) = &arena {
        b = b.space(s);
    }
    let ring = b.build().unwrap();
    let (ring_base, ring_max) = (ring.ring_range().start, ring.max_capacity());
    let sh =
        Arc::new(RoundShared { stop: AtomicBool::new(false), scribbled: AtomicBool::new(kind.is_none()) });
    let (pb, sb) = (Arc::new(Beat::default()), Arc::new(Beat::default()));
    let mut handles = Vec::new();
    let seed = rng.next();
    handles.push({
        let (sh, pb) = (sh.clone(), pb.clone());
        thread::spawn(move || (Some(lin_producer(ring, regions, bound, kind, sh, pb, seed)), None))
    });
    if let Some(kind) = kind {
        let budget = if kind == Kind::Entries { 64 + rng.below(256) } else { 1 + rng.below(32) };
        // SAFETY: the ring's mapping (header and `ring_max` entries) lives until the producer drops the
        // ring, which it does only after this thread has set `scribbled` and stopped writing.
        let mut s = unsafe { Scribbler::new(ring_base as *mut u8, ring_max, kind, rng.next()) };
        let (sh, sb) = (sh.clone(), sb.clone());
        handles.push(thread::spawn(move || {
            let _done = SetOnDrop(&sh.scribbled);
            let mut done = 0;
            while done < budget && !sh.stop.load(Ordering::Acquire) {
                s.pause();
                sb.call(|| s.scribble());
                done += 1;
            }
            (None, Some(s.counts))
        }));
    }
    let what = format!(
        "{} round {n} ({kind:?}, capacity {capacity}/{max})",
        if bound { "bound" } else { "unbound" }
    );
    let outs = watch(&what, handles, &[("producer", &pb), ("scribbler", &sb)], &sh.stop);
    // The reclaimer thread is not stuck either, and once this pass is over nothing reclaims our arena.
    assert!(r.wait_pass(HANG), "{what}: the reclaimer thread did not finish a pass within {HANG:?}");
    arena.check_guards(&what);
    for (p, s) in outs {
        if let Some(p) = p {
            t.steps += p.steps;
            t.unreclaimed += p.unreclaimed;
            t.freed += p.freed;
            for (k, v) in p.errors {
                *t.errors.entry(k).or_default() += v;
            }
        }
        if let Some(counts) = s {
            for (t, c) in t.scribbles.iter_mut().zip(counts) {
                *t += c;
            }
        }
    }
    t.longest_ns = t.longest_ns.max(pb.longest_ns.load(Ordering::Relaxed));
}

fn lin_family(bound: bool) {
    let start = Instant::now();
    // A pressure source that reports pressure now and then: those passes drain the ring.
    let readings = AtomicU64::new(0);
    let pressure = move || Some(if readings.fetch_add(1, Ordering::Relaxed) % 7 == 6 { 90.0 } else { 0.0 });
    let r = Reclaimer::spawn(ReclaimerConfig {
        tick: Duration::from_micros(500),
        pressure: Some(Box::new(pressure)),
        ..ReclaimerConfig::default()
    })
    .unwrap();
    let mut t = LinTotals::default();
    for n in 0..LIN_ROUNDS {
        let kind = match n % 4 {
            0 => None,
            1 => Some(Kind::Entries),
            _ => Some(Kind::Anything),
        };
        lin_round(n, bound, kind, &r, &mut t);
    }
    let per_op: Vec<String> = OPS.iter().zip(t.scribbles).map(|(o, n)| format!("{o} {n}")).collect();
    eprintln!(
        "hostile {} rings on real memory: {LIN_ROUNDS} rounds, {} producer steps, {} scribbles ({}), \
         {} cancels Unreclaimed, {} Freed, errors {:?}, reclaimer {:?}, longest call {:?}, {:?} in all",
        if bound { "bound" } else { "unbound" },
        t.steps,
        t.scribbles.iter().sum::<u64>(),
        per_op.join(", "),
        t.unreclaimed,
        t.freed,
        t.errors,
        r.stats(),
        Duration::from_nanos(t.longest_ns),
        start.elapsed()
    );
    assert!(t.errors.get("InvalidRing").is_some_and(|&n| n > 0), "no scribble ever reached the header");
    assert!(t.unreclaimed > 0 && t.freed > 0, "the producer and the reclaimer never met");
}

#[test]
fn hostile_bound_rings_never_hang_and_never_reclaim_outside_the_entered_regions() {
    lin_family(true);
}

#[test]
fn hostile_unbound_rings_never_hang_and_never_reclaim_outside_the_entered_regions() {
    lin_family(false);
}
