//! A page-by-page reference model of the address map: every page has its own attributes, stacks have
//! explicit reservations. Deliberately naive, so that it is obviously right; the map must agree with it
//! on every result, every error and every page after every operation.

#![allow(dead_code)]

use std::ops::Range;

use vmspace_core::{Advice, Behavior, EntryFlags, Growth, Inherit, MapSpec, Prot, VmError, VmMap};

pub const PS: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub prot: Prot,
    pub max: Prot,
    pub inherit: Inherit,
    pub behavior: Behavior,
    pub nosync: bool,
    pub nocore: bool,
    pub user_wired: bool,
    pub kwired: u32,
    pub guard: bool,
    pub sealed: bool,
    pub stack: bool,
    pub cow: bool,
    pub needs_copy: bool,
}

impl Page {
    fn wired(&self) -> bool {
        self.user_wired || self.kwired > 0
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    pub min: u64,
    pub pages: Vec<Option<Page>>,
    /// Stack reservations `[lo, hi)` in addresses; `hi` is the lowest page of the stack that owns it.
    pub reserves: Vec<(u64, u64)>,
    pub wire_future: bool,
    pub stack_limit: u64,
    pub stack_growth: u64,
}

impl Model {
    pub fn new(min: u64, npages: usize) -> Self {
        Model {
            min,
            pages: vec![None; npages],
            reserves: Vec::new(),
            wire_future: false,
            stack_limit: u64::MAX,
            stack_growth: 64 * 1024,
        }
    }

    pub fn max(&self) -> u64 {
        self.min + self.pages.len() as u64 * PS
    }

    fn idx(&self, addr: u64) -> usize {
        ((addr - self.min) / PS) as usize
    }

    pub fn page(&self, addr: u64) -> Option<&Page> {
        if addr < self.min || addr >= self.max() {
            return None;
        }
        self.pages[self.idx(addr)].as_ref()
    }

    fn reserved(&self, addr: u64) -> bool {
        self.reserves.iter().any(|&(lo, hi)| lo <= addr && addr < hi)
    }

    /// Shape check shared by every range operation: Err, Ok(true) for empty, Ok(false) otherwise.
    fn check_range(&self, r: &Range<u64>) -> Result<bool, VmError> {
        if r.end < r.start || !r.start.is_multiple_of(PS) || !r.end.is_multiple_of(PS) {
            return Err(VmError::InvalidArgument);
        }
        if r.start == r.end {
            return Ok(true);
        }
        if r.start < self.min || r.end > self.max() {
            return Err(VmError::InvalidAddress);
        }
        Ok(false)
    }

    fn addrs(r: &Range<u64>) -> impl Iterator<Item = u64> {
        (r.start..r.end).step_by(PS as usize)
    }

    /// Checks every page in order: a hole is InvalidAddress, otherwise `f` decides.
    fn check_mapped(&self, r: &Range<u64>, f: impl Fn(&Page) -> Result<(), VmError>) -> Result<(), VmError> {
        for a in Self::addrs(r) {
            match self.page(a) {
                None => return Err(VmError::InvalidAddress),
                Some(p) => f(p)?,
            }
        }
        Ok(())
    }

    fn change(
        &mut self,
        r: &Range<u64>,
        check: impl Fn(&Page) -> Result<(), VmError>,
        apply: impl Fn(&mut Page),
    ) -> Result<(), VmError> {
        if self.check_range(r)? {
            return Ok(());
        }
        self.check_mapped(r, check)?;
        for a in Self::addrs(r) {
            let i = self.idx(a);
            apply(self.pages[i].as_mut().unwrap());
        }
        Ok(())
    }

    pub fn insert(&mut self, r: Range<u64>, spec: &MapSpec) -> Result<(), VmError> {
        if self.check_range(&r)? {
            return Err(VmError::InvalidArgument);
        }
        if !spec.max_prot.contains(spec.prot) {
            return Err(VmError::ProtectionFailure);
        }
        if Self::addrs(&r).any(|a| self.page(a).is_some()) {
            return Err(VmError::NoSpace);
        }
        self.insert_checked(r, spec, false);
        Ok(())
    }

