//! `AddressSpace`: a `VmMap` that owns a reserved range of this process, so that every change happens in
//! the map and in the kernel together (the seed's `struct vmspace`: the map and its pmap).
//!
//! Invariant: outside a call, every page of the range has in the kernel exactly the attributes the map
//! gives it — protection (with guard pages as the guard mode makes them), shared or private, locked,
//! don't-fork, wipe-on-fork, don't-dump, sequential/random, sealed — and every hole of the map is a
//! `PROT_NONE`, `MAP_NORESERVE` reservation. Each call takes the map lock, lets the map validate and
//! decide (nothing happens if it refuses), applies the map's effects with system calls, and on a
//! failing call undoes the map and re-applies the map's state to the kernel over what was touched.
//!
//! Calls that destroy contents (`unmap`, `madvise` with DontNeed or Free, `guard`, mapping with
//! `map_at`) deal in addresses only: the caller must hold no reference into the range it destroys.

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use vmspace_core::{Advice, Effect, Entry, EntryFlags, FindSpec, Inherit, MapSpec, Prot, VmError, VmMap};

use crate::backing::Backing;
use crate::error::Error;
use crate::os::{self, Fixed};
use crate::publish::{LeftRight, WriteGuard};

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

/// The kernel's and the map's view of the owned range, from `/proc/self/smaps` and `mincore`
/// (`vmspace_resident_count`, `vmspace_swap_count`, `vmspace_anonymous_count`,
/// `vmspace_president_count`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries in the map (`nentries`).
    pub entries: usize,
    /// Bytes mapped (`size`).
    pub mapped: u64,
    /// Bytes wired.
    pub wired: u64,
    /// Bytes resident, by `mincore` over the mapped entries (`vmspace_resident_count`).
    pub resident: u64,
    /// Resident set size from smaps (`Rss`).
    pub rss: u64,
    /// Proportional set size from smaps (`Pss`, the seed's "president" count).
    pub pss: u64,
    /// Anonymous bytes from smaps (`vmspace_anonymous_count`).
    pub anonymous: u64,
    /// Swapped-out bytes from smaps (`vmspace_swap_count`).
    pub swap: u64,
}

/// `fail_after` value meaning "no failure injected".
const NO_FAILURE: u64 = u64::MAX;

pub(crate) struct Shared {
    /// The whole reservation, with one guard page below and above the map's range.
    outer: Range<u64>,
    /// The map, published left-right: lookups never wait for a change (see `publish.rs`).
    pub(crate) maps: LeftRight<VmMap<Backing>>,
    /// Test hook: the number of system calls to allow before one fails with `ENOMEM`.
    fail_after: AtomicU64,
    opts: Options,
}

/// Every live space, so that a process fork can bring each one's map along ([`crate::fork`]).
pub(crate) static REGISTRY: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// A range of this process's address space managed through a [`VmMap`] (the seed's `struct vmspace`).
///
/// `Send + Sync`: changes from many threads serialise on the write lock (the seed's `vm_map_lock`);
/// lookups (`lookup_entry`, `regions`, the fault handler) never wait: the map is published left-right,
/// so a reader sees either the map before a change or after it, never half of it. Dropping the space returns the whole range to
/// the kernel, except sealed pages, which by definition can never be unmapped.
pub struct AddressSpace {
    shared: Arc<Shared>,
    /// Where the fault handler sees this space (`None`: all slots taken).
    slot: Option<usize>,
}

impl AddressSpace {
    /// Reserves `len` bytes (rounded up to pages) of address space, `PROT_NONE` and `MAP_NORESERVE`,
    /// that the map then owns (`vmspace_alloc`).
    pub fn reserve(len: u64) -> Result<AddressSpace, Error> {
        Self::reserve_with(len, Options::default())
    }

