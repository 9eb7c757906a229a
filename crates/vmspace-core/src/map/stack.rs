//! Grow-down stacks (`vm_map_stack`, `vm_map_growstack`): map the top of a reservation, keep the rest as
//! growth room (`avail_ssize`) that `find_space` never hands out, grow into it in steps on faults.
//!
//! Invariant: a reservation lies entirely in free space (`start − avail_ssize ≥ previous entry's end`)
//! and is carried by the lowest entry of its stack, which has the STACK flag. Mapping something into a
//! reservation shrinks it (eagerly, at insert), so growth never has to discover an intrusion.

use core::ops::Range;

use super::effect::Effect;
use super::error::VmError;
use super::types::{EntryFlags, MapObject, MapSpec};
use super::{Item, VmMap};

/// What [`VmMap::grow_stack`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Growth {
    /// The address is already mapped: nothing to do.
    Mapped,
    /// The address is in no stack's reservation: the fault is not a stack's to handle.
    NotStack,
    /// The stack grew: this range was mapped.
    Grew(Range<u64>),
}

impl<O: MapObject> VmMap<O> {
    /// Creates a grow-down stack in `[base, base + max_size)` (`vm_map_stack`): maps the top
    /// `init_size` bytes with `spec` plus the STACK flag and reserves the rest for growth. Returns the
    /// mapped range.
    ///
    /// Errors: sizes zero, unaligned, `init_size > max_size`, unaligned `base` or overflow →
    /// `InvalidArgument`; outside the map → `InvalidAddress`; any page of the whole reservation mapped or
    /// reserved by another stack → `NoSpace`; `prot ⊄ max_prot` → `ProtectionFailure`.
    pub fn stack(
        &mut self,
        base: u64,
        max_size: u64,
        init_size: u64,
        spec: MapSpec<O>,
    ) -> Result<Range<u64>, VmError> {
        self.begin();
        if max_size == 0 || init_size == 0 || init_size > max_size || !self.aligned(init_size) {
            return Err(VmError::InvalidArgument);
        }
        let top = base.checked_add(max_size).ok_or(VmError::InvalidArgument)?;
        let whole = base..top;
        if self.check_range(&whole)? {
            return Err(VmError::InvalidArgument);
        }
        if !spec.max_prot.contains(spec.prot) {
            return Err(VmError::ProtectionFailure);
        }
        if self.store.overlapping(base, top).next().is_some() {
            return Err(VmError::NoSpace);
        }
        if let Some(above) = self.store.ceil(top)
            && above.start - above.reserve_below < top
        {
            return Err(VmError::NoSpace);
        }
        self.ensure(1)?;
        self.begin();
        let mapped = top - init_size..top;
        self.insert_checked(mapped.clone(), spec.with_flags(EntryFlags::STACK));
        let reserve = max_size - init_size;
        if reserve > 0 {
            let s = mapped.start;
            let end = self.store.get(s).map_or(top, |e| e.end);
            self.reshape(s, s, end, reserve);
        }
        self.commit();
        Ok(mapped)
    }

    /// Finds room for a stack of `max_size` bytes (reservation included) and creates it there; returns
    /// the base (lowest address of the reservation).
    pub fn stack_anywhere(
        &mut self,
        max_size: u64,
        init_size: u64,
        spec: MapSpec<O>,
    ) -> Result<u64, VmError> {
        self.begin();
        let base = self.find_space(max_size, 0)?;
        self.stack(base, max_size, init_size, spec)?;
        Ok(base)
    }

    /// Grows the stack whose reservation holds `addr` so that `addr` is mapped (`vm_map_growstack`): by
    /// whole steps of [`VmMap::stack_growth`], clamped to the reservation and to
    /// [`VmMap::stack_limit`]. The new pages take the attributes of the stack's lowest entry.
    ///
    /// Returns [`Growth::Mapped`] or [`Growth::NotStack`] when there is nothing to grow, and `NoSpace`
    /// when `addr` needs more than the reservation or the limit allows.
    pub fn grow_stack(&mut self, addr: u64) -> Result<Growth, VmError> {
        self.begin();
        if self.store.containing(addr).is_some() {
            return Ok(Growth::Mapped);
        }
        let Some(low) = self.store.ceil(addr) else { return Ok(Growth::NotStack) };
        if low.reserve_below == 0 || addr < low.start - low.reserve_below {
            return Ok(Growth::NotStack);
        }
        let (start, end, avail) = (low.start, low.end, low.reserve_below);
        let page = addr & !(self.page_size - 1);
        let needed = start - page;
        let current = self.stack_top(start) - start;
        if current.saturating_add(needed) > self.stack_limit {
            return Err(VmError::NoSpace);
        }
        let step = needed.div_ceil(self.stack_growth).saturating_mul(self.stack_growth);
        let grow = step.min(avail).min(self.stack_limit - current);
        let low = self.store.get(start).expect("found above");
        if !low.value.object.is_anonymous() && low.value.offset < grow {
            return Err(VmError::InvalidArgument);
        }
        self.ensure(1)?;
        self.begin();
        let new_start = start - grow;
        self.reshape(start, new_start, end, avail - grow);
        let mut piece = self.store.get(new_start).expect("just reshaped").clone();
        piece.end = start;
        piece.reserve_below = 0;
        let wired = piece.value.wired_count > 0;
        self.effect(Effect::Map(Item { ..piece }));
        if wired {
            self.effect(Effect::Wire(new_start..start));
        }
        // The reservation may now be spent and the stack touch the entry below.
        self.simplify(&(new_start..start));
        self.commit();
        Ok(Growth::Grew(new_start..start))
    }

    /// The stack whose growth reservation holds `addr`: `(reservation, lowest stack entry)`, or `None`
    /// if `addr` is mapped or in no reservation. Read-only: what a fault handler asks before growing.
    pub fn stack_reservation(&self, addr: u64) -> Option<(Range<u64>, &super::Entry<O>)> {
        if self.store.containing(addr).is_some() {
            return None;
        }
        let low = self.store.ceil(addr)?;
        let res = low.start - low.reserve_below..low.start;
        (low.reserve_below > 0 && res.contains(&addr)).then_some((res, low))
    }

    /// The whole stack whose entries or reservation hold `addr`: `[base, top)`, where `base` is the
    /// bottom of the reservation and `top` the end of its highest STACK entry.
    pub fn stack_extent(&self, addr: u64) -> Option<Range<u64>> {
        let low = match self.stack_reservation(addr) {
            Some((_, low)) => low,
            None => {
                let e = self.store.containing(addr).filter(|e| e.value.flags.contains(EntryFlags::STACK))?;
                // Walk down to the lowest entry of the run.
                let mut low = e;
                while let Some(p) = self.store.prev(low.start)
                    && p.end == low.start
                    && p.value.flags.contains(EntryFlags::STACK)
                {
                    low = p;
                }
                low
            }
        };
        Some(low.start - low.reserve_below..self.stack_top(low.start))
    }

    /// The end of the run of adjacent STACK entries that begins at `start`.
    fn stack_top(&self, start: u64) -> u64 {
        let mut top = start;
        let mut cur = self.store.get(start);
        while let Some(e) = cur {
            if e.start != top || !e.value.flags.contains(EntryFlags::STACK) {
                break;
            }
            top = e.end;
            cur = self.store.next(e.start);
        }
        top
    }
}
