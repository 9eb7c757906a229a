//! Looking at another process's memory cheaply, for `vmspace`'s watch modes: the `PROCMAP_QUERY`
//! ioctl on `/proc/PID/maps` (Linux 6.11), which hands out one VMA per call as binary fields instead
//! of formatted text, and `/proc/PID/pagemap`'s guard markers (`PM_GUARD_REGION`, Linux 6.15), which
//! show guard regions that smaps can only flag (`gu`).
//!
//! Invariant: [`query_vmas`] returns `Ok(None)` exactly when this kernel lacks the ioctl (ENOTTY,
//! EINVAL), so the caller falls back to parsing `maps`; any other failure is an error.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use vmspace_core::Prot;

/// `struct procmap_query` of `include/uapi/linux/fs.h`.
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: u64 = (3 << 30) | ((size_of::<ProcmapQuery>() as u64) << 16) | ((b'f' as u64) << 8) | 17;
const QUERY_COVERING_OR_NEXT_VMA: u64 = 0x10;
const VMA_READABLE: u64 = 0x01;
const VMA_WRITABLE: u64 = 0x02;
const VMA_EXECUTABLE: u64 = 0x04;
const VMA_SHARED: u64 = 0x08;

/// One VMA as `PROCMAP_QUERY` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueriedVma {
    /// `[vma_start, vma_end)`.
    pub range: Range<u64>,
    /// Protection.
    pub prot: Prot,
    /// `MAP_SHARED`.
    pub shared: bool,
    /// `vma_offset` (bytes).
    pub offset: u64,
    /// Device.
    pub dev: (u32, u32),
    /// Inode.
    pub inode: u64,
    /// The page size (`vma_page_size`).
    pub page_size: u64,
    /// The name as `maps` would print it (`[heap]`, a path; empty for anonymous memory).
    pub name: String,
}

/// Every VMA of the process whose `/proc/PID/maps` is open as `maps`, by `PROCMAP_QUERY` (one ioctl
/// per VMA), or `Ok(None)` when the kernel lacks the ioctl (before 6.11).
pub fn query_vmas(maps: &File) -> io::Result<Option<Vec<QueriedVma>>> {
    let mut out = Vec::new();
    let mut name = vec![0u8; 4096];
    let mut addr = 0u64;
    loop {
        let mut q = ProcmapQuery {
            size: size_of::<ProcmapQuery>() as u64,
            query_flags: QUERY_COVERING_OR_NEXT_VMA,
            query_addr: addr,
            vma_name_size: name.len() as u32,
            vma_name_addr: name.as_mut_ptr() as u64,
            ..ProcmapQuery::default()
        };
        // SAFETY: PROCMAP_QUERY reads and writes `q` (its `size` says how much) and writes at most
        // `vma_name_size` bytes at `vma_name_addr`, a live buffer of that length; nothing else.
        let r = unsafe { libc::ioctl(maps.as_raw_fd(), PROCMAP_QUERY as _, &mut q as *mut ProcmapQuery) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(Some(out)),
                Some(libc::ENOTTY) | Some(libc::EINVAL) if out.is_empty() => Ok(None),
                _ => Err(e),
            };
        }
        let len = (q.vma_name_size as usize).min(name.len());
        let n = &name[..len];
        let n = n.strip_suffix(&[0]).unwrap_or(n);
        let mut prot = Prot::NONE;
        for (bit, p) in
            [(VMA_READABLE, Prot::READ), (VMA_WRITABLE, Prot::WRITE), (VMA_EXECUTABLE, Prot::EXECUTE)]
        {
            if q.vma_flags & bit != 0 {
                prot |= p;
            }
        }
        if q.vma_end <= addr {
            // A kernel that does not advance would loop forever: stop with what there is.
            return Err(io::Error::new(io::ErrorKind::InvalidData, "PROCMAP_QUERY did not advance"));
        }
        out.push(QueriedVma {
            range: q.vma_start..q.vma_end,
            prot,
            shared: q.vma_flags & VMA_SHARED != 0,
            offset: q.vma_offset,
            dev: (q.dev_major, q.dev_minor),
            inode: q.inode,
            page_size: q.vma_page_size,
            name: String::from_utf8_lossy(n).into_owned(),
        });
        addr = q.vma_end;
    }
}

/// `PM_GUARD_REGION`, bit 58 of a pagemap entry.
const PM_GUARD_REGION: u64 = 1 << 58;

/// The runs of guard-marked pages of process `pid` inside `range` (page-aligned), read from
/// `/proc/PID/pagemap` (readable by root or the process's owner). Empty on kernels before 6.15,
/// which do not mark guard pages.
pub fn guard_runs(pid: u32, range: Range<u64>) -> io::Result<Vec<Range<u64>>> {
    let ps = super::mm::page_size();
    let pages = ((range.end - range.start) / ps) as usize;
    let file = File::open(format!("/proc/{pid}/pagemap"))?;
    let mut runs: Vec<Range<u64>> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut page = 0usize;
    while page < pages {
        let n = (pages - page).min(buf.len() / 8);
        file.read_exact_at(&mut buf[..n * 8], (range.start / ps + page as u64) * 8)?;
        for i in 0..n {
            let word = u64::from_ne_bytes(buf[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            if word & PM_GUARD_REGION != 0 {
                let at = range.start + (page + i) as u64 * ps;
                match runs.last_mut() {
                    Some(r) if r.end == at => r.end = at + ps,
                    _ => runs.push(at..at + ps),
                }
            }
        }
        page += n;
    }
    Ok(runs)
}
