//! Signals: the SIGSEGV/SIGBUS handler's installation and chaining, alternate signal stacks, and the
//! one async-signal-safe way to say something (`write(2)` to stderr).
//!
//! Invariant: the actions that were installed before ours are saved before ours is in place and never
//! written again, so the trampoline can always chain to them.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Which fault signal arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultSignal {
    /// `SIGSEGV`.
    Segv,
    /// `SIGBUS`.
    Bus,
}

impl FaultSignal {
    fn number(self) -> libc::c_int {
        match self {
            FaultSignal::Segv => libc::SIGSEGV,
            FaultSignal::Bus => libc::SIGBUS,
        }
    }

    /// `"SIGSEGV"` or `"SIGBUS"`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultSignal::Segv => "SIGSEGV",
            FaultSignal::Bus => "SIGBUS",
        }
    }
}

/// What the fault handler decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Return and retry the access (the cause was resolved).
    Retry,
    /// Reset the signal to its default action and retry: the process dies of the signal.
    Die,
    /// Not ours: hand the signal to the action installed before.
    Chain,
}

/// The handler's Rust half: called with the signal and the faulting address, on the alternate stack.
/// It must be async-signal-safe.
pub(crate) type FaultHandler = fn(FaultSignal, u64) -> Disposition;

/// The actions that were installed before ours.
struct Previous(UnsafeCell<MaybeUninit<[libc::sigaction; 2]>>);
// SAFETY: written once inside `INSTALL` before the trampoline is installed, read-only afterwards.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new(MaybeUninit::uninit()));
static INSTALL: Once = Once::new();
/// The `FaultHandler`, as a `usize` (set once, before the trampoline is installed).
static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Installs `handler` for SIGSEGV and SIGBUS, once per process (later calls do nothing), with
/// `SA_SIGINFO | SA_ONSTACK | SA_NODEFER`: on the alternate signal stack, since a stack that overflowed
/// cannot run its own handler.
pub(crate) fn install_fault_handler(handler: FaultHandler) {
    INSTALL.call_once(|| {
        HANDLER.store(handler as usize, Ordering::SeqCst);
        // SAFETY: plain sigaction calls; the previous actions are saved before ours is in place, and
        // PREVIOUS is written only here.
        unsafe {
            let prev = &mut *PREVIOUS.0.get();
            let prev = prev.as_mut_ptr() as *mut libc::sigaction;
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = trampoline as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, ptr::null(), prev);
            libc::sigaction(libc::SIGBUS, ptr::null(), prev.add(1));
            libc::sigaction(libc::SIGSEGV, &sa, ptr::null_mut());
            libc::sigaction(libc::SIGBUS, &sa, ptr::null_mut());
        }
    });
}

extern "C" fn trampoline(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let which = if sig == libc::SIGBUS { FaultSignal::Bus } else { FaultSignal::Segv };
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers of SIGSEGV/SIGBUS.
    let addr = unsafe { (*info).si_addr() } as u64;
    // SAFETY: HANDLER holds a `FaultHandler` stored before the trampoline was installed.
    let handler: FaultHandler = unsafe { std::mem::transmute(HANDLER.load(Ordering::SeqCst)) };
    match handler(which, addr) {
        Disposition::Retry => {}
        Disposition::Die => reset_default(which),
        Disposition::Chain => chain(which, info, ctx),
    }
}

/// Sets `sig` back to its default action: retrying the faulting access then kills the process with
/// the signal, as it would have without us. Async-signal-safe.
fn reset_default(sig: FaultSignal) {
    // SAFETY: resetting a disposition is async-signal-safe and has no memory effect.
    unsafe { libc::signal(sig.number(), libc::SIG_DFL) };
}

/// Hands a fault that is not ours to the action installed before, or to the default action.
fn chain(sig: FaultSignal, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let i = usize::from(sig == FaultSignal::Bus);
    // SAFETY: PREVIOUS was written before the trampoline was installed and is never written again.
    let prev = unsafe { (*PREVIOUS.0.get()).assume_init_ref()[i] };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        reset_default(sig);
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an SA_SIGINFO handler has this signature; we pass the kernel's own arguments.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig.number(), info, ctx);
    } else {
        // SAFETY: a plain handler takes the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig.number());
    }
}

/// `write(2, bytes)`: async-signal-safe; errors are ignored (there is nobody to tell).
pub(crate) fn write_stderr(bytes: &[u8]) {
    // SAFETY: write(2) of a valid buffer of `bytes.len()` bytes to fd 2.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}

/// An alternate signal stack for the calling thread (`sigaltstack`), for a thread whose own stack may
/// be where the fault is. Disabled and unmapped when dropped, on the same thread.
pub(crate) struct AltStack(Option<(u64, usize)>);

impl AltStack {
    const SIZE: usize = 64 * 1024;

    /// Maps a stack and makes it this thread's alternate signal stack; `AltStack(None)` if the memory
    /// could not be had (the thread then runs without one).
    pub(crate) fn new() -> Self {
        let Ok(p) = super::mm::reserve(Self::SIZE as u64) else { return AltStack(None) };
        // SAFETY: `p` is a reservation just made for this stack, known to no one else.
        if unsafe { super::mm::protect(p, Self::SIZE as u64, vmspace_core::Prot::RW) }.is_err() {
            // SAFETY: as above.
            let _ = unsafe { super::mm::unmap(p, Self::SIZE as u64) };
            return AltStack(None);
        }
        let ss = libc::stack_t { ss_sp: p as usize as *mut libc::c_void, ss_flags: 0, ss_size: Self::SIZE };
        // SAFETY: the memory is ours for as long as the AltStack lives; it is disabled before unmapping.
        unsafe { libc::sigaltstack(&ss, ptr::null_mut()) };
        AltStack(Some((p, Self::SIZE)))
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if let Some((p, len)) = self.0 {
            let ss = libc::stack_t { ss_sp: ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
            // SAFETY: disable the alternate stack before its memory goes.
            unsafe { libc::sigaltstack(&ss, ptr::null_mut()) };
            // SAFETY: the stack's own memory, no longer in use as a signal stack.
            let _ = unsafe { super::mm::unmap(p, len as u64) };
        }
    }
}
