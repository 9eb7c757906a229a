//! The one file that issues system calls. rustix where it has the call; libc for what it lacks
//! (`MADV_GUARD_INSTALL`/`REMOVE`, `mseal`, `mincore`, `process_madvise`).
//!
//! Every function takes addresses as `u64` inside a range the caller owns (an `AddressSpace`'s
//! reservation) and says which call it makes. Kernel features newer than Linux 4.14 are detected once
//! ([`features`]) and each has a fallback or a clear `NotSupported` in the caller.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use rustix::mm::{self, MapFlags, MprotectFlags, ProtFlags};
use vmspace_core::Prot;

/// `MADV_GUARD_INSTALL` (Linux 6.13): install guard markers that fault on any access, without a VMA.
const MADV_GUARD_INSTALL: libc::c_int = 102;
/// `MADV_GUARD_REMOVE` (Linux 6.13).
const MADV_GUARD_REMOVE: libc::c_int = 103;
/// `mseal` (Linux 6.10): the same number on every 64-bit architecture.
const SYS_MSEAL: libc::c_long = 462;

/// The page size of this machine.
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

fn ptr(addr: u64) -> *mut core::ffi::c_void {
    addr as usize as *mut core::ffi::c_void
}

fn prot_flags(p: Prot) -> ProtFlags {
    let mut f = ProtFlags::empty();
    if p.contains(Prot::READ) {
        f |= ProtFlags::READ;
    }
    if p.contains(Prot::WRITE) {
        f |= ProtFlags::WRITE;
    }
    if p.contains(Prot::EXECUTE) {
        f |= ProtFlags::EXEC;
    }
    f
}

fn mprotect_flags(p: Prot) -> MprotectFlags {
    MprotectFlags::from_bits_truncate(prot_flags(p).bits())
}

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

/// The features of the running kernel, probed once on a scratch mapping.
pub fn features() -> Features {
    static F: OnceLock<Features> = OnceLock::new();
    *F.get_or_init(probe)
}

fn probe() -> Features {
    let ps = page_size();
    let Ok(addr) = reserve(2 * ps) else {
        return Features { guard_install: false, mseal: false, wipe_on_fork: false, populate: false };
    };
    // Each probe acts on memory only this function knows; the mapping is private and anonymous.
    let scratch = addr + ps;
    let _ = map_fixed(scratch, ps, Prot::RW, Fixed::Anonymous);
    let guard_install = raw_madvise(scratch, ps, MADV_GUARD_INSTALL).is_ok();
    let wipe_on_fork = advise(scratch, ps, Advice::WipeOnFork).is_ok();
    let populate = advise(scratch, ps, Advice::PopulateWrite).is_ok();
    // mseal with an invalid flag is EINVAL where the call exists and ENOSYS where it does not; nothing
    // gets sealed either way.
    // SAFETY: a raw syscall with plain integer arguments; flags != 0 makes the kernel refuse it.
    let r = unsafe { libc::syscall(SYS_MSEAL, scratch as usize, ps as usize, 1usize) };
    let mseal = !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS));
    let _ = unmap(addr, 2 * ps);
    Features { guard_install, mseal, wipe_on_fork, populate }
}

/// `mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)`: reserves address space.
pub fn reserve(len: u64) -> io::Result<u64> {
    // SAFETY: a new mapping at an address the kernel chooses overlaps no existing memory.
    let p = unsafe {
        mm::mmap_anonymous(
            core::ptr::null_mut(),
            len as usize,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    }?;
    Ok(p as usize as u64)
}

/// What to map at a fixed address.
pub enum Fixed<'a> {
    /// Private anonymous memory.
    Anonymous,
    /// The reservation itself: `PROT_NONE`, `MAP_NORESERVE`, private anonymous.
    Reservation,
    /// A file or memfd at an offset, shared or private.
    File {
        /// The file.
        fd: &'a OwnedFd,
        /// Offset of the first byte.
        offset: u64,
        /// `MAP_SHARED` rather than `MAP_PRIVATE`.
        shared: bool,
    },
}

/// `mmap(addr, len, prot, MAP_FIXED | ..)`: replaces whatever is at `[addr, addr + len)`.
///
/// The caller owns the range (it lies inside its reservation), so replacing it destroys nothing that
/// anyone else points into.
pub fn map_fixed(addr: u64, len: u64, prot: Prot, what: Fixed<'_>) -> io::Result<()> {
    // SAFETY: MAP_FIXED replaces only `[addr, addr + len)`, which the caller owns (see above).
    let p = unsafe {
        match what {
            Fixed::Anonymous => mm::mmap_anonymous(
                ptr(addr),
                len as usize,
                prot_flags(prot),
                MapFlags::PRIVATE | MapFlags::FIXED,
            ),
            Fixed::Reservation => mm::mmap_anonymous(
                ptr(addr),
                len as usize,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
            ),
            Fixed::File { fd, offset, shared } => {
                let kind = if shared { MapFlags::SHARED } else { MapFlags::PRIVATE };
                mm::mmap(
                    ptr(addr),
                    len as usize,
                    prot_flags(prot),
                    kind | MapFlags::FIXED,
                    fd.as_fd(),
                    offset,
                )
            }
        }
    }?;
    debug_assert_eq!(p as usize as u64, addr);
    Ok(())
}

