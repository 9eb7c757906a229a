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

/// `PIDFD_SELF_THREAD_GROUP` (Linux 6.14): a pidfd naming the calling process, valid in every process
/// (a fork child's `PIDFD_SELF` is the child).
const PIDFD_SELF_PROCESS: libc::c_int = -20000;
/// `UIO_MAXIOV`: the most iovecs one `process_madvise` call takes.
pub const MADVISE_BATCH_MAX: usize = 1024;

/// How this process can batch `madvise` calls, detected once ([`madvise_batching`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// `process_madvise(PIDFD_SELF, ..)`: Linux 6.14 with every advice allowed on the caller itself.
    PidfdSelf,
    /// `process_madvise(pidfd_open(getpid()), ..)`: Linux 6.13's self-advice through a real pidfd (opened
    /// per batch, so a fork child never advises its parent).
    PidfdOpen,
    /// No `process_madvise` for `MADV_FREE`/`MADV_DONTNEED` on ourselves: one `madvise` per range.
    None,
}

/// Whether `process_madvise` can carry `MADV_FREE` and `MADV_DONTNEED` for this process, probed once on a
/// scratch page.
pub fn madvise_batching() -> Batching {
    static B: OnceLock<Batching> = OnceLock::new();
    *B.get_or_init(|| {
        let ps = page_size();
        let Ok(addr) = reserve(ps) else { return Batching::None };
        let mut found = Batching::None;
        if map_fixed(addr, ps, Prot::RW, Fixed::Anonymous).is_ok() {
            for (how, pidfd) in [(Batching::PidfdSelf, Some(PIDFD_SELF_PROCESS)), (Batching::PidfdOpen, None)]
            {
                let ok = [libc::MADV_FREE, libc::MADV_DONTNEED]
                    .iter()
                    .all(|a| process_madvise_raw(pidfd, &[(addr, ps)], *a).is_ok_and(|n| n == ps as usize));
                if ok {
                    found = how;
                    break;
                }
            }
        }
        let _ = unmap(addr, ps);
        found
    })
}

/// `process_madvise(pidfd, iov, n, advice, 0)` on this process; `pidfd == None` opens one with
/// `pidfd_open(getpid(), 0)` for this call. Returns the bytes advised.
fn process_madvise_raw(
    pidfd: Option<libc::c_int>,
    ranges: &[(u64, u64)],
    advice: libc::c_int,
) -> io::Result<usize> {
    let iov: Vec<libc::iovec> =
        ranges.iter().map(|&(a, l)| libc::iovec { iov_base: ptr(a), iov_len: l as usize }).collect();
    let (fd, opened) = match pidfd {
        Some(fd) => (fd, false),
        None => {
            // SAFETY: a raw syscall with integer arguments; it returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            (fd as libc::c_int, true)
        }
    };
    // SAFETY: `iov` holds `iov.len()` valid iovecs describing ranges of this process that the caller owns
    // and holds no references into (the advice is FREE or DONTNEED); the kernel only reads the array.
    let r = unsafe {
        libc::syscall(libc::SYS_process_madvise, fd, iov.as_ptr(), iov.len(), advice, 0 as libc::c_uint)
    };
    let result = if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as usize) };
    if opened {
        // SAFETY: `fd` is the descriptor pidfd_open gave us above, closed exactly once.
        unsafe { libc::close(fd) };
    }
    result
}

/// Destructive advice on many ranges at once: `process_madvise` in batches of up to
/// [`MADVISE_BATCH_MAX`] ranges where the kernel has it ([`madvise_batching`]) and `batch` is set, else (or
/// for a batch the kernel refused part of) one `madvise` per range. `free` chooses `MADV_FREE` over
/// `MADV_DONTNEED`.
///
/// Returns the number of system calls made and the ranges that failed (index into `ranges`, errno).
/// The caller owns every range and holds no references into them.
pub fn advise_many(ranges: &[(u64, u64)], free: bool, batch: bool) -> (u64, Vec<(usize, i32)>) {
    let advice = if free { Advice::Free } else { Advice::DontNeed };
    let raw = if free { libc::MADV_FREE } else { libc::MADV_DONTNEED };
    let mut calls = 0u64;
    let mut failed = Vec::new();
    let how = if batch && ranges.len() > 1 { madvise_batching() } else { Batching::None };
    for (c, chunk) in ranges.chunks(MADVISE_BATCH_MAX).enumerate() {
        let base = c * MADVISE_BATCH_MAX;
        if how != Batching::None {
            let pidfd = if how == Batching::PidfdSelf { Some(PIDFD_SELF_PROCESS) } else { None };
            let want: u64 = chunk.iter().map(|r| r.1).sum();
            calls += 1;
            if process_madvise_raw(pidfd, chunk, raw).is_ok_and(|n| n as u64 == want) {
                continue;
            }
        }
        for (i, &(a, l)) in chunk.iter().enumerate() {
            calls += 1;
            if let Err(e) = advise(a, l, advice) {
                failed.push((base + i, e.raw_os_error().unwrap_or(libc::EIO)));
            }
        }
    }
    (calls, failed)
}

/// `getrusage(RUSAGE_SELF)`: (minor page faults, peak resident set in bytes) of this process.
pub fn rusage() -> (u64, u64) {
    // SAFETY: `getrusage` fills the zeroed struct we pass; a zeroed `rusage` is a valid value.
    unsafe {
        let mut u: libc::rusage = core::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return (0, 0);
        }
        (u.ru_minflt as u64, (u.ru_maxrss as u64).saturating_mul(1024))
    }
}
