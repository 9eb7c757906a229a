//! Memory calls: `mmap`, `munmap`, `mprotect`, `madvise`, `mlock`, `mseal`, `mincore`, `memfd`,
//! `process_madvise`. Addresses are `u64`; each function says which call it makes.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

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
/// # Safety
/// The caller owns `[addr, addr + len)` (it lies inside a reservation of its own) and nothing holds a
/// reference into it: its contents are replaced.
pub unsafe fn map_fixed(addr: u64, len: u64, prot: Prot, what: Fixed<'_>) -> io::Result<()> {
    // SAFETY: MAP_FIXED replaces only `[addr, addr + len)`, which the caller owns (above).
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
///
/// # Safety
/// The caller owns `[addr, addr + len)` and nothing holds a reference into it.
pub unsafe fn unmap(addr: u64, len: u64) -> io::Result<()> {
    // SAFETY: the caller owns the range and holds no references into it (above).
    unsafe { mm::munmap(ptr(addr), len as usize) }.map_err(Into::into)
}

/// `mprotect(addr, len, prot)`.
///
/// # Safety
/// The caller owns `[addr, addr + len)`; nothing relies on an access the new protection forbids (safe
/// code holding a reference into the range would fault, or write to memory it believes read-only).
pub unsafe fn protect(addr: u64, len: u64, prot: Prot) -> io::Result<()> {
    // SAFETY: changes protection of memory the caller owns (above).
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
///
/// # Safety
/// The caller owns `[addr, addr + len)`. For advice that drops or hides contents (`DontNeed`, `Free`,
/// `GuardInstall`, `WipeOnFork` in a child) nothing may hold a reference into the range.
pub unsafe fn advise(addr: u64, len: u64, advice: Advice) -> io::Result<()> {
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
        // SAFETY: as above.
        Advice::GuardInstall => return unsafe { raw_madvise(addr, len, MADV_GUARD_INSTALL) },
        // SAFETY: as above.
        Advice::GuardRemove => return unsafe { raw_madvise(addr, len, MADV_GUARD_REMOVE) },
    };
    // SAFETY: advice on memory the caller owns, with no references into it for destructive advice
    // (the caller's promise, above).
    unsafe { mm::madvise(ptr(addr), len as usize, a) }.map_err(Into::into)
}

/// # Safety
/// As [`advise`].
unsafe fn raw_madvise(addr: u64, len: u64, advice: libc::c_int) -> io::Result<()> {
    // SAFETY: as `advise`; the guard values only install or remove fault markers on owned memory.
    let r = unsafe { libc::madvise(ptr(addr), len as usize, advice) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `mlock(addr, len)`, or `mlock2(addr, len, MLOCK_ONFAULT)` when `on_fault`.
///
/// # Safety
/// The caller owns `[addr, addr + len)`: locking changes the VMA layout under whoever else manages it
/// (its owner's map would no longer say what the kernel has), and plain `mlock` faults every page in.
pub unsafe fn lock(addr: u64, len: u64, on_fault: bool) -> io::Result<()> {
    // SAFETY: the caller owns the range (above); locking itself reads or writes no memory.
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
///
/// # Safety
/// As [`lock`].
pub unsafe fn unlock(addr: u64, len: u64) -> io::Result<()> {
    // SAFETY: the caller owns the range (above); unlocking reads or writes no memory.
    unsafe { mm::munlock(ptr(addr), len as usize) }.map_err(Into::into)
}

/// `mseal(addr, len, 0)`: irrevocable; the range can never be unmapped or re-protected again.
///
/// # Safety
/// The caller owns `[addr, addr + len)` for the life of the process: whoever frees it later (an
/// allocator, a drop) will fail.
pub unsafe fn seal(addr: u64, len: u64) -> io::Result<()> {
    // SAFETY: forwarded (above).
    unsafe { seal_with_flags(addr, len, 0) }
}

/// `mseal(addr, len, flags)`; a non-zero `flags` is refused by the kernel (the feature probe).
///
/// # Safety
/// As [`seal`] when `flags` is 0.
pub(super) unsafe fn seal_with_flags(addr: u64, len: u64, flags: usize) -> io::Result<()> {
    // SAFETY: a raw syscall with integer arguments; the caller owns the range (above).
    let r = unsafe { libc::syscall(SYS_MSEAL, addr as usize, len as usize, flags) };
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
    static B: super::probed::Probed = super::probed::Probed::new();
    match B.get(probe_batching) {
        Some(1) => Batching::PidfdSelf,
        Some(2) => Batching::PidfdOpen,
        _ => Batching::None,
    }
}

fn probe_batching() -> Option<u32> {
    let ps = page_size();
    let addr = reserve(ps).ok()?;
    let mut found = None;
    // SAFETY: `addr` is a page this probe just reserved and nobody else knows.
    if unsafe { map_fixed(addr, ps, Prot::RW, Fixed::Anonymous) }.is_ok() {
        found = Some(0);
        for (how, pidfd) in [(1, Some(PIDFD_SELF_PROCESS)), (2, None)] {
            let ok = [libc::MADV_FREE, libc::MADV_DONTNEED].iter().all(|a| {
                // SAFETY: the probe's own page.
                unsafe { process_madvise_raw(pidfd, &[(addr, ps)], *a) }.is_ok_and(|n| n == ps as usize)
            });
            if ok {
                found = Some(how);
                break;
            }
        }
    }
    // SAFETY: the probe's own page.
    let _ = unsafe { unmap(addr, ps) };
    found
}

/// `process_madvise(pidfd, iov, n, advice, 0)` on this process; `pidfd == None` opens one with
/// `pidfd_open(getpid(), 0)` for this call. Returns the bytes advised.
///
/// # Safety
/// As [`advise_many`].
unsafe fn process_madvise_raw(
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
///
/// # Safety
/// The caller owns every range and nothing holds a reference into any of them: their contents go.
pub unsafe fn advise_many(ranges: &[(u64, u64)], free: bool, batch: bool) -> (u64, Vec<(usize, i32)>) {
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
            // SAFETY: the caller's ranges, under its promise (above).
            if unsafe { process_madvise_raw(pidfd, chunk, raw) }.is_ok_and(|n| n as u64 == want) {
                continue;
            }
        }
        for (i, &(a, l)) in chunk.iter().enumerate() {
            calls += 1;
            // SAFETY: the caller's ranges, under its promise (above).
            if let Err(e) = unsafe { advise(a, l, advice) } {
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
