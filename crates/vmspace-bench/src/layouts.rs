//! The real-memory layouts the space benchmarks run on, built twice in the same kernel state: an
//! [`AddressSpace`] with `n` entries of [`ENTRY`] pages (alternately read-write and read-only) at the
//! bottom of its reservation, and the same layout made with bare system calls ([`BareLayout`]: the
//! same reservation with a guard page on each side, the same `mmap(MAP_FIXED)` of the entries, the
//! same `mprotect` calls). Both live in one process, so the kernel's VMA tree is the same tree;
//! [`same_state`] checks from `/proc/self/maps` that the two reservations hold the same VMAs at the
//! same offsets with the same protections, so a target in one has the neighbours of its twin.
//!
//! The operations: protect one page in the middle of an entry and back (a split into three, then a
//! merge), and map + unmap of the first free page above the entries (`mmap(MAP_FIXED)` into the
//! reservation, then `mmap(PROT_NONE, MAP_FIXED | MAP_NORESERVE)` to give it back: what
//! `AddressSpace` does). Each comes three ways: through the space, as the bare calls, and as the
//! bare calls plus the simplest [record](crate::record) of the change.

use std::hint::black_box;
use std::ops::Range;

use rustix::mm::{self, MapFlags, MprotectFlags, ProtFlags};
use vmspace::{AddressSpace, MapSpec, Prot};

use crate::record::{self, Record};

/// The page size the layouts are built with.
pub const PS: u64 = 4096;
/// Pages per entry: protecting the second page splits an entry into three.
pub const ENTRY: u64 = 4;
/// Free entries' room above the entries in each reservation.
const ROOM: u64 = 8;

/// An [`AddressSpace`] with `n` entries of [`ENTRY`] pages, alternating read-write and read-only.
pub struct SpaceLayout {
    /// The space.
    pub space: AddressSpace,
    /// Its entries' count.
    pub n: u64,
}

impl SpaceLayout {
    /// Reserves room for `n + 8` entries, maps `n`, and makes every odd one read-only.
    pub fn new(n: u64) -> Result<SpaceLayout, vmspace::Error> {
        let space = AddressSpace::reserve((n + ROOM) * ENTRY * PS)?;
        let a = space.map(n * ENTRY * PS, MapSpec::new(Prot::RW, Prot::ALL))?;
        debug_assert_eq!(a, space.range().start);
        for i in (1..n).step_by(2) {
            space.protect(a + i * ENTRY * PS..a + (i + 1) * ENTRY * PS, Prot::READ)?;
        }
        Ok(SpaceLayout { space, n })
    }

    /// The space's range (the reservation without its guard pages).
    pub fn range(&self) -> Range<u64> {
        self.space.range()
    }

    /// The second page of a read-write entry in the middle.
    pub fn middle_page(&self) -> u64 {
        middle_page(self.range().start, self.n)
    }

    /// The first free page, above the entries: where [`map_unmap`](Self::map_unmap) maps.
    pub fn free_page(&self) -> u64 {
        self.range().start + self.n * ENTRY * PS
    }

    /// Protects the page at `p` read-only and back through the space: a split into three, then a merge.
    pub fn flip(&self, p: u64) {
        self.space.protect(black_box(p..p + PS), Prot::READ).expect("protect inside the space");
        self.space.protect(p..p + PS, Prot::RW).expect("protect inside the space");
    }

    /// Maps one page wherever the space puts it (the first free page) and unmaps it.
    pub fn map_unmap(&self) {
        let a = self.space.map(PS, MapSpec::new(Prot::RW, Prot::ALL)).expect("room for a page");
        self.space.unmap(black_box(a..a + PS)).expect("unmap of the page just mapped");
    }

    /// The record of this layout.
    pub fn record(&self) -> Record {
        record_of(self.range().start, self.n)
    }
}

/// The layout of [`SpaceLayout`] made with bare system calls.
pub struct BareLayout {
    /// The reservation, guard pages included.
    reservation: Range<u64>,
    /// Its entries' count.
    pub n: u64,
}