    /// [`AddressSpace::reserve`] with options.
    pub fn reserve_with(len: u64, opts: Options) -> Result<AddressSpace, Error> {
        let ps = os::page_size();
        let len = len.checked_next_multiple_of(ps).filter(|l| *l > 0).ok_or(VmError::InvalidArgument)?;
        let total = len.checked_add(2 * ps).ok_or(VmError::InvalidArgument)?;
        let base = os::reserve(total).map_err(|source| Error::Os { call: "mmap", source })?;
        let map = VmMap::with_page_size(base + ps, base + ps + len, ps)?;
        let shared = Arc::new(Shared {
            outer: base..base + total,
            maps: LeftRight::new(map),
            fail_after: AtomicU64::new(NO_FAILURE),
            opts,
        });
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|w| w.strong_count() > 0);
        reg.push(Arc::downgrade(&shared));
        drop(reg);
        let slot = crate::fault::register(&shared);
        Ok(AddressSpace { shared, slot })
    }

    /// The managed range `[start, end)`.
    pub fn range(&self) -> Range<u64> {
        self.read(|m| m.min()..m.max())
    }

    /// The options this space was reserved with.
    pub fn options(&self) -> Options {
        self.shared.opts
    }

    fn read<R>(&self, f: impl FnOnce(&VmMap<Backing>) -> R) -> R {
        self.shared.maps.read(f)
    }

    fn writer(&self) -> Result<WriteGuard<'_, VmMap<Backing>>, Error> {
        self.shared.maps.try_write(crate::thread_id()).map_err(|_| {
            Error::NotSupported(
                "a change from inside a change (a fault taken while this thread changes the map)",
            )
        })
    }

    /// Maps `len` bytes anywhere inside the space (first fit) and returns the address (`vm_map_find`).
    pub fn map(&self, len: u64, spec: MapSpec<Backing>) -> Result<u64, Error> {
        self.map_with(&FindSpec::new(len), spec)
    }

    /// [`AddressSpace::map`] with alignment, hint, bounds and direction.
    pub fn map_with(&self, find: &FindSpec, spec: MapSpec<Backing>) -> Result<u64, Error> {
        let spec = linux_spec(spec)?;
        // The second copy of the map is brought up to date with the same call: it maps where the
        // first copy found space (the copies are equal, so it would find the same place) without
        // searching again.
        let found = Cell::new(None);
        self.apply(|m| {
            let at = match found.get() {
                Some(at) => at,
                None => m.find_space_with(find)?,
            };
            found.set(Some(at));
            m.insert(at..at + find.len, spec.clone())?;
            Ok(at)
        })
    }

    /// Maps `range` exactly (`vm_map_insert`); fails with `NoSpace` if any page is mapped (it never
    /// silently replaces memory).
    pub fn map_at(&self, range: Range<u64>, spec: MapSpec<Backing>) -> Result<(), Error> {
        let spec = linux_spec(spec)?;
        self.apply(|m| m.insert(range.clone(), spec.clone()))
    }

    /// Unmaps `range` (`vm_map_remove`); holes are fine. The pages go back to being reservation.
    /// The caller must hold no reference into the range.
    pub fn unmap(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(|m| m.remove(range.clone()))
    }

    /// Sets the protection of `range` (`vm_map_protect`), within each page's max protection.
    pub fn protect(&self, range: Range<u64>, prot: Prot) -> Result<(), Error> {
        self.apply(|m| m.protect(range.clone(), prot))
    }

    /// Lowers the max protection of `range` (`vm_map_protect` with `set_max`).
    pub fn protect_max(&self, range: Range<u64>, max: Prot) -> Result<(), Error> {
        self.apply(|m| m.protect_max(range.clone(), max))
    }

    /// Sets what a forked child gets of `range` (`vm_map_inherit`): none → `MADV_DONTFORK`, zero →
    /// `MADV_WIPEONFORK`; share and copy are decided by the backing on Linux, so share is refused on
    /// private memory and copy on shared memory (`NotSupported`).
    pub fn inherit(&self, range: Range<u64>, inherit: Inherit) -> Result<(), Error> {
        if inherit == Inherit::Zero && !os::features().wipe_on_fork {
            return Err(Error::NotSupported("MADV_WIPEONFORK needs Linux 4.14"));
        }
        let mut w = self.writer()?;
        let refused = w.read(|m| {
            m.overlapping(range.clone()).find_map(|e| match (inherit, e.object().is_shared()) {
                (Inherit::Share, false) => Some("Linux cannot share private memory with a child"),
                (Inherit::Copy, true) => Some("Linux cannot copy shared memory to a child"),
                _ => None,
            })
        });
        if let Some(why) = refused {
            return Err(Error::NotSupported(why));
        }
        self.apply_locked(&mut w, |m| m.inherit(range.clone(), inherit))
    }

    /// Applies `advice` to `range` (`vm_map_madvise`). DontNeed and Free destroy contents: the caller
    /// must hold no reference into the range. NoSync and AutoSync have no Linux counterpart and only
    /// change the map.
    pub fn madvise(&self, range: Range<u64>, advice: Advice) -> Result<(), Error> {
        self.apply(|m| m.madvise(range.clone(), advice))
    }

    /// User-wires `range` (`mlock`, or `mlock2(MLOCK_ONFAULT)` with `Options::wire_on_fault`).
    pub fn wire(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(|m| m.wire(range.clone()))
    }

    /// Undoes the user wiring of `range` (`munlock`).
    pub fn unwire(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(|m| m.unwire(range.clone()))
    }

    /// Makes `range` a guard region: `MADV_GUARD_INSTALL` (no VMA, contents dropped), or `PROT_NONE`
    /// on kernels before 6.13 or with `Options::guard_fallback`.
    pub fn guard(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(|m| m.guard(range.clone()))
    }

    /// Removes guard regions from `range` (`MADV_GUARD_REMOVE`, or the entry's protection back).
    pub fn unguard(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(|m| m.unguard(range.clone()))
    }

    /// Seals `range` (`mseal`): from now on neither the kernel nor the map will unmap, re-protect or
    /// destructively advise it. `NotSupported` before Linux 6.10.
    pub fn seal(&self, range: Range<u64>) -> Result<(), Error> {
        if !os::features().mseal {
            return Err(Error::NotSupported("mseal needs Linux 6.10"));
        }
        self.apply(|m| m.seal(range.clone()))
    }

    /// Faults `range` in now (`MAP_PREFAULT`, `VM_FAULT_*` done ahead): `MADV_POPULATE_WRITE` (or
    /// `_READ` when `write` is false) on Linux 5.14+. Older kernels get a read of every page, which
    /// maps it (readable pages only; a write-populate there only reads). The range must be mapped.
    pub fn populate(&self, range: Range<u64>, write: bool) -> Result<(), Error> {
        let readable = self.read(|m| {
            m.check_protection(range.clone(), if write { Prot::RW } else { Prot::READ })
                && m.overlapping(range.clone()).all(|e| !e.flags().contains(EntryFlags::GUARD))
        });
        if !readable {
            return Err(Error::Vm(VmError::ProtectionFailure));
        }
        if os::features().populate {
            let a = if write { os::Advice::PopulateWrite } else { os::Advice::PopulateRead };
            return os::advise(range.start, range.end - range.start, a)
                .map_err(|source| Error::Os { call: "madvise", source });
        }
        let ps = os::page_size();
        for page in (range.start..range.end).step_by(ps as usize) {
            // SAFETY: the page is mapped readable (checked above) in memory this space owns.
            unsafe { std::ptr::read_volatile(page as *const u8) };
        }
        Ok(())
    }

    /// Sets or clears `MAP_WIREFUTURE` (`mlockall(MCL_FUTURE | MCL_ONFAULT)` for this space): later
    /// mappings and stack growth are wired as they fault in.
    pub fn set_wire_future(&self, on: bool) -> Result<(), Error> {
        self.change(|m| {
            m.set_wire_future(on);
            Ok(())
        })
    }

    /// A copy of the entry containing `addr` (`vm_map_lookup_entry`).
    pub fn lookup_entry(&self, addr: u64) -> Option<Entry<Backing>> {
        self.read(|m| m.lookup_entry(addr).cloned())
    }

    /// A copy of every entry, in address order.
    pub fn regions(&self) -> Vec<Entry<Backing>> {
        self.read(|m| m.entries().cloned().collect())
    }

    /// Runs `f` on the map as published now (for printing, or checks that need a consistent view).
    /// Keep `f` short: a change waits for readers of the copy it is about to reuse.
    pub fn with_map<R>(&self, f: impl FnOnce(&VmMap<Backing>) -> R) -> R {
        self.read(f)
    }

    /// Counters from the map, `mincore` and `/proc/self/smaps` restricted to the owned range.
    pub fn stats(&self) -> Result<Stats, Error> {
        // Copy what is needed out of the map first: system calls and file reads happen outside it.
        let (mut s, ranges, owned, ps) = self.read(|m| {
            let s = Stats { entries: m.len(), mapped: m.size(), wired: m.wired_size(), ..Stats::default() };
            (s, m.entries().map(|e| e.start..e.end).collect::<Vec<_>>(), m.min()..m.max(), m.page_size())
        });
        for r in ranges {
            s.resident += os::resident_pages(r.start, r.end - r.start)
                .map_err(|source| Error::Os { call: "mincore", source })?
                * ps;
        }
        let vmas = crate::smaps::read_self()
            .map_err(|source| Error::Os { call: "read /proc/self/smaps", source })?;
        for vma in vmas {
            if vma.range.start < owned.end && vma.range.end > owned.start {
                s.rss += vma.rss;
                s.pss += vma.pss;
                s.anonymous += vma.anonymous;
                s.swap += vma.swap;
            }
        }
        Ok(s)
    }

    /// Compares the map with the kernel's view (`/proc/self/smaps`) page by page over the owned range:
    /// protection, shared or private, and the VmFlags `lo`, `dc`, `wf`, `dd`, `sr`, `rr`, `sl`. Returns
    /// every difference, one line each (empty when they agree).
    pub fn kernel_differences(&self) -> Result<Vec<String>, Error> {
        // The write lock keeps the kernel still while smaps is read.
        let w = self.writer()?;
        let vmas = crate::smaps::read_self()
            .map_err(|source| Error::Os { call: "read /proc/self/smaps", source })?;
        Ok(w.read(|m| crate::smaps::differences(m, &vmas, self.prot_guards())))
    }

    /// Makes the next `n` system calls of this space succeed and the one after fail with `ENOMEM`: the
    /// failure-injection switch for tests. `None` turns it off.
    #[doc(hidden)]
    pub fn inject_failure_after(&self, n: Option<usize>) {
        self.shared.fail_after.store(n.map_or(NO_FAILURE, |n| n as u64), Ordering::SeqCst);
    }

    /// The guard mode in force: `PROT_NONE` guards (fallback) or guard markers.
    fn prot_guards(&self) -> bool {
        self.shared.prot_guards()
    }

    fn apply<R>(&self, op: impl Fn(&mut VmMap<Backing>) -> Result<R, VmError>) -> Result<R, Error> {
        let mut w = self.writer()?;
        self.shared.apply_locked(&mut w, op)
    }

    /// [`AddressSpace::apply`] for changes the timestamp does not see (settings, reservations): the
    /// change is published to both copies whatever it did.
    pub(crate) fn change<R>(
        &self,
        op: impl Fn(&mut VmMap<Backing>) -> Result<R, VmError>,
    ) -> Result<R, Error> {
        let mut w = self.writer()?;
        self.shared.apply_forced(&mut w, op, true)
    }

    /// Whether the fault handler can see this space.
    pub(crate) fn fault_visible(&self) -> bool {
        self.slot.is_some()
    }

    fn apply_locked<R>(
        &self,
        w: &mut WriteGuard<'_, VmMap<Backing>>,
        op: impl Fn(&mut VmMap<Backing>) -> Result<R, VmError>,
    ) -> Result<R, Error> {
        self.shared.apply_locked(w, op)
    }
}

