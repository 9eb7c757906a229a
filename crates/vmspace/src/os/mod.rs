//! The only place that calls the kernel: rustix where it has the call, libc for what it lacks
//! (`MADV_GUARD_INSTALL`/`REMOVE`, `mseal`, `mincore`, `process_madvise`, signals, `fork`, threads on
//! a given stack).
//!
//! Invariant: every call that can change memory at an arbitrary address (`map_fixed`, `unmap`,
//! `protect`, `advise`, `lock`, `unlock`, `seal`, `advise_many`) is an `unsafe fn` whose `# Safety`
//! section says what the caller owns, as rustix does; the safe functions create new mappings, read, or
//! probe. Kernel features newer than Linux 4.14 are detected once ([`features`]) and each has a
//! fallback or a clear `NotSupported` in the caller.

pub mod inspect;
mod mm;
pub(crate) mod pagemap;
pub(crate) mod probed;
pub(crate) mod process;
pub(crate) mod signal;

pub use mm::{
    Advice, Batching, Fixed, MADVISE_BATCH_MAX, advise, advise_many, lock, madvise_batching, map_fixed,
    memfd, page_size, protect, reserve, resident_pages, rusage, seal, unlock, unmap,
};

use std::io;

use vmspace_core::Prot;

use probed::Probed;

/// What this kernel supports, detected once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// `MADV_GUARD_INSTALL` / `MADV_GUARD_REMOVE` (6.13).
    pub guard_install: bool,
    /// `mseal` (6.10).
    pub mseal: bool,
    /// `MADV_WIPEONFORK` (4.14).
    pub wipe_on_fork: bool,
    /// `MADV_POPULATE_READ` / `MADV_POPULATE_WRITE` (5.14).
    pub populate: bool,
}

/// The features of the running kernel, probed once on a scratch mapping (until the probe can run:
/// at a limit that refuses its mapping, every feature is taken as absent for that call only).
pub fn features() -> Features {
    static F: Probed = Probed::new();
    let bits = F.get(probe).unwrap_or(0);
    Features {
        guard_install: bits & 1 != 0,
        mseal: bits & 2 != 0,
        wipe_on_fork: bits & 4 != 0,
        populate: bits & 8 != 0,
    }
}

fn probe() -> Option<u32> {
    let ps = page_size();
    let addr = reserve(2 * ps).ok()?;
    // Each probe acts on memory only this function knows; the mapping is private and anonymous.
    let scratch = addr + ps;
    // SAFETY: `[addr, addr + 2 pages)` is a reservation this function just made and nobody else knows.
    let bits = unsafe {
        if map_fixed(scratch, ps, Prot::RW, Fixed::Anonymous).is_err() {
            let _ = unmap(addr, 2 * ps);
            return None;
        }
        let guard_install = advise(scratch, ps, Advice::GuardInstall).is_ok();
        let wipe_on_fork = advise(scratch, ps, Advice::WipeOnFork).is_ok();
        let populate = advise(scratch, ps, Advice::PopulateWrite).is_ok();
        // mseal with an invalid flag is EINVAL where the call exists and ENOSYS where it does not;
        // nothing gets sealed either way.
        let mseal =
            !matches!(mm::seal_with_flags(scratch, ps, 1), Err(e) if e.raw_os_error() == Some(libc::ENOSYS));
        let _ = unmap(addr, 2 * ps);
        u32::from(guard_install)
            | u32::from(mseal) << 1
            | u32::from(wipe_on_fork) << 2
            | u32::from(populate) << 3
    };
    Some(bits)
}

/// An errno as an `io::Error`.
pub(crate) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}