    fn insert_checked(&mut self, r: Range<u64>, spec: &MapSpec, stack: bool) {
        for res in &mut self.reserves {
            if res.0 < r.end && r.end <= res.1 {
                res.0 = r.end;
            }
        }
        self.reserves.retain(|&(lo, hi)| lo < hi);
        let p = Page {
            prot: spec.prot,
            max: spec.max_prot,
            inherit: spec.inherit,
            behavior: spec.behavior,
            nosync: false,
            nocore: false,
            user_wired: self.wire_future,
            kwired: 0,
            guard: false,
            sealed: false,
            stack,
            cow: false,
            needs_copy: false,
        };
        for a in Self::addrs(&r) {
            let i = self.idx(a);
            self.pages[i] = Some(p.clone());
        }
    }

    pub fn find_space(&self, len: u64, align: u64) -> Result<u64, VmError> {
        if len == 0 || !len.is_multiple_of(PS) || (align > 1 && !align.is_power_of_two()) {
            return Err(VmError::InvalidArgument);
        }
        let align = align.max(PS);
        let mut a = self.min.div_ceil(align) * align;
        while a + len <= self.max() {
            if Self::addrs(&(a..a + len)).all(|p| self.page(p).is_none() && !self.reserved(p)) {
                return Ok(a);
            }
            a += align;
        }
        Err(VmError::NoSpace)
    }

    pub fn remove(&mut self, r: Range<u64>) -> Result<(), VmError> {
        if self.check_range(&r)? {
            return Ok(());
        }
        if Self::addrs(&r).any(|a| self.page(a).is_some_and(|p| p.sealed)) {
            return Err(VmError::Sealed);
        }
        self.reserves.retain(|&(_, hi)| !(r.start <= hi && hi < r.end));
        for a in Self::addrs(&r) {
            let i = self.idx(a);
            self.pages[i] = None;
        }
        Ok(())
    }

    pub fn protect(&mut self, r: Range<u64>, prot: Prot) -> Result<(), VmError> {
        self.change(
            &r,
            |p| {
                if p.sealed {
                    Err(VmError::Sealed)
                } else if !p.max.contains(prot) {
                    Err(VmError::ProtectionFailure)
                } else {
                    Ok(())
                }
            },
            |p| p.prot = prot,
        )
    }

    pub fn protect_max(&mut self, r: Range<u64>, max: Prot) -> Result<(), VmError> {
        self.change(
            &r,
            |p| {
                if p.sealed {
                    Err(VmError::Sealed)
                } else if !p.max.contains(max) {
                    Err(VmError::ProtectionFailure)
                } else {
                    Ok(())
                }
            },
            |p| {
                p.max = max;
                p.prot = p.prot & max;
            },
        )
    }

    pub fn inherit(&mut self, r: Range<u64>, inh: Inherit) -> Result<(), VmError> {
        self.change(&r, |p| if p.sealed { Err(VmError::Sealed) } else { Ok(()) }, |p| p.inherit = inh)
    }

    pub fn madvise(&mut self, r: Range<u64>, adv: Advice) -> Result<(), VmError> {
        self.change(
            &r,
            |p| {
                if adv.is_destructive() && p.sealed {
                    Err(VmError::Sealed)
                } else if matches!(adv, Advice::DontNeed | Advice::Free) && p.wired() {
                    Err(VmError::InvalidArgument)
                } else {
                    Ok(())
                }
            },
            |p| match adv {
                Advice::Normal => p.behavior = Behavior::Normal,
                Advice::Sequential => p.behavior = Behavior::Sequential,
                Advice::Random => p.behavior = Behavior::Random,
                Advice::NoSync => p.nosync = true,
                Advice::AutoSync => p.nosync = false,
                Advice::NoCore => p.nocore = true,
                Advice::Core => p.nocore = false,
                _ => {}
            },
        )
    }

    pub fn wire(&mut self, r: Range<u64>) -> Result<(), VmError> {
        self.change(
            &r,
            |_| Ok(()),
            |p| {
                if !p.user_wired {
                    p.user_wired = true;
                    if p.prot.contains(Prot::WRITE) {
                        p.needs_copy = false;
                    }
                }
            },
        )
    }

    pub fn unwire(&mut self, r: Range<u64>) -> Result<(), VmError> {
        self.change(&r, |_| Ok(()), |p| p.user_wired = false)
    }