impl Shared {
    /// The guard mode in force: `PROT_NONE` guards (fallback) or guard markers.
    pub(crate) fn prot_guards(&self) -> bool {
        self.opts.guard_fallback || !os::features().guard_install
    }

    /// Runs a map operation with the write lock held and applies its effects to the kernel; on a
    /// failing system call, undoes the map and puts the kernel back in line with it. The operation
    /// runs again on the second copy of the map, through `VmMap::replay` (it is deterministic), so it
    /// must be `Fn`; it runs there only after it succeeded on the first.
    ///
    /// On success nothing here allocates or frees (the effects stay in the map's list, whose capacity
    /// is kept): the fault handler grows stacks through this path.
    pub(crate) fn apply_locked<R>(
        &self,
        w: &mut WriteGuard<'_, VmMap<Backing>>,
        op: impl Fn(&mut VmMap<Backing>) -> Result<R, VmError>,
    ) -> Result<R, Error> {
        self.apply_forced(w, op, false)
    }

    /// [`Shared::apply_locked`]; with `force`, publish even when the timestamp did not move.
    pub(crate) fn apply_forced<R>(
        &self,
        w: &mut WriteGuard<'_, VmMap<Backing>>,
        op: impl Fn(&mut VmMap<Backing>) -> Result<R, VmError>,
        force: bool,
    ) -> Result<R, Error> {
        let recovered = Cell::new(false);
        w.write(
            |m| {
                let ts = m.timestamp();
                let r = match op(m) {
                    Ok(r) => r,
                    Err(e) => return (Err(Error::Vm(e)), false),
                };
                let mut k =
                    Kernel { fail_after: &self.fail_after, opts: self.opts, prot_guards: self.prot_guards() };
                for i in 0..m.effects().len() {
                    let fx = m.effects()[i].clone();
                    if let Err(err) = k.effect(m, &fx) {
                        let done = m.effects()[..=i].to_vec();
                        self.recover(m, &done);
                        recovered.set(true);
                        return (Err(err), true);
                    }
                }
                (Ok(r), force || m.timestamp() != ts)
            },
            |other, done| {
                if recovered.get() {
                    *other = done.clone();
                } else {
                    // The same call again, without the journal and effects the first copy kept.
                    let _ = other.replay(|m| op(m));
                }
            },
        )
    }

