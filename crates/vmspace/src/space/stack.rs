//! Growing a space's stacks (`vm_map_growstack`): from the fault handler, and ahead of time, so a
//! thread that runs on one never has to grow it while it holds its own space's lock.
//!
//! Invariant (the headroom guarantee): before a thread running on a stack of a space enters any call
//! on that space, the stack is mapped at least [`HEADROOM`] bytes below the thread's stack pointer (as
//! far as the stack's reservation and limit allow), grown by the fault handler on the thread's
//! alternate signal stack. vmspace's own calls need far less, so a stack never
//! has to grow while its thread holds the space's write lock or a reader mark on its map — growth
//! then would wait for the thread itself. A closure given to `with_map` that uses more than that
//! faults past the headroom; the handler sees that the thread is inside a read of that very map and
//! reports a stack overflow instead of waiting forever.

use std::cell::Cell;
use std::ops::Range;

use vmspace_core::{Growth, VmError};

use crate::error::Error;
use crate::os;

use super::shared::Shared;

/// Stack mapped below a thread's stack pointer when it enters a call on its own space.
pub const HEADROOM: u64 = 256 << 10;

/// An address inside the calling function's frame: the stack pointer, give or take a frame.
#[inline(always)]
fn stack_pointer() -> u64 {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as u64
}

/// What this thread knows of the vmspace stack it runs on, so that keeping the headroom needs no read
/// of the map (a read near the bottom of the stack could itself fault, with a reader mark held).
#[derive(Clone, Copy)]
struct OnStack {
    /// The space (its `Shared`'s address); 0 when unknown.
    space: usize,
    /// The whole stack `[base, top)`, reservation included.
    base: u64,
    top: u64,
    /// The lowest address known to be mapped: the stack only grows, so this is a safe bound.
    bottom: u64,
    /// The space's stack limit when this was learnt.
    limit: u64,
}

thread_local! {
    static ON_STACK: Cell<OnStack> =
        const { Cell::new(OnStack { space: 0, base: 0, top: 0, bottom: 0, limit: u64::MAX }) };
}

impl Shared {
    /// Makes sure the calling thread, if it runs on a stack of this space, has [`HEADROOM`] bytes of
    /// stack mapped below it (see the module's invariant). A range compare when it does not; a
    /// thread-local compare when it does and the headroom is there.
    pub(crate) fn ensure_headroom(&self) {
        let sp = stack_pointer();
        if !self.outer().contains(&sp) {
            return;
        }
        let me = self as *const Shared as usize;
        let Ok(mut known) = ON_STACK.try_with(Cell::get) else { return };
        if known.space != me || !(known.base..known.top).contains(&sp) {
            // The first call from this stack (threads of `spawn_on_stack` learn it at their start).
            let learnt = self.read(|m| {
                let stack = m.stack_extent(sp)?;
                let bottom = m.overlapping(stack.clone()).next()?.start;
                Some(OnStack { space: me, base: stack.start, top: stack.end, bottom, limit: m.stack_limit() })
            });
            let Some(learnt) = learnt else { return };
            known = learnt;
        }
        let want = (sp.saturating_sub(HEADROOM) & !(os::page_size() - 1))
            .max(known.base)
            .max(known.top.saturating_sub(known.limit));
        if want < known.bottom {
            // Touch the lowest page wanted: the fault handler grows the stack down to it in one step,
            // on the alternate signal stack, while this thread holds no lock and no reader mark of this
            // space (callers come here before they take either).
            // SAFETY: `want` lies in this stack's own reservation (below its mapped part, at or above
            // its base), so the read faults into the handler, which maps it as stack; a read changes
            // no memory.
            unsafe { std::ptr::read_volatile(want as *const u8) };
            known.bottom = want;
        }
        let _ = ON_STACK.try_with(|c| c.set(known));
    }

    /// Tells the calling thread that it runs on the stack `[base, top)` of this space, mapped from
    /// `bottom` up (what a thread of `spawn_on_stack` knows when it starts).
    pub(crate) fn learn_stack(&self, stack: Range<u64>, bottom: u64) {
        let limit = self.read(|m| m.stack_limit());
        let known = OnStack {
            space: self as *const Shared as usize,
            base: stack.start,
            top: stack.end,
            bottom,
            limit,
        };
        let _ = ON_STACK.try_with(|c| c.set(known));
    }

    /// Grows the stack whose reservation holds `addr`, from the fault handler: on reserved entries,
    /// allocating nothing. Refused when the faulting thread holds this space's lock or reads its map
    /// (the growth would wait for the thread itself).
    pub(crate) fn grow_from_handler(&self, addr: u64) -> Result<Growth, &'static str> {
        if self.read_by_me() {
            return Err("the fault came from inside a read of its own map (beyond the stack headroom)");
        }
        let mut w = self
            .maps
            .try_write(os::process::thread_id())
            .map_err(|_| "the fault came from inside a change to its own map (beyond the stack headroom)")?;
        let r = self.apply_in_handler(&mut w, |m| {
            m.set_alloc_allowed(false);
            let r = m.grow_stack(addr);
            m.set_alloc_allowed(true);
            r
        });
        match r {
            Ok(Growth::NotStack) => Err("not a stack reservation any more"),
            Ok(g) => Ok(g),
            Err(Error::Vm(VmError::NoSpace)) => Err("it reached its size limit"),
            Err(Error::Vm(VmError::ResourceShortage)) => Err("no entry reserved for growth"),
            Err(_) => Err("the kernel refused to map the growth"),
        }
    }
}
