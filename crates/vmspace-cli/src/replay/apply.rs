//! A traced call that succeeded, applied to its space's [`Mm`] as Linux applied it.
//!
//! Invariants:
//! - The kernel's answer is given, so every call is made so that `Mm` can only take the same step:
//!   an address the kernel chose becomes a fixed one (`MAP_FIXED`, `MREMAP_FIXED`, `SHM_REMAP`), a call
//!   the kernel refused is not made, and limits are lifted ([`params`]). `Mm` answering otherwise is
//!   an inconsistency, counted and reported, never an error.
//! - A trace does not show what was mapped before it started (the exec'd program, the stack, the
//!   vDSO): calls that change attributes (`mprotect`, `madvise`, `mlock`, `mseal`) are made on each run
//!   of VMAs `Mm` has in their range, and pages whose state the trace cannot tell (an `mremap` of
//!   memory mapped before the trace) leave `known`.
//! - Linux's own rules — splits, merges, what `MADV_DONTFORK` or `mseal` mean, what `fork` keeps —
//!   are `Mm`'s; nothing here repeats them.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

use vmspace_linux::abi::*;
use vmspace_linux::mm::{FileRef, Layout, Mm, Params, VM_GROWSDOWN};

use super::parse;
use super::replayer::Space;

const PAGE: u64 = 4096;
/// The top of a replayed address space: 56 bits (x86-64 with five-level page tables), so that any
/// trace's addresses fit.
pub const TOP: u64 = (1 << 56) - PAGE;

/// Why a call could not be applied.
#[derive(Debug)]
pub enum Problem {
    /// Its arguments did not parse: a bad line.
    Args(&'static str),
    /// `Mm` answered otherwise than the kernel: an inconsistency.
    Model(&'static str, String),
}

/// The kernel a trace is replayed on: Linux's rules, none of the limits (the trace shows which calls
/// the limits let through).
pub fn params() -> Params {
    Params {
        task_size: TOP,
        mmap_min_addr: 0,
        max_map_count: u64::MAX,
        rlimit_memlock: u64::MAX,
        cap_ipc_lock: true,
        cap_sys_rawio: true,
        cap_sys_admin: true,
        overcommit_memory: 1,
        ..Params::default()
    }
}

/// An empty memory, as after `execve` (or before the trace's first call).
pub fn empty() -> Mm {
    Mm::new(params(), Layout::default())
}

fn round_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE - 1)? & !(PAGE - 1))
}

/// `[addr, addr + round_up(len))`, or `None` when unaligned or overflowing.
pub fn page_range(addr: u64, len: u64) -> Option<Range<u64>> {
    if !addr.is_multiple_of(PAGE) {
        return None;
    }
    let end = addr.checked_add(round_up(len)?)?;
    (end <= TOP).then_some(addr..end)
}

/// A file the trace maps, by the path strace decoded (`-y`) or, without, by descriptor number: the
/// identity `Mm` merges by, and what `maps` would name it.
pub fn file_ref(fd: i64, path: Option<&str>) -> FileRef {
    // A fixed-key hasher: the same file gets the same identity throughout the replay.
    let mut h = DefaultHasher::new();
    match path {
        Some(p) => p.hash(&mut h),
        None => fd.hash(&mut h),
    }
    path.is_some().hash(&mut h);
    let name = path.map_or_else(|| format!("(fd {fd})"), String::from);
    FileRef {
        id: h.finish() >> 1,
        dev: (0, 0),
        inode: 0,
        shmem: name.starts_with("/memfd:") || name.starts_with("/dev/shm/"),
        name,
        // The kernel let the call through: the description allowed it.
        readable: true,
        writable: true,
        append: false,
        noexec: false,
        mappable: true,
        size: u64::MAX,
        thp_placement: false,
    }
}

fn expect(what: &'static str, got: Result<u64, Errno>, want: u64) -> Result<(), Problem> {
    match got {
        Ok(v) if v == want => Ok(()),
        Ok(v) => Err(Problem::Model(what, format!("Mm answered {v:#x}, the kernel {want:#x}"))),
        Err(e) => Err(Problem::Model(what, format!("Mm answered {e}, the kernel {want:#x}"))),
    }
}