    /// After effects `done` (the last one failed, perhaps half-way): revert the map, keep what cannot
    /// be reverted (unmapped memory stays unmapped, so the map forgets it too), and re-apply the map's
    /// state to every touched range.
    fn recover(&self, m: &mut VmMap<Backing>, done: &[Effect<Backing>]) {
        m.undo();
        let off = AtomicU64::new(NO_FAILURE);
        let mut k = Kernel { fail_after: &off, opts: self.opts, prot_guards: self.prot_guards() };
        for fx in done {
            if let Effect::Unmap(r) = fx {
                // The kernel may have dropped this memory: make the map say so, and make sure it did.
                let _ = m.remove(r.clone());
                let _ = k.unmap(r);
            }
        }
        for fx in done {
            if let Some(r) = effect_range(fx) {
                let _ = k.resync(m, &r);
            }
        }
    }

    /// The whole reservation, guard pages included.
    pub(crate) fn outer(&self) -> &Range<u64> {
        &self.outer
    }
}

/// Linux-specific checks and defaults on a spec: shared backings are inherited shared.
fn linux_spec(mut spec: MapSpec<Backing>) -> Result<MapSpec<Backing>, Error> {
    match (spec.inherit, spec.object.is_shared()) {
        (Inherit::Copy, true) => spec.inherit = Inherit::Share,
        (Inherit::Share, false) => {
            return Err(Error::NotSupported("Linux cannot share private memory with a child"));
        }
        (Inherit::Zero, _) if !os::features().wipe_on_fork => {
            return Err(Error::NotSupported("MADV_WIPEONFORK needs Linux 4.14"));
        }
        _ => {}
    }
    if spec.flags.contains(EntryFlags::SEALED) && !os::features().mseal {
        return Err(Error::NotSupported("mseal needs Linux 6.10"));
    }
    Ok(spec)
}

