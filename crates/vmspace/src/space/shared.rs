//! What the spaces, the fault handler and `fork` share of one address space: its reservation, its map
//! published left-right, and the one path by which a change reaches map and kernel together.
//!
//! Invariant: outside `apply`, every page of the reservation has in the kernel exactly the attributes
//! the map gives it. `apply` runs the map operation on the copy readers do not see, applies its effects
//! with seals last (irrevocable steps come after every step that can fail), and on a failing call
//! recovers (`recover.rs`) before anything is published; readers see the map before the change or
//! after it, never a state the kernel does not have.

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use vmspace_core::{Effect, VmError, VmMap};

use crate::backing::Backing;
use crate::error::Error;
use crate::os;
use crate::publish::{LeftRight, WriteGuard};

use super::Options;
use super::kernel::{Injection, Kernel, seal_ranges};
use super::recover::recover;
use super::stack::keep_growth_room;

pub(crate) struct Shared {
    /// The whole reservation, with one guard page below and above the map's range.
    outer: Range<u64>,
    /// The map, published left-right: lookups never wait for a change (see `publish.rs`).
    pub(crate) maps: LeftRight<VmMap<Backing>>,
    /// Test hook: which system call fails, with which errno and how.
    pub(super) inject: Injection,
    /// Test hook: the same for the calls recovery makes after a failure.
    pub(super) inject_recovery: Injection,
    /// The space has (or had) stacks: every change keeps room for their growth in both copies.
    pub(super) stacks: AtomicBool,
    pub(super) opts: Options,
}

/// The spaces this thread is inside a read of, innermost last (more than fit: all of them count), so
/// the fault handler never grows a stack whose map this very thread is reading (the writer would wait
/// for this thread's own reader mark), and `fork` is never called from inside a read.
#[derive(Clone, Copy)]
struct Reading {
    depth: usize,
    spaces: [usize; 4],
}

thread_local! {
    static READING: Cell<Reading> = const { Cell::new(Reading { depth: 0, spaces: [0; 4] }) };
}

/// Leaves the innermost read when dropped.
struct LeaveRead;

impl Drop for LeaveRead {
    fn drop(&mut self) {
        let _ = READING.try_with(|r| {
            let mut v = r.get();
            v.depth -= 1;
            r.set(v);
        });
    }
}

/// Whether this thread is inside a read of any space (fork refuses to run there).
pub(crate) fn reading_any() -> bool {
    READING.try_with(|r| r.get().depth > 0).unwrap_or(false)
}

impl Shared {
    pub(super) fn new(outer: Range<u64>, map: VmMap<Backing>, opts: Options) -> Shared {
        Shared {
            outer,
            maps: LeftRight::new(map),
            inject: Injection::off(),
            inject_recovery: Injection::off(),
            stacks: AtomicBool::new(false),
            opts,
        }
    }

    /// The whole reservation, guard pages included.
    pub(crate) fn outer(&self) -> &Range<u64> {
        &self.outer
    }

    /// The guard mode in force: `PROT_NONE` guards (fallback) or guard markers.
    pub(crate) fn prot_guards(&self) -> bool {
        self.opts.guard_fallback || !os::features().guard_install
    }

    /// Reads the map as published now, marking this thread as a reader of this space meanwhile.
    /// Async-signal-safe.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&VmMap<Backing>) -> R) -> R {
        let me = self as *const Shared as usize;
        let _ = READING.try_with(|r| {
            let mut v = r.get();
            if v.depth < v.spaces.len() {
                v.spaces[v.depth] = me;
            }
            v.depth += 1;
            r.set(v);
        });
        let _leave = LeaveRead;
        self.maps.read(f)
    }

    /// Whether the calling thread is inside a read of this space. Async-signal-safe.
    pub(crate) fn read_by_me(&self) -> bool {
        let me = self as *const Shared as usize;
        READING
            .try_with(|r| {
                let v = r.get();
                v.depth > v.spaces.len() || v.spaces[..v.depth].contains(&me)
            })
            .unwrap_or(true)
    }

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
                let r = match op(m) {
                    Ok(r) => r,
                    Err(e) => return (Err(Error::Vm(e)), false),
                };
                if stacks {
                    keep_growth_room(m);
                }
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
        let (done, tried): (Vec<Effect<Backing>>, Vec<Range<u64>>) = match failed {
            Failed::Effect(i) => (m.effects()[..=i].to_vec(), Vec::new()),
            Failed::Seal(j) => (m.effects().to_vec(), seal_ranges(m.effects()).take(j + 1).collect()),
        };
        let mut quiet = Kernel::new(Some(&self.inject_recovery), self.opts, self.prot_guards());
        Err((err, recover(&mut quiet, m, &done, &tried)))
    }

    /// Makes the system calls of the effects on `m`'s list: every effect in order, then the seals.
    /// Nothing here allocates or frees (the effects stay in the map's list, whose capacity is kept):
    /// the fault handler grows stacks through this path.
    fn run_effects(&self, m: &VmMap<Backing>) -> Result<(), (Error, Failed)> {
        let mut k = Kernel::new(Some(&self.inject), self.opts, self.prot_guards());
        for (i, fx) in m.effects().iter().enumerate() {
            k.effect(m, fx).map_err(|e| (e, Failed::Effect(i)))?;
        }
        for (j, r) in seal_ranges(m.effects()).enumerate() {
            k.seal(&r).map_err(|e| (e, Failed::Seal(j)))?;
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

/// Which step of [`Shared::run_effects`] failed.
#[derive(Clone, Copy, Debug)]
enum Failed {
    /// The effect at this index of the map's list.
    Effect(usize),
    /// The seal at this index of `seal_ranges`.
    Seal(usize),
}
