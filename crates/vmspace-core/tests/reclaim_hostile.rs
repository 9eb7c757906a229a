//! Hostile rings at the protocol level: a producer thread enters, cancels, reuses and queries, a
//! reclaimer thread reclaims chunks and flushes, and a third thread scribbles the shared header and the
//! entries at random times with random values — round after round, each on a fresh ring.
//!
//! Invariant checked: no call waits unboundedly (a watchdog fails the test instead of hanging it); the
//! reclaimer's callback only ever gets whole pages inside a region the producer entered (recorded before
//! the entry is written, dropped again if it was not), and never once the reclaimer has answered
//! `InvalidRing`, after which every call answers `InvalidRing`; every error is one a scribble can
//! explain — `InvalidRing` for a scribbled header, `InvalidId` / `InvalidArgument` for a scribbled
//! entry, none at all on an honest ring, and no `InvalidRing` while only entries are scribbled. Honest
//! rounds (no scribbler) also check the protocol's own promise: a region given back by a cancel is never
//! reclaimed, and every other entered region is reclaimed exactly once.

mod reclaim_scribble;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use reclaim_scribble::{Beat, Kind, OPS, Rng, Scribbler, SetOnDrop, watch};
use vmspace_core::reclaim::{
    Action, Consumer, ENTRY_SIZE, HEADER_SIZE, Producer, ReclaimError, ReclaimId, ReclaimState, RingMemory,
    RingView,
};

const PAGE: u64 = 4096;
/// Region `k` lives in `[k * STRIDE, (k + 1) * STRIDE)`: the reclaimed address names its region.
const STRIDE: u64 = 1 << 22;
const ROUNDS: u64 = 400;
/// A round's producer takes at least this many steps, and goes on (up to `MAX_STEPS`) until the
/// scribbler has spent its budget and the reclaimer has made `MIN_RECLAIMER_CALLS` calls, so the three
/// overlap however the threads are scheduled.
const STEPS: u64 = 2000;
const MAX_STEPS: u64 = 100_000;
const MIN_RECLAIMER_CALLS: u64 = 300;

/// A ring in heap memory that a test thread may scribble over: the buffer is only ever accessed
/// through atomics (the views, and the scribbler's field-sized accesses).
struct Buf {
    words: Box<[AtomicU64]>,
    len: usize,
}

impl Buf {
    fn new(capacity: u32, max_capacity: u32) -> Buf {
        let len = HEADER_SIZE + max_capacity as usize * ENTRY_SIZE;
        let words = (0..len / 8).map(|_| AtomicU64::new(0)).collect();
        let b = Buf { words, len };
        b.view().initialize(capacity).unwrap();
        b
    }

    fn base(&self) -> *mut u8 {
        self.words.as_ptr() as *mut u8
    }
}

impl RingMemory for Buf {
    fn view(&self) -> RingView<'_> {
        // SAFETY: `words` is 8-aligned, `len` bytes long and owned by `self` for the view's lifetime;
        // every access to it is atomic with the layout's field sizes (views and the scribbler).
        unsafe { RingView::from_raw_parts(self.base(), self.len) }.unwrap()
    }
}

/// What one round's threads share.
#[derive(Default)]
struct Shared {
    /// Regions that may be in the ring: region index → (address, size).
    entered: Mutex<HashMap<u64, (u64, u64)>>,
    /// The producer is done (or a worker died): the reclaimer drains and everyone stops.
    stop: AtomicBool,
    /// The scribbler has spent its budget (set from the start when there is none).
    scribbled: AtomicBool,
    reclaimer_calls: AtomicU64,
}

#[derive(Default, Debug)]
struct ProducerOut {
    steps: u64,
    entered: u64,
    given_back: Vec<u64>,
    errors: HashMap<&'static str, u64>,
}

#[derive(Default, Debug)]
struct ConsumerOut {
    calls: u64,
    reclaimed: Vec<u64>,
    skipped: u64,
    poisoned: bool,
}

fn error_name(e: ReclaimError) -> &'static str {
    match e {
        ReclaimError::InvalidRing => "InvalidRing",
        ReclaimError::InvalidId => "InvalidId",
        ReclaimError::InvalidArgument => "InvalidArgument",
        _ => "other",
    }
}