fn effect_range<O>(fx: &Effect<O>) -> Option<Range<u64>> {
    match fx {
        Effect::Map(e) => Some(e.start..e.end),
        Effect::Unmap(r)
        | Effect::Protect(r, _)
        | Effect::Inherit(r, _)
        | Effect::Advise(r, _)
        | Effect::Wire(r)
        | Effect::Unwire(r)
        | Effect::Guard(r)
        | Effect::Unguard(r)
        | Effect::Seal(r)
        | Effect::WriteProtect(r)
        | Effect::Clean(r, _)
        | Effect::Submap(r, _) => Some(r.clone()),
    }
}

/// The kernel side of one space: turns effects into system calls, counting them for failure injection.
struct Kernel<'a> {
    fail_after: &'a AtomicU64,
    opts: Options,
    prot_guards: bool,
}

impl Kernel<'_> {
    fn call<T>(&mut self, call: &'static str, f: impl FnOnce() -> std::io::Result<T>) -> Result<T, Error> {
        match self.fail_after.load(Ordering::Relaxed) {
            NO_FAILURE => {}
            0 => {
                self.fail_after.store(NO_FAILURE, Ordering::Relaxed);
                return Err(Error::Os { call, source: std::io::Error::from_raw_os_error(libc::ENOMEM) });
            }
            n => self.fail_after.store(n - 1, Ordering::Relaxed),
        }
        f().map_err(|source| Error::Os { call, source })
    }

    /// The protection the kernel gives an entry's pages.
    fn kernel_prot(&self, e: &Entry<Backing>) -> Prot {
        if self.prot_guards && e.flags().contains(EntryFlags::GUARD) { Prot::NONE } else { e.prot() }
    }

    fn unmap(&mut self, r: &Range<u64>) -> Result<(), Error> {
        self.call("mmap", || os::map_fixed(r.start, r.end - r.start, Prot::NONE, Fixed::Reservation))
    }

    fn advise(&mut self, r: &Range<u64>, a: os::Advice) -> Result<(), Error> {
        self.call("madvise", || os::advise(r.start, r.end - r.start, a))
    }

    fn effect(&mut self, map: &VmMap<Backing>, fx: &Effect<Backing>) -> Result<(), Error> {
        match fx {
            Effect::Map(e) => {
                let (len, prot) = (e.end - e.start, self.kernel_prot(e));
                let what = match e.object() {
                    Backing::Anonymous => Fixed::Anonymous,
                    Backing::Shared(fd) => Fixed::File { fd, offset: e.offset(), shared: true },
                    Backing::File { fd, shared } => Fixed::File { fd, offset: e.offset(), shared: *shared },
                };
                self.call("mmap", || os::map_fixed(e.start, len, prot, what))?;
                self.attributes(e, &(e.start..e.end))
            }
            Effect::Unmap(r) => self.unmap(r),
            Effect::Protect(r, _) | Effect::Unguard(r) => {
                if matches!(fx, Effect::Unguard(_)) && !self.prot_guards {
                    self.advise(r, os::Advice::GuardRemove)?;
                }
                self.each(map, r, |k, e, piece| {
                    let prot = k.kernel_prot(e);
                    k.call("mprotect", || os::protect(piece.start, piece.end - piece.start, prot))
                })
            }
            Effect::Inherit(r, i) => self.inherit(r, *i),
            Effect::Advise(r, a) => {
                let linux = match a {
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
                };
                match linux {
                    Some(l) => self.advise(r, l),
                    None => Ok(()),
                }
            }
            // Under wire_future (mlockall(MCL_FUTURE)) new memory is locked as it faults in
            // (VM_FAULT_CHANGE_WIRING done lazily: mlock2(MLOCK_ONFAULT)).
            Effect::Wire(r) => {
                let future = map.wire_future();
                self.each(map, r, |k, e, piece| k.lock(e, &piece, future))
            }
            Effect::Unwire(r) => self.call("munlock", || os::unlock(r.start, r.end - r.start)),
            Effect::Guard(r) => {
                if self.prot_guards {
                    self.call("mprotect", || os::protect(r.start, r.end - r.start, Prot::NONE))
                } else {
                    self.advise(r, os::Advice::GuardInstall)
                }
            }
            Effect::Seal(r) => self.call("mseal", || os::seal(r.start, r.end - r.start)),
            Effect::WriteProtect(_) => Ok(()),
            Effect::Clean(..) | Effect::Submap(..) => {
                Err(Error::NotSupported("msync and submaps are not offered here"))
            }
        }
    }

    /// `mlock` a piece of an entry; inaccessible pages (`PROT_NONE`, guards) are locked on fault, since
    /// Linux cannot populate them (plain `mlock` marks them locked and then fails with ENOMEM).
    fn lock(&mut self, e: &Entry<Backing>, piece: &Range<u64>, future: bool) -> Result<(), Error> {
        let on_fault = future
            || self.opts.wire_on_fault
            || self.kernel_prot(e).is_none()
            || e.flags().contains(EntryFlags::GUARD);
        self.call("mlock", || os::lock(piece.start, piece.end - piece.start, on_fault))
    }

    /// Calls `f` for each entry overlapping `r`, with the overlapping piece.
    fn each(
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

    fn inherit(&mut self, r: &Range<u64>, i: Inherit) -> Result<(), Error> {
        let (dont_fork, wipe) = (i == Inherit::None, i == Inherit::Zero);
        self.advise(r, if dont_fork { os::Advice::DontFork } else { os::Advice::DoFork })?;
        if wipe {
            self.advise(r, os::Advice::WipeOnFork)
        } else if os::features().wipe_on_fork {
            self.advise(r, os::Advice::KeepOnFork)
        } else {
            Ok(())
        }
    }

    /// Applies an entry's non-protection attributes to a freshly mapped piece.
    fn attributes(&mut self, e: &Entry<Backing>, r: &Range<u64>) -> Result<(), Error> {
        if e.inherit() == Inherit::None || e.inherit() == Inherit::Zero {
            self.inherit(r, e.inherit())?;
        }
        match e.behavior() {
            vmspace_core::Behavior::Normal => {}
            vmspace_core::Behavior::Sequential => self.advise(r, os::Advice::Sequential)?,
            vmspace_core::Behavior::Random => self.advise(r, os::Advice::Random)?,
        }
        if e.flags().contains(EntryFlags::NOCOREDUMP) {
            self.advise(r, os::Advice::DontDump)?;
        }
        if e.flags().contains(EntryFlags::GUARD) {
            self.effect_guard(r)?;
        }
        if e.flags().contains(EntryFlags::SEALED) {
            self.call("mseal", || os::seal(r.start, r.end - r.start))?;
        }
        Ok(())
    }

    fn effect_guard(&mut self, r: &Range<u64>) -> Result<(), Error> {
        if self.prot_guards { Ok(()) } else { self.advise(r, os::Advice::GuardInstall) }
    }

    /// Makes the kernel match the map over `r` without destroying mapped contents: holes become
    /// reservation; entries get their protection, fork, dump and behaviour advice, and lock state.
    fn resync(&mut self, map: &VmMap<Backing>, r: &Range<u64>) -> Result<(), Error> {
        let mut at = r.start;
        let entries: Vec<Entry<Backing>> = map.overlapping(r.clone()).cloned().collect();
        for e in &entries {
            let piece = e.start.max(r.start)..e.end.min(r.end);
            if piece.start > at {
                self.unmap(&(at..piece.start))?;
            }
            at = piece.end;
            if e.wired_count() > 0 {
                self.lock(e, &piece, false)?;
            } else {
                self.call("munlock", || os::unlock(piece.start, piece.end - piece.start))?;
            }
            if e.flags().contains(EntryFlags::SEALED) {
                // The kernel refuses every other change to sealed memory, as the map does.
                continue;
            }
            let prot = self.kernel_prot(e);
            self.call("mprotect", || os::protect(piece.start, piece.end - piece.start, prot))?;
            self.inherit(&piece, e.inherit())?;
            let beh = match e.behavior() {
                vmspace_core::Behavior::Normal => os::Advice::Normal,
                vmspace_core::Behavior::Sequential => os::Advice::Sequential,
                vmspace_core::Behavior::Random => os::Advice::Random,
            };
            self.advise(&piece, beh)?;
            let dump = if e.flags().contains(EntryFlags::NOCOREDUMP) {
                os::Advice::DontDump
            } else {
                os::Advice::DoDump
            };
            self.advise(&piece, dump)?;
            if !self.prot_guards {
                let guard = if e.flags().contains(EntryFlags::GUARD) {
                    os::Advice::GuardInstall
                } else {
                    os::Advice::GuardRemove
                };
                self.advise(&piece, guard)?;
            }
        }
        if at < r.end {
            self.unmap(&(at..r.end))?;
        }
        Ok(())
    }
}

