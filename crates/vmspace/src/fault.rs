//! The fault path (`vm_map_lookup`, `vm_map_growstack`, `MAP_ENTRY_STACK`): a SIGSEGV/SIGBUS handler
//! that grows vmspace stacks on demand, explains guard hits and protection faults in vmspace memory,
//! and hands every other fault to the handler that was there before.
//!
//! Invariant: the handler never takes a lock another thread may hold indefinitely and never allocates.
//! It finds the faulting space in a fixed slot array ([`register`]), reads the map through the
//! left-right read path (`publish.rs`: no lock), and grows a stack through the space's write lock, which
//! it only spins on (a writer never waits for a signal handler) and refuses when its own thread holds
//! it. Growth runs on reserved entries with allocation forbidden; spaces stay alive while a handler
//! runs ([`unregister`] waits for handlers in flight).

use std::cell::UnsafeCell;
use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use vmspace_core::{EntryFlags, Growth, MapSpec, VmError};

use crate::backing::Backing;
use crate::error::Error;
use crate::space::{AddressSpace, Shared};

/// How many spaces the handler can see at once; a space beyond this still works, but its stacks
/// cannot grow on demand (`AddressSpace::stack` refuses) and its faults are not explained.
pub const FAULT_SLOTS: usize = 256;

static SLOTS: [AtomicPtr<Shared>; FAULT_SLOTS] = [const { AtomicPtr::new(ptr::null_mut()) }; FAULT_SLOTS];
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// The last address a fault was retried at, so that a second fault there is reported, not retried.
static LAST_RETRY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Makes a space visible to the handler; returns its slot, or `None` when all are taken.
pub(crate) fn register(shared: &Shared) -> Option<usize> {
    let p = shared as *const Shared as *mut Shared;
    SLOTS
        .iter()
        .position(|s| s.compare_exchange(ptr::null_mut(), p, Ordering::SeqCst, Ordering::SeqCst).is_ok())
}

/// Hides a space from the handler and waits until no handler can still be looking at it.
pub(crate) fn unregister(slot: usize) {
    SLOTS[slot].store(ptr::null_mut(), Ordering::SeqCst);
    // A handler counts itself before it loads a slot, so once the count is zero after the store, no
    // handler holds this space.
    while IN_HANDLER.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// The actions that were installed before ours, for chaining.
struct Previous(UnsafeCell<MaybeUninit<[libc::sigaction; 2]>>);
// SAFETY: written once inside `INSTALL` before the handler is installed, read-only afterwards.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new(MaybeUninit::uninit()));
static INSTALL: Once = Once::new();

/// Installs the handler for SIGSEGV and SIGBUS, once per process, on the alternate signal stack
/// (`SA_ONSTACK`: a stack that overflowed cannot run its own handler). Rust's runtime gives the main
/// thread and `std::thread`s an alternate stack; [`spawn_on_stack`] threads get their own.
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: plain sigaction calls; the previous actions are saved before ours is in place, and
        // PREVIOUS is written only here.
        unsafe {
            let prev = &mut *PREVIOUS.0.get();
            let prev = prev.as_mut_ptr() as *mut libc::sigaction;
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, ptr::null(), prev);
            libc::sigaction(libc::SIGBUS, ptr::null(), prev.add(1));
            libc::sigaction(libc::SIGSEGV, &sa, ptr::null_mut());
            libc::sigaction(libc::SIGBUS, &sa, ptr::null_mut());
        }
    });
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

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers of SIGSEGV/SIGBUS.
    let addr = unsafe { (*info).si_addr() } as u64;
    let mut msg = Msg::new();
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let verdict = SLOTS
        .iter()
        .map(|s| s.load(Ordering::SeqCst))
        .filter(|p| !p.is_null())
        // SAFETY: a registered space stays alive until `unregister` has seen IN_HANDLER at zero, and
        // we counted ourselves before loading the slot.
        .map(|p| unsafe { &*p })
        .find(|sh| sh.outer().contains(&addr))
        .map_or(Verdict::NotOurs, |sh| explain(sh, addr, sig, &mut msg));
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    match verdict {
        Verdict::Retry => {}
        Verdict::Report => {
            msg.emit();
            // Die of the signal: the default action when the access is retried.
            // SAFETY: resetting a signal disposition is async-signal-safe.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
        Verdict::NotOurs => chain(sig, info, ctx),
    }
}

