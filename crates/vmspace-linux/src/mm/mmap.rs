//! `mmap` (`ksys_mmap_pgoff` → `do_mmap` → `__mmap_region`), `munmap` (`do_vmi_munmap`) and `brk`,
//! with Linux's order of checks.

use super::merge::Proposed;
use super::*;
use crate::abi::*;

impl Mm {
    /// `mmap(addr, len, prot, flags, fd, offset)`: `file` is what `fd` refers to (`None`: a closed fd,
    /// or ignored with `MAP_ANONYMOUS`). Returns the address, or the errno, as x86-64 Linux does.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        file: Option<&FileRef>,
        offset: u64,
    ) -> Result<u64, Errno> {
        if !offset.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let pgoff = offset >> 12;
        let file = if flags & MAP_ANONYMOUS == 0 {
            let f = file.ok_or(Errno::EBADF)?;
            if flags & MAP_HUGETLB != 0 {
                return Err(Errno::EINVAL);
            }
            Some(f)
        } else {
            if flags & MAP_HUGETLB != 0 {
                // No hugetlb pool is modelled: a reservation fails, an unreserved mapping would be a
                // hugetlbfs file this model does not place.
                let shift = (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
                if shift != 0 && shift != 21 && shift != 30 {
                    return Err(Errno::EINVAL);
                }
                return Err(Errno::ENOMEM);
            }
            None
        };
        self.do_mmap(file, addr, len, prot, flags, pgoff)
    }

    /// `do_mmap`.
    fn do_mmap(
        &mut self,
        file: Option<&FileRef>,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        pgoff: u64,
    ) -> Result<u64, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let mut flags = flags;
        if flags & MAP_FIXED_NOREPLACE != 0 {
            flags |= MAP_FIXED;
        }
        let mut addr = addr;
        if flags & MAP_FIXED == 0 {
            addr &= !(PAGE - 1);
            if addr != 0 && addr < self.params.mmap_min_addr {
                addr = page_align(self.params.mmap_min_addr);
            }
        }
        let len = page_align(len);
        if len == 0 {
            return Err(Errno::ENOMEM);
        }
        if pgoff.checked_add(len >> 12).is_none() {
            return Err(Errno::EOVERFLOW);
        }
        if self.map_count() > self.params.max_map_count {
            return Err(Errno::ENOMEM);
        }
        let mut vm = prot_bits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | self.def_flags;
        for (m, v) in [
            (MAP_GROWSDOWN, VM_GROWSDOWN),
            (MAP_LOCKED, VM_LOCKED),
            (MAP_SYNC, VM_SYNC),
            (MAP_STACK, VM_NOHUGEPAGE),
        ] {
            if flags & m != 0 && (m != MAP_STACK || self.params.at_least(6, 7)) {
                vm |= v;
            }
        }
        let addr = self.get_unmapped_area(file, addr, len, pgoff, flags)?;
        if flags & MAP_FIXED_NOREPLACE != 0 && self.intersects(addr, addr + len) {
            return Err(Errno::EEXIST);
        }
        if flags & MAP_LOCKED != 0 && !self.can_do_mlock() {
            return Err(Errno::EPERM);
        }
        if !self.mlock_future_ok(vm, len) {
            return Err(Errno::EAGAIN);
        }
        let mut pgoff = pgoff;
        let mut shmem_file = None;
        if let Some(f) = file {
            // file_mmap_ok: regular files and shmem reach MAX_LFS_FILESIZE.
            let max = i64::MAX as u64;
            if len > max || pgoff > (max - len) >> 12 {
                return Err(Errno::EOVERFLOW);
            }
            match flags & MAP_TYPE {
                t @ (MAP_SHARED | MAP_SHARED_VALIDATE) => {
                    let fl = if t == MAP_SHARED { flags & LEGACY_MAP_MASK } else { flags };
                    if fl & !LEGACY_MAP_MASK != 0 {
                        return Err(Errno::EOPNOTSUPP);
                    }
                    if prot & PROT_WRITE != 0 && !f.writable {
                        return Err(Errno::EACCES);
                    }
                    if f.append && f.writable {
                        return Err(Errno::EACCES);
                    }
                    vm |= VM_SHARED | VM_MAYSHARE;
                    if !f.writable {
                        vm &= !(VM_MAYWRITE | VM_SHARED);
                    }
                    self.file_private_checks(f, &mut vm)?;
                }
                MAP_PRIVATE => self.file_private_checks(f, &mut vm)?,
                _ => return Err(Errno::EINVAL),
            }
        } else {
            match flags & MAP_TYPE {
                MAP_SHARED => {
                    if vm & VM_GROWSDOWN != 0 {
                        return Err(Errno::EINVAL);
                    }
                    pgoff = 0;
                    vm |= VM_SHARED | VM_MAYSHARE;
                    shmem_file = Some(());
                }
                MAP_DROPPABLE if self.params.at_least(6, 11) => {
                    if flags & (MAP_LOCKED | MAP_HUGETLB) != 0 || vm & VM_GROWSDOWN != 0 {
                        return Err(Errno::EINVAL);
                    }
                    vm |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP;
                    pgoff = addr >> 12;
                }
                MAP_PRIVATE => pgoff = addr >> 12,
                _ => return Err(Errno::EINVAL),
            }
        }
        if flags & MAP_NORESERVE != 0 && self.params.overcommit_memory != 2 {
            vm |= VM_NORESERVE;
        }
        self.mmap_region(file, shmem_file.is_some(), addr, len, vm, pgoff)?;
        if vm & VM_LOCKED != 0 || flags & (MAP_POPULATE | MAP_NONBLOCK) == MAP_POPULATE {
            let _ = self.populate(addr, addr + len, true);
        }
        Ok(addr)
    }

    fn file_private_checks(&self, f: &FileRef, vm: &mut u64) -> Result<(), Errno> {
        if !f.readable {
            return Err(Errno::EACCES);
        }
        if f.noexec {
            if *vm & VM_EXEC != 0 {
                return Err(Errno::EPERM);
            }
            *vm &= !VM_MAYEXEC;
        }
        if !f.mappable {
            return Err(Errno::ENODEV);
        }
        if *vm & VM_GROWSDOWN != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// `__mmap_region`: unmaps what is there, checks the limits, merges or inserts.
    fn mmap_region(
        &mut self,
        file: Option<&FileRef>,
        shmem: bool,
        addr: u64,
        len: u64,
        mut vm: u64,
        pgoff: u64,
    ) -> Result<(), Errno> {
        let end = addr + len;
        // vms_gather_munmap_vmas: splits (which stay if a later check fails) and the refusals; and
        // the pages already mapped there (and how many are accounted).
        let (old_pages, old_accounted) = self.gather_counted(addr, end)?;
        if !self.may_expand_vm(vm, (len >> 12).saturating_sub(old_pages)) {
            return Err(Errno::ENOMEM);
        }
        if vm & (VM_NORESERVE | VM_SHARED | VM_WRITE) == VM_WRITE {
            let charged = (len >> 12).saturating_sub(old_accounted);
            if charged != 0 && !self.enough_memory(charged) {
                return Err(Errno::ENOMEM);
            }
            vm |= VM_ACCOUNT;
        }
        self.remove_range(addr, end);
        let file_id = match (file, shmem) {
            (Some(f), _) => {
                self.files.entry(f.id).or_insert_with(|| f.clone());
                Some(f.id)
            }
            (None, true) => {
                let id = self.fresh_id();
                let zero = FileRef {
                    id,
                    dev: (0, 1),
                    inode: 0,
                    name: String::from("/dev/zero (deleted)"),
                    readable: true,
                    writable: true,
                    append: false,
                    noexec: false,
                    shmem: true,
                    mappable: true,
                    size: len,
                    thp_placement: false,
                };
                self.files.insert(id, zero);
                Some(id)
            }
            (None, false) => None,
        };
        let label = Label::None;
        // A new shared anonymous mapping is proposed without its file (shmem_zero_setup comes after
        // the merge attempt), so it never merges.
        let proposed_file = if shmem { None } else { file_id };
        let p =
            Proposed { start: addr, end, flags: vm, pgoff, file: proposed_file, anon: None, label: &label };
        if shmem || self.merge_new(&p).is_none() {
            let v = Vma { start: addr, end, flags: vm, pgoff, file: file_id, anon: None, label };
            self.vmas.insert(v);
        }
        if vm & VM_LOCKED != 0 {
            if vm & (VM_SPECIAL | VM_DROPPABLE | VM_HUGETLB) != 0 {
                // __mmap_complete: such VMAs are never locked (after the merge attempt, which saw the lock).
                if let Some(s) = self.vma_at(addr).map(|v| v.start) {
                    self.vmas.update(s, |v| v.flags &= !VM_LOCKED_MASK);
                }
            } else {
                self.locked_vm += len >> 12;
            }
        }
        Ok(())
    }

    /// `munmap(addr, len)`.
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<u64, Errno> {
        let ts = self.params.task_size;
        if !addr.is_multiple_of(PAGE) || addr > ts || len > ts - addr {
            return Err(Errno::EINVAL);
        }
        let end = addr + page_align(len);
        if end == addr {
            return Err(Errno::EINVAL);
        }
        self.unmap_range(addr, end).map(|()| 0)
    }

    /// `brk(addr)`: the new break, or the old one when refused.
    pub fn brk(&mut self, brk: u64) -> u64 {
        let orig = self.brk;
        if brk < self.start_brk {
            return orig;
        }
        let rlim = self.params.rlimit_data;
        if rlim != u64::MAX
            && (brk - self.start_brk).saturating_add(self.data.1.saturating_sub(self.data.0)) > rlim
        {
            return orig;
        }
        let newbrk = page_align(brk);
        let oldbrk = page_align(self.brk);
        if oldbrk == newbrk {
            self.brk = brk;
            return brk;
        }
        if brk <= self.brk {
            let Some(v) = self.find_vma(newbrk).filter(|v| v.start < oldbrk) else { return orig };
            let _ = v;
            if self.unmap_range(newbrk, oldbrk).is_err() {
                return orig;
            }
            self.brk = brk;
            return brk;
        }
        // Wraps as the kernel's does for a break near the top (then get_unmapped_area refuses it).
        let len = newbrk.wrapping_sub(oldbrk);
        // check_brk_limits: get_unmapped_area(MAP_FIXED) and the lock limit.
        if self.get_unmapped_area(None, oldbrk, len, 0, MAP_FIXED).is_err()
            || !self.mlock_future_ok(self.def_flags, len)
        {
            return orig;
        }
        let gap = self.params.stack_guard_gap;
        if let Some(next) = self.find_vma(oldbrk).filter(|v| v.start < newbrk.saturating_add(PAGE + gap))
            && newbrk + PAGE > self.start_gap(next)
        {
            return orig;
        }
        let flags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT | self.def_flags;
        if !self.may_expand_vm(flags, len >> 12)
            || self.map_count() > self.params.max_map_count
            || !self.enough_memory(len >> 12)
        {
            return orig;
        }
        let prev =
            self.ends_before(oldbrk).filter(|v| v.end > self.start_brk && v.end == oldbrk).map(|v| v.start);
        let label = Label::None;
        let p = Proposed {
            start: oldbrk,
            end: newbrk,
            flags,
            pgoff: oldbrk >> 12,
            file: None,
            anon: None,
            label: &label,
        };
        // do_brk_flags only expands the previous VMA (`just_expand`): never merges with the next.
        let expanded = prev.is_some_and(|s| {
            let v = self.vmas.get(s).expect("prev");
            attrs_mergeable(p.flags, None, &label, v)
                && anon_mergeable(None, v.anon)
                && v.pgoff.wrapping_add(v.pages()) == p.pgoff
        });
        if expanded {
            self.vmas.update(prev.expect("checked"), |v| v.end = newbrk);
        } else {
            self.vmas.insert(Vma {
                start: oldbrk,
                end: newbrk,
                flags,
                pgoff: oldbrk >> 12,
                file: None,
                anon: None,
                label,
            });
        }
        if flags & VM_LOCKED != 0 {
            self.locked_vm += len >> 12;
        }
        self.brk = brk;
        if self.def_flags & VM_LOCKED != 0 {
            let _ = self.populate(oldbrk, newbrk, true);
        }
        brk
    }

    /// The last VMA starting below `addr`.
    fn ends_before(&self, addr: u64) -> Option<&Vma> {
        self.vmas.last_below(addr)
    }
}

/// `calc_vm_prot_bits` (without protection keys).
pub(super) fn prot_bits(prot: u64) -> u64 {
    let mut vm = 0;
    for (p, v) in [(PROT_READ, VM_READ), (PROT_WRITE, VM_WRITE), (PROT_EXEC, VM_EXEC)] {
        if prot & p != 0 {
            vm |= v;
        }
    }
    vm
}