    /// `wire` of every mapped page; holes are fine.
    pub fn wire_all(&mut self) -> Result<(), VmError> {
        for p in self.pages.iter_mut().flatten() {
            if !p.user_wired {
                p.user_wired = true;
                if p.prot.contains(Prot::WRITE) {
                    p.needs_copy = false;
                }
            }
        }
        Ok(())
    }

    /// Clears `wire_future` and the user wiring of every page.
    pub fn unwire_all(&mut self) -> Result<(), VmError> {
        self.wire_future = false;
        for p in self.pages.iter_mut().flatten() {
            p.user_wired = false;
        }
        Ok(())
    }

    pub fn guard(&mut self, r: Range<u64>) -> Result<(), VmError> {
        self.change(
            &r,
            |p| {
                if p.sealed {
                    Err(VmError::Sealed)
                } else if p.wired() {
                    Err(VmError::InvalidArgument)
                } else {
                    Ok(())
                }
            },
            |p| p.guard = true,
        )
    }

    pub fn unguard(&mut self, r: Range<u64>) -> Result<(), VmError> {
        self.change(&r, |p| if p.sealed { Err(VmError::Sealed) } else { Ok(()) }, |p| p.guard = false)
    }

    pub fn seal(&mut self, r: Range<u64>) -> Result<(), VmError> {
        self.change(&r, |_| Ok(()), |p| p.sealed = true)
    }

    pub fn stack(&mut self, base: u64, max: u64, init: u64, spec: &MapSpec) -> Result<Range<u64>, VmError> {
        if max == 0 || init == 0 || init > max || !init.is_multiple_of(PS) {
            return Err(VmError::InvalidArgument);
        }
        let top = base.checked_add(max).ok_or(VmError::InvalidArgument)?;
        if self.check_range(&(base..top))? {
            return Err(VmError::InvalidArgument);
        }
        if !spec.max_prot.contains(spec.prot) {
            return Err(VmError::ProtectionFailure);
        }
        if Self::addrs(&(base..top)).any(|a| self.page(a).is_some()) {
            return Err(VmError::NoSpace);
        }
        if self.reserves.iter().any(|&(lo, hi)| lo < top && hi >= top) {
            return Err(VmError::NoSpace);
        }
        self.insert_checked(top - init..top, spec, true);
        if max > init {
            self.reserves.push((base, top - init));
        }
        Ok(top - init..top)
    }

    pub fn grow_stack(&mut self, addr: u64) -> Result<Growth, VmError> {
        if self.page(addr).is_some() {
            return Ok(Growth::Mapped);
        }
        let Some(k) = self.reserves.iter().position(|&(lo, hi)| lo <= addr && addr < hi) else {
            return Ok(Growth::NotStack);
        };
        let (lo, hi) = self.reserves[k];
        let page = addr / PS * PS;
        let needed = hi - page;
        let mut top = hi;
        while self.page(top).is_some_and(|p| p.stack) {
            top += PS;
        }
        let current = top - hi;
        if current.saturating_add(needed) > self.stack_limit {
            return Err(VmError::NoSpace);
        }
        let step = needed.div_ceil(self.stack_growth) * self.stack_growth;
        let grow = step.min(hi - lo).min(self.stack_limit - current);
        let proto = self.page(hi).unwrap().clone();
        for a in Self::addrs(&(hi - grow..hi)) {
            let i = self.idx(a);
            self.pages[i] = Some(proto.clone());
        }
        self.reserves[k].1 = hi - grow;
        self.reserves.retain(|&(lo, hi)| lo < hi);
        Ok(Growth::Grew(hi - grow..hi))
    }

    /// The maximal run of pages equal to the page at `addr` (= the map's entry).
    fn run(&self, addr: u64) -> Range<u64> {
        let p = self.page(addr).unwrap();
        let mut s = addr / PS * PS;
        while s > self.min && self.page(s - PS) == Some(p) && !self.reserves.iter().any(|r| r.1 == s) {
            s -= PS;
        }
        let mut e = addr / PS * PS + PS;
        while e < self.max() && self.page(e) == Some(p) && !self.reserves.iter().any(|r| r.1 == e) {
            e += PS;
        }
        s..e
    }

