//! Errors of the Linux crate: the map's refusals, the kernel's, and missing kernel features.

use std::fmt;
use std::io;
use std::ops::Range;

use vmspace_core::VmError;

/// Why an `AddressSpace` operation failed. In every case the map and the kernel still agree.
#[derive(Debug)]
pub enum Error {
    /// The map refused the operation; nothing was done.
    Vm(VmError),
    /// A system call failed; what had been applied was undone or the map re-synchronised.
    Os {
        /// The call (`mmap`, `mprotect`, `madvise`, `mlock`, `mseal`, …).
        call: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
    /// The running kernel lacks the feature, or Linux cannot express the request.
    NotSupported(&'static str),
    /// A system call failed half-way and part of what the call had done could not be undone: memory an
    /// unmap or guard markers dropped, a seal that took, an attribute the kernel refused to put back
    /// (`vm.max_map_count`). The map now says what the kernel has over `kept`; everywhere else the call
    /// left no trace.
    Incomplete {
        /// The call that failed.
        call: &'static str,
        /// What the kernel said.
        source: io::Error,
        /// The ranges where the kernel kept (part of) the call's effect, read back and adopted by the
        /// map.
        kept: Vec<Range<u64>>,
    },
}

impl Error {
    /// The map's error, if the map refused.
    pub fn vm(&self) -> Option<VmError> {
        match self {
            Error::Vm(e) => Some(*e),
            _ => None,
        }
    }
}

impl Error {
    /// A failed system call's error, made [`Error::Incomplete`] when the kernel kept something.
    pub(crate) fn kept(self, kept: Vec<Range<u64>>) -> Error {
        match self {
            Error::Os { call, source } if !kept.is_empty() => Error::Incomplete { call, source, kept },
            other => other,
        }
    }

    /// The kernel's error number, for errors of a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } | Error::Incomplete { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<VmError> for Error {
    fn from(e: VmError) -> Error {
        Error::Vm(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Vm(e) => write!(f, "{e}"),
            Error::Os { call, source } => write!(f, "{call}: {source}"),
            Error::NotSupported(what) => write!(f, "not supported: {what}"),
            Error::Incomplete { call, source, kept } => {
                write!(f, "{call}: {source}; the kernel kept part of the call over")?;
                for r in kept {
                    write!(f, " {:#x}..{:#x}", r.start, r.end)?;
                }
                write!(f, ", which the map now shows as the kernel has it")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } | Error::Incomplete { source, .. } => Some(source),
            _ => None,
        }
    }
}
