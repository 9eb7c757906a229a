//! Splits and merges exactly as `mm/vma.c` makes them: `__split_vma`, `vma_merge_new_range`,
//! `vma_merge_existing_range` + `vma_modify`, `anon_vma_prepare`, and the unmapping of
//! `do_vmi_align_munmap` with its partial effects.

use super::*;
use crate::abi::Errno;

/// A range about to become (part of) a VMA: what `struct vma_merge_struct` carries.
pub(super) struct Proposed<'a> {
    pub start: u64,
    pub end: u64,
    pub flags: u64,
    pub pgoff: u64,
    pub file: Option<u64>,
    pub anon: Option<Anon>,
    pub label: &'a Label,
}

/// `are_anon_vmas_compatible`: prev and next may both join one VMA.
fn pair_compatible(a: Option<Anon>, b: Option<Anon>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.id == y.id,
        _ => true,
    }
}

impl Mm {
    /// `can_vma_merge_after`: `p` may extend `prev` at its end.
    fn can_merge_after(prev: &Vma, p: &Proposed<'_>) -> bool {
        prev.end == p.start
            && attrs_mergeable(p.flags, p.file, p.label, prev)
            && anon_mergeable(p.anon, prev.anon)
            && prev.pgoff.wrapping_add(prev.pages()) == p.pgoff
    }

    /// `can_vma_merge_before`: `p` may extend `next` at its start.
    fn can_merge_before(next: &Vma, p: &Proposed<'_>) -> bool {
        next.start == p.end
            && attrs_mergeable(p.flags, p.file, p.label, next)
            && anon_mergeable(p.anon, next.anon)
            && next.pgoff == p.pgoff.wrapping_add((p.end - p.start) >> 12)
    }

    /// The VMA ending exactly at `addr`.
    fn ends_at(&self, addr: u64) -> Option<&Vma> {
        self.vmas.last_below(addr).filter(|v| v.end == addr)
    }

    /// The end of the VMA starting at `key`.
    pub(super) fn end_of(&self, key: u64) -> u64 {
        self.vmas.get(key).expect("a VMA starts there").end
    }

    /// `__split_vma`: splits the VMA containing `at` (strictly inside it) in two.
    pub(super) fn split_at(&mut self, at: u64) {
        self.vmas.split(at);
    }

    /// `split_vma`: `__split_vma` refused at `vm.max_map_count`.
    fn split_checked(&mut self, at: u64) -> Result<(), Errno> {
        if self.map_count() >= self.params.max_map_count {
            return Err(Errno::ENOMEM);
        }
        self.split_at(at);
        Ok(())
    }

    /// `vma_merge_new_range`: tries to make `p` (a range with no VMA) part of its neighbours. Returns
    /// the start of the VMA that now covers it, or `None` when it must be a VMA of its own.
    pub(super) fn merge_new(&mut self, p: &Proposed<'_>) -> Option<u64> {
        if p.flags & VM_SPECIAL != 0 {
            return None;
        }
        // What the merge needs of the neighbours: (start, end, anon) and whether each side may join.
        let (prev, next) = self.vmas.around(p.start);
        let prev = prev.filter(|v| v.end == p.start);
        let next = match next {
            Some(n) if n.start < p.end => self.vmas.get(p.end),
            n => n.filter(|n| n.start == p.end),
        };
        let left = prev.is_some_and(|v| Self::can_merge_after(v, p));
        let right = next.is_some_and(|n| {
            Self::can_merge_before(n, p)
                && (!left || pair_compatible(prev.and_then(|v| v.anon), n.anon))
                // Merging both sides removes next, which a VMA with a close operation forbids.
                && (!left || self.removable(n))
        });
        let prev = prev.map(|v| (v.start, v.anon));
        let next = next.map(|n| (n.start, n.end, n.anon));
        match (left, right) {
            (false, false) => None,
            (true, r) => {
                let (prev_start, prev_anon) = prev.expect("left merge has prev");
                let mut m_end = p.end;
                let anon = prev_anon.or(if r { next.and_then(|n| n.2) } else { None }).or(p.anon);
                if r {
                    let (n_start, n_end, _) = next.expect("right merge has next");
                    m_end = n_end;
                    self.vmas.remove(n_start);
                }
                self.vmas.update(prev_start, |m| {
                    m.end = m_end;
                    m.anon = anon;
                });
                Some(prev_start)
            }
            (false, true) => {
                let (n_start, _, n_anon) = next.expect("right merge has next");
                let (start, pgoff, anon) = (p.start, p.pgoff, n_anon.or(p.anon));
                self.vmas.rekey(n_start, |m| {
                    m.start = start;
                    m.pgoff = pgoff;
                    m.anon = anon;
                });
                Some(p.start)
            }
        }
    }

