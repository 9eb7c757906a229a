//! Forking the process with its address spaces (`vmspace_fork`): every live `AddressSpace` is locked
//! across the `fork()`, then each side's map is brought in line with what the kernel gave it.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::space::registered;

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The `pthread_atfork` child handler: async-signal-safe (one atomic add).
unsafe extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Registers the fork-generation handler once per process; Err with the errno if `pthread_atfork`
/// failed.
pub(crate) fn watch_forks() -> Result<(), i32> {
    static RC: OnceLock<i32> = OnceLock::new();
    // SAFETY: registers a handler that only does an atomic add; `None` for the other two hooks.
    let rc = *RC.get_or_init(|| unsafe { libc::pthread_atfork(None, None, Some(in_child)) });
    if rc == 0 { Ok(()) } else { Err(rc) }
}

/// The number of `fork`s (through libc, which runs `pthread_atfork` handlers) between the first
/// process that called [`watch_forks`] and this one: one relaxed load tells process-bound caches
/// (scratch pages, cached thread ids) whether they still describe this process.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Which side of a fork this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forked {
    /// The parent, with the child's pid.
    Parent(i32),
    /// The child.
    Child,
}

/// Forks the process (`fork(2)`). Every `AddressSpace` is locked for the duration, so none is caught
/// half-way through a change; afterwards the parent's maps mark copies copy-on-write and the child's
/// maps follow inheritance (none: a hole, zero: fresh memory, wiring dropped), as the kernel did.
///
/// # Safety
/// The usual rules of `fork` in a multi-threaded process apply: the child has one thread, and until it
/// calls `exec` or `_exit` it must not rely on locks other threads may have held (vmspace's own locks are
/// taken across the fork and released in both processes).
pub unsafe fn fork() -> io::Result<Forked> {
    let spaces = registered();
    let tid = crate::thread_id();
    let mut guards = Vec::with_capacity(spaces.len());
    for s in &spaces {
        guards.push(
            s.maps.try_write(tid).map_err(|_| io::Error::other("fork from inside an AddressSpace change"))?,
        );
    }
    // SAFETY: the caller accepts fork's rules (above); the locks held here are released on both sides.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    for (s, g) in spaces.iter().zip(guards.iter_mut()) {
        if pid == 0 {
            s.after_fork_child(g);
        } else {
            s.after_fork_parent(g);
        }
    }
    drop(guards);
    Ok(if pid == 0 { Forked::Child } else { Forked::Parent(pid) })
}
