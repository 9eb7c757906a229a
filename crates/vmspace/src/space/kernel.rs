//! The kernel step of a call: turns the map's effects into system calls, and puts single attributes of
//! a range back to what a map says (the steps recovery is made of). Every call goes through
//! [`Kernel::call`], which counts it for failure injection (`inject.rs`).
//!
//! Invariant: every system call here acts inside the space's own reservation, on ranges the map
//! decided; destructive ones (unmap, DontNeed, Free, guard markers) only for operations whose caller
//! promised to hold no reference into the range (see `AddressSpace`). An effect is consumed as the
//! map made it — its range and its data (`Protect`'s protection, `Inherit`'s inheritance, `Advise`'s
//! advice, `Map`'s entry): the map is read again only where the kernel's call depends on the entries
//! under the range and the effect cannot say it — guard pieces, which stay `PROT_NONE` in the
//! fallback, and the `mlock` flavour of each piece a `Wire` covers.

use std::ops::Range;

use vmspace_core::{Advice, Behavior, Effect, Entry, EntryFlags, Inherit, Prot, VmMap};

use crate::backing::Backing;
use crate::error::Error;
use crate::os::{self, Fixed};

use super::inject::{FailureMode, Injection};

/// How an `AddressSpace` uses kernel features; the defaults use everything the kernel has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Make guard regions with `PROT_NONE` even where `MADV_GUARD_INSTALL` exists (the fallback for
    /// kernels before 6.13, forced here so tests cover it).
    pub guard_fallback: bool,
    /// Wire with `mlock2(MLOCK_ONFAULT)`: pages are locked as they are touched (`wire_future` style)
    /// instead of populated now.
    pub wire_on_fault: bool,
}

/// A raw call on a range: `(addr, len)`.
type RangeCall<'f> = &'f mut dyn FnMut(u64, u64) -> std::io::Result<()>;

/// The kernel side of one space.
pub(crate) struct Kernel<'a> {
    inject: Option<&'a Injection>,
    opts: Options,
    /// Guards are `PROT_NONE` (the fallback) rather than guard markers.
    pub(crate) prot_guards: bool,
    page: u64,
}

impl<'a> Kernel<'a> {
    pub(crate) fn new(inject: Option<&'a Injection>, opts: Options, prot_guards: bool) -> Self {
        Kernel { inject, opts, prot_guards, page: os::page_size() }
    }

    /// Makes one system call over `r`, unless the injection switch says it fails (and how).
    fn call(&mut self, name: &'static str, r: &Range<u64>, f: RangeCall<'_>) -> Result<(), Error> {
        let fail = |errno| Error::Os { call: name, source: os::errno(errno) };
        if let Some((errno, mode)) = self.inject.and_then(Injection::fire) {
            let len = r.end - r.start;
            match mode {
                FailureMode::Before => {}
                FailureMode::After => {
                    let _ = f(r.start, len);
                }
                FailureMode::Half => {
                    let half = (len / 2) & !(self.page - 1);
                    if half > 0 {
                        let _ = f(r.start, half);
                    }
                }
            }
            return Err(fail(errno));
        }
        f(r.start, r.end - r.start).map_err(|source| Error::Os { call: name, source })
    }

    /// The protection the kernel gives an entry's pages.
    pub(crate) fn kernel_prot(&self, e: &Entry<Backing>) -> Prot {
        if self.prot_guards && e.flags().contains(EntryFlags::GUARD) { Prot::NONE } else { e.prot() }
    }

    /// `r` back to reservation: `PROT_NONE`, `MAP_NORESERVE`, contents gone.
    pub(crate) fn unmap(&mut self, r: &Range<u64>) -> Result<(), Error> {
        // SAFETY: inside the space's reservation; the map decided to drop it (module invariant).
        self.call("mmap", r, &mut |a, l| unsafe { os::map_fixed(a, l, Prot::NONE, Fixed::Reservation) })
    }

    pub(crate) fn protect(&mut self, r: &Range<u64>, prot: Prot) -> Result<(), Error> {
        // SAFETY: inside the space's reservation, to the protection the map gives it.
        self.call("mprotect", r, &mut |a, l| unsafe { os::protect(a, l, prot) })
    }

    pub(crate) fn advise(&mut self, r: &Range<u64>, advice: os::Advice) -> Result<(), Error> {
        // SAFETY: inside the space's reservation; destructive advice only as the map decided.
        self.call("madvise", r, &mut |a, l| unsafe { os::advise(a, l, advice) })
    }

