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
//!
//! A range's way through a call, one file per step: `validate.rs` (what Linux cannot do, checks of
//! calls that change nothing), `plan.rs` (the map operation decides; its effects are the plan),
//! `kernel.rs` (the plan's effects as system calls, as they are; `inject.rs`: failure injection),
//! `commit.rs` (the one pass: plan, kernel, publish — or `recover.rs`: putting the kernel back after a
//! failed call, or the map to the kernel). Beside it: `shared.rs` (the state the fault handler and
//! `fork` share), `stack.rs` (stack growth and the headroom guarantee), `fork.rs` (each side's map
//! after `fork(2)`), `forking.rs` (the atfork hooks).

mod commit;
mod fork;
mod forking;
mod inject;
mod kernel;
mod plan;
mod recover;
mod shared;
mod stack;
mod validate;

pub use inject::FailureMode;
pub use kernel::Options;
pub(crate) use shared::{Shared, reading_any};
pub use stack::HEADROOM;

/// Holds more locks across every fork of the process: `take` runs before the spaces' locks are taken,
/// `give_back` after they are given back (see `forking.rs`).
pub(crate) use forking::also_hold as also_hold_across_forks;

use std::cell::Cell;
use std::ops::Range;
use std::sync::Arc;

use vmspace_core::{Advice, Entry};
use vmspace_core::{EntryFlags, FindSpec, Inherit, MapSpec, Prot, VmError, VmMap};

