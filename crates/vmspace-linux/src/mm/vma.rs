//! One VMA (`struct vm_area_struct`) with the attributes Linux merges and splits on, and the
//! `VM_*` flag values (`include/linux/mm.h`, 64-bit).
//!
//! The flags are kernel-internal; the low 32 are stable and printed by `smaps` as `VmFlags`, the high
//! ones (`VM_DROPPABLE`, `VM_SEALED`) are placed where 6.18 puts them on x86-64 and only compared by
//! equality here.

use alloc::string::String;

/// `VM_READ`: readable.
pub const VM_READ: u64 = 0x1;
/// `VM_WRITE`: writable.
pub const VM_WRITE: u64 = 0x2;
/// `VM_EXEC`: executable.
pub const VM_EXEC: u64 = 0x4;
/// `VM_SHARED`: shared and writable through the file.
pub const VM_SHARED: u64 = 0x8;
/// `VM_MAYREAD`: `mprotect` may add `VM_READ`.
pub const VM_MAYREAD: u64 = 0x10;
/// `VM_MAYWRITE`: `mprotect` may add `VM_WRITE`.
pub const VM_MAYWRITE: u64 = 0x20;
/// `VM_MAYEXEC`: `mprotect` may add `VM_EXEC`.
pub const VM_MAYEXEC: u64 = 0x40;
/// `VM_MAYSHARE`: a `MAP_SHARED` mapping (the `s` in `maps`).
pub const VM_MAYSHARE: u64 = 0x80;
/// `VM_GROWSDOWN`: a stack that grows down.
pub const VM_GROWSDOWN: u64 = 0x100;
/// `VM_PFNMAP`: raw page frames (`remap_pfn_range`).
pub const VM_PFNMAP: u64 = 0x400;
/// `VM_LOCKED`: locked (`mlock`).
pub const VM_LOCKED: u64 = 0x2000;
/// `VM_IO`: device memory.
pub const VM_IO: u64 = 0x4000;
/// `VM_SEQ_READ`: `MADV_SEQUENTIAL`.
pub const VM_SEQ_READ: u64 = 0x8000;
/// `VM_RAND_READ`: `MADV_RANDOM`.
pub const VM_RAND_READ: u64 = 0x1_0000;
/// `VM_DONTCOPY`: not copied on fork (`MADV_DONTFORK`).
pub const VM_DONTCOPY: u64 = 0x2_0000;
/// `VM_DONTEXPAND`: cannot be expanded by `mremap`.
pub const VM_DONTEXPAND: u64 = 0x4_0000;
/// `VM_LOCKONFAULT`: locked as faulted (`MLOCK_ONFAULT`).
pub const VM_LOCKONFAULT: u64 = 0x8_0000;
/// `VM_ACCOUNT`: charged to the overcommit accounting.
pub const VM_ACCOUNT: u64 = 0x10_0000;
/// `VM_NORESERVE`: not charged (`MAP_NORESERVE`).
pub const VM_NORESERVE: u64 = 0x20_0000;
/// `VM_HUGETLB`: hugetlbfs memory.
pub const VM_HUGETLB: u64 = 0x40_0000;
/// `VM_SYNC`: synchronous page faults (`MAP_SYNC`).
pub const VM_SYNC: u64 = 0x80_0000;
/// `VM_WIPEONFORK`: the child sees zeros (`MADV_WIPEONFORK`).
pub const VM_WIPEONFORK: u64 = 0x200_0000;
/// `VM_DONTDUMP`: not in core dumps (`MADV_DONTDUMP`).
pub const VM_DONTDUMP: u64 = 0x400_0000;
/// `VM_SOFTDIRTY`: soft-dirty tracking; ignored when merging (`VM_IGNORE_MERGE`).
pub const VM_SOFTDIRTY: u64 = 0x800_0000;
/// `VM_MIXEDMAP`: mixed page frames and pages.
pub const VM_MIXEDMAP: u64 = 0x1000_0000;
/// `VM_HUGEPAGE`: `MADV_HUGEPAGE`.
pub const VM_HUGEPAGE: u64 = 0x2000_0000;
/// `VM_NOHUGEPAGE`: `MADV_NOHUGEPAGE` (and `MAP_STACK` since 6.7).
pub const VM_NOHUGEPAGE: u64 = 0x4000_0000;
/// `VM_MERGEABLE`: KSM may merge (`MADV_MERGEABLE`).
pub const VM_MERGEABLE: u64 = 0x8000_0000;
/// `VM_DROPPABLE` (6.11, a high arch bit on 64-bit): `MAP_DROPPABLE`.
pub const VM_DROPPABLE: u64 = 1 << 40;
/// `VM_SEALED` (6.10, 64-bit only): `mseal`ed; the range cannot be changed.
pub const VM_SEALED: u64 = 1 << 42;
/// `VM_LOCKED_MASK`: both lock flags.
pub const VM_LOCKED_MASK: u64 = VM_LOCKED | VM_LOCKONFAULT;
/// `VM_SPECIAL`: mappings that never merge, expand or lock.
pub const VM_SPECIAL: u64 = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP;
/// `VM_ACCESS_FLAGS`: read, write, execute.
pub const VM_ACCESS_FLAGS: u64 = VM_READ | VM_WRITE | VM_EXEC;

