//! The one pass of a call through map and kernel: plan (`plan.rs`) on the copy readers do not see,
//! the kernel step over the plan's effects as they are (`kernel.rs`), then the commit — the change
//! published to readers and repeated on the second copy — or, on a failing system call, recovery
//! (`recover.rs`) before anything is published.
//!
//! Invariant: outside `apply`, every page of the reservation has in the kernel exactly the attributes
//! the map gives it. Each effect is applied once, in the plan's order, with seals last (irrevocable
//! steps come after every step that can fail); readers see the map before the change or after it,
//! never a state the kernel does not have. The second copy is brought up to date by repeating the
//! operation without journal or effects (`VmMap::replay`; `map_with` gives it the address the first
//! copy found, so it does not search for space again); after a recovery it takes the first copy whole.

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::Ordering;

use vmspace_core::{Effect, VmError, VmMap};

use crate::backing::Backing;
use crate::error::Error;
use crate::publish::WriteGuard;

use super::kernel::Kernel;
use super::plan::{self, Failed, keep_growth_room, seal_ranges};
use super::recover::recover;
use super::shared::Shared;

impl Shared {
    /// Runs a map operation with the write lock held and applies its effects to the kernel; on a
    /// failing system call, puts the kernel back to the map as it was (or the map to the kernel where
    /// that cannot be done) before publishing anything. The operation runs again on the second copy of
    /// the map, through `VmMap::replay` (it is deterministic), so it must be `Fn`; it runs there only
    /// after it succeeded on the first. With `force`, the change is published even when the timestamp
    /// did not move (settings).
    pub(crate) fn apply<R>(
        &self,
        w: &mut WriteGuard<'_, VmMap<Backing>>,
        op: impl Fn(&mut VmMap<Backing>) -> Result<R, VmError>,
        force: bool,
    ) -> Result<R, Error> {
        let recovered = Cell::new(false);
        let stacks = self.stacks.load(Ordering::Relaxed);
        w.write(
            |m| {
                let ts = m.timestamp();
                let r = match plan::plan(m, &op, stacks) {
                    Ok(r) => r,
                    Err(e) => return (Err(Error::Vm(e)), false),
                };
                match self.apply_effects(m) {
                    Ok(()) => (Ok(r), force || m.timestamp() != ts),
                    Err((err, kept)) => {
                        // The map is back to what readers see, but where the kernel kept something.
                        let changed = !kept.is_empty();
                        recovered.set(changed);
                        (Err(err.kept(kept)), changed)
                    }
                }
            },
            |other, done| {
                if recovered.get() {
                    *other = done.clone();
                } else {
                    // The same call again, without the journal and effects the first copy kept.
                    let _ = other.replay(|m| op(m));
                }
                if stacks {
                    keep_growth_room(other);
                }
            },
        )
    }

    /// Applies the effects of the operation just run on `m`, seals last. On a failure, recovers and
    /// returns the error with the ranges the kernel kept.
    fn apply_effects(&self, m: &mut VmMap<Backing>) -> Result<(), (Error, Vec<Range<u64>>)> {
        let (err, failed) = match self.run_effects(m) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let (done, tried) = failed.done(m.effects());
        let mut quiet = Kernel::new(Some(&self.inject_recovery), self.opts, self.prot_guards());
        Err((err, recover(&mut quiet, m, &done, &tried)))
    }

    /// Makes the system calls of the plan on `m`'s list: every effect in order, as it is, then the
    /// seals (looked for only when an effect seals). Nothing here allocates or frees (the effects stay
    /// in the map's list, whose capacity is kept): the fault handler grows stacks through this path.
    fn run_effects(&self, m: &VmMap<Backing>) -> Result<(), (Error, Failed)> {
        let mut k = Kernel::new(Some(&self.inject), self.opts, self.prot_guards());
        let mut sealing = false;
        for (i, fx) in m.effects().iter().enumerate() {
            sealing |= plan::seals(fx);
            k.effect(m, fx).map_err(|e| (e, Failed::Effect(i)))?;
        }
        if sealing {
            for (j, r) in seal_ranges(m.effects()).enumerate() {
                k.seal(&r).map_err(|e| (e, Failed::Seal(j)))?;
            }
        }
        Ok(())
    }

    /// [`Shared::apply`] for the fault handler, which must not allocate even when the kernel refuses:
    /// the map is undone and each range the operation mapped goes back to reservation; nothing is
    /// read back (a refused growth leaves the range as it was but for that).
    pub(crate) fn apply_in_handler<R>(
        &self,
        w: &mut WriteGuard<'_, VmMap<Backing>>,
        op: impl Fn(&mut VmMap<Backing>) -> Result<R, VmError>,
    ) -> Result<R, Error> {
        w.write(
            |m| {
                let ts = m.timestamp();
                let r = match op(m) {
                    Ok(r) => r,
                    Err(e) => return (Err(Error::Vm(e)), false),
                };
                let err = match self.run_effects(m) {
                    Ok(()) => return (Ok(r), m.timestamp() != ts),
                    Err((err, _)) => err,
                };
                // Growth maps at most a few ranges: keep them on the stack, not the heap.
                let mut maps: [Option<Range<u64>>; 4] = [None, None, None, None];
                for (slot, fx) in
                    maps.iter_mut().zip(m.effects().iter().filter(|f| matches!(f, Effect::Map(_))))
                {
                    if let Effect::Map(e) = fx {
                        *slot = Some(e.range());
                    }
                }
                m.undo();
                let mut quiet = Kernel::new(None, self.opts, self.prot_guards());
                for r in maps.iter().flatten() {
                    let _ = quiet.unmap(r);
                }
                (Err(err), false)
            },
            |other, _| {
                let _ = other.replay(|m| op(m));
            },
        )
    }
}
