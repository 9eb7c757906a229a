//! The calls that change attributes of mapped ranges: `mprotect` (`do_mprotect_pkey` +
//! `mprotect_fixup`), `madvise` (`madvise_walk_vmas` + `madvise_vma_behavior`), the `mlock` family
//! (`apply_vma_lock_flags`, `apply_mlockall_flags`, `mlock_fixup`), `mseal` and `msync`, each with
//! Linux's partial effects: VMAs before a failure keep their change.

use super::*;
use crate::abi::*;

/// `is_discard` (mseal): advice that destroys contents, refused on sealed read-only anonymous memory.
fn is_discard(b: u64) -> bool {
    matches!(
        b,
        MADV_FREE
            | MADV_DONTNEED
            | MADV_DONTNEED_LOCKED
            | MADV_REMOVE
            | MADV_DONTFORK
            | MADV_WIPEONFORK
            | MADV_GUARD_INSTALL
    )
}

impl Mm {
    /// `mprotect(addr, len, prot)`.
    pub fn mprotect(&mut self, start: u64, len: u64, prot: u64) -> Result<u64, Errno> {
        let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
        let prot = prot & !(PROT_GROWSDOWN | PROT_GROWSUP);
        if grows == PROT_GROWSDOWN | PROT_GROWSUP || !start.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(0);
        }
        let len = page_align(len);
        let end = start.wrapping_add(len);
        if end <= start {
            return Err(Errno::ENOMEM);
        }
        if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM) != 0 {
            return Err(Errno::EINVAL);
        }
        let Some(first) = self.find_vma(start).filter(|v| v.start < end).cloned() else {
            return Err(Errno::ENOMEM);
        };
        let mut start = start;
        if grows & PROT_GROWSDOWN != 0 {
            start = first.start;
            if first.flags & VM_GROWSDOWN == 0 {
                return Err(Errno::EINVAL);
            }
        } else {
            if first.start > start {
                return Err(Errno::ENOMEM);
            }
            if grows & PROT_GROWSUP != 0 {
                // No VM_GROWSUP VMAs on x86-64 or aarch64.
                return Err(Errno::EINVAL);
            }
        }
        let new_bits = mmap::prot_bits(prot);
        let mut nstart = start;
        let mut tmp = first.start;
        while let Some(v) = self.find_vma(nstart).filter(|v| v.start < end).cloned() {
            if v.start != tmp {
                return Err(Errno::ENOMEM);
            }
            let mut newflags = new_bits | (v.flags & !VM_ACCESS_FLAGS);
            if newflags & !(newflags >> 4) & VM_ACCESS_FLAGS != 0 {
                return Err(Errno::EACCES);
            }
            let seg_end = v.end.min(end);
            let seg_start = nstart.max(v.start);
            // mprotect_fixup
            if v.sealed() {
                return Err(Errno::EPERM);
            }
            if newflags != v.flags {
                let pages = (seg_end - seg_start) >> 12;
                if newflags & VM_WRITE != 0 {
                    if !self.may_expand_vm(newflags, pages) && self.may_expand_vm(v.flags, pages) {
                        return Err(Errno::ENOMEM);
                    }
                    if v.flags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE) == 0 {
                        if !self.enough_memory(pages) {
                            return Err(Errno::ENOMEM);
                        }
                        newflags |= VM_ACCOUNT;
                    }
                } else if v.flags & VM_ACCOUNT != 0 && v.is_anonymous() && v.anon.is_none() {
                    newflags &= !VM_ACCOUNT;
                }
                let label = v.label.clone();
                let at = self.modify(v.start, seg_start, seg_end, newflags, &label)?;
                tmp = self.end_of(at);
                // A private locked VMA turning writable is populated to break COW now.
                if v.flags & (VM_WRITE | VM_SHARED | VM_LOCKED) == VM_LOCKED && newflags & VM_WRITE != 0 {
                    let _ = self.populate(seg_start, seg_end, true);
                }
            } else {
                tmp = v.end;
            }
            nstart = tmp;
            if tmp >= end {
                break;
            }
        }
        if tmp < end { Err(Errno::ENOMEM) } else { Ok(0) }
    }

    /// `madvise(addr, len, advice)`.
    pub fn madvise(&mut self, start: u64, len_in: u64, advice: u64) -> Result<u64, Errno> {
        let b = advice & 0xffff_ffff;
        if !self.advice_valid(b) || !start.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let len = page_align(len_in);
        if (len_in != 0 && len == 0) || start.checked_add(len).is_none() {
            return Err(Errno::EINVAL);
        }
        if matches!(b, MADV_HWPOISON | MADV_SOFT_OFFLINE) && !self.params.cap_sys_admin {
            return Err(Errno::EPERM);
        }
        let end = start + len;
        if end == start {
            return Ok(0);
        }
        if matches!(b, MADV_POPULATE_READ | MADV_POPULATE_WRITE) {
            return self.madvise_populate(start, end, b == MADV_POPULATE_WRITE).map(|()| 0);
        }
        let mut unmapped = false;
        let mut at = start;
        loop {
            let Some(v) = self.find_vma(at).cloned() else { return Err(Errno::ENOMEM) };
            if at < v.start {
                unmapped = true;
                at = v.start;
                if at >= end {
                    break;
                }
            }
            let seg_end = end.min(v.end);
            let done = self.advise_vma(&v, at, seg_end, b)?;
            at = done.max(seg_end);
            if at >= end {
                break;
            }
        }
        if unmapped { Err(Errno::ENOMEM) } else { Ok(0) }
    }

    /// `madvise_behavior_valid`, by version and configuration.
    fn advice_valid(&self, b: u64) -> bool {
        let p = &self.params;
        match b {
            MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_WILLNEED | MADV_DONTNEED | MADV_FREE
            | MADV_REMOVE | MADV_DONTFORK | MADV_DOFORK | MADV_DONTDUMP | MADV_DODUMP | MADV_WIPEONFORK
            | MADV_KEEPONFORK => true,
            MADV_COLD | MADV_PAGEOUT => p.at_least(5, 4),
            MADV_POPULATE_READ | MADV_POPULATE_WRITE => p.at_least(5, 14),
            MADV_DONTNEED_LOCKED => p.at_least(5, 18),
            MADV_MERGEABLE | MADV_UNMERGEABLE => p.ksm,
            MADV_HUGEPAGE | MADV_NOHUGEPAGE => p.thp,
            MADV_COLLAPSE => p.thp && p.at_least(6, 1),
            MADV_GUARD_INSTALL | MADV_GUARD_REMOVE => p.at_least(6, 13),
            MADV_HWPOISON | MADV_SOFT_OFFLINE => p.memory_failure,
            _ => false,
        }
    }

    /// `madvise_vma_behavior` for `[s, e)` inside `v`; returns the end of the VMA now holding `s`.
    fn advise_vma(&mut self, v: &Vma, s: u64, e: u64, b: u64) -> Result<u64, Errno> {
        if v.sealed()
            && is_discard(b)
            && v.file.is_none()
            && v.flags & VM_SHARED == 0
            && v.flags & VM_WRITE == 0
        {
            return Err(Errno::EPERM);
        }
        let locked = v.flags & VM_LOCKED != 0;
        let mut nf = v.flags;
        match b {
            MADV_REMOVE => {
                if locked || v.file.is_none() {
                    return Err(Errno::EINVAL);
                }
                if v.flags & (VM_SHARED | VM_MAYWRITE) != VM_SHARED | VM_MAYWRITE {
                    return Err(Errno::EACCES);
                }
                return Ok(e);
            }
            MADV_WILLNEED => return Ok(e),
            MADV_COLD | MADV_PAGEOUT => {
                if v.flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB) != 0 {
                    return Err(Errno::EINVAL);
                }
                return Ok(e);
            }
            MADV_DONTNEED | MADV_DONTNEED_LOCKED | MADV_FREE => {
                let mut forbidden = VM_PFNMAP;
                if b != MADV_DONTNEED_LOCKED {
                    forbidden |= VM_LOCKED;
                }
                if v.flags & forbidden != 0 || (b == MADV_FREE && !v.is_anonymous()) {
                    return Err(Errno::EINVAL);
                }
                return Ok(e);
            }
            MADV_COLLAPSE => {
                let hs = (s + PMD - 1) & !(PMD - 1);
                let he = e & !(PMD - 1);
                return if hs < he { Err(Errno::EINVAL) } else { Ok(e) };
            }
            MADV_GUARD_INSTALL => {
                if v.flags & (VM_SPECIAL | VM_HUGETLB | VM_LOCKED) != 0
                    || (!self.params.at_least(6, 15) && !v.is_anonymous())
                {
                    return Err(Errno::EINVAL);
                }
                // Anonymous VMAs get an anon_vma so that fork copies the markers' page tables.
                if v.is_anonymous() {
                    self.anon_prepare(v.start);
                }
                self.guards.insert(s, e);
                return Ok(e);
            }
            MADV_GUARD_REMOVE => {
                if v.flags & (VM_SPECIAL | VM_HUGETLB) != 0 {
                    return Err(Errno::EINVAL);
                }
                self.guards.remove(s, e);
                return Ok(e);
            }
            MADV_HWPOISON | MADV_SOFT_OFFLINE => return Ok(e),
            MADV_NORMAL => nf &= !(VM_RAND_READ | VM_SEQ_READ),
            MADV_SEQUENTIAL => nf = (nf & !VM_RAND_READ) | VM_SEQ_READ,
            MADV_RANDOM => nf = (nf & !VM_SEQ_READ) | VM_RAND_READ,
            MADV_DONTFORK => nf |= VM_DONTCOPY,
            MADV_DOFORK => {
                if v.flags & VM_IO != 0 {
                    return Err(Errno::EINVAL);
                }
                nf &= !VM_DONTCOPY;
            }
            MADV_WIPEONFORK => {
                if v.file.is_some() || v.flags & VM_SHARED != 0 {
                    return Err(Errno::EINVAL);
                }
                nf |= VM_WIPEONFORK;
            }
            MADV_KEEPONFORK => {
                if v.flags & VM_DROPPABLE != 0 {
                    return Err(Errno::EINVAL);
                }
                nf &= !VM_WIPEONFORK;
            }
            MADV_DONTDUMP => nf |= VM_DONTDUMP,
            MADV_DODUMP => {
                if (v.flags & VM_HUGETLB == 0 && nf & VM_SPECIAL != 0) || v.flags & VM_DROPPABLE != 0 {
                    return Err(Errno::EINVAL);
                }
                nf &= !VM_DONTDUMP;
            }
            MADV_MERGEABLE => {
                let incompatible = VM_SHARED
                    | VM_MAYSHARE
                    | VM_PFNMAP
                    | VM_IO
                    | VM_DONTEXPAND
                    | VM_HUGETLB
                    | VM_MIXEDMAP
                    | VM_DROPPABLE;
                if v.flags & incompatible == 0 {
                    nf |= VM_MERGEABLE;
                }
            }
            MADV_UNMERGEABLE => nf &= !VM_MERGEABLE,
            MADV_HUGEPAGE => nf = (nf & !VM_NOHUGEPAGE) | VM_HUGEPAGE,
            MADV_NOHUGEPAGE => nf = (nf & !VM_HUGEPAGE) | VM_NOHUGEPAGE,
            _ => return Err(Errno::EINVAL),
        }
        if nf == v.flags {
            return Ok(v.end);
        }
        let label = v.label.clone();
        let at = self.modify(v.start, s, e, nf, &label)?;
        Ok(self.end_of(at))
    }

    /// `madvise_populate`: faults the range in; a hole is `ENOMEM`, a VMA that forbids the access is
    /// `EINVAL`, a guard marker `EFAULT` — after the pages before it were populated.
    fn madvise_populate(&mut self, start: u64, end: u64, write: bool) -> Result<(), Errno> {
        let mut at = start;
        while at < end {
            let Some(v) = self.vma_at(at).cloned() else { return Err(Errno::ENOMEM) };
            let bad = v.flags & (VM_IO | VM_PFNMAP) != 0
                || if write { v.flags & VM_WRITE == 0 } else { v.flags & VM_READ == 0 };
            if bad {
                return Err(Errno::EINVAL);
            }
            let e = end.min(v.end);
            let guard = self.fault_stop(&v, at, e);
            let first_guarded = self.guards.first_in(at, e).is_some_and(|(g, _)| g == at);
            if write && v.flags & VM_SHARED == 0 && !first_guarded {
                self.anon_prepare(v.start);
            }
            if guard.is_some() {
                return Err(Errno::EFAULT);
            }
            at = e;
        }
        Ok(())
    }

    /// A write fault at `addr` (a store, or `/proc/PID/mem` written): the VMA there gets its
    /// `anon_vma` if it is private and the write may break COW. `EFAULT` where nothing is mapped or a
    /// guard marker sits; the page contents are not modelled.
    pub fn touch(&mut self, addr: u64) -> Result<(), Errno> {
        let v = self.vma_at(addr).cloned().ok_or(Errno::EFAULT)?;
        let page = addr & !(PAGE - 1);
        if self.guards.first_in(page, page + PAGE).is_some() {
            return Err(Errno::EFAULT);
        }
        if v.flags & VM_SHARED == 0 && v.flags & VM_MAYWRITE != 0 {
            self.anon_prepare(v.start);
        }
        Ok(())
    }

    /// `mlock(addr, len)`.
    pub fn mlock(&mut self, start: u64, len: u64) -> Result<u64, Errno> {
        self.do_mlock(start, len, VM_LOCKED)
    }

    /// `mlock2(addr, len, flags)`.
    pub fn mlock2(&mut self, start: u64, len: u64, flags: u64) -> Result<u64, Errno> {
        let flags = flags & 0xffff_ffff;
        if flags & !MLOCK_ONFAULT != 0 {
            return Err(Errno::EINVAL);
        }
        let vm = if flags & MLOCK_ONFAULT != 0 { VM_LOCKED | VM_LOCKONFAULT } else { VM_LOCKED };
        self.do_mlock(start, len, vm)
    }

    fn do_mlock(&mut self, start: u64, len: u64, vm: u64) -> Result<u64, Errno> {
        if !self.can_do_mlock() {
            return Err(Errno::EPERM);
        }
        let len = page_align(len.wrapping_add(start % PAGE));
        let start = start & !(PAGE - 1);
        let limit = self.params.rlimit_memlock >> 12;
        let mut locked = (len >> 12) + self.locked_vm;
        if locked > limit && !self.params.cap_ipc_lock {
            locked = locked.saturating_sub(self.mlocked_pages(start, len));
        }
        if locked > limit && !self.params.cap_ipc_lock {
            return Err(Errno::ENOMEM);
        }
        self.apply_lock_flags(start, len, vm)?;
        match self.populate(start, start.wrapping_add(len), false) {
            Ok(()) => Ok(0),
            Err(Errno::EFAULT) => Err(Errno::ENOMEM),
            Err(e) => Err(e),
        }
    }

    /// `count_mm_mlocked_page_nr`.
    fn mlocked_pages(&self, start: u64, len: u64) -> u64 {
        let end = start.saturating_add(len);
        let mut n = 0;
        let mut at = start;
        while let Some(v) = self.find_vma(at).filter(|v| v.start < end) {
            if v.flags & VM_LOCKED != 0 {
                n += (v.end.min(end) - v.start.max(start)) >> 12;
            }
            at = v.end;
        }
        n
    }

    /// `munlock(addr, len)`.
    pub fn munlock(&mut self, start: u64, len: u64) -> Result<u64, Errno> {
        let len = page_align(len.wrapping_add(start % PAGE));
        let start = start & !(PAGE - 1);
        self.apply_lock_flags(start, len, 0).map(|()| 0)
    }

    /// `apply_vma_lock_flags`.
    fn apply_lock_flags(&mut self, start: u64, len: u64, vm: u64) -> Result<(), Errno> {
        let end = start.wrapping_add(len);
        if end < start {
            return Err(Errno::EINVAL);
        }
        if end == start {
            return Ok(());
        }
        let Some(first) = self.vma_at(start).cloned() else { return Err(Errno::ENOMEM) };
        let mut tmp = first.start;
        let mut nstart = start;
        while let Some(v) = self.find_vma(nstart).filter(|v| v.start < end).cloned() {
            if v.start != tmp {
                return Err(Errno::ENOMEM);
            }
            let newflags = (v.flags & !VM_LOCKED_MASK) | vm;
            let seg_end = v.end.min(end);
            let at = self.lock_fixup(&v, nstart.max(v.start), seg_end, newflags)?;
            tmp = at;
            nstart = tmp;
            if tmp >= end {
                break;
            }
        }
        if tmp < end { Err(Errno::ENOMEM) } else { Ok(()) }
    }

    /// `mlock_fixup`: returns the end of the VMA now holding `s`.
    fn lock_fixup(&mut self, v: &Vma, s: u64, e: u64, newflags: u64) -> Result<u64, Errno> {
        let unsupported = v.flags & (VM_SPECIAL | VM_HUGETLB | VM_DROPPABLE) != 0;
        if newflags == v.flags || unsupported {
            return Ok(v.end);
        }
        let label = v.label.clone();
        let at = self.modify(v.start, s, e, newflags, &label)?;
        let pages = (e - s) >> 12;
        if newflags & VM_LOCKED == 0 {
            self.locked_vm = self.locked_vm.saturating_sub(pages);
        } else if v.flags & VM_LOCKED == 0 {
            self.locked_vm += pages;
        }
        Ok(self.end_of(at))
    }

    /// `mlockall(flags)`.
    pub fn mlockall(&mut self, flags: u64) -> Result<u64, Errno> {
        let flags = flags & 0xffff_ffff;
        if flags == 0 || flags & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0 || flags == MCL_ONFAULT {
            return Err(Errno::EINVAL);
        }
        if !self.can_do_mlock() {
            return Err(Errno::EPERM);
        }
        if flags & MCL_CURRENT != 0
            && self.total_vm() > self.params.rlimit_memlock >> 12
            && !self.params.cap_ipc_lock
        {
            return Err(Errno::ENOMEM);
        }
        self.apply_mlockall(flags);
        if flags & MCL_CURRENT != 0 {
            let _ = self.populate(0, self.params.task_size, true);
        }
        Ok(0)
    }

    /// `munlockall()`.
    pub fn munlockall(&mut self) -> Result<u64, Errno> {
        self.apply_mlockall(0);
        Ok(0)
    }

    /// `apply_mlockall_flags`: errors on single VMAs are ignored.
    fn apply_mlockall(&mut self, flags: u64) {
        self.def_flags &= !VM_LOCKED_MASK;
        if flags & MCL_FUTURE != 0 {
            self.def_flags |= VM_LOCKED;
            if flags & MCL_ONFAULT != 0 {
                self.def_flags |= VM_LOCKONFAULT;
            }
            if flags & MCL_CURRENT == 0 {
                return;
            }
        }
        let mut add = 0;
        if flags & MCL_CURRENT != 0 {
            add = VM_LOCKED;
            if flags & MCL_ONFAULT != 0 {
                add |= VM_LOCKONFAULT;
            }
        }
        let mut at = 0;
        while let Some(v) = self.find_vma(at).cloned() {
            let newflags = (v.flags & !VM_LOCKED_MASK) | add;
            at = match self.lock_fixup(&v, v.start, v.end, newflags) {
                Ok(e) => e.max(v.end),
                Err(_) => v.end,
            };
        }
    }

    /// `mseal(addr, len, flags)` (6.10): `ENOSYS` before.
    pub fn mseal(&mut self, start: u64, len_in: u64, flags: u64) -> Result<u64, Errno> {
        if !self.params.at_least(6, 10) {
            return Err(Errno::ENOSYS);
        }
        if flags != 0 || !start.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let len = page_align(len_in);
        if len_in != 0 && len == 0 {
            return Err(Errno::EINVAL);
        }
        let Some(end) = start.checked_add(len) else { return Err(Errno::EINVAL) };
        if end == start {
            return Ok(0);
        }
        let mut prev_end = start;
        let mut at = start;
        while let Some(v) = self.find_vma(at).filter(|v| v.start < end) {
            if v.start > prev_end {
                return Err(Errno::ENOMEM);
            }
            prev_end = v.end;
            at = v.end;
        }
        if prev_end < end {
            return Err(Errno::ENOMEM);
        }
        let mut at = start;
        while let Some(v) = self.find_vma(at).filter(|v| v.start < end).cloned() {
            let e = v.end.min(end);
            if !v.sealed() {
                let label = v.label.clone();
                let k = self.modify(v.start, at.max(v.start), e, v.flags | VM_SEALED, &label)?;
                at = self.end_of(k).min(end).max(e);
            } else {
                at = e;
            }
            if at >= end {
                break;
            }
        }
        Ok(0)
    }

    /// `msync(addr, len, flags)`.
    pub fn msync(&mut self, start: u64, len: u64, flags: u64) -> Result<u64, Errno> {
        let flags = flags & 0xffff_ffff;
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || !start.is_multiple_of(PAGE)
            || (flags & MS_ASYNC != 0 && flags & MS_SYNC != 0)
        {
            return Err(Errno::EINVAL);
        }
        let len = page_align(len);
        let end = start.wrapping_add(len);
        if end < start {
            return Err(Errno::ENOMEM);
        }
        if end == start {
            return Ok(0);
        }
        let mut unmapped = false;
        let mut at = start;
        loop {
            let Some(v) = self.find_vma(at) else { return Err(Errno::ENOMEM) };
            if at < v.start {
                if flags == MS_ASYNC {
                    return Err(Errno::ENOMEM);
                }
                at = v.start;
                if at >= end {
                    return Err(Errno::ENOMEM);
                }
                unmapped = true;
            }
            if flags & MS_INVALIDATE != 0 && v.flags & VM_LOCKED != 0 {
                return Err(Errno::EBUSY);
            }
            at = v.end;
            if at >= end {
                break;
            }
        }
        if unmapped { Err(Errno::ENOMEM) } else { Ok(0) }
    }
}
