//! Growing a space's stacks (`vm_map_growstack`): from the fault handler, and ahead of time, so a
//! thread that runs on one never has to grow it while it holds its own space's lock.
//!
//! Invariant (the headroom guarantee): before a thread running on a stack of a space enters any call
//! on that space, the stack is mapped at least [`HEADROOM`] bytes below the thread's stack pointer (as
//! far as the stack's reservation and limit allow). vmspace's own calls need far less, so a stack never
//! has to grow while its thread holds the space's write lock or a reader mark on its map — growth
//! then would wait for the thread itself. A closure given to `with_map` that uses more than that
//! faults past the headroom; the handler sees that the thread is inside a read of that very map and
//! reports a stack overflow instead of waiting forever.

use vmspace_core::{Growth, VmError};

use crate::error::Error;

use super::Shared;

/// Stack mapped below a thread's stack pointer when it enters a call on its own space.
pub const HEADROOM: u64 = 256 << 10;

/// An address inside the calling function's frame: the stack pointer, give or take a frame.
#[inline(always)]
fn stack_pointer() -> u64 {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as u64
}

impl Shared {
    /// Makes sure the calling thread, if it runs on a stack of this space, has [`HEADROOM`] bytes of
    /// stack mapped below it (see the module's invariant). A range compare when it does not.
    pub(crate) fn ensure_headroom(&self) {
        let sp = stack_pointer();
        if !self.outer().contains(&sp) {
            return;
        }
        let target = self.maps.read(|m| {
            let stack = m.stack_extent(sp)?;
            let top = stack.end;
            let want = (sp.saturating_sub(HEADROOM) & !(m.page_size() - 1))
                .max(stack.start)
                .max(top.saturating_sub(m.stack_limit()));
            m.lookup_entry(want).is_none().then_some(want)
        });
        let Some(target) = target else { return };
        // The thread holds no lock of this space here (callers check before they take one).
        if let Ok(mut w) = self.maps.try_write(crate::thread_id()) {
            let _ = self.apply(&mut w, |m| m.grow_stack(target), false);
        }
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
            .try_write(crate::thread_id())
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
