//! Forking the process with its address spaces (`vmspace_fork`): every live `AddressSpace` is locked
//! across the `fork()`, then each side's map is brought in line with what the kernel gave it.
//!
//! Invariant: the child inherits no half-held state of vmspace's: the table of spaces and every
//! space's write lock are held by the forking thread across `fork(2)` (so no change is half-way), and
//! the reader marks and fault handlers in flight of other threads — which the child does not have —
//! are reset in the child before anything could wait on them. The fork never waits while holding a
//! lock another waiting thread needs: it takes the write locks all or none (new changes hold back
//! while it does, so it is not starved), and the parent gives every lock back before it marks its
//! maps copy-on-write, one space at a time.

use std::io;
use std::sync::Arc;

use crate::os::process;
use crate::registry;
use crate::space::{Shared, reading_any};

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
/// Whatever the other threads were doing — reading a map, taking a fault, changing a space — the
/// child's spaces are usable at once.
///
/// Refused (`Err`, nothing done) from inside a read of a space (a `with_map` closure) or a change to
/// one.
///
/// # Safety
/// The usual rules of `fork` in a multi-threaded process apply: the child has one thread, and until it
/// calls `exec` or `_exit` it must not rely on locks other threads may have held (vmspace's own locks are
/// taken across the fork and released in both processes).
pub unsafe fn fork() -> io::Result<Forked> {
    if reading_any() {
        return Err(io::Error::other("fork from inside a read of an AddressSpace"));
    }
    // Everything probed once per process is probed now, before the fork: a probe half-done by
    // another thread at the fork would leave the child waiting for it forever.
    let _ = (crate::os::features(), crate::os::madvise_batching(), crate::os::pagemap::shows_guards());
    let _ = (crate::smaps::shows_reservations(), process::watch_forks());
    let held = registry::hold();
    let spaces: Vec<Arc<Shared>> = held.members();
    // A thread on a vmspace stack must not need to grow it while it holds every space's lock.
    for s in &spaces {
        s.ensure_headroom();
    }
    let tid = process::thread_id();
    // All the write locks or none: a thread that holds one while it waits for another (a stack growth
    // in the fault handler, say) is never stuck behind us; and new changes wait meanwhile, so those in
    // flight finish and the locks come free.
    let announced = held.announce_fork();
    let mut guards = Vec::with_capacity(spaces.len());
    loop {
        let mut busy = false;
        for s in &spaces {
            match s.maps.try_write_now(tid) {
                Ok(Some(g)) => guards.push(g),
                Ok(None) => {
                    busy = true;
                    break;
                }
                Err(_) => return Err(io::Error::other("fork from inside an AddressSpace change")),
            }
        }
        if !busy {
            break;
        }
        guards.clear();
        std::thread::yield_now();
    }
    // SAFETY: the caller accepts fork's rules (above); the locks held here are released on both sides.
    let pid = unsafe { process::fork() }?;
    if pid == 0 {
        std::mem::forget(announced);
        held.reset_in_child();
        for (s, g) in spaces.iter().zip(guards.iter_mut()) {
            // SAFETY: this is the child, which has only this thread; it holds the write lock (g) and
            // is inside no read (checked above).
            unsafe { s.reset_after_fork(g) };
            s.after_fork_child(g);
        }
        drop(guards);
        drop(held);
        return Ok(Forked::Child);
    }
    // The parent: the child has its copy, so the locks and the table go before the maps are brought
    // in line, one space at a time — marking copy-on-write waits for each map's readers, and a reader
    // may itself be waiting (a stack growth) for another space's lock or for the fork to end.
    drop(guards);
    drop(held);
    drop(announced);
    for s in &spaces {
        if let Ok(mut g) = s.maps.try_write(tid) {
            s.after_fork_parent(&mut g);
        }
    }
    Ok(Forked::Parent(pid))
}