    pub(crate) fn unlock(&mut self, r: &Range<u64>) -> Result<(), Error> {
        // SAFETY: inside the space's reservation.
        self.call("munlock", r, &mut |a, l| unsafe { os::unlock(a, l) })
    }

    pub(crate) fn seal(&mut self, r: &Range<u64>) -> Result<(), Error> {
        // SAFETY: inside the space's reservation; the map seals it too, and never unmaps it after.
        self.call("mseal", r, &mut |a, l| unsafe { os::seal(a, l) })
    }

    /// Maps an entry's range fresh, with its protection (not its other attributes).
    fn map(&mut self, e: &Entry<Backing>) -> Result<(), Error> {
        let prot = self.kernel_prot(e);
        let r = e.start..e.end;
        let offset = e.offset();
        let what = |a: u64| match e.object() {
            Backing::Anonymous => Fixed::Anonymous,
            Backing::Shared(fd) => Fixed::File { fd, offset: offset + (a - r.start), shared: true },
            Backing::File { fd, shared } => {
                Fixed::File { fd, offset: offset + (a - r.start), shared: *shared }
            }
        };
        // SAFETY: inside the space's reservation, where the map has just inserted this entry.
        self.call("mmap", &r.clone(), &mut |a, l| unsafe { os::map_fixed(a, l, prot, what(a)) })
    }

    /// `mlock` a piece of an entry; inaccessible pages (`PROT_NONE`, guards) are locked on fault, since
    /// Linux cannot populate them (plain `mlock` marks them locked and then fails with ENOMEM).
    pub(crate) fn lock(&mut self, e: &Entry<Backing>, piece: &Range<u64>, future: bool) -> Result<(), Error> {
        let on_fault = future
            || self.opts.wire_on_fault
            || self.kernel_prot(e).is_none()
            || e.flags().contains(EntryFlags::GUARD);
        // SAFETY: inside the space's reservation.
        self.call("mlock", piece, &mut |a, l| unsafe { os::lock(a, l, on_fault) })
    }

    /// Removes guard markers from `piece` of `e` (the entry's protection back in the fallback).
    pub(crate) fn remove_guard(&mut self, e: &Entry<Backing>, piece: &Range<u64>) -> Result<(), Error> {
        if self.prot_guards {
            self.protect(piece, e.prot())
        } else {
            self.advise(piece, os::Advice::GuardRemove)
        }
    }

    /// `MADV_DONTFORK`/`DOFORK` and `MADV_WIPEONFORK`/`KEEPONFORK` for `i`. The bit that goes is
    /// cleared before the bit that comes is set, so a call failing between them leaves copy, none or
    /// zero — never don't-fork and wipe-on-fork together, which no inheritance stands for.
    pub(crate) fn inherit(&mut self, r: &Range<u64>, i: Inherit) -> Result<(), Error> {
        match i {
            Inherit::Zero => {
                self.advise(r, os::Advice::DoFork)?;
                self.advise(r, os::Advice::WipeOnFork)
            }
            _ => {
                if os::features().wipe_on_fork {
                    self.advise(r, os::Advice::KeepOnFork)?;
                }
                let fork = if i == Inherit::None { os::Advice::DontFork } else { os::Advice::DoFork };
                self.advise(r, fork)
            }
        }
    }

    pub(crate) fn behavior(&mut self, r: &Range<u64>, b: Behavior) -> Result<(), Error> {
        self.advise(r, behavior_advice(b))
    }

    pub(crate) fn dump(&mut self, r: &Range<u64>, nocore: bool) -> Result<(), Error> {
        self.advise(r, if nocore { os::Advice::DontDump } else { os::Advice::DoDump })
    }