impl Space {
    /// Runs `op(start, len)` on each run of contiguous VMAs `Mm` has in `range` (see the module
    /// invariants); the first refusal is the answer.
    fn on_mapped(
        &mut self,
        what: &'static str,
        range: Range<u64>,
        mut op: impl FnMut(&mut Mm, u64, u64) -> Result<u64, Errno>,
    ) -> Result<(), Problem> {
        let mut runs: Vec<Range<u64>> = Vec::new();
        for v in self.map.vmas_in(range.start, range.end) {
            let piece = v.start.max(range.start)..v.end.min(range.end);
            match runs.last_mut() {
                Some(last) if last.end == piece.start => last.end = piece.end,
                _ => runs.push(piece),
            }
        }
        for r in runs {
            expect(what, op(&mut self.map, r.start, r.end - r.start), 0)?;
        }
        Ok(())
    }

    /// Whether one VMA of `Mm` holds all of `range`.
    fn holds(&self, range: &Range<u64>) -> bool {
        self.map
            .vmas_in(range.start, range.start.saturating_add(1))
            .next()
            .is_some_and(|v| v.start <= range.start && v.end >= range.end)
    }

    /// Applies a successful `mmap(…) = ret`.
    pub fn mmap(&mut self, a: &[&str; 6], ret: u64) -> Result<(), Problem> {
        let number = |t: &str| parse::num(t).ok_or(Problem::Args("bad number"));
        let len = number(a[1])?;
        let prot = parse::flags(a[2], PROT_NAMES).ok_or(Problem::Args("bad protection"))?;
        let fl = parse::flags(a[3], MAP_NAMES).ok_or(Problem::Args("bad mmap flags"))?;
        let (fd, path) = parse::fd_arg(a[4]).ok_or(Problem::Args("bad descriptor"))?;
        let off = number(a[5])?;
        let range = page_range(ret, len).ok_or(Problem::Args("bad mmap range"))?;
        if range.is_empty() {
            return Err(Problem::Args("zero-length mmap succeeded"));
        }
        self.known.add(range);
        // Placed where the kernel placed it; hugetlb pools are not modelled, so such a mapping is
        // made of small pages (its VMA flags differ, its protection and sharing do not).
        let mut flags = (fl & !MAP_FIXED_NOREPLACE) | MAP_FIXED;
        if flags & MAP_HUGETLB != 0 {
            flags &= !(MAP_HUGETLB | (MAP_HUGE_MASK << MAP_HUGE_SHIFT));
        }
        let file = (fl & MAP_ANONYMOUS == 0).then(|| file_ref(fd, path));
        let got = self.map.mmap(ret, len, prot, flags, file.as_ref(), off);
        expect("map", got, ret)
    }

    /// Applies a successful `munmap`.
    pub fn munmap(&mut self, range: Range<u64>) -> Result<(), Problem> {
        self.known.add(range.clone());
        expect("unmap", self.map.munmap(range.start, range.end - range.start), 0)
    }

    /// Applies a successful `mprotect` (or `pkey_mprotect`: keys are not modelled).
    pub fn mprotect(&mut self, mut range: Range<u64>, prot: u64) -> Result<(), Problem> {
        if prot & PROT_GROWSDOWN != 0
            && let Some(v) = self.map.vmas_in(range.start, range.start + 1).next()
            && v.start <= range.start
            && v.flags & VM_GROWSDOWN != 0
        {
            range.start = v.start;
        }
        let p = prot & !(PROT_GROWSDOWN | PROT_GROWSUP);
        self.on_mapped("protect", range, |mm, s, l| mm.mprotect(s, l, p))
    }

    /// Applies a successful `madvise`.
    pub fn madvise(&mut self, range: Range<u64>, advice: u64) -> Result<(), Problem> {
        self.on_mapped("madvise", range, |mm, s, l| mm.madvise(s, l, advice))
    }

    /// Applies a successful `mlock`, `mlock2` (`flags`) or `munlock`.
    pub fn mlock(&mut self, name: &str, range: Range<u64>, flags: u64) -> Result<(), Problem> {
        match name {
            "munlock" => self.on_mapped("unlock", range, |mm, s, l| mm.munlock(s, l)),
            "mlock2" => self.on_mapped("lock", range, |mm, s, l| mm.mlock2(s, l, flags)),
            _ => self.on_mapped("lock", range, |mm, s, l| mm.mlock(s, l)),
        }
    }

