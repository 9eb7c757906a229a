//! Processes and threads: `fork`, `pthread_atfork`, `gettid`, threads on a stack of our own,
//! `getenv` and the thread's name without allocating.

use std::ffi::{CStr, c_void};
use std::io;
use std::ops::Range;

/// The calling thread's id (`gettid`).
pub(crate) fn gettid() -> u64 {
    rustix::thread::gettid().as_raw_nonzero().get() as u64
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