/// Whether a producer error is one the scribbles of this round can explain.
fn explained(kind: Option<Kind>, e: ReclaimError) -> bool {
    match (kind, e) {
        (None, _) => false,
        (Some(Kind::Entries), ReclaimError::InvalidId | ReclaimError::InvalidArgument) => true,
        (Some(Kind::Anything), ReclaimError::InvalidId | ReclaimError::InvalidArgument) => true,
        (Some(Kind::Anything), ReclaimError::InvalidRing) => true,
        _ => false,
    }
}

fn producer(
    mut p: Producer<Arc<Buf>>,
    sh: Arc<Shared>,
    beat: Arc<Beat>,
    kind: Option<Kind>,
    seed: u64,
    first_region: u64,
) -> ProducerOut {
    let _stop = SetOnDrop(&sh.stop);
    let mut rng = Rng::new(seed);
    let mut out = ProducerOut::default();
    let mut live: Vec<(ReclaimId, u64, u64, Action)> = Vec::new();
    let mut holes: Vec<ReclaimId> = Vec::new();
    let mut next = first_region;
    let note = |out: &mut ProducerOut, e: ReclaimError, what: &str| {
        assert!(explained(kind, e), "{what}: {e:?} on a ring scribbled {kind:?}");
        *out.errors.entry(error_name(e)).or_default() += 1;
    };
    while out.steps < MAX_STEPS
        && (out.steps < STEPS
            || !sh.scribbled.load(Ordering::Acquire)
            || sh.reclaimer_calls.load(Ordering::Relaxed) < MIN_RECLAIMER_CALLS)
    {
        out.steps += 1;
        let r = rng.next();
        match r % 10 {
            0..=4 => {
                let k = next;
                next += 1;
                let offset = if r & 0x100 == 0 { 0 } else { (r >> 20) % PAGE };
                // At least two pages, so even an unaligned region holds a whole one (nothing skipped).
                let (addr, size) = (k * STRIDE + offset, PAGE * (2 + (r >> 9) % 3) + (r >> 40) % 64);
                let action = if r & 0x200 == 0 { Action::Free } else { Action::Deallocate };
                let reuse = if (r >> 12).is_multiple_of(4) { holes.pop() } else { None };
                sh.entered.lock().unwrap().insert(k, (addr, size));
                match beat.call(|| p.try_enter(addr, size, action, reuse)) {
                    Ok(e) if e.id.is_some() => {
                        out.entered += 1;
                        live.push((e.id.unwrap(), addr, size, action));
                    }
                    res => {
                        // Not written into the ring: a reclaim of it would come from nowhere.
                        sh.entered.lock().unwrap().remove(&k);
                        if let Err(e) = res {
                            note(&mut out, e, "try_enter");
                        }
                    }
                }
            }
            5..=7 if !live.is_empty() => {
                let (id, addr, size, action) = live.swap_remove((r >> 8) as usize % live.len());
                match beat.call(|| p.try_cancel(id, addr, size, action)) {
                    Ok(c) if c.state == ReclaimState::Unreclaimed => {
                        holes.push(id);
                        out.given_back.push(addr / STRIDE);
                    }
                    Ok(_) => {}
                    Err(e) => note(&mut out, e, "try_cancel"),
                }
            }
            8 if !live.is_empty() => {
                let (id, _, _, action) = live[(r >> 8) as usize % live.len()];
                if let Err(e) = beat.call(|| p.query_state(id, action)) {
                    note(&mut out, e, "query_state");
                }
            }
            _ => {
                let _ = beat.call(|| (p.len(), p.uncancelled_bytes(), p.accounting_report()));
            }
        }
    }
    out
}

