//! What backs a VMA (`Mapping`), classified from its `maps` line: the map object of a loaded map.
//!
//! Invariant: two neighbours merge in a loaded map only when their `Mapping`s are equal (and, for
//! files, their offsets contiguous); anonymous memory of any kind is anonymous to the map.

use crate::MapObject;

/// What backs a region (the seed's `vm_object`, as `procstat -v`'s TYPE column and `vmmap`'s region
/// names show it). Two neighbours merge in the map only when their backings are equal (and, for
/// files, their offsets are contiguous).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mapping {
    /// A file: its path as the kernel prints it (with ` (deleted)` removed), device and inode.
    File {
        /// The path.
        path: String,
        /// Device, `major:minor`.
        dev: (u32, u32),
        /// Inode number.
        inode: u64,
        /// Whether the kernel marked the file ` (deleted)`.
        deleted: bool,
    },
    /// The `brk` heap (`[heap]`).
    Heap,
    /// The main thread's stack (`[stack]`).
    Stack,
    /// The vDSO (`[vdso]`).
    Vdso,
    /// The vDSO's data pages (`[vvar]`, `[vvar_vclock]`).
    Vvar,
    /// The legacy `[vsyscall]` page, above the user address limit.
    Vsyscall,
    /// Private anonymous memory, optionally named by `PR_SET_VMA_ANON_NAME` (`[anon:NAME]`).
    Anonymous {
        /// The name, if any.
        name: Option<String>,
    },
    /// Shared anonymous memory (`MAP_SHARED|MAP_ANONYMOUS`: `/dev/zero (deleted)`, `[anon_shmem:NAME]`).
    SharedAnonymous {
        /// Inode of the shmem object (0 when unknown).
        inode: u64,
        /// The name, if any.
        name: Option<String>,
    },
    /// A shmem object: SysV shared memory (`/SYSV…`) or a memfd (`/memfd:NAME`).
    Shmem {
        /// The path as printed.
        path: String,
        /// Inode number.
        inode: u64,
    },
    /// Another kernel-named region (`[uprobes]`, …).
    Special(String),
}

impl Mapping {
    /// A short name for the kind of backing: `file`, `heap`, `stack`, `vdso`, `vvar`, `vsyscall`,
    /// `anon`, `shared-anon`, `shmem`, `special`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Mapping::File { .. } => "file",
            Mapping::Heap => "heap",
            Mapping::Stack => "stack",
            Mapping::Vdso => "vdso",
            Mapping::Vvar => "vvar",
            Mapping::Vsyscall => "vsyscall",
            Mapping::Anonymous { .. } => "anon",
            Mapping::SharedAnonymous { .. } => "shared-anon",
            Mapping::Shmem { .. } => "shmem",
            Mapping::Special(_) => "special",
        }
    }

    /// The name a listing shows: the path, `[heap]`, `[anon:NAME]`, or empty for unnamed anonymous
    /// memory.
    pub fn display_name(&self) -> String {
        match self {
            Mapping::File { path, deleted, .. } => {
                if *deleted {
                    format!("{path} (deleted)")
                } else {
                    path.clone()
                }
            }
            Mapping::Heap => "[heap]".into(),
            Mapping::Stack => "[stack]".into(),
            Mapping::Vdso => "[vdso]".into(),
            Mapping::Vvar => "[vvar]".into(),
            Mapping::Vsyscall => "[vsyscall]".into(),
            Mapping::Anonymous { name: Some(n) } => format!("[anon:{n}]"),
            Mapping::Anonymous { name: None } => String::new(),
            Mapping::SharedAnonymous { name: Some(n), .. } => format!("[anon_shmem:{n}]"),
            Mapping::SharedAnonymous { name: None, .. } => "/dev/zero (deleted)".into(),
            Mapping::Shmem { path, .. } => path.clone(),
            Mapping::Special(s) => s.clone(),
        }
    }

    /// Classifies a region from its `/proc/PID/maps` path column, device and inode.
    pub fn classify(path: &str, dev: (u32, u32), inode: u64, shared: bool) -> Mapping {
        match path {
            "" => {
                if shared {
                    Mapping::SharedAnonymous { inode, name: None }
                } else {
                    Mapping::Anonymous { name: None }
                }
            }
            "[heap]" => Mapping::Heap,
            "[stack]" => Mapping::Stack,
            "[vdso]" => Mapping::Vdso,
            "[vvar]" | "[vvar_vclock]" => Mapping::Vvar,
            "[vsyscall]" => Mapping::Vsyscall,
            _ => {
                if let Some(n) = path.strip_prefix("[anon:").and_then(|s| s.strip_suffix(']')) {
                    return Mapping::Anonymous { name: Some(n.to_string()) };
                }
                if let Some(n) = path.strip_prefix("[anon_shmem:").and_then(|s| s.strip_suffix(']')) {
                    return Mapping::SharedAnonymous { inode, name: Some(n.to_string()) };
                }
                if path == "/dev/zero (deleted)" && shared {
                    return Mapping::SharedAnonymous { inode, name: None };
                }
                if path.starts_with("/SYSV") || path.starts_with("/memfd:") {
                    return Mapping::Shmem { path: path.to_string(), inode };
                }
                if path.starts_with('[') && path.ends_with(']') {
                    return Mapping::Special(path.to_string());
                }
                let (p, deleted) = match path.strip_suffix(" (deleted)") {
                    Some(p) => (p, true),
                    None => (path, false),
                };
                Mapping::File { path: p.to_string(), dev, inode, deleted }
            }
        }
    }
}

impl MapObject for Mapping {
    fn anonymous() -> Self {
        Mapping::Anonymous { name: None }
    }

    /// Private anonymous memory of any kind: unnamed or named anonymous memory, the heap, the stack
    /// (what Linux's `MADV_WIPEONFORK` accepts).
    fn is_anonymous(&self) -> bool {
        matches!(self, Mapping::Anonymous { .. } | Mapping::Heap | Mapping::Stack)
    }
}
