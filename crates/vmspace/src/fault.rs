//! The fault path (`vm_map_lookup`, `vm_map_growstack`, `MAP_ENTRY_STACK`): a SIGSEGV/SIGBUS handler
//! that grows vmspace stacks on demand, explains guard hits and protection faults in vmspace memory,
//! and hands every other fault to the handler that was there before.
//!
//! Invariant: the handler never takes a lock another thread may hold indefinitely and never allocates.
//! It finds the faulting space in the registry (`registry.rs`: a fixed slot array; spaces stay alive
//! while a handler runs), reads the map through the left-right read path (`publish.rs`: no lock), and
//! grows a stack through the space's write lock, which it only spins on (no writer waits for a signal
//! handler: `fork` takes its locks all or none) and refuses when its own thread holds that lock or
//! reads that map — which the stack headroom (`space/stack.rs`) keeps from happening in vmspace's own
//! calls. Growth runs on reserved entries with allocation forbidden.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use vmspace_core::{EntryFlags, MapSpec};

use crate::backing::Backing;
use crate::error::Error;
use crate::os::process::{self, RawThread};
use crate::os::signal::{self, AltStack, Disposition, FaultSignal};
use crate::registry;
use crate::space::{AddressSpace, Shared};

/// How many spaces the handler can see at once; a space beyond this still works, but its stacks
/// cannot grow on demand (`AddressSpace::stack` refuses) and its faults are not explained.
pub const FAULT_SLOTS: usize = registry::SLOTS;

/// The last address a fault was retried at, so that a second fault there is reported, not retried.
static LAST_RETRY: AtomicU64 = AtomicU64::new(0);

/// Installs the handler for SIGSEGV and SIGBUS, once per process, on the alternate signal stack
/// (`SA_ONSTACK`: a stack that overflowed cannot run its own handler). Rust's runtime gives the main
/// thread and `std::thread`s an alternate stack; [`spawn_on_stack`] threads get their own.
pub fn install() {
    // Under the registry, which `fork` holds across fork(2): a child never inherits an
    // installation half-done by a thread it does not have (it would wait for it forever).
    let _held = registry::hold();
    signal::install_fault_handler(handler);
}

/// What the handler concluded.
enum Verdict {
    /// The stack grew (or another thread grew it): retry the access.
    Retry,
    /// A vmspace fault that is the program's error: the message is in the buffer; die.
    Report,
    /// Not vmspace memory: chain.
    NotOurs,
}

/// The handler's Rust half (async-signal-safe: no lock another thread may hold indefinitely, no
/// allocation).
fn handler(sig: FaultSignal, addr: u64) -> Disposition {
    let mut msg = Msg::new();
    // SAFETY: every member of the registry is a space's `Shared` (spaces are its only members).
    let verdict =
        unsafe { registry::with_member_at::<Shared, _>(addr, |sh| explain(sh, addr, sig, &mut msg)) };
    match verdict.unwrap_or(Verdict::NotOurs) {
        Verdict::Retry => Disposition::Retry,
        Verdict::Report => {
            msg.emit();
            Disposition::Die
        }
        Verdict::NotOurs => Disposition::Chain,
    }
}