    /// `vma_modify`: gives `[start, end)` (inside the VMA at `key`) new flags and label, merging with
    /// the neighbour on a side the range reaches (`vma_merge_existing_range`), else splitting. Returns
    /// the start of the VMA now holding `start`; on a refused split the splits already made stay.
    pub(super) fn modify(
        &mut self,
        key: u64,
        start: u64,
        end: u64,
        flags: u64,
        label: &Label,
    ) -> Result<u64, Errno> {
        let mid = self.vmas.get(key).cloned().expect("modify on a VMA");
        let left_side = start == mid.start;
        let right_side = end == mid.end;
        let p =
            Proposed { start, end, flags, pgoff: mid.pgoff_at(start), file: mid.file, anon: mid.anon, label };
        if flags & VM_SPECIAL == 0 && (left_side || right_side) {
            let prev = if left_side { self.ends_at(start).cloned() } else { None };
            let next = if right_side { self.vmas.get(end).cloned() } else { None };
            let ml = prev.as_ref().is_some_and(|v| Self::can_merge_after(v, &p));
            let mr = next.as_ref().is_some_and(|n| {
                Self::can_merge_before(n, &p)
                    && (!ml || pair_compatible(prev.as_ref().and_then(|v| v.anon), n.anon))
                    // Merging both sides removes next, which a VMA with a close operation forbids.
                    && (!ml || self.removable(n))
            });
            // A merge over the whole middle removes it: not a VMA with a close operation.
            let (ml, mr) =
                if left_side && right_side && !self.removable(&mid) { (false, false) } else { (ml, mr) };
            match (ml, mr) {
                (true, true) => {
                    let (pv, nx) = (prev.expect("prev"), next.expect("next"));
                    let anon = pv.anon.or(nx.anon).or(mid.anon);
                    self.vmas.remove(mid.start);
                    self.vmas.remove(nx.start);
                    self.vmas.update(pv.start, |v| {
                        v.end = nx.end;
                        v.anon = anon;
                    });
                    return Ok(pv.start);
                }
                (true, false) => {
                    let pv = prev.expect("prev");
                    let anon = pv.anon.or(mid.anon);
                    let pgoff = mid.pgoff_at(end);
                    if right_side {
                        self.vmas.remove(mid.start);
                    } else {
                        self.vmas.rekey(mid.start, |rest| {
                            rest.start = end;
                            rest.pgoff = pgoff;
                        });
                    }
                    self.vmas.update(pv.start, |v| {
                        v.end = end;
                        v.anon = anon;
                    });
                    return Ok(pv.start);
                }
                (false, true) => {
                    let nx = next.expect("next");
                    let (pgoff, anon) = (p.pgoff, nx.anon.or(mid.anon));
                    if left_side {
                        self.vmas.remove(mid.start);
                    } else {
                        self.vmas.update(mid.start, |v| v.end = start);
                    }
                    self.vmas.rekey(nx.start, |m| {
                        m.start = start;
                        m.pgoff = pgoff;
                        m.anon = anon;
                    });
                    return Ok(start);
                }
                (false, false) => {}
            }
        }
        if mid.start < start {
            self.split_checked(start)?;
        }
        if end < mid.end {
            self.split_checked(end)?;
        }
        self.vmas.update(start, |v| {
            v.flags = flags;
            if v.label != *label {
                v.label = label.clone();
            }
        });
        Ok(start)
    }

    /// `can_merge_remove_vma`: may a merge remove `v`? Not when it has a `close` operation.
    fn removable(&self, v: &Vma) -> bool {
        !self.has_close(v)
    }

    /// Whether `v` is a System V segment's (`shm_vm_ops`): of the mappings modelled, the only ones with
    /// a `close` operation, and whose file places mappings itself (`shm_get_unmapped_area`).
    pub(super) fn has_close(&self, v: &Vma) -> bool {
        v.file.is_some_and(|f| self.shm_files.contains(&f))
    }

    /// `anon_vma_prepare`: gives the VMA at `key` an `anon_vma`, reusing a compatible neighbour's
    /// (`find_mergeable_anon_vma`: next first, then prev, only when its chain is singular).
    pub(super) fn anon_prepare(&mut self, key: u64) {
        let v = self.vmas.get(key).cloned().expect("anon_prepare on a VMA");
        if v.anon.is_some() {
            return;
        }
        let compatible = |a: &Vma, b: &Vma| {
            a.end == b.start
                && a.file == b.file
                && (a.flags ^ b.flags) & !(VM_ACCESS_FLAGS | VM_SOFTDIRTY) == 0
                && b.pgoff == a.pgoff.wrapping_add(a.pages())
        };
        let reuse = |old: &Vma| old.anon.filter(|a| a.singular);
        let mut anon = None;
        if let Some(n) = self.vmas.get(v.end)
            && compatible(&v, n)
        {
            anon = reuse(n);
        }
        if anon.is_none()
            && let Some(p) = self.vmas.last_below(v.start)
            && compatible(p, &v)
        {
            anon = reuse(p);
        }
        let anon = anon.map(|a| Anon { id: a.id, singular: true });
        let anon = anon.unwrap_or_else(|| Anon { id: self.fresh_id(), singular: true });
        self.vmas.update(key, |v| v.anon = Some(anon));
    }

