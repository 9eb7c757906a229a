//! Each side's map after `fork(2)` (`vmspace_fork`): the kernel decided what each process has, and the
//! map follows it. Called by [`crate::fork::fork`] with the space's write lock held (in the child,
//! every space's, since the fork).
//!
//! Invariant: afterwards each map says what its own kernel has. In the child: don't-fork ranges are
//! gone (the reservation is made again), wipe-on-fork ranges are fresh zero memory — which has lost
//! its guard markers, so they are installed again —, and nothing is locked.

use std::sync::atomic::Ordering;

use vmspace_core::{EntryFlags, Inherit, Observed, VmMap};

use crate::backing::Backing;
use crate::publish::WriteGuard;

use super::kernel::Kernel;
use super::plan::keep_growth_room;
use super::shared::Shared;

impl Shared {
    /// In the child of a fork, before anything reads the map: the readers that were counted ran on
    /// threads the child does not have.
    ///
    /// # Safety
    /// Only in a fork child, with the write lock held (through `_w`) by the thread that forked, which
    /// is not inside a read of this space.
    pub(crate) unsafe fn reset_after_fork(&self, _w: &WriteGuard<'_, VmMap<Backing>>) {
        // SAFETY: the caller's promise (above) is `reset_readers_in_child`'s.
        unsafe { self.maps.reset_readers_in_child() };
    }

    /// In the child of a fork: the map becomes the child's (`vmspace_fork`), and the kernel's state of
    /// ranges it did not give the child as they were is made to match.
    pub(crate) fn after_fork_child(&self, w: &mut WriteGuard<'_, VmMap<Backing>>) {
        let prot_guards = self.prot_guards();
        w.write(
            |m| {
                let Ok(mut child) = m.fork() else { return ((), false) };
                let mut k = Kernel::new(None, self.opts, prot_guards);
                for e in m.entries() {
                    let r = e.range();
                    match e.inherit() {
                        // The kernel left nothing here in the child: put the reservation back.
                        Inherit::None => {
                            let _ = k.unmap(&r);
                        }
                        // Fresh memory has no guard markers (PROT_NONE guards keep their protection).
                        Inherit::Zero if e.flags().contains(EntryFlags::GUARD) && !prot_guards => {
                            if k.advise(&r, crate::os::Advice::GuardInstall).is_err()
                                && let Some(c) = child.lookup_entry(r.start)
                            {
                                // The markers could not go back: the child's map says what it has.
                                let seen = Observed {
                                    prot: c.prot(),
                                    wired: false,
                                    inherit: c.inherit(),
                                    behavior: c.behavior(),
                                    nocoredump: c.flags().contains(EntryFlags::NOCOREDUMP),
                                    sealed: c.flags().contains(EntryFlags::SEALED),
                                    guard: Some(false),
                                };
                                let _ = child.adopt(r, &seen);
                            }
                        }
                        _ => {}
                    }
                }
                if self.stacks.load(Ordering::Relaxed) {
                    keep_growth_room(&mut child);
                }
                *m = child;
                ((), true)
            },
            |other, done| self.copy_with_room(other, done),
        )
    }

    /// The second copy after a fork: a clone of the first (which keeps its reserved room).
    fn copy_with_room(&self, other: &mut VmMap<Backing>, done: &VmMap<Backing>) {
        *other = done.clone();
        if self.stacks.load(Ordering::Relaxed) {
            keep_growth_room(other);
        }
    }

    /// In the parent of a fork, just after it: mark copies copy-on-write, as the kernel did (a mapping
    /// made between the fork and this call is marked too: the mark is bookkeeping the kernel does not
    /// show, and the next write to it clears it).
    pub(crate) fn after_fork_parent(&self, w: &mut WriteGuard<'_, VmMap<Backing>>) {
        w.write(
            |m| {
                let _ = m.fork();
                m.take_effects();
                ((), true)
            },
            |other, done| self.copy_with_room(other, done),
        )
    }
}