/// Explains (and, for a stack, resolves) a fault at `addr` inside `sh`.
fn explain(sh: &Shared, addr: u64, sig: FaultSignal, msg: &mut Msg) -> Verdict {
    enum Seen {
        Entry(Range<u64>, vmspace_core::Prot, vmspace_core::Prot, EntryFlags),
        Reservation(Range<u64>),
        Overflow(Range<u64>),
        Hole,
    }
    let seen = sh.read(|m| {
        if let Some(e) = m.lookup_entry(addr) {
            Seen::Entry(e.start..e.end, e.prot(), e.max_prot(), e.flags())
        } else if m.stack_reservation(addr).is_some() {
            Seen::Reservation(m.stack_extent(addr).unwrap_or(addr..addr))
        } else if let Some(e) = m.overlapping(addr..addr.saturating_add(STACK_GUARD_GAP)).next()
            && e.flags().contains(EntryFlags::STACK)
        {
            // Just below a stack whose reservation is spent: an overflow, as Linux's guard gap says.
            Seen::Overflow(m.stack_extent(e.start).unwrap_or(e.start..e.end))
        } else {
            Seen::Hole
        }
    });
    let signame = sig.name();
    match seen {
        Seen::Reservation(stack) => match sh.grow_from_handler(addr) {
            Ok(_) => Verdict::Retry,
            Err(why) => {
                let _ = writeln!(
                    msg,
                    "vmspace: stack overflow at {addr:#x}: the stack {:#x}..{:#x} ({} KiB) cannot grow: {why}",
                    stack.start,
                    stack.end,
                    (stack.end - stack.start) / 1024
                );
                Verdict::Report
            }
        },
        Seen::Overflow(stack) => {
            let _ = writeln!(
                msg,
                "vmspace: stack overflow at {addr:#x}: the stack {:#x}..{:#x} ({} KiB) reached its size limit",
                stack.start,
                stack.end,
                (stack.end - stack.start) / 1024
            );
            Verdict::Report
        }
        Seen::Entry(r, prot, max, flags) if flags.contains(EntryFlags::GUARD) => {
            let _ = writeln!(
                msg,
                "vmspace: guard region hit at {addr:#x} ({signame}): guard {:#x}..{:#x} {prot}/{max}",
                r.start, r.end
            );
            Verdict::Report
        }
        Seen::Entry(r, prot, max, flags) => {
            // A stack page another thread mapped between the fault and our look: retry once. The
            // same address faulting twice in a row is a real violation (an exec fault, say).
            if flags.contains(EntryFlags::STACK) && LAST_RETRY.swap(addr, Ordering::SeqCst) != addr {
                return Verdict::Retry;
            }
            let _ = writeln!(
                msg,
                "vmspace: protection violation at {addr:#x} ({signame}): {:#x}..{:#x} is {prot} (max {max}){}",
                r.start,
                r.end,
                if flags.contains(EntryFlags::SEALED) { ", sealed" } else { "" }
            );
            Verdict::Report
        }
        Seen::Hole => {
            let _ = writeln!(
                msg,
                "vmspace: access to unmapped memory at {addr:#x} ({signame}), inside a vmspace reservation"
            );
            Verdict::Report
        }
    }
}

/// A message built without allocating, written to stderr with one `write(2)`.
struct Msg {
    buf: [u8; 512],
    len: usize,
}

impl Msg {
    fn new() -> Self {
        Msg { buf: [0; 512], len: 0 }
    }

    fn emit(&self) {
        signal::write_stderr(&self.buf[..self.len]);
    }
}

impl std::fmt::Write for Msg {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// How far below a stack a fault still counts as that stack's overflow (Linux's `stack_guard_gap`).
const STACK_GUARD_GAP: u64 = 1 << 20;

impl AddressSpace {
    /// Creates a grow-down stack of `max_size` bytes anywhere in the space (`vm_map_stack` with
    /// `MAP_STACK`): the top `init_size` bytes are mapped, the rest is reserved; a fault in the
    /// reservation grows the stack by [`VmMap::stack_growth`](vmspace_core::VmMap::stack_growth) (64 KiB)
    /// steps up to the map's stack limit, then is reported as a stack overflow. Returns `[base, top)`.
    pub fn stack(&self, max_size: u64, init_size: u64, spec: MapSpec<Backing>) -> Result<Range<u64>, Error> {
        self.stack_with(None, max_size, init_size, spec)
    }

    /// [`AddressSpace::stack`] at a fixed base (the lowest address of the reservation).
    pub fn stack_at(
        &self,
        base: u64,
        max_size: u64,
        init_size: u64,
        spec: MapSpec<Backing>,
    ) -> Result<Range<u64>, Error> {
        self.stack_with(Some(base), max_size, init_size, spec)
    }

    fn stack_with(
        &self,
        base: Option<u64>,
        max: u64,
        init: u64,
        spec: MapSpec<Backing>,
    ) -> Result<Range<u64>, Error> {
        if !self.fault_visible() {
            return Err(Error::NotSupported("too many spaces for the fault handler to see"));
        }
        install();
        self.keep_growth_room();
        let base = self.change(|m| {
            let b = match base {
                Some(b) => {
                    m.stack(b, max, init, spec.clone())?;
                    b
                }
                None => m.stack_anywhere(max, init, spec.clone())?,
            };
            Ok(b)
        })?;
        Ok(base..base + max)
    }

    /// Sets the size limit of stacks in this space (RLIMIT_STACK for its stacks).
    pub fn set_stack_limit(&self, bytes: u64) -> Result<(), Error> {
        self.change(|m| {
            m.set_stack_limit(bytes);
            Ok(())
        })
    }

