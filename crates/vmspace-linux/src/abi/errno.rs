//! Errno values (`include/uapi/asm-generic/errno-base.h`, `errno.h`; the same on x86-64 and aarch64).

use core::fmt;

/// A Linux errno: what a system call returns negated (`-EINVAL`), here as the positive value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Errno(pub u16);

macro_rules! errnos {
    ($($(#[doc = $doc:literal])+ $name:ident = $val:expr;)+) => {
        impl Errno {
            $( $(#[doc = $doc])+ pub const $name: Errno = Errno($val); )+
            /// Every errno this type names, with its name.
            pub const ALL: &[(&str, Errno)] = &[$((stringify!($name), Errno::$name)),+];
        }
    };
}

errnos! {
    /// `EPERM` 1: operation not permitted (sealed memory, missing capability).
    EPERM = 1;
    /// `ENOENT` 2: no such file or directory.
    ENOENT = 2;
    /// `ESRCH` 3: no such process.
    ESRCH = 3;
    /// `EINTR` 4: interrupted (a fatal signal while waiting for the mmap lock).
    EINTR = 4;
    /// `EIO` 5: I/O error (msync write-back).
    EIO = 5;
    /// `ENXIO` 6: no such device or address.
    ENXIO = 6;
    /// `E2BIG` 7: argument list too long.
    E2BIG = 7;
    /// `ENOEXEC` 8: exec format error.
    ENOEXEC = 8;
    /// `EBADF` 9: bad file descriptor (mmap of a closed fd).
    EBADF = 9;
    /// `ECHILD` 10: no child processes.
    ECHILD = 10;
    /// `EAGAIN` 11: try again (mlock over `RLIMIT_MEMLOCK`, populate failures).
    EAGAIN = 11;
    /// `ENOMEM` 12: out of memory, or an address range not (fully) mapped, or `vm.max_map_count`.
    ENOMEM = 12;
    /// `EACCES` 13: permission denied (a file's open mode forbids the protection).
    EACCES = 13;
    /// `EFAULT` 14: bad address (populate on an inaccessible range).
    EFAULT = 14;
    /// `EBUSY` 16: busy (`MS_INVALIDATE` on locked memory).
    EBUSY = 16;
    /// `EEXIST` 17: exists (`MAP_FIXED_NOREPLACE` over a mapping).
    EEXIST = 17;
    /// `ENODEV` 19: the file cannot be mapped.
    ENODEV = 19;
    /// `EINVAL` 22: invalid argument.
    EINVAL = 22;
    /// `ENFILE` 23: file table overflow.
    ENFILE = 23;
    /// `EMFILE` 24: too many open files.
    EMFILE = 24;
    /// `ETXTBSY` 26: text file busy (writable shared mapping of a swap file).
    ETXTBSY = 26;
    /// `EFBIG` 27: file too large.
    EFBIG = 27;
    /// `ENOSPC` 28: no space left on device.
    ENOSPC = 28;
    /// `ESPIPE` 29: illegal seek.
    ESPIPE = 29;
    /// `EROFS` 30: read-only file system.
    EROFS = 30;
    /// `ERANGE` 34: result out of range.
    ERANGE = 34;
    /// `ENOSYS` 38: no such system call.
    ENOSYS = 38;
    /// `EOVERFLOW` 75: value too large (mmap offset overflow).
    EOVERFLOW = 75;
    /// `EOPNOTSUPP` 95: operation not supported (`MAP_SHARED_VALIDATE` with an unknown flag).
    EOPNOTSUPP = 95;
    /// `EHWPOISON` 133: memory page has a hardware error.
    EHWPOISON = 133;
    /// `ENOTSUPP` 524: the kernel-internal "not supported" that leaks to user space in a few paths
    /// (`include/linux/errno.h`, not in uapi).
    ENOTSUPP = 524;
}

impl Errno {
    /// The errno's name (`"EINVAL"`), if this type names it.
    pub fn name(self) -> Option<&'static str> {
        Errno::ALL.iter().find(|(_, e)| *e == self).map(|(n, _)| *n)
    }

    /// The errno named `name` (`"EINVAL"`).
    pub fn from_name(name: &str) -> Option<Errno> {
        Errno::ALL.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }

    /// The value a raw system call returns for it: `-errno` as an unsigned word.
    pub fn to_raw(self) -> u64 {
        (-(i64::from(self.0))) as u64
    }

    /// The errno in a raw system-call return value, if it is one (`-4095..=-1`).
    pub fn from_raw(ret: u64) -> Option<Errno> {
        let v = ret as i64;
        (-4095..0).contains(&v).then(|| Errno((-v) as u16))
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}
