//! Shared by the hostile-ring tests of both crates (`vmspace-core/tests/reclaim_hostile.rs` and
//! `vmspace/tests/reclaim_hostile.rs`, which includes this file by path): a scribbler that writes random
//! values into a ring's shared memory, and a watchdog that fails a test whose calls stop returning
//! instead of letting it hang.
//!
//! Invariant: every scribble is one atomic access of the field's own size at the field's own offset
//! (the layout table in `vmspace_core::reclaim`'s `layout.rs`), so the scribbler races the ring's
//! parties without a data race and without mixed-size accesses. An entry it writes never passes the
//! entry check unless it copies another slot (an entry some producer wrote): its own inventions carry a
//! check that is wrong on purpose, and its byte flips change one byte, which the check always catches,
//! as it catches two or three flips that meet in one entry (`entry_check`: distance 4). So a reclaim
//! outside the entered regions is the ring's fault, not the scribbler's luck (short of four or more
//! scribbles meeting in one entry, a 2^-24 chance each time).

#![allow(dead_code)]

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmspace_core::reclaim::entry_check;

/// How long one call may run before the watchdog calls it hung. Generous: it detects a wait that does
/// not end; it measures nothing.
pub const HANG: Duration = Duration::from_secs(10);

/// Header size and entry size of the layout.
pub const HEADER: usize = 64;
pub const ENTRY: usize = 16;

/// xorshift64: reproducible and cheap.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in `0..n` (`0` for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// What a scribbler may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Entries only: the header stays honest, so nobody may answer `InvalidRing`.
    Entries,
    /// Any header field and any entry.
    Anything,
}

/// The scribble operations, for the tally.
pub const OPS: [&str; 12] = [
    "index copy",
    "index nudge",
    "index random",
    "capacity",
    "magic/version",
    "accounting",
    "reserved",
    "entry byte flip",
    "entry hole",
    "entry invented",
    "entry copy",
    "entry random field",
];

/// Writes random values into one ring's shared memory.
pub struct Scribbler {
    base: usize,
    max_capacity: u32,
    kind: Kind,
    rng: Rng,
    /// How many scribbles of each of [`OPS`].
    pub counts: [u64; OPS.len()],
}

impl Scribbler {
    /// A scribbler over the ring at `base` whose entry region holds `max_capacity` entries.
    ///
    /// # Safety
    ///
    /// `base..base + 64 + 16 * max_capacity` must be 8-aligned, valid for reads and writes for as long as
    /// the scribbler is used, and accessed by everybody else only atomically with the layout's field
    /// sizes (what a `RingView` does).
    pub unsafe fn new(base: *mut u8, max_capacity: u32, kind: Kind, seed: u64) -> Scribbler {
        Scribbler { base: base as usize, max_capacity, kind, rng: Rng::new(seed), counts: [0; OPS.len()] }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        // SAFETY: `off` is an 8-aligned offset of a u64 field inside the range `new` was given, which
        // every party accesses atomically as a u64 (the layout); valid while the scribbler is used.
        unsafe { AtomicU64::from_ptr((self.base + off) as *mut u64) }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as in `u64_at`, for a 4-aligned u32 field.
        unsafe { AtomicU32::from_ptr((self.base + off) as *mut u32) }
    }

    fn u8_at(&self, off: usize) -> &AtomicU8 {
        // SAFETY: as in `u64_at`, for a u8 field.
        unsafe { AtomicU8::from_ptr((self.base + off) as *mut u8) }
    }

    fn index_off(&mut self) -> usize {
        [24, 32, 40][self.rng.below(3) as usize]
    }

    fn slot_off(&mut self) -> usize {
        HEADER + ENTRY * self.rng.below(self.max_capacity as u64) as usize
    }