fn consumer(mut c: Consumer<Arc<Buf>>, sh: Arc<Shared>, beat: Arc<Beat>, seed: u64) -> ConsumerOut {
    let mut rng = Rng::new(seed);
    let mut out = ConsumerOut::default();
    loop {
        let last = sh.stop.load(Ordering::Acquire);
        let r = rng.next();
        let poisoned = out.poisoned;
        let mut got = Vec::new();
        let mut cb = |start: u64, len: u64, _: Action| {
            assert!(!poisoned, "the reclaimer followed a ring it had found corrupted");
            assert!(
                start.is_multiple_of(PAGE) && len.is_multiple_of(PAGE) && len > 0,
                "[{start:#x}, +{len:#x}) not whole pages"
            );
            let k = start / STRIDE;
            let inside = sh
                .entered
                .lock()
                .unwrap()
                .get(&k)
                .is_some_and(|&(a, s)| start >= a && start.checked_add(len).is_some_and(|e| e <= a + s));
            assert!(inside, "reclaimed [{start:#x}, +{len:#x}), outside every region the producer entered");
            got.push(k);
            if r.is_multiple_of(16) { Err(()) } else { Ok(()) }
        };
        let res = beat.call(|| {
            if last || r & 0x3e00 == 0 {
                c.drain(&mut cb)
            } else if r & 0x100 == 0 {
                c.reclaim_chunk(1 + (r >> 9) as u32 % 20, &mut cb)
            } else {
                c.flush(1 + (r >> 9) % 64, &mut cb)
            }
        });
        out.calls += 1;
        sh.reclaimer_calls.fetch_add(1, Ordering::Relaxed);
        out.reclaimed.extend(got.iter().copied());
        match res {
            Ok(rep) => {
                assert!(!poisoned, "a poisoned ring answered Ok");
                out.skipped += rep.skipped;
                if rep.processed() == 0 {
                    thread::yield_now();
                }
            }
            Err(e) => {
                assert_eq!(e, ReclaimError::InvalidRing, "a reclaimer error other than InvalidRing");
                assert!(c.is_poisoned(), "InvalidRing without poisoning");
                out.poisoned = true;
                thread::yield_now();
            }
        }
        if last {
            return out;
        }
    }
}

/// What a worker thread hands back.
enum Out {
    Producer(ProducerOut),
    Consumer(ConsumerOut),
    Scribbler([u64; OPS.len()]),
}

#[derive(Default)]
struct Totals {
    steps: u64,
    consumer_calls: u64,
    scribbles: [u64; OPS.len()],
    reclaimed: u64,
    skipped: u64,
    poisoned_rounds: u64,
    errors: HashMap<&'static str, u64>,
    longest_ns: u64,
}

