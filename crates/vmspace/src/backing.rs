//! What memory is made of: the `MapObject` the Linux crate puts in its map.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use vmspace_core::MapObject;

use crate::os;

/// The backing of a mapping (the seed's `vm_object`): private anonymous memory, shared anonymous memory
/// (a memfd), or a file, shared or private.
#[derive(Clone)]
pub enum Backing {
    /// Private anonymous zero-fill memory (`MAP_PRIVATE | MAP_ANONYMOUS`).
    Anonymous,
    /// Shared anonymous memory: a memfd, mapped `MAP_SHARED`. Children share it at fork.
    Shared(Arc<OwnedFd>),
    /// A file (or any mappable descriptor) at the spec's offset.
    File {
        /// The descriptor.
        fd: Arc<OwnedFd>,
        /// `MAP_SHARED` (writes reach the file, children share it) rather than `MAP_PRIVATE`.
        shared: bool,
    },
}

impl Backing {
    /// A new memfd of `len` bytes to map shared (`memfd_create` + `ftruncate`).
    pub fn shared_anonymous(len: u64) -> io::Result<Backing> {
        Ok(Backing::Shared(Arc::new(os::memfd("vmspace", len)?)))
    }

    /// A file descriptor, mapped shared or private.
    pub fn file(fd: OwnedFd, shared: bool) -> Backing {
        Backing::File { fd: Arc::new(fd), shared }
    }

    /// Whether mappings of it are `MAP_SHARED`.
    pub fn is_shared(&self) -> bool {
        match self {
            Backing::Anonymous => false,
            Backing::Shared(_) => true,
            Backing::File { shared, .. } => *shared,
        }
    }
}

/// Two backings are the same object when they are the same descriptor (not merely equal files).
impl PartialEq for Backing {
    fn eq(&self, other: &Backing) -> bool {
        match (self, other) {
            (Backing::Anonymous, Backing::Anonymous) => true,
            (Backing::Shared(a), Backing::Shared(b)) => Arc::ptr_eq(a, b),
            (Backing::File { fd: a, shared: s }, Backing::File { fd: b, shared: t }) => {
                Arc::ptr_eq(a, b) && s == t
            }
            _ => false,
        }
    }
}

impl fmt::Debug for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backing::Anonymous => f.write_str("anonymous"),
            Backing::Shared(fd) => write!(f, "shared({fd:?})"),
            Backing::File { fd, shared } => {
                write!(f, "file({fd:?}, {})", if *shared { "shared" } else { "private" })
            }
        }
    }
}

impl MapObject for Backing {
    fn anonymous() -> Self {
        Backing::Anonymous
    }

    fn is_anonymous(&self) -> bool {
        matches!(self, Backing::Anonymous)
    }
}