    /// One scribble, chosen at random among those `kind` allows; returns its index in [`OPS`].
    pub fn scribble(&mut self) -> usize {
        let op = match self.kind {
            Kind::Entries => 7 + self.rng.below(5) as usize,
            Kind::Anything => {
                // Weighted toward the plausible-looking header values, which get furthest.
                const W: [u64; OPS.len()] = [6, 6, 1, 1, 1, 2, 1, 3, 2, 2, 2, 1];
                let mut r = self.rng.below(W.iter().sum());
                let mut i = 0;
                while r >= W[i] {
                    r -= W[i];
                    i += 1;
                }
                i
            }
        };
        let cap = self.max_capacity as u64;
        match op {
            0 => {
                let (dst, src) = (self.index_off(), self.index_off());
                let d = self.rng.below(3) as i64 - 1;
                let v = self.u64_at(src).load(Ordering::Relaxed).wrapping_add(d as u64);
                self.u64_at(dst).store(v, Ordering::Relaxed);
            }
            1 => {
                let off = self.index_off();
                let d = self.rng.below(2 * cap + 5) as i64 - cap as i64 - 2;
                let a = self.u64_at(off);
                a.store(a.load(Ordering::Relaxed).wrapping_add(d as u64), Ordering::Relaxed);
            }
            2 => {
                let (off, v) = (self.index_off(), self.rng.next());
                self.u64_at(off).store(v, Ordering::Relaxed);
            }
            3 => {
                let off = if self.rng.below(2) == 0 { 16 } else { 20 };
                let v = self.rng.below(2 * cap + 2) as u32;
                self.u32_at(off).store(v, Ordering::Relaxed);
            }
            4 => {
                let off = if self.rng.below(2) == 0 { 48 } else { 52 };
                let bit = 1u32 << self.rng.below(32);
                self.u32_at(off).fetch_xor(bit, Ordering::Relaxed);
            }
            5 => {
                let off = if self.rng.below(2) == 0 { 0 } else { 8 };
                let v = [0, u64::MAX, self.rng.next(), self.rng.below(1 << 20)][self.rng.below(4) as usize];
                self.u64_at(off).store(v, Ordering::Relaxed);
            }
            6 => {
                let v = self.rng.next();
                self.u64_at(56).store(v, Ordering::Relaxed);
            }
            7 => {
                // One byte of the sixteen, flipped in place (an atomic xor of the field it lies in).
                let slot = self.slot_off();
                let byte = self.rng.below(16) as usize;
                let mask = 1 + self.rng.below(255);
                match byte {
                    0..=7 => {
                        self.u64_at(slot).fetch_xor(mask << (8 * byte), Ordering::Relaxed);
                    }
                    8..=11 => {
                        self.u32_at(slot + 8).fetch_xor((mask as u32) << (8 * (byte - 8)), Ordering::Relaxed);
                    }
                    _ => {
                        self.u8_at(slot + byte).fetch_xor(mask as u8, Ordering::Relaxed);
                    }
                }
            }
            8 => {
                let slot = self.slot_off();
                self.write_entry(slot, 0, 0, 0, 0);
            }
            9 => {
                // An invented entry whose check is wrong on purpose: it must be skipped.
                let slot = self.slot_off();
                let address = match self.rng.below(3) {
                    0 => self.rng.next(),
                    1 => self.rng.below(1 << 40) << 12,
                    _ => 0,
                };
                let size = self.rng.next() as u32;
                let action = self.rng.below(4) as u8;
                let check = entry_check(address, size, action) ^ (1 + self.rng.below(0xFF_FFFF) as u32);
                self.write_entry(slot, address, size, action, check & 0xFF_FFFF);
            }
            10 => {
                let (from, to) = (self.slot_off(), self.slot_off());
                let (a, s, act) = (
                    self.u64_at(from).load(Ordering::Relaxed),
                    self.u32_at(from + 8).load(Ordering::Relaxed),
                    self.u8_at(from + 12).load(Ordering::Relaxed),
                );
                let c = u32::from_le_bytes([
                    self.u8_at(from + 13).load(Ordering::Relaxed),
                    self.u8_at(from + 14).load(Ordering::Relaxed),
                    self.u8_at(from + 15).load(Ordering::Relaxed),
                    0,
                ]);
                self.write_entry(to, a, s, act, c);
            }
            _ => {
                // A whole field replaced: the check catches it unless the new value happens to fit
                // (a 2^-24 chance for the address, none for the one-byte action).
                let slot = self.slot_off();
                if self.rng.below(2) == 0 {
                    let v = self.rng.below(4) as u8;
                    self.u8_at(slot + 12).store(v, Ordering::Relaxed);
                } else {
                    let v = self.rng.next() as u32;
                    let old = self.u32_at(slot + 8).load(Ordering::Relaxed);
                    // Keep it one byte away from what was there: always caught.
                    let byte = self.rng.below(4) as u32;
                    let new = (old & !(0xFF << (8 * byte))) | (v & (0xFF << (8 * byte)));
                    let new = if new == old { old ^ (1 << (8 * byte)) } else { new };
                    let _ = self.u32_at(slot + 8).compare_exchange(
                        old,
                        new,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
        }
        self.counts[op] += 1;
        op
    }

    fn write_entry(&self, slot: usize, address: u64, size: u32, action: u8, check: u32) {
        self.u64_at(slot).store(address, Ordering::Relaxed);
        self.u32_at(slot + 8).store(size, Ordering::Relaxed);
        self.u8_at(slot + 12).store(action, Ordering::Relaxed);
        let [b0, b1, b2, _] = check.to_le_bytes();
        self.u8_at(slot + 13).store(b0, Ordering::Relaxed);
        self.u8_at(slot + 14).store(b1, Ordering::Relaxed);
        self.u8_at(slot + 15).store(b2, Ordering::Relaxed);
    }

    /// Whether slot `i` holds an entry whose check bytes match this file's [`entry_check`].
    pub fn slot_is_intact(&self, i: u32) -> bool {
        let slot = HEADER + ENTRY * i as usize;
        let c = u32::from_le_bytes([
            self.u8_at(slot + 13).load(Ordering::Relaxed),
            self.u8_at(slot + 14).load(Ordering::Relaxed),
            self.u8_at(slot + 15).load(Ordering::Relaxed),
            0,
        ]);
        let (a, s, act) = (
            self.u64_at(slot).load(Ordering::Relaxed),
            self.u32_at(slot + 8).load(Ordering::Relaxed),
            self.u8_at(slot + 12).load(Ordering::Relaxed),
        );
        c == entry_check(a, s, act)
    }

    /// Wait a random while (spinning, now and then yielding), so scribbles land at random points of the
    /// other parties' calls.
    pub fn pause(&mut self) {
        let shift = self.rng.below(15);
        let spins = self.rng.below(1 << shift);
        for i in 0..spins {
            if i % 4096 == 4095 {
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        if self.rng.below(8) == 0 {
            std::thread::yield_now();
        }
    }
}

/// One worker's heartbeat: whether it is inside a call, since when, and the longest call so far.
#[derive(Default)]
pub struct Beat {
    since: AtomicU64,
    pub calls: AtomicU64,
    pub longest_ns: AtomicU64,
}

fn now_ns() -> u64 {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

impl Beat {
    /// Run `f` as one watched call.
    pub fn call<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = now_ns();
        self.since.store(t, Ordering::Relaxed);
        let r = f();
        let d = now_ns() - t;
        self.since.store(0, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.longest_ns.fetch_max(d, Ordering::Relaxed);
        r
    }

    /// How long the call in progress has run, if one is.
    fn running(&self) -> Option<Duration> {
        let s = self.since.load(Ordering::Relaxed);
        (s != 0).then(|| Duration::from_nanos(now_ns().saturating_sub(s)))
    }
}

/// Sets the flag when dropped (also when a worker unwinds), so the others stop too.
pub struct SetOnDrop<'a>(pub &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Wait for the workers, failing the test (without waiting for them) if one of `beats` shows a call
/// that has run for more than [`HANG`]. A worker's panic is passed on once every worker has ended
/// (`stop` tells the others to end).
pub fn watch<T>(
    what: &str,
    handles: Vec<JoinHandle<T>>,
    beats: &[(&str, &Beat)],
    stop: &AtomicBool,
) -> Vec<T> {
    loop {
        for (name, b) in beats {
            if let Some(d) = b.running().filter(|d| *d > HANG) {
                panic!("{what}: a {name} call has not returned for {d:?}: an unbounded wait");
            }
        }
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        if handles.iter().any(|h| h.is_finished()) {
            // Maybe a panic: let the rest wind down rather than wait for a stop that never comes.
            stop.store(true, Ordering::Release);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut out = Vec::new();
    let mut panic: Option<Box<dyn Any + Send>> = None;
    for h in handles {
        match h.join() {
            Ok(v) => out.push(v),
            Err(p) => {
                panic.get_or_insert(p);
            }
        }
    }
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
    out
}