    /// Sets the stack growth step (default 64 KiB).
    pub fn set_stack_growth(&self, bytes: u64) -> Result<(), Error> {
        self.change(|m| {
            m.set_stack_growth(bytes);
            Ok(())
        })
    }
}

/// A thread running on a vmspace stack (see [`spawn_on_stack`]).
///
/// The stack lives as long as the thread needs it: [`StackThread::join`] waits for the thread, then
/// unmaps it; dropping the handle without joining also waits for the thread (as a scoped thread does),
/// so the stack — and the space it belongs to, which the handle keeps alive — never goes while the
/// thread still runs on it. (A thread that drops its own handle cannot wait for itself: the stack and
/// the space are then kept until the process ends.)
pub struct StackThread<T> {
    /// `None` once joined.
    thread: Option<RawThread>,
    result: *mut Option<std::thread::Result<T>>,
    space: std::sync::Arc<AddressSpace>,
    stack: Range<u64>,
}

// SAFETY: the result slot is written by the thread before it exits and read only after pthread_join.
unsafe impl<T: Send> Send for StackThread<T> {}

struct Start<F, T> {
    f: F,
    result: *mut Option<std::thread::Result<T>>,
    space: std::sync::Arc<AddressSpace>,
    stack: Range<u64>,
    init: u64,
}

extern "C" fn start<F: FnOnce() -> T, T>(arg: *mut std::ffi::c_void) -> *mut std::ffi::c_void {
    // SAFETY: `arg` is the Box leaked by `spawn_on_stack` for this thread, taken exactly once.
    let start = unsafe { Box::from_raw(arg as *mut Start<F, T>) };
    let alt = AltStack::new();
    // The thread knows its stack from the start, so keeping its headroom never reads the map.
    start.space.learn_stack(start.stack.clone(), start.stack.end - start.init);
    drop(start.space);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(start.f));
    // SAFETY: the joiner reads the slot only after pthread_join, i.e. after this write.
    unsafe { *start.result = Some(r) };
    drop(alt);
    std::ptr::null_mut()
}

/// Runs `f` on a new thread whose stack is a vmspace stack of `max_size` bytes with `init_size` mapped
/// (`pthread_attr_setstack`): it grows on demand, and overflowing it is reported as a stack overflow.
/// The thread gets its own alternate signal stack. `init_size` must hold the thread's TLS (64 KiB is
/// plenty). The thread may make any call on `space` (see [`crate::space::HEADROOM`]).
pub fn spawn_on_stack<F, T>(
    space: &std::sync::Arc<AddressSpace>,
    max_size: u64,
    init_size: u64,
    f: F,
) -> Result<StackThread<T>, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let stack =
        space.stack(max_size, init_size, MapSpec::new(vmspace_core::Prot::RW, vmspace_core::Prot::RW))?;
    let result: *mut Option<std::thread::Result<T>> = Box::into_raw(Box::new(None));
    let init = init_size.next_multiple_of(crate::os::page_size()).min(max_size);
    let begin = Start { f, result, space: std::sync::Arc::clone(space), stack: stack.clone(), init };
    let arg = Box::into_raw(Box::new(begin)) as *mut std::ffi::c_void;
    // SAFETY: the stack range is this space's, mapped at the top (where glibc puts the thread's
    // descriptor) and reserved below; the handle keeps the space, and joins before unmapping it.
    match unsafe { process::spawn_on_stack(stack.clone(), start::<F, T>, arg) } {
        Ok(thread) => {
            Ok(StackThread { thread: Some(thread), result, space: std::sync::Arc::clone(space), stack })
        }
        Err(source) => {
            // SAFETY: the thread was not created, so both boxes are still ours alone.
            unsafe {
                drop(Box::from_raw(arg as *mut Start<F, T>));
                drop(Box::from_raw(result));
            }
            let _ = space.unmap(stack);
            Err(Error::Os { call: "pthread_create", source })
        }
    }
}

impl<T> StackThread<T> {
    /// The thread's stack `[base, top)`.
    pub fn stack(&self) -> Range<u64> {
        self.stack.clone()
    }

    /// Waits for the thread, unmaps its stack and returns its result (`Err` if it panicked).
    pub fn join(mut self) -> std::thread::Result<T> {
        self.finish().expect("the thread stored its result before exiting")
    }

    /// Joins the thread (once) and unmaps its stack; its result, or `None` when it cannot be had (a
    /// thread joining itself, or already joined).
    fn finish(&mut self) -> Option<std::thread::Result<T>> {
        let thread = self.thread.take()?;
        if thread.is_current() {
            // The thread is dropping its own handle: it runs on the stack, which must stay, and so
            // must the space that owns it.
            thread.detach();
            std::mem::forget(std::sync::Arc::clone(&self.space));
            return None;
        }
        thread.join().ok()?;
        // SAFETY: the thread has exited (joined), having written the slot; we take the box once.
        let r = unsafe { Box::from_raw(self.result) };
        let _ = self.space.unmap(self.stack.clone());
        *r
    }
}

impl<T> Drop for StackThread<T> {
    /// Waits for the thread and unmaps its stack (see [`StackThread`]).
    fn drop(&mut self) {
        drop(self.finish());
    }
}
