//! Every ABI value in `vmspace_linux::abi` equals the C headers' (through the `libc` crate).

use vmspace_linux::abi::{self, Errno};

macro_rules! same {
    ($($name:ident),+ $(,)?) => {{
        let mut n = 0;
        $( assert_eq!(abi::$name, libc::$name as u64, stringify!($name)); n += 1; )+
        n
    }};
}

#[test]
fn flag_values_equal_libc() {
    let n = same!(
        PROT_NONE,
        PROT_READ,
        PROT_WRITE,
        PROT_EXEC,
        PROT_GROWSDOWN,
        PROT_GROWSUP,
        MAP_SHARED,
        MAP_PRIVATE,
        MAP_SHARED_VALIDATE,
        MAP_DROPPABLE,
        MAP_TYPE,
        MAP_FIXED,
        MAP_ANONYMOUS,
        MAP_GROWSDOWN,
        MAP_DENYWRITE,
        MAP_EXECUTABLE,
        MAP_LOCKED,
        MAP_NORESERVE,
        MAP_POPULATE,
        MAP_NONBLOCK,
        MAP_STACK,
        MAP_HUGETLB,
        MAP_SYNC,
        MAP_FIXED_NOREPLACE,
        MREMAP_MAYMOVE,
        MREMAP_FIXED,
        MREMAP_DONTUNMAP,
        MADV_NORMAL,
        MADV_RANDOM,
        MADV_SEQUENTIAL,
        MADV_WILLNEED,
        MADV_DONTNEED,
        MADV_FREE,
        MADV_REMOVE,
        MADV_DONTFORK,
        MADV_DOFORK,
        MADV_MERGEABLE,
        MADV_UNMERGEABLE,
        MADV_HUGEPAGE,
        MADV_NOHUGEPAGE,
        MADV_DONTDUMP,
        MADV_DODUMP,
        MADV_WIPEONFORK,
        MADV_KEEPONFORK,
        MADV_COLD,
        MADV_PAGEOUT,
        MADV_POPULATE_READ,
        MADV_POPULATE_WRITE,
        MADV_DONTNEED_LOCKED,
        MADV_COLLAPSE,
        MADV_HWPOISON,
        MADV_SOFT_OFFLINE,
        MLOCK_ONFAULT,
        MCL_CURRENT,
        MCL_FUTURE,
        MCL_ONFAULT,
        MS_ASYNC,
        MS_INVALIDATE,
        MS_SYNC,
    );
    #[cfg(target_arch = "x86_64")]
    assert_eq!(abi::MAP_32BIT, libc::MAP_32BIT as u64);
    assert_eq!(u64::from(abi::MAP_HUGE_SHIFT), libc::MAP_HUGE_SHIFT as u64);
    assert_eq!(abi::MAP_HUGE_MASK, libc::MAP_HUGE_MASK as u64);
    assert_eq!(n, 59);
    // Tables hold each name once and agree with the constants.
    for t in [abi::PROT_NAMES, abi::MAP_NAMES, abi::MADV_NAMES, abi::MS_NAMES, abi::MCL_NAMES] {
        for (i, (n, _)) in t.iter().enumerate() {
            assert!(!t[..i].iter().any(|(m, _)| m == n), "{n} twice");
        }
    }
    assert_eq!(abi::name_of(abi::MADV_NAMES, 18), Some("MADV_WIPEONFORK"));
}

#[test]
fn errno_values_and_names_equal_libc() {
    let pairs: &[(Errno, i32)] = &[
        (Errno::EPERM, libc::EPERM),
        (Errno::ENOENT, libc::ENOENT),
        (Errno::ESRCH, libc::ESRCH),
        (Errno::EINTR, libc::EINTR),
        (Errno::EIO, libc::EIO),
        (Errno::ENXIO, libc::ENXIO),
        (Errno::E2BIG, libc::E2BIG),
        (Errno::ENOEXEC, libc::ENOEXEC),
        (Errno::EBADF, libc::EBADF),
        (Errno::ECHILD, libc::ECHILD),
        (Errno::EAGAIN, libc::EAGAIN),
        (Errno::ENOMEM, libc::ENOMEM),
        (Errno::EACCES, libc::EACCES),
        (Errno::EFAULT, libc::EFAULT),
        (Errno::EBUSY, libc::EBUSY),
        (Errno::EEXIST, libc::EEXIST),
        (Errno::ENODEV, libc::ENODEV),
        (Errno::EINVAL, libc::EINVAL),
        (Errno::ENFILE, libc::ENFILE),
        (Errno::EMFILE, libc::EMFILE),
        (Errno::ETXTBSY, libc::ETXTBSY),
        (Errno::EFBIG, libc::EFBIG),
        (Errno::ENOSPC, libc::ENOSPC),
        (Errno::ESPIPE, libc::ESPIPE),
        (Errno::EROFS, libc::EROFS),
        (Errno::ERANGE, libc::ERANGE),
        (Errno::ENOSYS, libc::ENOSYS),
        (Errno::EOVERFLOW, libc::EOVERFLOW),
        (Errno::EOPNOTSUPP, libc::EOPNOTSUPP),
        (Errno::EHWPOISON, libc::EHWPOISON),
    ];
    for (e, v) in pairs {
        assert_eq!(i32::from(e.0), *v, "{e}");
    }
    // Every named errno but the kernel-internal ENOTSUPP is checked above.
    assert_eq!(pairs.len() + 1, Errno::ALL.len());
    assert_eq!(Errno::EINVAL.name(), Some("EINVAL"));
    assert_eq!(Errno::from_name("EEXIST"), Some(Errno::EEXIST));
    assert_eq!(Errno::from_raw(Errno::ENOMEM.to_raw()), Some(Errno::ENOMEM));
    assert_eq!(Errno::from_raw(0x7f00_0000_0000), None);
    assert_eq!(format!("{}", Errno(999)), "errno 999");
}
