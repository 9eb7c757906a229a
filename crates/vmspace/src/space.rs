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

use std::ops::Range;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use vmspace_core::{Advice, Effect, Entry, EntryFlags, FindSpec, Inherit, MapSpec, Prot, VmError, VmMap};

use crate::backing::Backing;
use crate::error::Error;
use crate::os::{self, Fixed};

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

pub(crate) struct Inner {
    pub(crate) map: VmMap<Backing>,
    /// Test hook: the number of system calls to allow before one fails with `ENOMEM`.
    fail_after: Option<usize>,
}

pub(crate) struct Shared {
    /// The whole reservation, with one guard page below and above the map's range.
    outer: Range<u64>,
    pub(crate) inner: RwLock<Inner>,
    opts: Options,
}

/// Every live space, so that a process fork can bring each one's map along ([`crate::fork`]).
pub(crate) static REGISTRY: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// A range of this process's address space managed through a [`VmMap`] (the seed's `struct vmspace`).
///
/// `Send + Sync`: calls from many threads serialise on the map lock (the seed's `vm_map_lock`);
/// snapshots (`lookup_entry`, `regions`) take it shared. Dropping the space returns the whole range to
/// the kernel, except sealed pages, which by definition can never be unmapped.
pub struct AddressSpace {
    shared: Arc<Shared>,
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
            inner: RwLock::new(Inner { map, fail_after: None }),
            opts,
        });
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|w| w.strong_count() > 0);
        reg.push(Arc::downgrade(&shared));
        Ok(AddressSpace { shared })
    }

    /// The managed range `[start, end)`.
    pub fn range(&self) -> Range<u64> {
        let m = self.read();
        m.map.min()..m.map.max()
    }

    /// The options this space was reserved with.
    pub fn options(&self) -> Options {
        self.shared.opts
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.shared.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.shared.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Maps `len` bytes anywhere inside the space (first fit) and returns the address (`vm_map_find`).
    pub fn map(&self, len: u64, spec: MapSpec<Backing>) -> Result<u64, Error> {
        self.map_with(&FindSpec::new(len), spec)
    }

    /// [`AddressSpace::map`] with alignment, hint, bounds and direction.
    pub fn map_with(&self, find: &FindSpec, spec: MapSpec<Backing>) -> Result<u64, Error> {
        let spec = linux_spec(spec)?;
        let mut g = self.write();
        let at = g.map.find_space_with(find)?;
        self.apply(&mut g, |m| m.insert(at..at + find.len, spec))?;
        Ok(at)
    }

    /// Maps `range` exactly (`vm_map_insert`); fails with `NoSpace` if any page is mapped (it never
    /// silently replaces memory).
    pub fn map_at(&self, range: Range<u64>, spec: MapSpec<Backing>) -> Result<(), Error> {
        let spec = linux_spec(spec)?;
        self.apply(&mut self.write(), |m| m.insert(range, spec))
    }

    /// Unmaps `range` (`vm_map_remove`); holes are fine. The pages go back to being reservation.
    /// The caller must hold no reference into the range.
    pub fn unmap(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(&mut self.write(), |m| m.remove(range))
    }

    /// Sets the protection of `range` (`vm_map_protect`), within each page's max protection.
    pub fn protect(&self, range: Range<u64>, prot: Prot) -> Result<(), Error> {
        self.apply(&mut self.write(), |m| m.protect(range, prot))
    }

    /// Lowers the max protection of `range` (`vm_map_protect` with `set_max`).
    pub fn protect_max(&self, range: Range<u64>, max: Prot) -> Result<(), Error> {
        self.apply(&mut self.write(), |m| m.protect_max(range, max))
    }

    /// Sets what a forked child gets of `range` (`vm_map_inherit`): none → `MADV_DONTFORK`, zero →
    /// `MADV_WIPEONFORK`; share and copy are decided by the backing on Linux, so share is refused on
    /// private memory and copy on shared memory (`NotSupported`).
    pub fn inherit(&self, range: Range<u64>, inherit: Inherit) -> Result<(), Error> {
        if inherit == Inherit::Zero && !os::features().wipe_on_fork {
            return Err(Error::NotSupported("MADV_WIPEONFORK needs Linux 4.14"));
        }
        let mut g = self.write();
        for e in g.map.overlapping(range.clone()) {
            match (inherit, e.object().is_shared()) {
                (Inherit::Share, false) => {
                    return Err(Error::NotSupported("Linux cannot share private memory with a child"));
                }
                (Inherit::Copy, true) => {
                    return Err(Error::NotSupported("Linux cannot copy shared memory to a child"));
                }
                _ => {}
            }
        }
        self.apply(&mut g, |m| m.inherit(range, inherit))
    }

    /// Applies `advice` to `range` (`vm_map_madvise`). DontNeed and Free destroy contents: the caller
    /// must hold no reference into the range. NoSync and AutoSync have no Linux counterpart and only
    /// change the map.
    pub fn madvise(&self, range: Range<u64>, advice: Advice) -> Result<(), Error> {
        self.apply(&mut self.write(), |m| m.madvise(range, advice))
    }

    /// User-wires `range` (`mlock`, or `mlock2(MLOCK_ONFAULT)` with `Options::wire_on_fault`).
    pub fn wire(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(&mut self.write(), |m| m.wire(range))
    }

    /// Undoes the user wiring of `range` (`munlock`).
    pub fn unwire(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(&mut self.write(), |m| m.unwire(range))
    }

    /// Makes `range` a guard region: `MADV_GUARD_INSTALL` (no VMA, contents dropped), or `PROT_NONE`
    /// on kernels before 6.13 or with `Options::guard_fallback`.
    pub fn guard(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(&mut self.write(), |m| m.guard(range))
    }

    /// Removes guard regions from `range` (`MADV_GUARD_REMOVE`, or the entry's protection back).
    pub fn unguard(&self, range: Range<u64>) -> Result<(), Error> {
        self.apply(&mut self.write(), |m| m.unguard(range))
    }

    /// Seals `range` (`mseal`): from now on neither the kernel nor the map will unmap, re-protect or
    /// destructively advise it. `NotSupported` before Linux 6.10.
    pub fn seal(&self, range: Range<u64>) -> Result<(), Error> {
        if !os::features().mseal {
            return Err(Error::NotSupported("mseal needs Linux 6.10"));
        }
        self.apply(&mut self.write(), |m| m.seal(range))
    }

    /// A copy of the entry containing `addr` (`vm_map_lookup_entry`).
    pub fn lookup_entry(&self, addr: u64) -> Option<Entry<Backing>> {
        self.read().map.lookup_entry(addr).cloned()
    }

    /// A copy of every entry, in address order.
    pub fn regions(&self) -> Vec<Entry<Backing>> {
        self.read().map.entries().cloned().collect()
    }

    /// Runs `f` on the map under the shared lock (for printing, or checks that need a consistent view).
    pub fn with_map<R>(&self, f: impl FnOnce(&VmMap<Backing>) -> R) -> R {
        f(&self.read().map)
    }

    /// Counters from the map, `mincore` and `/proc/self/smaps` restricted to the owned range.
    pub fn stats(&self) -> Result<Stats, Error> {
        let g = self.read();
        let mut s = Stats {
            entries: g.map.len(),
            mapped: g.map.size(),
            wired: g.map.wired_size(),
            ..Stats::default()
        };
        let ps = g.map.page_size();
        for e in g.map.entries() {
            s.resident += os::resident_pages(e.start, e.len())
                .map_err(|source| Error::Os { call: "mincore", source })?
                * ps;
        }
        let owned = g.map.min()..g.map.max();
        for vma in
            crate::smaps::read_self().map_err(|source| Error::Os { call: "read /proc/self/smaps", source })?
        {
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
        let g = self.read();
        let vmas = crate::smaps::read_self()
            .map_err(|source| Error::Os { call: "read /proc/self/smaps", source })?;
        Ok(crate::smaps::differences(
            &g.map,
            &vmas,
            self.shared.opts.guard_fallback || !os::features().guard_install,
        ))
    }

    /// Makes the next `n` system calls of this space succeed and the one after fail with `ENOMEM`: the
    /// failure-injection switch for tests. `None` turns it off.
    #[doc(hidden)]
    pub fn inject_failure_after(&self, n: Option<usize>) {
        self.write().fail_after = n;
    }

    /// The guard mode in force: `PROT_NONE` guards (fallback) or guard markers.
    fn prot_guards(&self) -> bool {
        self.shared.opts.guard_fallback || !os::features().guard_install
    }

    /// Runs a map operation and applies its effects to the kernel; on a failing system call, undoes
    /// the map and puts the kernel back in line with it.
    fn apply(
        &self,
        g: &mut Inner,
        op: impl FnOnce(&mut VmMap<Backing>) -> Result<(), VmError>,
    ) -> Result<(), Error> {
        op(&mut g.map)?;
        let effects = g.map.take_effects();
        let mut failed = None;
        {
            let mut k = Kernel {
                fail_after: &mut g.fail_after,
                opts: self.shared.opts,
                prot_guards: self.prot_guards(),
            };
            for (i, fx) in effects.iter().enumerate() {
                if let Err(err) = k.effect(&g.map, fx) {
                    failed = Some((i, err));
                    break;
                }
            }
        }
        match failed {
            None => Ok(()),
            Some((i, err)) => {
                self.recover(g, &effects[..=i]);
                Err(err)
            }
        }
    }

    /// After effects `done` (the last one failed, perhaps half-way): revert the map, keep what cannot
    /// be reverted (unmapped memory stays unmapped, so the map forgets it too), and re-apply the map's
    /// state to every touched range.
    fn recover(&self, g: &mut Inner, done: &[Effect<Backing>]) {
        g.map.undo();
        let prot_guards = self.prot_guards();
        let mut k = Kernel { fail_after: &mut None, opts: self.shared.opts, prot_guards };
        for fx in done {
            if let Effect::Unmap(r) = fx {
                // The kernel may have dropped this memory: make the map say so, and make sure it did.
                let _ = g.map.remove(r.clone());
                g.map.take_effects();
                let _ = k.unmap(r);
            }
        }
        for fx in done {
            if let Some(r) = effect_range(fx) {
                let _ = k.resync(&g.map, &r);
            }
        }
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
    fail_after: &'a mut Option<usize>,
    opts: Options,
    prot_guards: bool,
}

impl Kernel<'_> {
    fn call<T>(&mut self, call: &'static str, f: impl FnOnce() -> std::io::Result<T>) -> Result<T, Error> {
        if let Some(n) = self.fail_after {
            if *n == 0 {
                *self.fail_after = None;
                return Err(Error::Os { call, source: std::io::Error::from_raw_os_error(libc::ENOMEM) });
            }
            *n -= 1;
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
            Effect::Wire(r) => self.each(map, r, |k, e, piece| k.lock(e, &piece)),
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
    fn lock(&mut self, e: &Entry<Backing>, piece: &Range<u64>) -> Result<(), Error> {
        let on_fault =
            self.opts.wire_on_fault || self.kernel_prot(e).is_none() || e.flags().contains(EntryFlags::GUARD);
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
                self.lock(e, &piece)?;
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
        let g = self.read();
        let mut at = self.shared.outer.start;
        for e in g.map.entries().filter(|e| e.flags().contains(EntryFlags::SEALED)) {
            if e.start > at {
                let _ = os::unmap(at, e.start - at);
            }
            at = e.end;
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
        write!(f, "{}", self.read().map)
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
    pub(crate) fn after_fork_child(&self, g: &mut Inner) {
        let child = match g.map.fork() {
            Ok(c) => c,
            Err(_) => return,
        };
        let parent_entries: Vec<Range<u64>> =
            g.map.entries().filter(|e| e.inherit() == Inherit::None).map(|e| e.start..e.end).collect();
        for r in parent_entries {
            // The kernel left nothing here in the child: put the reservation back.
            let _ = os::map_fixed(r.start, r.end - r.start, Prot::NONE, Fixed::Reservation);
        }
        g.map = child;
    }

    /// In the parent of a fork: mark copies copy-on-write, as the kernel just did.
    pub(crate) fn after_fork_parent(&self, g: &mut Inner) {
        let _ = g.map.fork();
        g.map.take_effects();
    }
}