/// An `anon_vma`: the reverse-map root that private pages hang off. Userspace cannot see it, but it
/// decides merges: two VMAs with different `anon_vma`s never merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anon {
    /// Identity: VMAs with equal ids share the `anon_vma`.
    pub id: u64,
    /// `list_is_singular(&vma->anon_vma_chain)`: false for VMAs inherited through fork ("uncowed
    /// parents"), which Linux refuses to merge with VMAs lacking an `anon_vma` (`vma_had_uncowed_parents`).
    pub singular: bool,
}

/// What names a VMA in `maps` besides a file.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Label {
    /// Nothing (or `[heap]`/`[stack]`, which `maps` derives from `brk` and the stack pointer).
    #[default]
    None,
    /// `prctl(PR_SET_VMA_ANON_NAME)`: printed `[anon:NAME]`; VMAs merge only with equal names.
    AnonName(String),
    /// A kernel special mapping (`[vdso]`, `[vvar]`, `[vsyscall]`, …) printed as given; never merges.
    Special(String),
}

/// A VMA: `[start, end)` with Linux's flags, page offset, backing and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    /// `vm_start`.
    pub start: u64,
    /// `vm_end`.
    pub end: u64,
    /// `vm_flags` (`VM_*`).
    pub flags: u64,
    /// `vm_pgoff`, in pages: the file offset, or for private anonymous memory the page number it was
    /// first mapped at (so neighbours merge only when they are linear).
    pub pgoff: u64,
    /// `vm_file`: the open file description (an id into [`super::Mm`]'s file table); shared anonymous
    /// memory gets a file of its own (`shmem_zero_setup`).
    pub file: Option<u64>,
    /// `anon_vma`.
    pub anon: Option<Anon>,
    /// The anonymous name or special-mapping name.
    pub label: Label,
}

impl Vma {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never true (VMAs are non-empty).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Pages.
    pub fn pages(&self) -> u64 {
        self.len() >> 12
    }

    /// `vma_is_anonymous`: no `vm_ops` (private anonymous memory; shared anonymous memory is shmem).
    pub fn is_anonymous(&self) -> bool {
        self.file.is_none() && !matches!(self.label, Label::Special(_))
    }

    /// `vma_pgoff_offset`: the page offset of `addr` inside this VMA.
    pub fn pgoff_at(&self, addr: u64) -> u64 {
        self.pgoff.wrapping_add((addr - self.start) >> 12)
    }

    /// `vma_is_sealed`.
    pub fn sealed(&self) -> bool {
        self.flags & VM_SEALED != 0
    }
}

/// `is_mergeable_anon_vma` (6.16+): may a range whose `anon_vma` is `src` join a neighbour whose
/// `anon_vma` is `tgt`? One side without an `anon_vma` takes the other's, unless that one was inherited
/// through fork (its chain is not singular).
pub fn anon_mergeable(src: Option<Anon>, tgt: Option<Anon>) -> bool {
    match (src, tgt) {
        (None, None) => true,
        (Some(s), None) => s.singular,
        (None, Some(t)) => t.singular,
        (Some(s), Some(t)) => s.id == t.id,
    }
}

/// `is_mergeable_vma` without the `anon_vma` part: equal flags (but soft-dirty), file and name.
pub fn attrs_mergeable(a_flags: u64, a_file: Option<u64>, a_label: &Label, b: &Vma) -> bool {
    (a_flags ^ b.flags) & !VM_SOFTDIRTY == 0
        && a_file == b.file
        && a_label == &b.label
        && !matches!(a_label, Label::Special(_))
}

/// The `VM_*` bits this model keeps, of a VMA whose `smaps` line says `VmFlags: f` (what
/// [`super::Mm::adopt`] takes). The first 32 mnemonics are the `VM_*` bits of the same number (the
/// kernel prints them by bit); `dp` and `sl` are the high bits above. Flags the model does not keep
/// (userfaultfd, the guard hint `gu`, arch bits) are left out.
pub fn vm_flags_of(f: crate::proc::vmflags::VmFlags) -> u64 {
    const KEPT: u64 = VM_READ
        | VM_WRITE
        | VM_EXEC
        | VM_SHARED
        | VM_MAYREAD
        | VM_MAYWRITE
        | VM_MAYEXEC
        | VM_MAYSHARE
        | VM_GROWSDOWN
        | VM_PFNMAP
        | VM_LOCKED
        | VM_IO
        | VM_SEQ_READ
        | VM_RAND_READ
        | VM_DONTCOPY
        | VM_DONTEXPAND
        | VM_LOCKONFAULT
        | VM_ACCOUNT
        | VM_NORESERVE
        | VM_HUGETLB
        | VM_SYNC
        | VM_WIPEONFORK
        | VM_DONTDUMP
        | VM_SOFTDIRTY
        | VM_MIXEDMAP
        | VM_HUGEPAGE
        | VM_NOHUGEPAGE
        | VM_MERGEABLE
        | VM_DROPPABLE
        | VM_SEALED;
    let bits =
        crate::proc::vmflags::NAMES.iter().enumerate().filter(|(_, n)| f.has(n)).fold(0, |v, (i, n)| {
            v | match *n {
                "dp" => VM_DROPPABLE,
                "sl" => VM_SEALED,
                _ if i < 32 => 1 << i,
                _ => 0,
            }
        });
    bits & KEPT
}
