//! `mremap` as 6.18's `mm/mremap.c` does it: parameter checks, `check_prep_vma`, shrink in place,
//! expand in place (`vma_merge_extend`), moves (`copy_vma` + unmapping the source, or
//! `MREMAP_DONTUNMAP`), and the 6.17 multi-VMA move of `MREMAP_FIXED` without resizing.

use super::merge::Proposed;
use super::*;
use crate::abi::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Same,
    Shrink,
    Expand,
}

/// One remap request (`struct vma_remap_struct`).
#[derive(Clone, Copy)]
struct Req {
    addr: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    new_addr: u64,
}

impl Req {
    fn implies_new_addr(&self) -> bool {
        self.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) != 0
    }

    fn kind(&self) -> Kind {
        match self.old_len.cmp(&self.new_len) {
            core::cmp::Ordering::Equal => Kind::Same,
            core::cmp::Ordering::Greater => Kind::Shrink,
            core::cmp::Ordering::Less => Kind::Expand,
        }
    }

    fn delta(&self) -> u64 {
        self.old_len.abs_diff(self.new_len)
    }
}

impl Mm {
    /// `mremap(addr, old_len, new_len, flags, new_addr)`.
    pub fn mremap(
        &mut self,
        addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        let mut r = Req { addr, old_len: page_align(old_len), new_len: page_align(new_len), flags, new_addr };
        let ts = self.params.task_size;
        if flags & !(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP) != 0 || !addr.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        if r.new_len == 0 || r.new_len > ts {
            return Err(Errno::EINVAL);
        }
        if r.implies_new_addr() {
            if new_addr > ts - r.new_len || !new_addr.is_multiple_of(PAGE) || flags & MREMAP_MAYMOVE == 0 {
                return Err(Errno::EINVAL);
            }
            if flags & MREMAP_DONTUNMAP != 0 && r.old_len != r.new_len {
                return Err(Errno::EINVAL);
            }
            let (eo, en) = (addr.wrapping_add(r.old_len), new_addr + r.new_len);
            if eo > new_addr && en > addr {
                return Err(Errno::EINVAL);
            }
            if self.map_count() + 2 >= self.params.max_map_count.saturating_sub(3) {
                return Err(Errno::ENOMEM);
            }
        }
        if flags & MREMAP_FIXED != 0 && r.old_len == r.new_len && self.params.at_least(6, 17) {
            return self.remap_move(r);
        }
        let v = self.vma_at(addr).cloned().ok_or(Errno::EFAULT)?;
        self.check_prep(&v, &mut r)?;
        if r.implies_new_addr() { self.remap_to(r) } else { self.remap_at(&v, r) }
    }

