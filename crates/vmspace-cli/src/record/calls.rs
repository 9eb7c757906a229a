//! The calls the recorder stops at, by number on this architecture and by the name the trace uses:
//! every call that changes or asks about a process's mappings, and the process calls that make,
//! replace or end address spaces.

/// `(number, name)` of every traced call (`fork` and `vfork` exist on x86-64 only; aarch64 has
/// `clone` alone).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub const TRACED: &[(i64, &str)] = &[
    (libc::SYS_mmap, "mmap"),
    (libc::SYS_munmap, "munmap"),
    (libc::SYS_mprotect, "mprotect"),
    (libc::SYS_pkey_mprotect, "pkey_mprotect"),
    (libc::SYS_mremap, "mremap"),
    (libc::SYS_brk, "brk"),
    (libc::SYS_madvise, "madvise"),
    (libc::SYS_process_madvise, "process_madvise"),
    (libc::SYS_mlock, "mlock"),
    (libc::SYS_mlock2, "mlock2"),
    (libc::SYS_munlock, "munlock"),
    (libc::SYS_mlockall, "mlockall"),
    (libc::SYS_munlockall, "munlockall"),
    (libc::SYS_mseal, "mseal"),
    (libc::SYS_msync, "msync"),
    (libc::SYS_remap_file_pages, "remap_file_pages"),
    (libc::SYS_shmat, "shmat"),
    (libc::SYS_shmdt, "shmdt"),
    (libc::SYS_clone, "clone"),
    (libc::SYS_clone3, "clone3"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_fork, "fork"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_vfork, "vfork"),
    (libc::SYS_execve, "execve"),
    (libc::SYS_execveat, "execveat"),
    (libc::SYS_exit, "exit"),
    (libc::SYS_exit_group, "exit_group"),
];

/// The trace's name of call `nr`.
pub fn name(nr: u64) -> Option<&'static str> {
    TRACED.iter().find(|(n, _)| *n as u64 == nr).map(|(_, s)| *s)
}

/// Whether a call's first argument names a file descriptor the trace should describe: `mmap`'s fifth.
pub fn fd_argument(name: &str, args: &[u64; 6]) -> Option<i32> {
    const MAP_ANONYMOUS: u64 = 0x20;
    (name == "mmap" && args[3] & MAP_ANONYMOUS == 0).then_some(args[4] as i32)
}
