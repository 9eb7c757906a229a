//! The reclaiming side as a thread (xnu's pageout GC pass `RECLAIM_GC_TRIM`, and `RECLAIM_GC_DRAIN`
//! under pressure): wakes every tick, reads memory pressure, and runs each ring's policy.
//!
//! Invariant: the thread holds rings only weakly between passes, so dropping a ring is never delayed
//! past the pass in progress, and it works a ring only under that ring's reclaim lock, so it never runs
//! beside a synchronous `flush`, `resize` or accounting trim of the same ring. The thread exists only
//! in the process that spawned it: a fork child's copy of a `Reclaimer` is inert (no thread, nothing to
//! join) and never touches the child's memory.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pressure::PressureSource;
use super::ring::RingCore;

/// How a [`Reclaimer`] runs.
pub struct ReclaimerConfig {
    /// Time between passes (each pass runs every attached ring's [`Policy`](super::Policy)). Also the
    /// precision of `max_age`. Default 100 ms.
    pub tick: Duration,
    /// Where pressure readings come from; `None` ignores pressure. Default: [`super::pressure::detect`].
    pub pressure: Option<Box<dyn PressureSource>>,
    /// Pressure (PSI `some avg10`, percent) at or above which a pass trims aggressively. Default 10.
    pub pressure_threshold: f64,
    /// Under pressure each ring is trimmed down to this many reclaimable bytes (0, the default, drains it:
    /// xnu's `RECLAIM_GC_DRAIN` before a jetsam kill).
    pub pressure_floor: u64,
}

impl Default for ReclaimerConfig {
    fn default() -> Self {
        ReclaimerConfig {
            tick: Duration::from_millis(100),
            pressure: super::pressure::detect(),
            pressure_threshold: 10.0,
            pressure_floor: 0,
        }
    }
}

impl std::fmt::Debug for ReclaimerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReclaimerConfig")
            .field("tick", &self.tick)
            .field("pressure", &self.pressure.is_some())
            .field("pressure_threshold", &self.pressure_threshold)
            .field("pressure_floor", &self.pressure_floor)
            .finish()
    }
}

/// What a reclaimer thread has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimerStats {
    /// Passes completed.
    pub passes: u64,
    /// Passes that found pressure at or above the threshold.
    pub pressure_passes: u64,
    /// Entries reclaimed by this thread.
    pub reclaimed: u64,
    /// Entered bytes reclaimed by this thread.
    pub bytes: u64,
    /// Rings attached and still alive at the last pass.
    pub rings: u64,
}

#[derive(Default)]
struct Shared {
    rings: Mutex<Vec<Weak<RingCore>>>,
    stop: Mutex<bool>,
    wake: Condvar,
    passes: AtomicU64,
    pressure_passes: AtomicU64,
    reclaimed: AtomicU64,
    bytes: AtomicU64,
    live: AtomicU64,
    kick: AtomicU64,
}

/// A reclaimer thread serving any number of rings (the kernel's side of `vm_reclaim`, which in xnu is
/// the pageout GC thread plus the scavenger). Rings join with
/// [`ReclaimRing::attach`](super::ReclaimRing::attach) or the builder's `reclaimer`.
///
/// Dropping it stops and joins the thread. In a fork child the thread does not exist: the child's copy
/// is inert (dropping it does nothing, attaching to it fails with `NotSupported`), and the child starts
/// its own `Reclaimer` if it wants background reclaim.
pub struct Reclaimer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    pid: u32,
}

impl std::fmt::Debug for Reclaimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reclaimer").field("pid", &self.pid).field("stats", &self.stats()).finish()
    }
}

impl Reclaimer {
    /// Start a reclaimer thread (named `vm-reclaim`).
    pub fn spawn(config: ReclaimerConfig) -> io::Result<Reclaimer> {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("vm-reclaim".into()).spawn(move || run(&s, config))?;
        Ok(Reclaimer { shared, thread: Some(thread), pid: std::process::id() })
    }

    /// What the thread has done so far.
    pub fn stats(&self) -> ReclaimerStats {
        let s = &self.shared;
        ReclaimerStats {
            passes: s.passes.load(Ordering::Acquire),
            pressure_passes: s.pressure_passes.load(Ordering::Relaxed),
            reclaimed: s.reclaimed.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            rings: s.live.load(Ordering::Relaxed),
        }
    }

    /// Run a pass now instead of at the next tick.
    pub fn wake(&self) {
        self.shared.kick.fetch_add(1, Ordering::Relaxed);
        let _g = self.shared.stop.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.wake.notify_all();
    }

    /// Wait until at least one full pass has started and finished after this call (or `timeout`):
    /// returns whether it did.
    pub fn wait_pass(&self, timeout: Duration) -> bool {
        let target = self.shared.passes.load(Ordering::Acquire) + 2;
        let deadline = Instant::now() + timeout;
        self.wake();
        while self.shared.passes.load(Ordering::Acquire) < target {
            if Instant::now() >= deadline || self.thread.is_none() || self.is_inherited() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
            self.wake();
        }
        true
    }

    /// Whether this is a fork child's inert copy.
    pub fn is_inherited(&self) -> bool {
        self.pid != std::process::id()
    }

    pub(crate) fn add(&self, core: &Arc<RingCore>) -> bool {
        if self.is_inherited() {
            return false;
        }
        let mut rings = self.shared.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings.retain(|w| w.strong_count() > 0);
        rings.push(Arc::downgrade(core));
        true
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        let Some(t) = self.thread.take() else { return };
        if self.is_inherited() {
            // The thread is the parent's; in this process there is nothing to stop or join.
            std::mem::forget(t);
            return;
        }
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        let _ = t.join();
    }
}

fn run(s: &Shared, mut config: ReclaimerConfig) {
    let mut seen_kick = 0;
    loop {
        {
            let g = s.stop.lock().unwrap_or_else(|e| e.into_inner());
            let (g, _) = s
                .wake
                .wait_timeout_while(g, config.tick, |stop| {
                    !*stop && s.kick.load(Ordering::Relaxed) == seen_kick
                })
                .unwrap_or_else(|e| e.into_inner());
            if *g {
                return;
            }
        }
        seen_kick = s.kick.load(Ordering::Relaxed);
        let pressure = config.pressure.as_mut().and_then(|p| p.read());
        let under = pressure.is_some_and(|p| p >= config.pressure_threshold);
        if under {
            s.pressure_passes.fetch_add(1, Ordering::Relaxed);
        }
        let rings: Vec<Arc<RingCore>> = {
            let mut r = s.rings.lock().unwrap_or_else(|e| e.into_inner());
            r.retain(|w| w.strong_count() > 0);
            r.iter().filter_map(Weak::upgrade).collect()
        };
        s.live.store(rings.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        for core in rings {
            let mut st = core.lock();
            let r = if under {
                core.trim_to(&mut st, config.pressure_floor)
            } else {
                core.run_policy(&mut st, now)
            };
            if let Ok(r) = r {
                s.reclaimed.fetch_add(r.reclaimed, Ordering::Relaxed);
                s.bytes.fetch_add(r.bytes, Ordering::Relaxed);
            }
        }
        s.passes.fetch_add(1, Ordering::Release);
    }
}