    /// `check_prep_vma`.
    fn check_prep(&self, v: &Vma, r: &mut Req) -> Result<(), Errno> {
        if v.sealed() {
            return Err(Errno::EPERM);
        }
        if !r.implies_new_addr() {
            r.new_addr = r.addr;
        }
        if r.kind() != Kind::Expand && !r.implies_new_addr() {
            return Ok(());
        }
        if r.old_len == 0 && v.flags & (VM_SHARED | VM_MAYSHARE) == 0 {
            return Err(Errno::EINVAL);
        }
        if r.flags & MREMAP_DONTUNMAP != 0 && v.flags & (VM_DONTEXPAND | VM_PFNMAP) != 0 {
            return Err(Errno::EINVAL);
        }
        let old_len = if r.kind() == Kind::Shrink { r.new_len } else { r.old_len };
        if old_len > v.end - r.addr {
            return Err(Errno::EFAULT);
        }
        if r.new_len == old_len {
            return Ok(());
        }
        if v.pgoff_at(r.addr).checked_add(r.new_len >> 12).is_none() {
            return Err(Errno::EINVAL);
        }
        if v.flags & (VM_DONTEXPAND | VM_PFNMAP) != 0 {
            return Err(Errno::EFAULT);
        }
        if !self.mlock_future_ok(v.flags, r.delta()) {
            return Err(Errno::EAGAIN);
        }
        if !self.may_expand_vm(v.flags, r.delta() >> 12) {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// `mremap_at`: no new address asked for.
    fn remap_at(&mut self, v: &Vma, r: Req) -> Result<u64, Errno> {
        match r.kind() {
            Kind::Same => Ok(r.addr),
            Kind::Shrink => {
                self.munmap(r.addr + r.new_len, r.old_len - r.new_len)?;
                Ok(r.addr)
            }
            Kind::Expand => {
                if v.end - r.addr == r.old_len && self.expandable(v, r.delta()) {
                    if v.flags & VM_ACCOUNT != 0 && !self.enough_memory(r.delta() >> 12) {
                        return Err(Errno::ENOMEM);
                    }
                    let p = Proposed {
                        start: v.end,
                        end: v.end + r.delta(),
                        flags: v.flags,
                        pgoff: v.pgoff_at(v.end),
                        file: v.file,
                        anon: v.anon,
                        label: &v.label,
                    };
                    if self.merge_new(&p).is_none() {
                        return Err(Errno::ENOMEM);
                    }
                    if v.flags & VM_LOCKED != 0 {
                        self.locked_vm += r.delta() >> 12;
                        let _ = self.populate(r.addr + r.old_len, r.addr + r.new_len, true);
                    }
                    return Ok(r.addr);
                }
                if r.flags & MREMAP_MAYMOVE == 0 {
                    return Err(Errno::ENOMEM);
                }
                let mut r = r;
                r.new_addr = self.new_area(v, &r)?;
                self.move_vma(r)
            }
        }
    }

    /// `vma_expandable`.
    fn expandable(&self, v: &Vma, delta: u64) -> bool {
        let Some(end) = v.end.checked_add(delta) else { return false };
        !self.intersects(v.end, end)
            && self.get_unmapped_area(None, v.start, end - v.start, 0, MAP_FIXED).is_ok()
    }

    /// `vrm_set_new_addr`.
    fn new_area(&self, v: &Vma, r: &Req) -> Result<u64, Errno> {
        let mut flags = 0;
        if r.flags & MREMAP_FIXED != 0 {
            flags |= MAP_FIXED;
        }
        if v.flags & VM_MAYSHARE != 0 {
            flags |= MAP_SHARED;
        }
        let hint = if r.implies_new_addr() { r.new_addr } else { 0 };
        let file = v.file.and_then(|f| self.files.get(&f)).cloned();
        self.get_unmapped_area(file.as_ref(), hint, r.new_len, v.pgoff_at(r.addr), flags)
    }

    /// `mremap_to`: a new address was asked for (`MREMAP_FIXED` or `MREMAP_DONTUNMAP`).
    fn remap_to(&mut self, mut r: Req) -> Result<u64, Errno> {
        if r.flags & MREMAP_FIXED != 0 {
            self.munmap(r.new_addr, r.new_len)?;
            if self.vma_at(r.addr).is_none() {
                return Err(Errno::EFAULT);
            }
        }
        if r.kind() == Kind::Shrink {
            self.munmap(r.addr + r.new_len, r.old_len - r.new_len)?;
            r.old_len = r.new_len;
        }
        let v = self.vma_at(r.addr).cloned().ok_or(Errno::EFAULT)?;
        if r.flags & MREMAP_DONTUNMAP != 0 && !self.may_expand_vm(v.flags, r.old_len >> 12) {
            return Err(Errno::ENOMEM);
        }
        r.new_addr = self.new_area(&v, &r)?;
        self.move_vma(r)
    }

    /// `move_vma`: copy the VMA to `new_addr` (merging there if it can), move the page tables (guard
    /// markers), then unmap the source — or, with `MREMAP_DONTUNMAP`, leave the whole source VMA
    /// unlocked (it keeps `VM_ACCOUNT`: the live kernel merges its pieces with accounted neighbours).
    fn move_vma(&mut self, r: Req) -> Result<u64, Errno> {
        if self.map_count() >= self.params.max_map_count.saturating_sub(3) {
            return Err(Errno::ENOMEM);
        }
        let v = self.vma_at(r.addr).cloned().ok_or(Errno::EFAULT)?;
        let dontunmap = r.flags & MREMAP_DONTUNMAP != 0;
        if v.flags & VM_ACCOUNT != 0 {
            let charge = if dontunmap { r.new_len } else { r.new_len.saturating_sub(r.old_len) };
            if charge != 0 && !self.enough_memory(charge >> 12) {
                return Err(Errno::ENOMEM);
            }
        }
        let mut pgoff = v.pgoff_at(r.addr);
        if v.is_anonymous() && v.anon.is_none() {
            pgoff = r.new_addr >> 12;
        }
        let new_end = r.new_addr + r.new_len;
        let p = Proposed {
            start: r.new_addr,
            end: new_end,
            flags: v.flags,
            pgoff,
            file: v.file,
            anon: v.anon,
            label: &v.label,
        };
        if self.merge_new(&p).is_none() {
            let c = Vma { start: r.new_addr, end: new_end, pgoff, ..v.clone() };
            self.vmas.insert(c);
        }
        self.guards.relocate(r.addr, r.old_len.min(r.new_len), r.new_addr);
        if v.flags & VM_LOCKED != 0 {
            self.locked_vm += r.new_len >> 12;
        }
        if dontunmap {
            if let Some(s) = self.vma_at(r.addr).map(|v| v.start) {
                self.vmas.update(s, |src| {
                    src.flags &= !VM_LOCKED_MASK;
                    if src.start == r.addr && src.end == r.addr + r.old_len && src.start != r.new_addr {
                        src.anon = None;
                    }
                });
            }
        } else if r.old_len != 0 {
            let _ = self.unmap_range(r.addr, r.addr + r.old_len);
        }
        if v.flags & VM_LOCKED != 0 && r.new_len > r.old_len {
            let _ = self.populate(r.new_addr + r.old_len, new_end, true);
        }
        Ok(r.new_addr)
    }

    /// `remap_move` (6.17): `MREMAP_FIXED` without resizing moves every VMA in the range, keeping
    /// the gaps between them.
    fn remap_move(&mut self, r: Req) -> Result<u64, Errno> {
        let (start, end) = (r.addr, r.addr + r.old_len);
        let mut res = Err(Errno::EFAULT);
        let mut seen = false;
        let mut target = r.new_addr;
        let mut last_end = 0;
        let mut at = start;
        while let Some(v) = self.find_vma(at).filter(|v| v.start < end).cloned() {
            let a = v.start.max(start);
            let len = end.min(v.end) - a;
            if !seen && start < v.start {
                return Err(Errno::EFAULT);
            }
            let offset = if seen { v.start - last_end } else { 0 };
            last_end = v.end;
            // vma_multi_allowed: a file with a get_unmapped_area of its own that may not honour
            // MREMAP_FIXED (of those modelled, System V segments' shm_get_unmapped_area) moves alone.
            if self.has_close(&v) && (seen || v.end < end) {
                return Err(Errno::EFAULT);
            }
            let mut one =
                Req { addr: a, old_len: len, new_len: len, flags: r.flags, new_addr: target + offset };
            self.check_prep(&v, &mut one)?;
            let got = self.remap_to(one)?;
            if !seen {
                res = Ok(got);
            }
            seen = true;
            target = got + len;
            at = a + len;
            if at >= end {
                break;
            }
        }
        res
    }
}