    /// Applies one effect of a successful map operation as it is; `map` is the map after it, read only
    /// for guard pieces in the fallback and for `Wire` (see the module's invariant). Seals are not
    /// made here (they are irrevocable, so they come after every other step: `plan::seal_ranges`).
    pub(crate) fn effect(&mut self, map: &VmMap<Backing>, fx: &Effect<Backing>) -> Result<(), Error> {
        match fx {
            Effect::Map(e) => {
                self.map(e)?;
                self.attributes(e, &(e.start..e.end))
            }
            Effect::Unmap(r) => self.unmap(r),
            Effect::Protect(r, prot) => {
                if !self.prot_guards {
                    return self.protect(r, *prot);
                }
                // Guard pieces stay PROT_NONE in the fallback.
                self.each(map, r, |k, e, piece| {
                    let prot = k.kernel_prot(e);
                    k.protect(&piece, prot)
                })
            }
            Effect::Unguard(r) if !self.prot_guards => self.advise(r, os::Advice::GuardRemove),
            Effect::Unguard(r) => self.each(map, r, |k, e, piece| k.remove_guard(e, &piece)),
            Effect::Inherit(r, i) => self.inherit(r, *i),
            Effect::Advise(r, a) => match linux_advice(*a) {
                Some(l) => self.advise(r, l),
                None => Ok(()),
            },
            // Under wire_future (mlockall(MCL_FUTURE)) new memory is locked as it faults in
            // (VM_FAULT_CHANGE_WIRING done lazily: mlock2(MLOCK_ONFAULT)).
            Effect::Wire(r) => {
                let future = map.wire_future();
                self.each(map, r, |k, e, piece| k.lock(e, &piece, future))
            }
            Effect::Unwire(r) => self.unlock(r),
            // The map refuses guards on wired memory, so no piece here is locked.
            Effect::Guard(r) => {
                if self.prot_guards {
                    self.protect(r, Prot::NONE)
                } else {
                    self.advise(r, os::Advice::GuardInstall)
                }
            }
            Effect::Seal(_) | Effect::WriteProtect(_) => Ok(()),
            Effect::Clean(..) | Effect::Submap(..) => {
                Err(Error::NotSupported("msync and submaps are not offered here"))
            }
        }
    }

    /// Calls `f` for each entry overlapping `r`, with the overlapping piece.
    pub(crate) fn each(
        &mut self,
        map: &VmMap<Backing>,
        r: &Range<u64>,
        mut f: impl FnMut(&mut Self, &Entry<Backing>, Range<u64>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        for e in map.overlapping(r.clone()) {
            f(self, e, e.start.max(r.start)..e.end.min(r.end))?;
        }
        Ok(())
    }

    /// Applies an entry's non-protection attributes to a freshly mapped piece (not its seal, nor its
    /// wiring: the map yields a `Wire` effect for that).
    fn attributes(&mut self, e: &Entry<Backing>, r: &Range<u64>) -> Result<(), Error> {
        if e.inherit() == Inherit::None || e.inherit() == Inherit::Zero {
            self.inherit(r, e.inherit())?;
        }
        if e.behavior() != Behavior::Normal {
            self.behavior(r, e.behavior())?;
        }
        if e.flags().contains(EntryFlags::NOCOREDUMP) {
            self.dump(r, true)?;
        }
        if e.flags().contains(EntryFlags::GUARD) && !self.prot_guards {
            self.advise(r, os::Advice::GuardInstall)?;
        }
        Ok(())
    }
}

/// Faults `range` in now: `MADV_POPULATE_WRITE` (or `_READ`) on Linux 5.14+, a read of every page
/// before. The caller has checked that every page is mapped with the access asked for.
pub(crate) fn populate(range: Range<u64>, write: bool) -> Result<(), Error> {
    if os::features().populate {
        let a = if write { os::Advice::PopulateWrite } else { os::Advice::PopulateRead };
        // SAFETY: mapped memory of this space with the access asked for (the caller checked it);
        // populating changes no contents.
        return unsafe { os::advise(range.start, range.end - range.start, a) }
            .map_err(|source| Error::Os { call: "madvise", source });
    }
    let ps = os::page_size();
    for page in (range.start..range.end).step_by(ps as usize) {
        // SAFETY: the page is mapped readable (the caller checked it) in memory this space owns.
        unsafe { std::ptr::read_volatile(page as *const u8) };
    }
    Ok(())
}

/// The Linux advice for a map advice; `None` for the syncer advice Linux has no counterpart of.
pub(crate) fn linux_advice(a: Advice) -> Option<os::Advice> {
    match a {
        Advice::Normal => Some(os::Advice::Normal),
        Advice::Sequential => Some(os::Advice::Sequential),
        Advice::Random => Some(os::Advice::Random),
        Advice::WillNeed => Some(os::Advice::WillNeed),
        Advice::DontNeed => Some(os::Advice::DontNeed),
        Advice::Free => Some(os::Advice::Free),
        Advice::NoCore => Some(os::Advice::DontDump),
        Advice::Core => Some(os::Advice::DoDump),
        // Linux has no per-mapping syncer flag: the map keeps it for its users.
        Advice::NoSync | Advice::AutoSync => None,
    }
}

fn behavior_advice(b: Behavior) -> os::Advice {
    match b {
        Behavior::Normal => os::Advice::Normal,
        Behavior::Sequential => os::Advice::Sequential,
        Behavior::Random => os::Advice::Random,
    }
}