    /// Expected result of `lookup(addr, prot)`: Ok(returned protection).
    pub fn lookup(&mut self, addr: u64, access: Prot, override_write: bool) -> Result<Prot, VmError> {
        let Some(p) = self.page(addr).cloned() else {
            return Err(if self.reserved(addr) {
                VmError::StackGrowthNeeded
            } else {
                VmError::InvalidAddress
            });
        };
        if p.guard {
            return Err(VmError::GuardHit);
        }
        let allowed = if override_write { p.max } else { p.prot };
        if !allowed.contains(access) {
            return Err(VmError::ProtectionFailure);
        }
        let write = access.contains(Prot::WRITE);
        if write && !override_write && p.user_wired && p.cow {
            return Err(VmError::ProtectionFailure);
        }
        if p.needs_copy {
            if write {
                let run = self.run(addr);
                for a in Self::addrs(&run) {
                    let i = self.idx(a);
                    self.pages[i].as_mut().unwrap().needs_copy = false;
                }
            } else {
                return Ok(allowed - Prot::WRITE);
            }
        }
        Ok(allowed)
    }

    pub fn fork(&mut self) -> Model {
        let mut child = Model::new(self.min, self.pages.len());
        child.stack_limit = self.stack_limit;
        child.stack_growth = self.stack_growth;
        for i in 0..self.pages.len() {
            let Some(p) = self.pages[i].as_mut() else { continue };
            let mut c = match p.inherit {
                Inherit::None => continue,
                Inherit::Share => {
                    p.needs_copy = false;
                    p.clone()
                }
                Inherit::Copy if p.wired() => {
                    let mut c = p.clone();
                    c.cow = true;
                    c.needs_copy = false;
                    c
                }
                Inherit::Copy => {
                    p.cow = true;
                    p.needs_copy = true;
                    p.clone()
                }
                Inherit::Zero => {
                    let mut c = p.clone();
                    c.cow = false;
                    c.needs_copy = false;
                    c
                }
            };
            c.user_wired = false;
            c.kwired = 0;
            child.pages[i] = Some(c);
        }
        child.reserves = self.reserves.iter().copied().filter(|&(_, hi)| child.page(hi).is_some()).collect();
        child
    }

    /// Asserts that `map` holds exactly the model's pages, reservations and counters.
    pub fn assert_same(&self, map: &VmMap) {
        map.check_invariants().unwrap_or_else(|e| panic!("invariant: {e}\n{map}"));
        let mut seen: Vec<Option<Page>> = vec![None; self.pages.len()];
        let mut reserves = Vec::new();
        for e in map.entries() {
            let f = e.flags();
            let p = Page {
                prot: e.prot(),
                max: e.max_prot(),
                inherit: e.inherit(),
                behavior: e.behavior(),
                nosync: f.contains(EntryFlags::NOSYNC),
                nocore: f.contains(EntryFlags::NOCOREDUMP),
                user_wired: e.user_wired(),
                kwired: e.wired_count() - u32::from(e.user_wired()),
                guard: f.contains(EntryFlags::GUARD),
                sealed: f.contains(EntryFlags::SEALED),
                stack: f.contains(EntryFlags::STACK),
                cow: f.contains(EntryFlags::COW),
                needs_copy: f.contains(EntryFlags::NEEDS_COPY),
            };
            for a in Self::addrs(&e.range()) {
                seen[self.idx(a)] = Some(p.clone());
            }
            if e.avail_ssize() > 0 {
                reserves.push((e.start - e.avail_ssize(), e.start));
            }
        }
        for (i, (want, got)) in self.pages.iter().zip(&seen).enumerate() {
            assert_eq!(want, got, "page {i} ({:#x})\n{map}", self.min + i as u64 * PS);
        }
        let mut want = self.reserves.clone();
        want.sort();
        assert_eq!(want, reserves, "reservations\n{map}");
        assert_eq!(map.wire_future(), self.wire_future, "wire_future");
        let mapped = self.pages.iter().filter(|p| p.is_some()).count() as u64 * PS;
        assert_eq!(map.size(), mapped, "size");
        let wired = self.pages.iter().flatten().filter(|p| p.wired()).count() as u64 * PS;
        assert_eq!(map.wired_size(), wired, "wired size");
    }
}