    /// `__mm_populate` (through `populate_vma_page_range`): faults `[start, end)` in, VMA by VMA; a
    /// write fault (private writable VMAs) prepares an `anon_vma`. Lock-on-fault VMAs are skipped.
    /// Returns `EFAULT` where a guard marker stops it (unless `ignore_errors`).
    pub(super) fn populate(&mut self, start: u64, end: u64, ignore_errors: bool) -> Result<(), Errno> {
        let mut at = start;
        while at < end {
            let Some(v) = self.find_vma(at).filter(|v| v.start < end).cloned() else { break };
            let s = at.max(v.start);
            let e = end.min(v.end);
            at = v.end;
            if v.flags & (VM_IO | VM_PFNMAP) != 0 || v.flags & VM_LOCKONFAULT != 0 {
                continue;
            }
            let guard = self.fault_stop(&v, s, e);
            // A write fault prepares the anon_vma before it reads the page (do_cow_fault), so a page past
            // the file's end still gives the VMA one; a guard marker stops the fault before.
            let first_guarded = self.guards.first_in(s, e).is_some_and(|(g, _)| g == s);
            if v.flags & (VM_WRITE | VM_SHARED) == VM_WRITE && !first_guarded {
                self.anon_prepare(v.start);
            }
            // Without FOLL_FORCE (PROT_NONE) the first page already fails.
            let inaccessible = v.flags & VM_ACCESS_FLAGS == 0;
            if (guard.is_some() || inaccessible) && !ignore_errors {
                return Err(Errno::EFAULT);
            }
        }
        Ok(())
    }

    /// Where faulting `[s, e)` of `v` first fails: a guard marker, or a file page past the file's end.
    pub(super) fn fault_stop(&self, v: &Vma, s: u64, e: u64) -> Option<(u64, u64)> {
        let guard = self.guards.first_in(s, e);
        let eof = v.file.and_then(|f| self.files.get(&f)).and_then(|f| {
            let in_file = f.size.div_ceil(PAGE).saturating_sub(v.pgoff).saturating_mul(PAGE);
            let first_bad = v.start + in_file.min(v.len());
            (first_bad < e).then(|| (first_bad.max(s), e))
        });
        match (guard, eof) {
            (Some(g), Some(x)) => Some(if g.0 <= x.0 { g } else { x }),
            (g, x) => g.or(x),
        }
    }

    /// `do_vmi_align_munmap` for `[start, end)` (page-aligned, non-empty).
    pub(super) fn unmap_range(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        self.gather(start, end)?;
        self.remove_range(start, end);
        Ok(())
    }

    /// `vms_gather_munmap_vmas`: splits the edge VMAs of `[start, end)` so that whole VMAs cover it. A
    /// sealed VMA fails it with `EPERM`, and `vm.max_map_count` with `ENOMEM`, after the splits already
    /// made (which stay, as Linux leaves them).
    pub(super) fn gather(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        self.gather_counted(start, end).map(|_| ())
    }

    /// [`Self::gather`], returning what was mapped in `[start, end)` before: pages, and pages
    /// accounted (`VM_ACCOUNT`). One walk over the VMAs there decides the refusals and the splits in
    /// the order Linux makes them: the split at `start` (refused at `vm.max_map_count` only when the
    /// range is inside one VMA; by a seal of that VMA), then a seal of any VMA in the range, then the
    /// split at `end`.
    pub(super) fn gather_counted(&mut self, start: u64, end: u64) -> Result<(u64, u64), Errno> {
        let mut first = None;
        let mut sealed = false;
        let mut last_end = 0;
        let (mut pages, mut accounted) = (0, 0);
        for v in self.vmas.ending_above(start).take_while(|v| v.start < end) {
            if first.is_none() {
                first = Some((v.start, v.end, v.sealed()));
            }
            sealed |= v.sealed();
            last_end = v.end;
            let p = (v.end.min(end) - v.start.max(start)) >> 12;
            pages += p;
            if v.flags & VM_ACCOUNT != 0 {
                accounted += p;
            }
        }
        let Some((first_start, first_end, first_sealed)) = first else { return Ok((0, 0)) };
        if start > first_start {
            if end < first_end && self.map_count() >= self.params.max_map_count {
                return Err(Errno::ENOMEM);
            }
            if first_sealed {
                return Err(Errno::EPERM);
            }
            self.split_at(start);
        }
        if sealed {
            return Err(Errno::EPERM);
        }
        if last_end > end {
            self.split_at(end);
        }
        Ok((pages, accounted))
    }

    /// Removes the VMAs inside `[start, end)` (after [`Self::gather`]) and the guard markers there.
    pub(super) fn remove_range(&mut self, start: u64, end: u64) {
        let mut unlocked = 0;
        self.vmas.remove_range(start, end, |v| {
            if v.flags & VM_LOCKED != 0 {
                unlocked += v.pages();
            }
        });
        // One saturating subtraction of the sum equals one per VMA.
        self.locked_vm = self.locked_vm.saturating_sub(unlocked);
        self.guards.remove(start, end);
    }
}