impl BareLayout {
    /// What `AddressSpace::reserve` and the space's `map` and `protect` calls do, by hand: a
    /// `PROT_NONE` reservation with a guard page on each side, the entries mapped at its bottom with
    /// one `mmap(MAP_FIXED)`, every odd entry made read-only.
    pub fn new(n: u64) -> rustix::io::Result<BareLayout> {
        let len = (n + ROOM) * ENTRY * PS + 2 * PS;
        // SAFETY: a fresh private anonymous reservation at an address the kernel picks aliases nothing.
        let base = unsafe {
            mm::mmap_anonymous(
                core::ptr::null_mut(),
                len as usize,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }? as u64;
        let layout = BareLayout { reservation: base..base + len, n };
        let a = layout.range().start;
        // SAFETY: replaces the bottom of the reservation made above, which nothing uses.
        unsafe {
            mm::mmap_anonymous(
                a as *mut _,
                (n * ENTRY * PS) as usize,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED,
            )
        }?;
        for i in (1..n).step_by(2) {
            // SAFETY: a protection change inside the mapping made above, which nothing uses.
            unsafe {
                mm::mprotect((a + i * ENTRY * PS) as *mut _, (ENTRY * PS) as usize, MprotectFlags::READ)
            }?;
        }
        Ok(layout)
    }

    /// The reservation without its guard pages (as [`SpaceLayout::range`]).
    pub fn range(&self) -> Range<u64> {
        self.reservation.start + PS..self.reservation.end - PS
    }

    /// The second page of a read-write entry in the middle.
    pub fn middle_page(&self) -> u64 {
        middle_page(self.range().start, self.n)
    }

    /// The first free page, above the entries.
    pub fn free_page(&self) -> u64 {
        self.range().start + self.n * ENTRY * PS
    }

    /// The two protection changes of [`SpaceLayout::flip`] as bare `mprotect` calls; `p` is a page of
    /// this layout's entries.
    pub fn flip(&self, p: u64) {
        debug_assert!(self.range().contains(&p));
        let p = p as *mut core::ffi::c_void;
        // SAFETY: protection changes of a page of this layout's entries, which nothing uses.
        unsafe {
            mm::mprotect(black_box(p), PS as usize, MprotectFlags::READ).expect("mprotect");
            mm::mprotect(p, PS as usize, MprotectFlags::READ | MprotectFlags::WRITE).expect("mprotect");
        }
    }

    /// [`flip`](Self::flip) with the record kept beside the calls.
    pub fn flip_recorded(&self, bt: &mut Record, p: u64) {
        record::protect(bt, black_box(p), p + PS, Prot::READ.bits());
        // SAFETY: as in `flip`.
        unsafe { mm::mprotect(black_box(p) as *mut _, PS as usize, MprotectFlags::READ) }.expect("mprotect");
        record::protect(bt, p, p + PS, Prot::RW.bits());
        // SAFETY: as in `flip`.
        unsafe { mm::mprotect(p as *mut _, PS as usize, MprotectFlags::READ | MprotectFlags::WRITE) }
            .expect("mprotect");
    }

    /// What the space's map + unmap does, by hand: map the free page `p` of the reservation, then give
    /// it back.
    pub fn map_unmap(&self, p: u64) {
        debug_assert!(p >= self.free_page() && p < self.range().end);
        // SAFETY: both calls replace the page `p` of this reservation's free room, which nothing uses.
        unsafe {
            mm::mmap_anonymous(
                black_box(p) as *mut _,
                PS as usize,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED,
            )
            .expect("mmap");
            mm::mmap_anonymous(
                black_box(p) as *mut _,
                PS as usize,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
            )
            .expect("mmap");
        }
    }

    /// [`map_unmap`](Self::map_unmap) with the record kept beside the calls (at a known address: the
    /// record searches for no room).
    pub fn map_unmap_recorded(&self, bt: &mut Record, p: u64) {
        bt.insert(black_box(p), (p + PS, Prot::RW.bits()));
        self.map_unmap(p);
        bt.remove(&p);
    }

    /// The record of this layout.
    pub fn record(&self) -> Record {
        record_of(self.range().start, self.n)
    }
}

impl Drop for BareLayout {
    fn drop(&mut self) {
        let r = &self.reservation;
        // SAFETY: the reservation is this layout's own, and no one uses it any more.
        let _ = unsafe { mm::munmap(r.start as *mut _, (r.end - r.start) as usize) };
    }
}

/// `mmap(NULL)` of one page where the kernel likes, then `munmap`: no reservation at all.
pub fn fresh_map_unmap() {
    // SAFETY: a fresh mapping, unmapped at once.
    unsafe {
        let p = mm::mmap_anonymous(
            core::ptr::null_mut(),
            PS as usize,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
        .expect("mmap");
        mm::munmap(black_box(p), PS as usize).expect("munmap");
    }
}

/// The second page of a read-write entry in the middle of `n` entries at `a`.
fn middle_page(a: u64, n: u64) -> u64 {
    a + ((n / 2) & !1) * ENTRY * PS + PS
}

/// The record of `n` entries at `a`.
fn record_of(a: u64, n: u64) -> Record {
    let prot = |i: u64| if i % 2 == 1 { Prot::READ } else { Prot::RW };
    (0..n).map(|i| (a + i * ENTRY * PS, (a + (i + 1) * ENTRY * PS, prot(i).bits()))).collect()
}

/// The VMAs of this process that overlap `range`, from `/proc/self/maps`, clipped to it and given
/// as offsets from its start: (start, end, permissions).
pub fn vmas(range: &Range<u64>) -> Result<Vec<(u64, u64, String)>, String> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(r), Some(perms)) = (f.next(), f.next()) else { continue };
        let Some((s, e)) = r.split_once('-') else { continue };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else { continue };
        if s < range.end && range.start < e {
            out.push((s.max(range.start) - range.start, e.min(range.end) - range.start, perms.to_string()));
        }
    }
    Ok(out)
}

