//! A kernel fact probed once: the cell `features` and the probes of `mm.rs` and `pagemap.rs` keep
//! their answer in.
//!
//! Invariant: once a probe ran, every later read returns its answer without probing again; a probe
//! that could not run leaves the cell unknown.

use std::sync::atomic::{AtomicU32, Ordering};

/// A fact about this kernel, probed once it can be. A probe that could not run (its scratch mapping
/// refused at `vm.max_map_count` or `RLIMIT_AS`) is not remembered, so a later call probes again; and
/// reading never waits for another thread (a lock here could be inherited half-held by a fork child).
/// Concurrent first calls may each probe; they find the same.
pub(crate) struct Probed(AtomicU32);

impl Probed {
    const KNOWN: u32 = 1 << 31;

    pub(crate) const fn new() -> Probed {
        Probed(AtomicU32::new(0))
    }

    /// The fact (below bit 31), probing for it if it is not known yet; `None` if the probe could not run.
    pub(crate) fn get(&self, probe: impl FnOnce() -> Option<u32>) -> Option<u32> {
        let v = self.0.load(Ordering::Acquire);
        if v & Self::KNOWN != 0 {
            return Some(v & !Self::KNOWN);
        }
        let found = probe()?;
        self.0.store(found | Self::KNOWN, Ordering::Release);
        Some(found)
    }
}