/// `munmap(addr, len)`.
pub fn unmap(addr: u64, len: u64) -> io::Result<()> {
    // SAFETY: the caller owns the range and holds no references into it.
    unsafe { mm::munmap(ptr(addr), len as usize) }.map_err(Into::into)
}

/// `mprotect(addr, len, prot)`.
pub fn protect(addr: u64, len: u64, prot: Prot) -> io::Result<()> {
    // SAFETY: changes protection of memory the caller owns; accesses that become illegal fault, which is
    // the point.
    unsafe { mm::mprotect(ptr(addr), len as usize, mprotect_flags(prot)) }.map_err(Into::into)
}

/// The `madvise` values vmspace uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    /// `MADV_NORMAL`.
    Normal,
    /// `MADV_SEQUENTIAL`.
    Sequential,
    /// `MADV_RANDOM`.
    Random,
    /// `MADV_WILLNEED`.
    WillNeed,
    /// `MADV_DONTNEED`.
    DontNeed,
    /// `MADV_FREE`.
    Free,
    /// `MADV_DONTFORK`.
    DontFork,
    /// `MADV_DOFORK`.
    DoFork,
    /// `MADV_WIPEONFORK`.
    WipeOnFork,
    /// `MADV_KEEPONFORK`.
    KeepOnFork,
    /// `MADV_DONTDUMP`.
    DontDump,
    /// `MADV_DODUMP`.
    DoDump,
    /// `MADV_POPULATE_READ`.
    PopulateRead,
    /// `MADV_POPULATE_WRITE`.
    PopulateWrite,
    /// `MADV_GUARD_INSTALL`.
    GuardInstall,
    /// `MADV_GUARD_REMOVE`.
    GuardRemove,
}

/// `madvise(addr, len, advice)`.
pub fn advise(addr: u64, len: u64, advice: Advice) -> io::Result<()> {
    use mm::Advice as A;
    let a = match advice {
        Advice::Normal => A::Normal,
        Advice::Sequential => A::Sequential,
        Advice::Random => A::Random,
        Advice::WillNeed => A::WillNeed,
        Advice::DontNeed => A::LinuxDontNeed,
        Advice::Free => A::LinuxFree,
        Advice::DontFork => A::LinuxDontFork,
        Advice::DoFork => A::LinuxDoFork,
        Advice::WipeOnFork => A::LinuxWipeOnFork,
        Advice::KeepOnFork => A::LinuxKeepOnFork,
        Advice::DontDump => A::LinuxDontDump,
        Advice::DoDump => A::LinuxDoDump,
        Advice::PopulateRead => A::LinuxPopulateRead,
        Advice::PopulateWrite => A::LinuxPopulateWrite,
        Advice::GuardInstall => return raw_madvise(addr, len, MADV_GUARD_INSTALL),
        Advice::GuardRemove => return raw_madvise(addr, len, MADV_GUARD_REMOVE),
    };
    // SAFETY: advice on memory the caller owns; destructive advice (DONTNEED, FREE) is only issued by
    // operations whose callers promised to hold no references into the range.
    unsafe { mm::madvise(ptr(addr), len as usize, a) }.map_err(Into::into)
}

fn raw_madvise(addr: u64, len: u64, advice: libc::c_int) -> io::Result<()> {
    // SAFETY: as `advise`; the guard values only install or remove fault markers on owned memory.
    let r = unsafe { libc::madvise(ptr(addr), len as usize, advice) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `mlock(addr, len)`, or `mlock2(addr, len, MLOCK_ONFAULT)` when `on_fault`.
pub fn lock(addr: u64, len: u64, on_fault: bool) -> io::Result<()> {
    // SAFETY: locking pages in memory has no memory-safety effect.
    unsafe {
        if on_fault {
            mm::mlock_with(ptr(addr), len as usize, mm::MlockFlags::ONFAULT)
        } else {
            mm::mlock(ptr(addr), len as usize)
        }
    }
    .map_err(Into::into)
}

/// `munlock(addr, len)`.
pub fn unlock(addr: u64, len: u64) -> io::Result<()> {
    // SAFETY: unlocking pages has no memory-safety effect.
    unsafe { mm::munlock(ptr(addr), len as usize) }.map_err(Into::into)
}

/// `mseal(addr, len, 0)`.
pub fn seal(addr: u64, len: u64) -> io::Result<()> {
    // SAFETY: a raw syscall with integer arguments; sealing only forbids later changes.
    let r = unsafe { libc::syscall(SYS_MSEAL, addr as usize, len as usize, 0usize) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `mincore(addr, len)`: how many of the pages are resident.
pub fn resident_pages(addr: u64, len: u64) -> io::Result<u64> {
    let ps = page_size();
    let pages = len.div_ceil(ps) as usize;
    let mut vec = vec![0u8; pages];
    // SAFETY: `vec` has one byte per page of the range, as mincore requires; the range is mapped.
    let r = unsafe { libc::mincore(ptr(addr), len as usize, vec.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(vec.iter().filter(|b| **b & 1 != 0).count() as u64)
}

/// `memfd_create(name, MFD_CLOEXEC)` then `ftruncate(len)`: shared anonymous memory with a file
/// descriptor, so it can be mapped more than once.
pub fn memfd(name: &str, len: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, len)?;
    Ok(fd)
}