/// Checks that the space's and the bare layout's ranges hold the same VMAs (offsets and
/// permissions), so that each target has the same neighbours; the number of VMAs in each.
pub fn same_state(space: &SpaceLayout, bare: &BareLayout) -> Result<usize, String> {
    let (a, b) = (vmas(&space.range())?, vmas(&bare.range())?);
    if a != b {
        let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        return Err(format!(
            "the space's range has {} VMAs, the bare layout's {}; first difference at VMA {first}: {:?} against {:?}",
            a.len(),
            b.len(),
            a.get(first),
            b.get(first)
        ));
    }
    Ok(a.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_layouts_are_in_the_same_kernel_state_before_and_after_each_operation() {
        let (s, b) = (SpaceLayout::new(64).unwrap(), BareLayout::new(64).unwrap());
        // 64 entries, then the free room (whose top merges with the upper guard page).
        assert_eq!(same_state(&s, &b), Ok(65));
        let (sp, bp) = (s.middle_page(), b.middle_page());
        assert_eq!(sp - s.range().start, bp - b.range().start);
        s.flip(sp);
        b.flip(bp);
        let mut bt = b.record();
        b.flip_recorded(&mut bt, bp);
        assert_eq!(bt, b.record(), "split and merged back");
        s.map_unmap();
        b.map_unmap(b.free_page());
        b.map_unmap_recorded(&mut bt, b.free_page());
        assert_eq!(same_state(&s, &b), Ok(65));
        assert_eq!(s.record().len(), s.space.regions().len());
        // The space maps its page where the bare layout does.
        let a = s.space.map(PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
        assert_eq!(a, s.free_page());
        s.space.unmap(a..a + PS).unwrap();
        fresh_map_unmap();
    }
}
