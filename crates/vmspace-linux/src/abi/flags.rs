//! The flag and command values of the memory system calls (`mman-common.h`, `linux/mman.h`).

/// Declares `pub const NAME: u64 = value;` items with their docs, and a `(name, value)` table of them.
macro_rules! consts {
    ($table:ident, $tdoc:literal; $($(#[doc = $doc:literal])+ $name:ident = $val:expr;)+) => {
        $( $(#[doc = $doc])+ pub const $name: u64 = $val; )+
        #[doc = $tdoc]
        pub const $table: &[(&str, u64)] = &[$((stringify!($name), $name)),+];
    };
}

consts! { PROT_NAMES, "Every `PROT_*` value with its name.";
    /// `PROT_NONE`: no access.
    PROT_NONE = 0;
    /// `PROT_READ`: the pages may be read.
    PROT_READ = 0x1;
    /// `PROT_WRITE`: the pages may be written.
    PROT_WRITE = 0x2;
    /// `PROT_EXEC`: the pages may be executed.
    PROT_EXEC = 0x4;
    /// `PROT_SEM`: may be used for atomic operations (accepted and ignored on x86-64 and aarch64).
    PROT_SEM = 0x8;
    /// `PROT_BTI` (aarch64 only, `arch/arm64/include/uapi/asm/mman.h`): branch target identification.
    PROT_BTI = 0x10;
    /// `PROT_MTE` (aarch64 only): memory tagging.
    PROT_MTE = 0x20;
    /// `PROT_GROWSDOWN` (mprotect only): extend the change down to the start of a growsdown VMA.
    PROT_GROWSDOWN = 0x0100_0000;
    /// `PROT_GROWSUP` (mprotect only): extend the change up to the end of a growsup VMA (no such VMAs on
    /// x86-64 or aarch64, so it is always `EINVAL` there).
    PROT_GROWSUP = 0x0200_0000;
}

consts! { MAP_NAMES, "Every `MAP_*` flag with its name (the type values first).";
    /// `MAP_SHARED`: changes are shared.
    MAP_SHARED = 0x01;
    /// `MAP_PRIVATE`: changes are private (copy on write).
    MAP_PRIVATE = 0x02;
    /// `MAP_SHARED_VALIDATE`: shared, and unknown flags fail with `EOPNOTSUPP` (file mappings).
    MAP_SHARED_VALIDATE = 0x03;
    /// `MAP_DROPPABLE` (6.11): anonymous, private, dropped under memory pressure, wiped on fork.
    MAP_DROPPABLE = 0x08;
    /// `MAP_TYPE`: the mask of the mapping type.
    MAP_TYPE = 0x0f;
    /// `MAP_FIXED`: place exactly at `addr`, replacing what is there.
    MAP_FIXED = 0x10;
    /// `MAP_ANONYMOUS`: no file; `fd` is ignored.
    MAP_ANONYMOUS = 0x20;
    /// `MAP_32BIT` (x86-64 only): place in the first 2 GiB.
    MAP_32BIT = 0x40;
    /// `MAP_ABOVE4G` (x86-64 only, 6.4): place above 4 GiB.
    MAP_ABOVE4G = 0x80;
    /// `MAP_GROWSDOWN`: a stack that grows down on faults below it (`VM_GROWSDOWN`).
    MAP_GROWSDOWN = 0x0100;
    /// `MAP_DENYWRITE`: ignored.
    MAP_DENYWRITE = 0x0800;
    /// `MAP_EXECUTABLE`: ignored.
    MAP_EXECUTABLE = 0x1000;
    /// `MAP_LOCKED`: lock the pages (`VM_LOCKED`) and populate them.
    MAP_LOCKED = 0x2000;
    /// `MAP_NORESERVE`: no swap reservation (`VM_NORESERVE` unless overcommit is strict).
    MAP_NORESERVE = 0x4000;
    /// `MAP_POPULATE`: prefault the pages.
    MAP_POPULATE = 0x8000;
    /// `MAP_NONBLOCK`: with `MAP_POPULATE`, do not prefault.
    MAP_NONBLOCK = 0x10000;
    /// `MAP_STACK`: a thread stack (`VM_NOHUGEPAGE` since 6.7).
    MAP_STACK = 0x20000;
    /// `MAP_HUGETLB`: hugetlbfs pages of the size in bits 26..32.
    MAP_HUGETLB = 0x40000;
    /// `MAP_SYNC`: synchronous page faults for DAX files (`MAP_SHARED_VALIDATE` only).
    MAP_SYNC = 0x80000;
    /// `MAP_FIXED_NOREPLACE` (4.17): `MAP_FIXED`, but `EEXIST` if anything is mapped there.
    MAP_FIXED_NOREPLACE = 0x10_0000;
    /// `MAP_UNINITIALIZED`: only honoured on no-MMU kernels built for it.
    MAP_UNINITIALIZED = 0x400_0000;
}

/// `MAP_HUGE_SHIFT`: where the log2 of the huge page size sits in the flags.
pub const MAP_HUGE_SHIFT: u32 = 26;
/// `MAP_HUGE_MASK`: the mask of the huge page size's log2 (after the shift).
pub const MAP_HUGE_MASK: u64 = 0x3f;
/// `LEGACY_MAP_MASK` (`include/linux/mman.h`): the flags `MAP_SHARED` accepted before
/// `MAP_SHARED_VALIDATE`; a file's `MAP_SHARED_VALIDATE` mapping with any other flag (but `MAP_SYNC` where
/// the file supports it) fails with `EOPNOTSUPP`.
pub const LEGACY_MAP_MASK: u64 = MAP_SHARED
    | MAP_PRIVATE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_DENYWRITE
    | MAP_EXECUTABLE
    | MAP_UNINITIALIZED
    | MAP_GROWSDOWN
    | MAP_LOCKED
    | MAP_NORESERVE
    | MAP_POPULATE
    | MAP_NONBLOCK
    | MAP_STACK
    | MAP_HUGETLB;

consts! { MREMAP_NAMES, "Every `MREMAP_*` flag with its name.";
    /// `MREMAP_MAYMOVE`: the mapping may move if it cannot grow in place.
    MREMAP_MAYMOVE = 1;
    /// `MREMAP_FIXED`: move to `new_addr` (needs `MREMAP_MAYMOVE`).
    MREMAP_FIXED = 2;
    /// `MREMAP_DONTUNMAP` (5.7): move, and leave the old range mapped (and empty).
    MREMAP_DONTUNMAP = 4;
}

consts! { MADV_NAMES, "Every `MADV_*` advice with its name (as of Linux 6.18).";
    /// `MADV_NORMAL`: default readahead (clears `VM_SEQ_READ`/`VM_RAND_READ`).
    MADV_NORMAL = 0;
    /// `MADV_RANDOM`: no readahead (`VM_RAND_READ`).
    MADV_RANDOM = 1;
    /// `MADV_SEQUENTIAL`: aggressive readahead (`VM_SEQ_READ`).
    MADV_SEQUENTIAL = 2;
    /// `MADV_WILLNEED`: read ahead now.
    MADV_WILLNEED = 3;
    /// `MADV_DONTNEED`: drop the pages now (fails with `EINVAL` on locked, `VM_PFNMAP` or hugetlb-unaligned VMAs).
    MADV_DONTNEED = 4;
    /// `MADV_FREE` (4.5): the pages may be freed lazily (private anonymous memory only).
    MADV_FREE = 8;
    /// `MADV_REMOVE`: punch a hole in the backing store (shared file memory only).
    MADV_REMOVE = 9;
    /// `MADV_DONTFORK`: not inherited by a child (`VM_DONTCOPY`).
    MADV_DONTFORK = 10;
    /// `MADV_DOFORK`: inherited again (clears `VM_DONTCOPY`).
    MADV_DOFORK = 11;
    /// `MADV_MERGEABLE`: KSM may merge the pages (`VM_MERGEABLE`).
    MADV_MERGEABLE = 12;
    /// `MADV_UNMERGEABLE`: KSM may not.
    MADV_UNMERGEABLE = 13;
    /// `MADV_HUGEPAGE`: THP wanted (`VM_HUGEPAGE`).
    MADV_HUGEPAGE = 14;
    /// `MADV_NOHUGEPAGE`: THP unwanted (`VM_NOHUGEPAGE`).
    MADV_NOHUGEPAGE = 15;
    /// `MADV_DONTDUMP`: left out of core dumps (`VM_DONTDUMP`).
    MADV_DONTDUMP = 16;
    /// `MADV_DODUMP`: in core dumps again.
    MADV_DODUMP = 17;
    /// `MADV_WIPEONFORK` (4.14): a child sees zeros (`VM_WIPEONFORK`, private anonymous only).
    MADV_WIPEONFORK = 18;
    /// `MADV_KEEPONFORK`: undoes `MADV_WIPEONFORK`.
    MADV_KEEPONFORK = 19;
    /// `MADV_COLD` (5.4): deactivate the pages.
    MADV_COLD = 20;
    /// `MADV_PAGEOUT` (5.4): reclaim the pages.
    MADV_PAGEOUT = 21;
    /// `MADV_POPULATE_READ` (5.14): prefault readable.
    MADV_POPULATE_READ = 22;
    /// `MADV_POPULATE_WRITE` (5.14): prefault writable.
    MADV_POPULATE_WRITE = 23;
    /// `MADV_DONTNEED_LOCKED` (5.18): `MADV_DONTNEED` that also works on locked VMAs.
    MADV_DONTNEED_LOCKED = 24;
    /// `MADV_COLLAPSE` (6.1): collapse into transparent huge pages now.
    MADV_COLLAPSE = 25;
    /// `MADV_HWPOISON`: poison the pages (needs `CAP_SYS_ADMIN`).
    MADV_HWPOISON = 100;
    /// `MADV_SOFT_OFFLINE`: soft-offline the pages (needs `CAP_SYS_ADMIN`).
    MADV_SOFT_OFFLINE = 101;
    /// `MADV_GUARD_INSTALL` (6.13): page-table guard markers; touching them raises `SIGSEGV`.
    MADV_GUARD_INSTALL = 102;
    /// `MADV_GUARD_REMOVE` (6.13): removes guard markers.
    MADV_GUARD_REMOVE = 103;
}

consts! { MLOCK_NAMES, "The `mlock2` flags with their names.";
    /// `MLOCK_ONFAULT` (4.4): lock pages as they are faulted in (`VM_LOCKONFAULT`).
    MLOCK_ONFAULT = 1;
}

consts! { MCL_NAMES, "The `mlockall` flags with their names.";
    /// `MCL_CURRENT`: lock every current mapping.
    MCL_CURRENT = 1;
    /// `MCL_FUTURE`: lock every future mapping (`mm->def_flags |= VM_LOCKED`).
    MCL_FUTURE = 2;
    /// `MCL_ONFAULT` (4.4): with the others, lock on fault.
    MCL_ONFAULT = 4;
}

consts! { MS_NAMES, "The `msync` flags with their names.";
    /// `MS_ASYNC`: schedule the write-back.
    MS_ASYNC = 1;
    /// `MS_INVALIDATE`: invalidate other mappings (`EBUSY` on locked VMAs).
    MS_INVALIDATE = 2;
    /// `MS_SYNC`: write back and wait.
    MS_SYNC = 4;
}

consts! { SHM_NAMES, "The `shmat` flags with their names (`linux/shm.h`).";
    /// `SHM_RDONLY`: attach read-only.
    SHM_RDONLY = 0o10000;
    /// `SHM_RND`: round an unaligned address down to `SHMLBA`.
    SHM_RND = 0o20000;
    /// `SHM_REMAP`: replace what is mapped at the address (`MAP_FIXED` without the overlap check).
    SHM_REMAP = 0o40000;
    /// `SHM_EXEC`: attach executable.
    SHM_EXEC = 0o100000;
}
