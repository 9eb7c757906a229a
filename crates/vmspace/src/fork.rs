//! Forking the process with its address spaces (`vmspace_fork`): every live `AddressSpace` is locked
//! across the `fork()`, then each side's map is brought in line with what the kernel gave it. The work
//! is done by `pthread_atfork` hooks (`space/forking.rs`), so a plain `fork(2)` from elsewhere in the
//! program gets it too; this function adds the refusals a hook cannot give.

use std::io;

use crate::os::process;
use crate::space::reading_any;

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
    if crate::publish::writes_held() > 0 {
        return Err(io::Error::other("fork from inside an AddressSpace change"));
    }
    // The spaces' atfork hooks do the rest, as for any other caller of fork(2).
    // SAFETY: the caller accepts fork's rules (above).
    let pid = unsafe { process::fork() }?;
    Ok(if pid == 0 { Forked::Child } else { Forked::Parent(pid) })
}