fn round(n: u64, kind: Option<Kind>, t: &mut Totals) {
    let mut rng = Rng::new(0x5DEE_CE66_D1CE_4E5B ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let capacity = 1 + rng.below(40) as u32;
    let max_capacity = capacity + rng.below(4) as u32;
    let buf = Arc::new(Buf::new(capacity, max_capacity));
    let p = Producer::attach(buf.clone(), PAGE).unwrap();
    let c = Consumer::attach(buf.clone(), PAGE).unwrap();
    let sh = Arc::new(Shared::default());
    sh.scribbled.store(kind.is_none(), Ordering::Release);
    let (pb, cb, sb) = (Arc::new(Beat::default()), Arc::new(Beat::default()), Arc::new(Beat::default()));
    // The scribbler's copy of the check must be the ring's: an honest entry passes it.
    // SAFETY: `buf` is a ring of `max_capacity` entries, alive for this scribbler's (short) life.
    let probe = unsafe { Scribbler::new(buf.base(), max_capacity, Kind::Entries, 1) };
    let mut p = p;
    p.try_enter(0x10_0000, PAGE, Action::Free, None).unwrap().id.unwrap();
    assert!(probe.slot_is_intact(0), "the scribbler's entry check differs from the ring's");
    let id = ReclaimId(0);
    assert_eq!(p.try_cancel(id, 0x10_0000, PAGE, Action::Free).unwrap().state, ReclaimState::Unreclaimed);

    let first = (n + 1) << 16;
    let mut handles = Vec::new();
    let seed = rng.next();
    handles.push({
        let (sh, pb) = (sh.clone(), pb.clone());
        thread::spawn(move || Out::Producer(producer(p, sh, pb, kind, seed, first)))
    });
    let seed = rng.next();
    handles.push({
        let (sh, cb) = (sh.clone(), cb.clone());
        thread::spawn(move || Out::Consumer(consumer(c, sh, cb, seed)))
    });
    if let Some(kind) = kind {
        let budget = if kind == Kind::Entries { 64 + rng.below(512) } else { 1 + rng.below(48) };
        // SAFETY: `buf` outlives the scribbler thread: the thread holds a clone of the `Arc`.
        let mut s = unsafe { Scribbler::new(buf.base(), max_capacity, kind, rng.next()) };
        let (sh, sb, buf) = (sh.clone(), sb.clone(), buf.clone());
        handles.push(thread::spawn(move || {
            let _buf = buf;
            let _done = SetOnDrop(&sh.scribbled);
            let mut done = 0;
            while done < budget && !sh.stop.load(Ordering::Acquire) {
                s.pause();
                sb.call(|| s.scribble());
                done += 1;
            }
            Out::Scribbler(s.counts)
        }));
    }
    let what = format!("round {n} ({kind:?}, capacity {capacity})");
    let outs = watch(&what, handles, &[("producer", &pb), ("reclaimer", &cb), ("scribbler", &sb)], &sh.stop);
    let (mut pout, mut cout) = (None, None);
    for o in outs {
        match o {
            Out::Producer(p) => pout = Some(p),
            Out::Consumer(c) => cout = Some(c),
            Out::Scribbler(counts) => {
                for (t, c) in t.scribbles.iter_mut().zip(counts) {
                    *t += c;
                }
            }
        }
    }
    let (pout, cout) = (pout.unwrap(), cout.unwrap());

    if kind.is_none() {
        // The protocol's own promises, which only an honest ring keeps.
        assert!(pout.errors.is_empty(), "{what}: errors on an honest ring: {:?}", pout.errors);
        assert!(!cout.poisoned && cout.skipped == 0, "{what}: the honest ring was poisoned or skipped");
        let set: HashSet<u64> = cout.reclaimed.iter().copied().collect();
        assert_eq!(set.len(), cout.reclaimed.len(), "{what}: a region reclaimed twice");
        for k in &pout.given_back {
            assert!(!set.contains(k), "{what}: region {k} given back by a cancel and reclaimed");
        }
        assert_eq!(set.len() as u64, pout.entered - pout.given_back.len() as u64, "{what}: entries lost");
    }
    if kind == Some(Kind::Entries) {
        assert!(!cout.poisoned, "{what}: the reclaimer poisoned a ring whose header was never touched");
        assert!(!pout.errors.contains_key("InvalidRing"), "{what}: InvalidRing with an honest header");
    }
    t.steps += pout.steps;
    t.consumer_calls += cout.calls;
    t.reclaimed += cout.reclaimed.len() as u64;
    t.skipped += cout.skipped;
    t.poisoned_rounds += u64::from(cout.poisoned);
    for (k, v) in pout.errors {
        *t.errors.entry(k).or_default() += v;
    }
    for b in [&pb, &cb] {
        t.longest_ns = t.longest_ns.max(b.longest_ns.load(Ordering::Relaxed));
    }
}

/// The family: honest rounds, rounds that scribble only entries, rounds that scribble anything.
#[test]
fn hostile_rings_never_hang_and_never_reclaim_outside_the_entered_regions() {
    let start = Instant::now();
    let mut t = Totals::default();
    for n in 0..ROUNDS {
        let kind = match n % 8 {
            0 => None,
            1..=3 => Some(Kind::Entries),
            _ => Some(Kind::Anything),
        };
        round(n, kind, &mut t);
    }
    let per_op: Vec<String> = OPS.iter().zip(t.scribbles).map(|(o, n)| format!("{o} {n}")).collect();
    eprintln!(
        "hostile rings: {ROUNDS} rounds, {} producer steps, {} reclaimer calls, {} scribbles ({}), \
         {} reclaimed, {} skipped, {} rounds poisoned, producer errors {:?}, longest call {:?}, {:?} in all",
        t.steps,
        t.consumer_calls,
        t.scribbles.iter().sum::<u64>(),
        per_op.join(", "),
        t.reclaimed,
        t.skipped,
        t.poisoned_rounds,
        t.errors,
        std::time::Duration::from_nanos(t.longest_ns),
        start.elapsed()
    );
    assert!(t.poisoned_rounds > 0, "no round found a corrupted header: the scribbler is not reaching it");
    assert!(t.skipped > 0, "no scribbled entry was ever skipped: the scribbler is not reaching the entries");
}
