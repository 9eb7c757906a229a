//! The one ring of the process behind the C handle, its lock, its reclaimer thread and its fork hooks.
//!
//! Invariant: `RING` is `Some` from the first successful `mach_vm_reclaim_ring_allocate` on, for the
//! life of the process (the seed has no call that destroys a ring; xnu frees it with the task), and
//! every call works on it only under `RING`'s lock. That lock is taken before every `fork(2)` and
//! released after it on both sides (`pthread_atfork`), so a child never inherits it held by a thread it
//! does not have, and no call is inside the ring when the child's copy is made. A child's first call
//! starts a reclaimer thread of its own (the parent's does not exist in the child).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use vms::reclaim::{Policy, ReclaimRing, Reclaimer, ReclaimerConfig, WorkingSet};

use crate::abi::{MachError, VM_RECLAIM_INVALID_RING};

/// The ring and its kernel side.
pub(crate) struct Ring {
    /// The handle C holds: the address of the ring's memory (stable: mapped for the maximum capacity).
    pub(crate) handle: usize,
    pub(crate) ring: ReclaimRing,
    reclaimer: Option<Reclaimer>,
}

static RING: Mutex<Option<Ring>> = Mutex::new(None);

/// Set by the fork child hook: the child's first call attaches a reclaimer thread of its own.
static FORKED: AtomicBool = AtomicBool::new(false);

fn lock() -> MutexGuard<'static, Option<Ring>> {
    RING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Environment knobs (read once at allocate, with no allocation of note).
fn env_ms(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// The reclaimer thread's configuration: xnu macOS's working-set trim (1 s sampling period, autotrim
/// at 10 % of the peak footprint) and a drain under memory pressure. `VMSPACE_RECLAIM_PERIOD_MS`
/// changes the period (0: no background trim), `VMSPACE_RECLAIM_PRESSURE=0` ignores pressure,
/// `VMSPACE_RECLAIM_MIN_TRIM` fixes the smallest trim in bytes.
fn kernel_side() -> (Policy, ReclaimerConfig) {
    let period = env_ms("VMSPACE_RECLAIM_PERIOD_MS").unwrap_or(1000);
    let working_set = (period > 0).then(|| WorkingSet {
        period: Duration::from_millis(period),
        min_trim: env_ms("VMSPACE_RECLAIM_MIN_TRIM"),
        ..WorkingSet::default()
    });
    let tick = Duration::from_millis((period / 4).clamp(10, 100));
    let mut config = ReclaimerConfig { tick, ..ReclaimerConfig::default() };
    if env_ms("VMSPACE_RECLAIM_PRESSURE") == Some(0) {
        config.pressure = None;
    }
    (Policy { working_set, ..Policy::default() }, config)
}

/// `mach_vm_reclaim_ring_allocate`: the process's ring, served by a new reclaimer thread.
pub(crate) fn allocate(initial: u32, max: u32) -> Result<usize, MachError> {
    let mut g = lock();
    if g.is_some() {
        return Err(crate::abi::VM_RECLAIM_RESOURCE_SHORTAGE);
    }
    let (policy, config) = kernel_side();
    // A ring without its thread still works (flush, resize and accounting reclaim synchronously).
    let reclaimer = Reclaimer::spawn(config).ok();
    let mut b = ReclaimRing::builder().capacity(initial, max).policy(policy).process_wide();
    if let Some(r) = reclaimer.as_ref() {
        b = b.reclaimer(r);
    }
    let ring = b.build().map_err(crate::abi::code)?;
    let handle = ring.ring_range().start as usize;
    *g = Some(Ring { handle, ring, reclaimer });
    watch_forks();
    Ok(handle)
}

/// Run `f` on the ring named by `handle` under the lock; any other handle is `VM_RECLAIM_INVALID_RING`
/// (nothing is read through it).
pub(crate) fn with<T>(
    handle: usize,
    f: impl FnOnce(&mut ReclaimRing) -> Result<T, MachError>,
) -> Result<T, MachError> {
    let mut g = lock();
    let Some(r) = g.as_mut().filter(|r| r.handle == handle && handle != 0) else {
        return Err(VM_RECLAIM_INVALID_RING);
    };
    if FORKED.swap(false, Ordering::Relaxed) {
        // The child's kernel side: a thread of its own (the parent's copy is inert here).
        let (_, config) = kernel_side();
        if let Ok(t) = Reclaimer::spawn(config)
            && r.ring.attach(&t).is_ok()
        {
            // The parent's inert copy is forgotten, not dropped: it has no thread here to join.
            if let Some(old) = r.reclaimer.replace(t) {
                std::mem::forget(old);
            }
        }
    }
    f(&mut r.ring)
}

// ---- fork ----

/// The lock held across one fork by the forking thread.
struct HeldCell(UnsafeCell<Option<MutexGuard<'static, Option<Ring>>>>);
// SAFETY: written only by the thread that holds `RING` (in `prepare`) and emptied only by that thread
// (in `parent` / `child`, which run on the forking thread); other threads wait for `RING` first.
unsafe impl Sync for HeldCell {}
static HELD: HeldCell = HeldCell(UnsafeCell::new(None));

unsafe extern "C" fn prepare() {
    let g = lock();
    // SAFETY: we hold `RING` (see `HeldCell`).
    unsafe { *HELD.0.get() = Some(g) };
}

unsafe extern "C" fn parent() {
    // SAFETY: this is the forking thread, which holds `RING` and so owns the cell.
    drop(unsafe { (*HELD.0.get()).take() });
}

unsafe extern "C" fn child() {
    FORKED.store(true, Ordering::Relaxed);
    // SAFETY: as in `parent`; the forking thread is the child's only thread.
    drop(unsafe { (*HELD.0.get()).take() });
}

/// Registers the fork hooks once (with `RING` held, after the ring exists: `pthread_atfork` runs
/// prepare hooks last-registered first, so ours runs before vmspace's own).
fn watch_forks() {
    static ONCE: AtomicBool = AtomicBool::new(false);
    if !ONCE.swap(true, Ordering::Relaxed) {
        // SAFETY: the hooks follow the protocol above; registering cannot break memory safety.
        let _ = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    }
}
