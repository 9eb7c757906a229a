//! Processes and threads: `fork`, `pthread_atfork` and the fork generation it keeps, `gettid` (cached
//! per thread), threads on a stack of our own, `getenv` and the thread's name without allocating.

use std::cell::Cell;
use std::ffi::{CStr, c_void};
use std::io;
use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The calling thread's id (`gettid`).
pub(crate) fn gettid() -> u64 {
    rustix::thread::gettid().as_raw_nonzero().get() as u64
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The `pthread_atfork` child handler: async-signal-safe (one atomic add).
unsafe extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Registers the fork-generation handler once per process; Err with the errno if `pthread_atfork`
/// failed.
pub(crate) fn watch_forks() -> Result<(), i32> {
    static RC: OnceLock<Result<(), i32>> = OnceLock::new();
    *RC.get_or_init(|| at_fork(None, None, Some(in_child)))
}

/// The number of `fork`s (through libc, which runs `pthread_atfork` handlers) between the first
/// process that called [`watch_forks`] and this one: one relaxed load tells process-bound caches
/// (scratch pages, cached thread ids) whether they still describe this process.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// The calling thread's id (`gettid`), for the write lock's owner. Cached per thread with the fork
/// generation it was read in (a forked child's thread has a new id): `gettid` is a system call, and
/// it was a fifth of the cost of an `AddressSpace::protect`.
pub(crate) fn thread_id() -> u64 {
    thread_local! {
        /// `(fork generation, tid)`; tid 0 is unset.
        static TID: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    // A hit is two plain loads, so the fault handler (which asks for this) touches no lock; an entry
    // is only cached once the fork handler is known to be registered.
    let generation = generation();
    if let Ok(Some(tid)) = TID.try_with(|c| match c.get() {
        (g, tid) if g == generation && tid != 0 => Some(tid),
        _ => None,
    }) {
        return tid;
    }
    let tid = gettid();
    if watch_forks().is_ok() {
        let _ = TID.try_with(|c| c.set((generation, tid)));
    }
    tid
}

/// A `pthread_atfork` hook.
pub(crate) type ForkHook = unsafe extern "C" fn();

/// `pthread_atfork(prepare, parent, child)`: Err with the errno if it failed.
pub(crate) fn at_fork(
    prepare: Option<ForkHook>,
    parent: Option<ForkHook>,
    child: Option<ForkHook>,
) -> Result<(), i32> {
    // SAFETY: registers hooks; each hook's own safety is its definer's (they run around fork(2)).
    let rc = unsafe { libc::pthread_atfork(prepare, parent, child) };
    if rc == 0 { Ok(()) } else { Err(rc) }
}

/// `fork(2)` through libc (so `pthread_atfork` hooks run): `Ok(0)` in the child, the child's pid in the
/// parent.
///
/// # Safety
/// The rules of `fork` in a multi-threaded process: the child has one thread, and until it calls `exec`
/// or `_exit` it must not wait on anything (a lock, a reader mark) another thread may have held.
pub(crate) unsafe fn fork() -> io::Result<i32> {
    // SAFETY: the caller accepts fork's rules (above).
    let pid = unsafe { libc::fork() };
    if pid < 0 { Err(io::Error::last_os_error()) } else { Ok(pid) }
}

/// A thread started by [`spawn_on_stack`], not yet joined or detached.
pub(crate) struct RawThread(libc::pthread_t);

/// The entry point of a thread: takes the argument given to [`spawn_on_stack`].
pub(crate) type ThreadStart = extern "C" fn(*mut c_void) -> *mut c_void;

/// `pthread_create` of a thread whose stack is `stack` (`pthread_attr_setstack`); glibc puts the
/// thread's descriptor and TLS at the top of it.
///
/// # Safety
/// `stack` is mapped read-write at its top (enough for the thread's descriptor and TLS) and stays
/// mapped, owned by no one else, until the thread has been joined; `start(arg)` is sound to run on a
/// new thread.
pub(crate) unsafe fn spawn_on_stack(
    stack: Range<u64>,
    start: ThreadStart,
    arg: *mut c_void,
) -> io::Result<RawThread> {
    // SAFETY: attr is initialised before use and destroyed after; the stack is the caller's (above).
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstack(
            &mut attr,
            stack.start as usize as *mut c_void,
            (stack.end - stack.start) as usize,
        );
        let mut t: libc::pthread_t = std::mem::zeroed();
        let rc = libc::pthread_create(&mut t, &attr, start, arg);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(RawThread(t))
    }
}

impl RawThread {
    /// Whether this is the calling thread (`pthread_equal(t, pthread_self())`).
    pub(crate) fn is_current(&self) -> bool {
        // SAFETY: pthread_self and pthread_equal have no preconditions.
        unsafe { libc::pthread_equal(self.0, libc::pthread_self()) != 0 }
    }

    /// `pthread_join`: waits until the thread has exited; its stack is no longer in use afterwards.
    pub(crate) fn join(self) -> io::Result<()> {
        // SAFETY: a thread we created and have neither joined nor detached (`self` is consumed).
        let rc = unsafe { libc::pthread_join(self.0, std::ptr::null_mut()) };
        if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
    }

    /// `pthread_detach`: the thread cleans up after itself when it exits.
    pub(crate) fn detach(self) {
        // SAFETY: as `join`.
        unsafe { libc::pthread_detach(self.0) };
    }
}

/// `getenv(name)` without allocating (the allocator reads its settings with it).
///
/// # Safety
/// No thread calls `setenv`/`putenv`/`unsetenv` while the returned bytes are in use (as for any
/// `getenv`).
pub(crate) unsafe fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; the environment is not changed meanwhile (above).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: a non-null result of getenv is a NUL-terminated string that lives as long as the
    // environment is not changed.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// The calling thread's name (`prctl(PR_GET_NAME)`), NUL-padded; all zero if the kernel refused.
pub(crate) fn thread_name() -> [u8; 16] {
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes (NUL-terminated) into the buffer.
    let r = unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    if r == 0 { name } else { [0; 16] }
}