/// Explains (and, for a stack, resolves) a fault at `addr` inside `sh`.
fn explain(sh: &Shared, addr: u64, sig: libc::c_int, msg: &mut Msg) -> Verdict {
    enum Seen {
        Entry(Range<u64>, vmspace_core::Prot, vmspace_core::Prot, EntryFlags),
        Reservation(Range<u64>),
        Overflow(Range<u64>),
        Hole,
    }
    let seen = sh.maps.read(|m| {
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
    let signame = if sig == libc::SIGBUS { "SIGBUS" } else { "SIGSEGV" };
    match seen {
        Seen::Reservation(stack) => match grow(sh, addr) {
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

/// Grows the stack whose reservation holds `addr`, on reserved entries, allocating nothing.
fn grow(sh: &Shared, addr: u64) -> Result<Growth, &'static str> {
    let mut w = sh
        .maps
        .try_write(crate::thread_id())
        .map_err(|_| "the fault came from inside a change to its own map")?;
    let r = sh.apply_locked(&mut w, |m| {
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

/// Hands a fault that is not vmspace's to the previous handler, or to the default action.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let i = usize::from(sig == libc::SIGBUS);
    // SAFETY: PREVIOUS was written before our handler was installed and is never written again.
    let prev = unsafe { (*PREVIOUS.0.get()).assume_init_ref()[i] };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        // Retrying the access with the default action terminates the process, as it would have.
        // SAFETY: resetting a disposition is async-signal-safe.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an SA_SIGINFO handler has this signature; we pass the kernel's own arguments.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain handler takes the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
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
        // SAFETY: write(2) of our own buffer to fd 2; async-signal-safe.
        unsafe { libc::write(2, self.buf.as_ptr().cast(), self.len) };
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

/// Entries and journal room kept for growth from the handler (two per growth, with slack).
const GROWTH_RESERVE: usize = 16;

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
        let base = self.change(|m| {
            let b = match base {
                Some(b) => {
                    m.stack(b, max, init, spec.clone())?;
                    b
                }
                None => m.stack_anywhere(max, init, spec.clone())?,
            };
            // Room for growth from the signal handler, where nothing may be allocated.
            m.reserve(GROWTH_RESERVE)?;
            m.reserve_journal(4 * GROWTH_RESERVE);
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
pub struct StackThread<T> {
    thread: libc::pthread_t,
    result: *mut Option<std::thread::Result<T>>,
    space: std::sync::Arc<AddressSpace>,
    stack: Range<u64>,
}

// SAFETY: the result slot is written by the thread before it exits and read only after pthread_join.
unsafe impl<T: Send> Send for StackThread<T> {}

struct Start<F, T> {
    f: F,
    result: *mut Option<std::thread::Result<T>>,
}

extern "C" fn start<F: FnOnce() -> T, T>(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the Box leaked by `spawn_on_stack` for this thread, taken exactly once.
    let start = unsafe { Box::from_raw(arg as *mut Start<F, T>) };
    let alt = AltStack::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(start.f));
    // SAFETY: the joiner reads the slot only after pthread_join, i.e. after this write.
    unsafe { *start.result = Some(r) };
    drop(alt);
    ptr::null_mut()
}

/// An alternate signal stack for a thread whose own stack may be where the fault is.
struct AltStack(Option<(u64, usize)>);

impl AltStack {
    const SIZE: usize = 64 * 1024;

    fn new() -> Self {
        let Ok(p) = crate::os::reserve(Self::SIZE as u64) else { return AltStack(None) };
        if crate::os::protect(p, Self::SIZE as u64, vmspace_core::Prot::RW).is_err() {
            let _ = crate::os::unmap(p, Self::SIZE as u64);
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
            let _ = crate::os::unmap(p, len as u64);
        }
    }
}

/// Runs `f` on a new thread whose stack is a vmspace stack of `max_size` bytes with `init_size` mapped
/// (`pthread_attr_setstack`): it grows on demand, and overflowing it is reported as a stack overflow.
/// The thread gets its own alternate signal stack. `init_size` must hold the thread's TLS (64 KiB is
/// plenty).
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
    let arg = Box::into_raw(Box::new(Start { f, result })) as *mut libc::c_void;
    // SAFETY: attr is initialised before use and destroyed after; the stack range is ours, mapped at
    // the top (where glibc puts the thread's descriptor) and reserved below.
    let thread = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstack(&mut attr, stack.start as usize as *mut libc::c_void, max_size as usize);
        let mut t: libc::pthread_t = std::mem::zeroed();
        let rc = libc::pthread_create(&mut t, &attr, start::<F, T>, arg);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(arg as *mut Start<F, T>));
            drop(Box::from_raw(result));
            let _ = space.unmap(stack.clone());
            return Err(Error::Os { call: "pthread_create", source: std::io::Error::from_raw_os_error(rc) });
        }
        t
    };
    Ok(StackThread { thread, result, space: std::sync::Arc::clone(space), stack })
}

impl<T> StackThread<T> {
    /// The thread's stack `[base, top)`.
    pub fn stack(&self) -> Range<u64> {
        self.stack.clone()
    }

    /// Waits for the thread, unmaps its stack and returns its result (`Err` if it panicked).
    pub fn join(self) -> std::thread::Result<T> {
        // SAFETY: joining our own thread once; the result slot was written before it exited.
        let r = unsafe {
            libc::pthread_join(self.thread, ptr::null_mut());
            Box::from_raw(self.result)
        };
        let _ = self.space.unmap(self.stack.clone());
        r.expect("the thread stored its result before exiting")
    }
}
