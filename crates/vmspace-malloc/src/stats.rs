//! `VMSPACE_MALLOC_STATS=1`: one line on stderr at exit, `vmspace-malloc: large=N ...`. Silent
//! otherwise.
//!
//! Invariant: the counter is one relaxed add per large block served; the line is written with one
//! `write(2)` from an `atexit` handler, formatted on the stack.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

static SERVED: AtomicU64 = AtomicU64::new(0);
/// A copy of stderr taken at start-up: programs such as coreutils close fd 2 in their own exit
/// handlers, which run before ours.
static ERR_FD: AtomicI32 = AtomicI32::new(2);

pub(crate) fn served() {
    SERVED.fetch_add(1, Ordering::Relaxed);
}

/// Registers the exit line if asked for (from the constructor).
pub(crate) fn arm() {
    // SAFETY: getenv with a NUL-terminated name, read at once, in the constructor (no other thread yet).
    let v = unsafe { libc::getenv(c"VMSPACE_MALLOC_STATS".as_ptr()) };
    // SAFETY: non-null getenv results are NUL-terminated strings.
    if v.is_null() || unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes() != b"1" {
        return;
    }
    // SAFETY: fcntl on fd 2; a failure leaves fd 2 in use.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if fd >= 0 {
        ERR_FD.store(fd, Ordering::Relaxed);
    }
    // SAFETY: registers a handler that follows atexit's rules (it returns, it does not exit).
    unsafe { libc::atexit(print) };
}

/// A fixed buffer for the line (no allocation at exit).
struct Line {
    buf: [u8; 320],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        let end = self.len.checked_add(b.len()).filter(|&e| e <= self.buf.len()).ok_or(std::fmt::Error)?;
        self.buf[self.len..end].copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

extern "C" fn print() {
    let _ = std::panic::catch_unwind(|| {
        let s = crate::shim::large().stats();
        let mut line = Line { buf: [0; 320], len: 0 };
        let _ = writeln!(
            line,
            "vmspace-malloc: large={} mapped={} reused={} live={} cached_bytes={} returned_bytes={} unmapped_now={} threshold={}",
            SERVED.load(Ordering::Relaxed),
            s.mapped,
            s.reused,
            s.live,
            s.reclaimable_bytes,
            s.reclaimed_bytes,
            s.unmapped,
            crate::shim::large().threshold(),
        );
        // SAFETY: writes the initialised part of the buffer to stderr.
        unsafe { libc::write(ERR_FD.load(Ordering::Relaxed), line.buf.as_ptr().cast(), line.len) };
    });
}