use crate::backing::Backing;
use crate::error::Error;
use crate::os;
use crate::publish::WriteGuard;
use crate::registry;

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
        let map = match VmMap::with_page_size(base + ps, base + ps + len, ps) {
            Ok(map) => map,
            Err(e) => {
                // SAFETY: the reservation just made, known to no one else.
                let _ = unsafe { os::unmap(base, total) };
                return Err(e.into());
            }
        };
        forking::watch();
        let shared = Arc::new(Shared::new(base..base + total, map, opts));
        let slot = registry::register(&shared, base..base + total);
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

    /// Reads the map; a thread on one of this space's stacks first gets its headroom.
    fn read<R>(&self, f: impl FnOnce(&VmMap<Backing>) -> R) -> R {
        let tid = os::process::thread_id();
        if !self.shared.maps.held_by(tid) {
            self.shared.ensure_headroom();
        }
        self.shared.read(f)
    }

    /// Takes the write lock; a thread on one of this space's stacks first gets its headroom, and a
    /// fork that is taking every lock goes first.
    fn writer(&self) -> Result<WriteGuard<'_, VmMap<Backing>>, Error> {
        let tid = os::process::thread_id();
        if !self.shared.maps.held_by(tid) {
            self.shared.ensure_headroom();
            registry::wait_for_fork();
        }
        self.shared.maps.try_write(tid).map_err(|_| {
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
        let spec = validate::linux_spec(spec)?;
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
        let spec = validate::linux_spec(spec)?;
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
        validate::inherit_known(inherit)?;
        let mut w = self.writer()?;
        w.read(|m| validate::inherit(m, &range, inherit))?;
        self.shared.apply(&mut w, |m| m.inherit(range.clone(), inherit), false)
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
        validate::seal()?;
        self.apply(|m| m.seal(range.clone()))
    }

    /// Faults `range` in now (`MAP_PREFAULT`, `VM_FAULT_*` done ahead): `MADV_POPULATE_WRITE` (or
    /// `_READ` when `write` is false) on Linux 5.14+. Older kernels get a read of every page, which
    /// maps it (readable pages only; a write-populate there only reads).
    ///
    /// Validated as every call: unaligned or inverted → `InvalidArgument`; empty → nothing;
    /// outside the space or a hole → `InvalidAddress`; a page without the access (`write`: read and
    /// write, else read) or a guard page → `ProtectionFailure`. The map does not change.
    pub fn populate(&self, range: Range<u64>, write: bool) -> Result<(), Error> {
        // The read lock is enough: a concurrent unmap of the range is the caller's race, as with any
        // access to memory it is giving back.
        let needed = self.read(|m| validate::populate(m, &range, write)).map_err(Error::Vm)?;
        if needed { kernel::populate(range, write) } else { Ok(()) }
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
        let vmas = crate::smaps::read_self_over(&owned)
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
        let vmas = crate::smaps::read_self_over(self.shared.outer())
            .map_err(|source| Error::Os { call: "read /proc/self/smaps", source })?;
        let prot_guards = self.prot_guards();
        let guards = if !prot_guards && os::pagemap::shows_guards() {
            // Markers can only be on mapped pages: read pagemap over the runs of entries alone.
            let mut runs: Vec<Range<u64>> = Vec::new();
            w.read(|m| {
                for e in m.entries() {
                    match runs.last_mut() {
                        Some(r) if r.end == e.start => r.end = e.end,
                        _ => runs.push(e.range()),
                    }
                }
            });
            let mut marked = Vec::new();
            for r in runs {
                marked.extend(
                    os::pagemap::guard_runs(r)
                        .map_err(|source| Error::Os { call: "read /proc/self/pagemap", source })?,
                );
            }
            Some(marked)
        } else {
            None
        };
        Ok(w.read(|m| match &guards {
            Some(g) => crate::smaps::differences_with_guards(m, &vmas, g, prot_guards),
            None => crate::smaps::differences(m, &vmas, prot_guards),
        }))
    }

    /// Makes the next `n` system calls of this space succeed and the one after fail with `ENOMEM`: the
    /// failure-injection switch for tests. `None` turns it off.
    #[doc(hidden)]
    pub fn inject_failure_after(&self, n: Option<usize>) {
        self.inject_failure(n, rustix::io::Errno::NOMEM.raw_os_error(), FailureMode::Before);
    }

    /// [`AddressSpace::inject_failure_after`] with the errno the failing call reports and how much of
    /// it takes effect first.
    #[doc(hidden)]
    pub fn inject_failure(&self, n: Option<usize>, errno: i32, mode: FailureMode) {
        self.shared.inject.set(n.map(|n| n as u64), errno, mode);
    }

    /// Whether an injected failure is still to come: the calls since it was set did not reach it.
    #[doc(hidden)]
    pub fn injection_armed(&self) -> bool {
        self.shared.inject.armed()
    }

    /// The same switch for the system calls recovery makes after a failed call: recovery must carry on
    /// past a failing step and leave the map saying what the kernel has.
    #[doc(hidden)]
    pub fn inject_recovery_failure(&self, n: Option<usize>, errno: i32, mode: FailureMode) {
        self.shared.inject_recovery.set(n.map(|n| n as u64), errno, mode);
    }

    fn prot_guards(&self) -> bool {
        self.shared.prot_guards()
    }

    fn apply<R>(&self, op: impl Fn(&mut VmMap<Backing>) -> Result<R, VmError>) -> Result<R, Error> {
        let mut w = self.writer()?;
        self.shared.apply(&mut w, op, false)
    }

    /// [`AddressSpace::apply`] for changes the timestamp does not see (settings, reservations): the
    /// change is published to both copies whatever it did.
    pub(crate) fn change<R>(
        &self,
        op: impl Fn(&mut VmMap<Backing>) -> Result<R, VmError>,
    ) -> Result<R, Error> {
        let mut w = self.writer()?;
        self.shared.apply(&mut w, op, true)
    }

    /// From now on every change keeps room in the map for stack growth from the fault handler.
    pub(crate) fn keep_growth_room(&self) {
        self.shared.stacks.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tells the calling thread it runs on `stack` of this space, mapped from `bottom` up.
    pub(crate) fn learn_stack(&self, stack: Range<u64>, bottom: u64) {
        self.shared.learn_stack(stack, bottom);
    }

    /// Whether the fault handler can see this space.
    pub(crate) fn fault_visible(&self) -> bool {
        self.slot.is_some()
    }
}

impl Drop for AddressSpace {
    /// Returns the whole reservation to the kernel, but for sealed pages, which cannot be unmapped.
    /// The space leaves the registry first (so no fork or fault handler can see it half-gone), then
    /// takes its own write lock, so no call on it is in flight.
    fn drop(&mut self) {
        registry::unregister(&*self.shared, self.slot);
        let tid = os::process::thread_id();
        // `Err`: dropped from inside a call on itself (a closure that owned the space), so no other
        // call can be in flight.
        let w = self.shared.maps.try_write(tid).ok();
        let sealed: Vec<Range<u64>> = self.shared.read(|m| {
            m.entries().filter(|e| e.flags().contains(EntryFlags::SEALED)).map(|e| e.start..e.end).collect()
        });
        let outer = self.shared.outer().clone();
        let mut at = outer.start;
        for r in sealed.into_iter().chain(std::iter::once(outer.end..outer.end)) {
            if r.start > at {
                // SAFETY: the space's own reservation; dropping the space ends every use of it (the
                // caller holds no reference into it, or the borrow checker would have kept it alive).
                let _ = unsafe { os::unmap(at, r.start - at) };
            }
            at = r.end;
        }
        drop(w);
    }
}

impl std::fmt::Debug for AddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AddressSpace {:#x?}", self.shared.outer())
    }
}

/// The map as `procstat -v` would show it.
impl std::fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.read(|m| write!(f, "{m}"))
    }
}
