//! Errors of the Linux crate: the map's refusals, the kernel's, and missing kernel features.

use std::fmt;
use std::io;

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
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}