    /// Applies a successful `mseal`.
    pub fn mseal(&mut self, range: Range<u64>) -> Result<(), Problem> {
        self.on_mapped("seal", range, |mm, s, l| mm.mseal(s, l, 0))
    }

    /// Applies `brk(…) = ret` (the kernel's break: the one asked for, or the old one when refused).
    pub fn brk(&mut self, ret: u64) -> Result<(), Problem> {
        let Some(old) = self.brk.replace(ret) else {
            // The first break the trace shows (after exec: the start of the heap).
            self.map.start_brk = ret;
            self.map.brk = ret;
            return Ok(());
        };
        if ret == old {
            // Refused, or no change: the kernel changed nothing.
            return Ok(());
        }
        let (o, n) = (round_up(old).unwrap_or(old), round_up(ret).unwrap_or(ret));
        self.known.add(o.min(n)..o.max(n));
        expect("move the break", Ok(self.map.brk(ret)), ret)
    }

    /// Applies `mremap(old, old_size, new_size, flags, …) = ret`.
    pub fn mremap(
        &mut self,
        old: u64,
        old_size: u64,
        new_size: u64,
        flags: u64,
        ret: u64,
    ) -> Result<(), Problem> {
        let bad = || Problem::Args("bad mremap range");
        let old_range = page_range(old, old_size).ok_or_else(bad)?;
        let new_range = page_range(ret, new_size).ok_or_else(bad)?;
        let (old_size, new_size) = (old_range.end - old, new_range.end - ret);
        let source = if old_size == 0 { old..old + PAGE } else { old_range.clone() };
        if !self.holds(&source) {
            // Memory mapped before the trace: what lands at `ret` is unknown, what left is known gone.
            if ret == old {
                if new_size < old_size {
                    return self.munmap(old + new_size..old + old_size);
                }
                if new_size > old_size {
                    let _ = self.map.munmap(old + old_size, new_size - old_size);
                    self.known.remove(old + old_size..old + new_size);
                }
                return Ok(());
            }
            if old_size != 0 && flags & MREMAP_DONTUNMAP == 0 {
                self.munmap(old_range)?;
            }
            let _ = self.map.munmap(ret, new_size);
            self.known.remove(new_range);
            return Ok(());
        }
        if old_size != 0 && flags & MREMAP_DONTUNMAP == 0 {
            self.known.add(old_range);
        }
        self.known.add(new_range);
        let got = if ret == old {
            self.map.mremap(old, old_size, new_size, flags & !(MREMAP_MAYMOVE | MREMAP_FIXED), 0)
        } else {
            self.map.mremap(old, old_size, new_size, flags | MREMAP_MAYMOVE | MREMAP_FIXED, ret)
        };
        expect("remap", got, ret)
    }

    /// Applies `shmat(…) = ret` of `seg`, with the call's `SHM_*` flags.
    pub fn shmat(&mut self, seg: &FileRef, shmflg: u64, ret: u64) -> Result<(), Problem> {
        let range = page_range(ret, seg.size).ok_or(Problem::Args("bad range"))?;
        self.known.add(range);
        let got = self.map.shmat(seg, ret, (shmflg & !SHM_RND) | SHM_REMAP);
        expect("attach", got, ret)
    }

    /// Applies a successful `shmdt(addr)`. `Mm` finds the segment as Linux does (its first VMA at or
    /// above `addr` whose offset matches, even after a `munmap` took the front); the pages it detaches
    /// become known. `Mm` refusing means the attach predates the trace: nothing is known of it.
    pub fn shmdt(&mut self, addr: u64) -> Result<(), Problem> {
        let segments: Vec<Range<u64>> =
            self.map.vmas_in(addr, TOP).filter(|v| v.file.is_some()).map(|v| v.start..v.end).collect();
        if self.map.shmdt(addr).is_err() {
            return Ok(());
        }
        for r in segments {
            if !self.map.vmas_in(r.start, r.end).any(|v| v.start == r.start && v.end == r.end) {
                self.known.add(r);
            }
        }
        Ok(())
    }
}
