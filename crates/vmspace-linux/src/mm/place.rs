//! Placement: `__get_unmapped_area` with the THP alignment of anonymous mappings, x86-64's
//! `arch_get_unmapped_area_topdown` (hint, `MAP_32BIT`, bottom-up fallback) and `vm_unmapped_area`'s
//! gap search with the stack guard gap.

use super::*;
use crate::abi::{Errno, MAP_32BIT, MAP_ABOVE4G, MAP_FIXED, MAP_SHARED};

/// `DEFAULT_MAP_WINDOW` on x86-64 (47 bits).
const MAP_WINDOW: u64 = 0x7fff_ffff_f000;
/// `MAP_32BIT`'s window on x86-64 (without the randomisation of its start).
const WINDOW_32: (u64, u64) = (0x4000_0000, 0x8000_0000);

impl Mm {
    /// `vm_start_gap`: where a VMA's guard gap begins (stacks keep `stack_guard_gap` free below them).
    pub(super) fn start_gap(&self, v: &Vma) -> u64 {
        if v.flags & VM_GROWSDOWN != 0 {
            v.start.saturating_sub(self.params.stack_guard_gap)
        } else {
            v.start
        }
    }

    /// `__get_unmapped_area(file, addr, len, pgoff, flags, vm_flags)`.
    pub(super) fn get_unmapped_area(
        &self,
        file: Option<&FileRef>,
        addr: u64,
        len: u64,
        pgoff: u64,
        flags: u64,
    ) -> Result<u64, Errno> {
        let p = &self.params;
        if len > p.task_size {
            return Err(Errno::ENOMEM);
        }
        let anon_private = file.is_none() && flags & MAP_SHARED == 0;
        let thp = p.thp
            && anon_private
            && flags & MAP_FIXED == 0
            && if p.at_least(6, 13) {
                addr == 0 && len.is_multiple_of(PMD)
            } else {
                p.at_least(6, 7) && len >= PMD
            };
        // A file whose file system places with `thp_get_unmapped_area`: aligned when the mapping
        // covers a whole PMD of file offsets, the file offset's place in a PMD kept.
        let off = pgoff.wrapping_shl(12);
        let file_thp = p.thp
            && flags & MAP_FIXED == 0
            && file.is_some_and(|f| f.thp_placement)
            && off.checked_add(len).is_some_and(|off_end| {
                let off_align = off.div_ceil(PMD).saturating_mul(PMD);
                off_end > off_align && off_end - off_align >= PMD
            });
        let mut got = None;
        if thp {
            got = self.thp_area(addr, len, flags, 0);
        } else if file_thp {
            got = self.thp_area(addr, len, flags, off);
        }
        let addr = match got {
            Some(a) => a,
            None => self.topdown(addr, len, flags)?,
        };
        if addr > p.task_size - len {
            return Err(Errno::ENOMEM);
        }
        if addr % PAGE != 0 {
            return Err(Errno::EINVAL);
        }
        if addr < p.mmap_min_addr && !p.cap_sys_rawio {
            return Err(Errno::EPERM);
        }
        Ok(addr)
    }

    /// `__thp_get_unmapped_area` (`PMD_SIZE`) for a mapping at file offset `off` (0 for anonymous
    /// memory): a padded search, then the first address in it congruent to `off` modulo 2 MiB (top-down:
    /// one step further up when the search already was).
    fn thp_area(&self, addr: u64, len: u64, flags: u64, off: u64) -> Option<u64> {
        let pad = len.checked_add(PMD)?;
        off.checked_add(pad)?;
        let ret = self.topdown(addr, pad, flags).ok()?;
        if ret == addr {
            return Some(addr);
        }
        let off_sub = off.wrapping_sub(ret) & (PMD - 1);
        Some(if off_sub == 0 { ret + PMD } else { ret + off_sub })
    }

    /// x86-64's `arch_get_unmapped_area_topdown`.
    fn topdown(&self, addr: u64, len: u64, flags: u64) -> Result<u64, Errno> {
        let p = &self.params;
        if len > p.task_size {
            return Err(Errno::ENOMEM);
        }
        if flags & MAP_FIXED != 0 {
            return Ok(addr);
        }
        if flags & MAP_32BIT == 0 {
            if addr != 0 {
                let a = addr & !(PAGE - 1);
                let valid = p.task_size - len >= a && ((a > MAP_WINDOW) == (a + len > MAP_WINDOW));
                if valid && self.find_vma(a).is_none_or(|v| a + len <= self.start_gap(v)) {
                    return Ok(a);
                }
            }
            let low = if flags & MAP_ABOVE4G != 0 { 1 << 32 } else { PAGE };
            if let Some(a) = self.unmapped_area_topdown(len, low, self.mmap_base) {
                return Ok(a);
            }
        }
        self.bottomup(addr, len, flags)
    }

    /// x86-64's `arch_get_unmapped_area` (bottom-up from the legacy base, or in `MAP_32BIT`'s window).
    fn bottomup(&self, addr: u64, len: u64, flags: u64) -> Result<u64, Errno> {
        let (begin, end) = if flags & MAP_32BIT != 0 {
            WINDOW_32
        } else {
            (page_align(self.params.task_size / 3), MAP_WINDOW)
        };
        if len > end {
            return Err(Errno::ENOMEM);
        }
        if addr != 0 {
            let a = page_align(addr);
            if end - len >= a && self.find_vma(a).is_none_or(|v| a + len <= self.start_gap(v)) {
                return Ok(a);
            }
        }
        self.unmapped_area(len, begin, end).ok_or(Errno::ENOMEM)
    }

    /// `unmapped_area_topdown` (no alignment): the highest gap that fits, below a stack's guard gap.
    fn unmapped_area_topdown(&self, len: u64, low: u64, high: u64) -> Option<u64> {
        let low = low.max(self.params.mmap_min_addr);
        let mut high = high;
        'retry: loop {
            if high < low {
                return None;
            }
            // The highest gap below `high` that fits (the gap index skips the chunks without one).
            let (_, ge) = self.vmas.highest_gap(low, high, len)?;
            let gap = ge - len;
            if let Some(next) = self.vmas.from(ge).next()
                && next.flags & VM_GROWSDOWN != 0
                && self.start_gap(next) < ge
            {
                high = self.start_gap(next);
                continue 'retry;
            }
            return Some(gap);
        }
    }

    /// `unmapped_area` (bottom-up, no alignment).
    fn unmapped_area(&self, len: u64, low: u64, high: u64) -> Option<u64> {
        let mut low = low.max(self.params.mmap_min_addr);
        'retry: loop {
            let mut prev_end = self.vmas.last_below(low).map_or(0, |v| v.end).max(low);
            let mut it = self.vmas.from(low);
            loop {
                let next = it.next();
                let ge = next.map_or(high, |v| v.start.min(high));
                if ge > prev_end && ge - prev_end >= len {
                    let gap = prev_end;
                    if let Some(n) = self.vmas.from(gap + 1).next()
                        && n.flags & VM_GROWSDOWN != 0
                        && self.start_gap(n) < gap + len - 1
                    {
                        low = n.end;
                        continue 'retry;
                    }
                    return Some(gap);
                }
                match next {
                    Some(v) if v.end < high => prev_end = prev_end.max(v.end),
                    _ => return None,
                }
            }
        }
    }
}