impl Drop for AddressSpace {
    /// Returns the whole reservation to the kernel, but for sealed pages, which cannot be unmapped.
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            crate::fault::unregister(slot);
        }
        let sealed: Vec<Range<u64>> = self.read(|m| {
            m.entries().filter(|e| e.flags().contains(EntryFlags::SEALED)).map(|e| e.start..e.end).collect()
        });
        let mut at = self.shared.outer.start;
        for r in sealed {
            if r.start > at {
                let _ = os::unmap(at, r.start - at);
            }
            at = r.end;
        }
        if self.shared.outer.end > at {
            let _ = os::unmap(at, self.shared.outer.end - at);
        }
    }
}

impl std::fmt::Debug for AddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AddressSpace {:#x?}", self.shared.outer)
    }
}

/// The map as `procstat -v` would show it.
impl std::fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.read(|m| write!(f, "{m}"))
    }
}

/// What `fork` needs of a space: its lock and map.
pub(crate) fn registered() -> Vec<Arc<Shared>> {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.iter().filter_map(Weak::upgrade).collect()
}

impl Shared {
    /// In the child of a fork: the map becomes the child's (`vmspace_fork`), and ranges the kernel did
    /// not give the child (don't-fork) become reservation again.
    pub(crate) fn after_fork_child(&self, w: &mut WriteGuard<'_, VmMap<Backing>>) {
        w.write(
            |m| {
                let Ok(child) = m.fork() else { return ((), false) };
                for e in m.entries().filter(|e| e.inherit() == Inherit::None) {
                    // The kernel left nothing here in the child: put the reservation back.
                    let _ = os::map_fixed(e.start, e.end - e.start, Prot::NONE, Fixed::Reservation);
                }
                *m = child;
                ((), true)
            },
            |other, done| *other = done.clone(),
        )
    }

    /// In the parent of a fork: mark copies copy-on-write, as the kernel just did.
    pub(crate) fn after_fork_parent(&self, w: &mut WriteGuard<'_, VmMap<Backing>>) {
        w.write(
            |m| {
                let _ = m.fork();
                m.take_effects();
                ((), true)
            },
            |other, done| *other = done.clone(),
        )
    }
}
