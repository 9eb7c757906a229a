//! Cases ported from gVisor's `test/syscalls/linux/{mmap,munmap,mprotect,madvise,mlock,msync,mremap}.cc`
//! and Linux's `tools/testing/selftests/mm/{merge,mremap_test,mseal_test,guard-regions,
//! map_fixed_noreplace,mlock2-tests}.c`, written anew as call sequences: each case runs in a forked child
//! of its own against the live kernel and on an `Mm` started from that child's maps, and every result
//! and the whole maps list after every call must be equal.

mod support_kernel;

use support_kernel::{Kernel, Op, TestFile, memfds};
use vmspace_linux::abi::*;

/// Where cases map: far from the program, the heap, the libraries and the stack.
const BASE: u64 = 0x2000_0000_0000;
const P: u64 = 4096;
const MB2: u64 = 2 << 20;
const RW: u64 = PROT_READ | PROT_WRITE;
const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;
const FIX: u64 = ANON | MAP_FIXED;

fn a(page: u64) -> u64 {
    BASE + page * P
}
fn mmap(addr: u64, len: u64, prot: u64, flags: u64) -> Op {
    Op::Mmap { addr, len, prot, flags, file: None, off: 0 }
}
fn mmapf(addr: u64, len: u64, prot: u64, flags: u64, file: u8, off: u64) -> Op {
    Op::Mmap { addr, len, prot, flags, file: Some(file), off }
}
fn fixed(page: u64, pages: u64, prot: u64) -> Op {
    mmap(a(page), pages * P, prot, FIX)
}
fn unmap(page: u64, pages: u64) -> Op {
    Op::Munmap { addr: a(page), len: pages * P }
}
fn prot(page: u64, pages: u64, prot: u64) -> Op {
    Op::Mprotect { addr: a(page), len: pages * P, prot }
}
fn adv(page: u64, pages: u64, advice: u64) -> Op {
    Op::Madvise { addr: a(page), len: pages * P, advice }
}
fn remap(page: u64, old: u64, new: u64, flags: u64, to: u64) -> Op {
    Op::Mremap { addr: a(page), old: old * P, new: new * P, flags, new_addr: if to == 0 { 0 } else { a(to) } }
}

/// One call of a case and the answer it expects (`None`: any, as long as the model agrees).
type Step = (Op, Option<Result<u64, Errno>>);

/// A case: a name, its calls, and what the kernel must answer (checked too, so a case that stopped
/// testing what it was written for fails).
struct Case {
    name: &'static str,
    ops: Vec<(Op, Option<Result<u64, Errno>>)>,
}

fn ok(op: Op) -> (Op, Option<Result<u64, Errno>>) {
    (op, Some(Ok(0)))
}
fn at(op: Op, addr: u64) -> (Op, Option<Result<u64, Errno>>) {
    (op, Some(Ok(addr)))
}
fn err(op: Op, e: Errno) -> (Op, Option<Result<u64, Errno>>) {
    (op, Some(Err(e)))
}
fn any(op: Op) -> (Op, Option<Result<u64, Errno>>) {
    (op, None)
}
fn case(name: &'static str, ops: Vec<(Op, Option<Result<u64, Errno>>)>) -> Case {
    Case { name, ops }
}

fn cases() -> Vec<Case> {
    use Errno as E;
    let f = FIX;
    vec![
        // --- mmap.cc / map_fixed_noreplace.c ---
        case("mmap: zero length is EINVAL", vec![err(mmap(0, 0, RW, ANON), E::EINVAL)]),
        case(
            "mmap: neither private nor shared is EINVAL",
            vec![err(mmap(a(0), P, RW, MAP_ANONYMOUS | MAP_FIXED), E::EINVAL)],
        ),
        case(
            "mmap: anonymous SHARED_VALIDATE is EINVAL",
            vec![err(mmap(a(0), P, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS | MAP_FIXED), E::EINVAL)],
        ),
        case(
            "mmap: unaligned offset is EINVAL",
            vec![err(Op::Mmap { addr: 0, len: P, prot: RW, flags: ANON, file: None, off: 1 }, E::EINVAL)],
        ),
        case("mmap: unaligned fixed address is EINVAL", vec![err(mmap(a(0) + 1, P, RW, f), E::EINVAL)]),
        case("mmap: length overflow is ENOMEM", vec![err(mmap(0, u64::MAX - 100, RW, ANON), E::ENOMEM)]),
        case(
            "mmap: length beyond the address space is ENOMEM",
            vec![err(mmap(0, 1 << 48, PROT_NONE, ANON), E::ENOMEM)],
        ),
        case(
            "mmap: fixed beyond TASK_SIZE is ENOMEM",
            vec![err(mmap(0x7fff_ffff_0000, 0x10_0000, RW, f), E::ENOMEM)],
        ),
        case("mmap: fixed in a hole", vec![at(fixed(0, 4, RW), a(0))]),
        case(
            "mmap: fixed replaces and splits",
            vec![at(fixed(0, 8, RW), a(0)), at(fixed(2, 2, PROT_READ), a(2))],
        ),
        case(
            "mmap: fixed replaces exactly (merges back)",
            vec![at(fixed(0, 8, RW), a(0)), at(fixed(2, 2, RW), a(2))],
        ),
        case(
            "map_fixed_noreplace: free range",
            vec![at(mmap(a(0), 4 * P, RW, ANON | MAP_FIXED_NOREPLACE), a(0))],
        ),
        case(
            "map_fixed_noreplace: exact overlap is EEXIST",
            vec![
                at(fixed(0, 4, RW), a(0)),
                err(mmap(a(0), 4 * P, RW, ANON | MAP_FIXED_NOREPLACE), E::EEXIST),
            ],
        ),
        case(
            "map_fixed_noreplace: front overlap is EEXIST",
            vec![
                at(fixed(4, 4, RW), a(4)),
                err(mmap(a(2), 4 * P, RW, ANON | MAP_FIXED_NOREPLACE), E::EEXIST),
            ],
        ),
        case(
            "map_fixed_noreplace: back overlap is EEXIST",
            vec![
                at(fixed(4, 4, RW), a(4)),
                err(mmap(a(6), 4 * P, RW, ANON | MAP_FIXED_NOREPLACE), E::EEXIST),
            ],
        ),
        case(
            "map_fixed_noreplace: inner overlap is EEXIST",
            vec![at(fixed(4, 4, RW), a(4)), err(mmap(a(5), P, RW, ANON | MAP_FIXED_NOREPLACE), E::EEXIST)],
        ),
        case(
            "map_fixed_noreplace: adjacent both sides merges",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(4, 2, RW), a(4)),
                at(mmap(a(2), 2 * P, RW, ANON | MAP_FIXED_NOREPLACE), a(2)),
            ],
        ),
        case("mmap: hint honoured when free", vec![at(mmap(a(16), P, RW, ANON), a(16))]),
        case(
            "mmap: hint in use is placed elsewhere",
            vec![at(fixed(16, 1, RW), a(16)), any(mmap(a(16), P, RW, ANON))],
        ),
        case("mmap: unaligned hint is rounded down", vec![at(mmap(a(16) + 100, P, RW, ANON), a(16))]),
        case(
            "mmap: placement top-down",
            vec![
                any(mmap(0, P, RW, ANON)),
                any(mmap(0, 3 * P, PROT_READ, ANON)),
                any(mmap(0, 5 * P, RW, ANON)),
            ],
        ),
        case(
            "mmap: 2 MiB anonymous is THP-aligned",
            vec![any(mmap(0, MB2, RW, ANON)), any(mmap(0, 2 * MB2, RW, ANON))],
        ),
        case("mmap: 2 MiB + 4 KiB is not THP-aligned", vec![any(mmap(0, MB2 + P, RW, ANON))]),
        case("mmap: 2 MiB with a hint is not THP-aligned", vec![any(mmap(a(1), MB2, RW, ANON))]),
        case(
            "mmap: 2 MiB shared anonymous is not THP-aligned",
            vec![any(mmap(0, MB2, RW, MAP_SHARED | MAP_ANONYMOUS))],
        ),
        case(
            "mmap: adjacent anonymous mappings merge",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(2, 2, RW), a(2)),
                at(fixed(6, 2, RW), a(6)),
                at(fixed(4, 2, RW), a(4)),
            ],
        ),
        case(
            "mmap: different protections do not merge",
            vec![at(fixed(0, 2, RW), a(0)), at(fixed(2, 2, PROT_READ), a(2))],
        ),
        case(
            "mmap: MAP_NORESERVE does not merge with reserved",
            vec![at(fixed(0, 2, RW), a(0)), at(mmap(a(2), 2 * P, RW, f | MAP_NORESERVE), a(2))],
        ),
        case(
            "mmap: MAP_STACK (VM_NOHUGEPAGE) does not merge",
            vec![at(fixed(0, 2, RW), a(0)), at(mmap(a(2), 2 * P, RW, f | MAP_STACK), a(2))],
        ),
        case(
            "mmap: MAP_GROWSDOWN",
            vec![at(mmap(a(64), 4 * P, RW, f | MAP_GROWSDOWN), a(64)), any(mmap(a(63), P, RW, ANON))],
        ),
        case(
            "mmap: shared MAP_GROWSDOWN is EINVAL",
            vec![err(mmap(a(0), P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN), E::EINVAL)],
        ),
        case(
            "mmap: shared anonymous never merges",
            vec![
                at(mmap(a(0), P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED), a(0)),
                at(mmap(a(1), P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED), a(1)),
            ],
        ),
        case(
            "mmap: MAP_LOCKED and MAP_POPULATE",
            vec![
                at(mmap(a(0), 4 * P, RW, f | MAP_LOCKED), a(0)),
                at(mmap(a(4), 4 * P, RW, f | MAP_POPULATE), a(4)),
                at(fixed(8, 2, RW), a(8)),
            ],
        ),
        case(
            "mmap: MAP_DROPPABLE",
            vec![
                at(mmap(a(0), 2 * P, RW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED), a(0)),
                at(fixed(2, 2, RW), a(2)),
                err(mmap(a(8), P, RW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_LOCKED), E::EINVAL),
            ],
        ),
        case(
            "mmap: file without fd is EBADF",
            vec![err(mmap(a(0), P, RW, MAP_PRIVATE | MAP_FIXED), E::EBADF)],
        ),
        case(
            "mmap: memfd shared and private",
            vec![
                at(mmapf(a(0), 2 * P, RW, MAP_SHARED | MAP_FIXED, 0, 0), a(0)),
                at(mmapf(a(2), 2 * P, RW, MAP_SHARED | MAP_FIXED, 0, 2 * P), a(2)),
                at(mmapf(a(4), P, RW, MAP_PRIVATE | MAP_FIXED, 0, 0), a(4)),
            ],
        ),
        case(
            "mmap: memfd non-linear offsets do not merge",
            vec![
                at(mmapf(a(0), 2 * P, RW, MAP_SHARED | MAP_FIXED, 0, 0), a(0)),
                at(mmapf(a(2), 2 * P, RW, MAP_SHARED | MAP_FIXED, 0, 4 * P), a(2)),
            ],
        ),
        case(
            "mmap: two descriptions of one file do not merge",
            vec![
                at(mmapf(a(0), P, PROT_READ, MAP_SHARED | MAP_FIXED, 0, 0), a(0)),
                at(mmapf(a(1), P, PROT_READ, MAP_SHARED | MAP_FIXED, 1, P), a(1)),
            ],
        ),
        case(
            "mmap: shared writable on a read-only description is EACCES",
            vec![
                err(mmapf(a(0), P, RW, MAP_SHARED | MAP_FIXED, 1, 0), E::EACCES),
                at(mmapf(a(0), P, RW, MAP_PRIVATE | MAP_FIXED, 1, 0), a(0)),
            ],
        ),
        case(
            "mmap: SHARED_VALIDATE with an unknown flag is EOPNOTSUPP",
            vec![err(mmapf(a(0), P, RW, MAP_SHARED_VALIDATE | MAP_FIXED | 1 << 25, 0, 0), E::EOPNOTSUPP)],
        ),
        case(
            "mmap: file offset overflow is EOVERFLOW",
            vec![err(
                mmapf(a(0), P, PROT_READ, MAP_SHARED | MAP_FIXED, 0, 0x7fff_ffff_ffff_f000),
                E::EOVERFLOW,
            )],
        ),
        case(
            "mmap: fixed over part of a file mapping",
            vec![at(mmapf(a(0), 4 * P, RW, MAP_SHARED | MAP_FIXED, 0, 0), a(0)), at(fixed(1, 1, RW), a(1))],
        ),
        // --- munmap.cc ---
        case("munmap: zero length is EINVAL", vec![err(unmap(0, 0), E::EINVAL)]),
        case("munmap: unaligned is EINVAL", vec![err(Op::Munmap { addr: a(0) + 1, len: P }, E::EINVAL)]),
        case(
            "munmap: beyond TASK_SIZE is EINVAL",
            vec![err(Op::Munmap { addr: 0x8000_0000_0000, len: P }, E::EINVAL)],
        ),
        case("munmap: nothing mapped succeeds", vec![ok(unmap(0, 16))]),
        case("munmap: middle splits", vec![at(fixed(0, 8, RW), a(0)), ok(unmap(3, 2))]),
        case(
            "munmap: over several VMAs and holes",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(3, 2, PROT_READ), a(3)),
                at(fixed(6, 2, RW), a(6)),
                ok(unmap(1, 6)),
            ],
        ),
        case(
            "munmap: unaligned length rounds up",
            vec![at(fixed(0, 4, RW), a(0)), ok(Op::Munmap { addr: a(1), len: 1 })],
        ),
        // --- mprotect.cc ---
        case("mprotect: zero length succeeds", vec![ok(prot(0, 0, RW))]),
        case(
            "mprotect: unaligned is EINVAL",
            vec![err(Op::Mprotect { addr: a(0) + 1, len: P, prot: RW }, E::EINVAL)],
        ),
        case("mprotect: unmapped is ENOMEM", vec![err(prot(0, 1, RW), E::ENOMEM)]),
        case(
            "mprotect: invalid bits are EINVAL",
            vec![at(fixed(0, 1, RW), a(0)), err(prot(0, 1, 0x100), E::EINVAL)],
        ),
        case(
            "mprotect: split and merge back",
            vec![at(fixed(0, 8, RW), a(0)), ok(prot(2, 2, PROT_READ)), ok(prot(2, 2, RW))],
        ),
        case(
            "mprotect: applies up to a hole, then ENOMEM",
            vec![at(fixed(0, 4, RW), a(0)), at(fixed(5, 2, RW), a(5)), err(prot(0, 7, PROT_READ), E::ENOMEM)],
        ),
        case(
            "mprotect: starts in a hole is ENOMEM",
            vec![at(fixed(1, 2, RW), a(1)), err(prot(0, 3, PROT_READ), E::ENOMEM)],
        ),
        case(
            "mprotect: PROT_GROWSDOWN on a plain VMA is EINVAL",
            vec![at(fixed(0, 4, RW), a(0)), err(prot(2, 1, PROT_READ | PROT_GROWSDOWN), E::EINVAL)],
        ),
        case(
            "mprotect: PROT_GROWSDOWN extends to the stack's start",
            vec![
                at(mmap(a(0), 8 * P, RW, f | MAP_GROWSDOWN), a(0)),
                ok(prot(4, 1, PROT_READ | PROT_GROWSDOWN)),
            ],
        ),
        case(
            "mprotect: PROT_GROWSUP is EINVAL",
            vec![at(fixed(0, 4, RW), a(0)), err(prot(0, 1, PROT_READ | PROT_GROWSUP), E::EINVAL)],
        ),
        case(
            "mprotect: both GROWS flags are EINVAL",
            vec![err(prot(0, 1, PROT_READ | PROT_GROWSUP | PROT_GROWSDOWN), E::EINVAL)],
        ),
        case(
            "mprotect: write on a read-only shared file is EACCES",
            vec![
                at(mmapf(a(0), P, PROT_READ, MAP_SHARED | MAP_FIXED, 1, 0), a(0)),
                err(prot(0, 1, RW), E::EACCES),
            ],
        ),
        case(
            "mprotect: over several VMAs merges them",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(2, 2, PROT_READ), a(2)),
                at(fixed(4, 2, PROT_NONE), a(4)),
                ok(prot(0, 6, PROT_READ)),
            ],
        ),
        case(
            "mprotect: RW to R keeps no VM_ACCOUNT without an anon_vma",
            vec![at(fixed(0, 2, RW), a(0)), ok(prot(0, 2, PROT_READ)), at(fixed(2, 2, PROT_READ), a(2))],
        ),
        case(
            "mprotect: R to RW gains VM_ACCOUNT and merges",
            vec![at(fixed(0, 2, PROT_READ), a(0)), ok(prot(0, 2, RW)), at(fixed(2, 2, RW), a(2))],
        ),
        case(
            "mprotect: faulted RW to R keeps VM_ACCOUNT",
            vec![
                at(fixed(0, 2, RW), a(0)),
                ok(adv(0, 2, MADV_POPULATE_WRITE)),
                ok(prot(0, 2, PROT_READ)),
                at(fixed(2, 2, PROT_READ), a(2)),
            ],
        ),
        // --- madvise.cc ---
        case("madvise: zero length succeeds", vec![ok(adv(0, 0, MADV_DONTNEED))]),
        case(
            "madvise: unaligned is EINVAL",
            vec![err(Op::Madvise { addr: a(0) + 1, len: P, advice: MADV_NORMAL }, E::EINVAL)],
        ),
        case(
            "madvise: invalid advice is EINVAL",
            vec![at(fixed(0, 1, RW), a(0)), err(adv(0, 1, 999), E::EINVAL), err(adv(0, 1, 5), E::EINVAL)],
        ),
        case("madvise: unmapped is ENOMEM", vec![err(adv(0, 1, MADV_NORMAL), E::ENOMEM)]),
        case(
            "madvise: DONTFORK splits, DOFORK merges",
            vec![at(fixed(0, 8, RW), a(0)), ok(adv(2, 2, MADV_DONTFORK)), ok(adv(2, 2, MADV_DOFORK))],
        ),
        case(
            "madvise: applies across a hole, then ENOMEM",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(3, 2, RW), a(3)),
                err(adv(0, 5, MADV_DONTDUMP), E::ENOMEM),
            ],
        ),
        case(
            "madvise: WIPEONFORK on shared is EINVAL",
            vec![
                at(mmap(a(0), P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED), a(0)),
                err(adv(0, 1, MADV_WIPEONFORK), E::EINVAL),
            ],
        ),
        case(
            "madvise: WIPEONFORK on a file is EINVAL",
            vec![
                at(mmapf(a(0), P, RW, MAP_PRIVATE | MAP_FIXED, 0, 0), a(0)),
                err(adv(0, 1, MADV_WIPEONFORK), E::EINVAL),
            ],
        ),
        case(
            "madvise: WIPEONFORK and KEEPONFORK",
            vec![at(fixed(0, 4, RW), a(0)), ok(adv(1, 2, MADV_WIPEONFORK)), ok(adv(1, 1, MADV_KEEPONFORK))],
        ),
        case(
            "madvise: DONTDUMP / DODUMP",
            vec![at(fixed(0, 4, RW), a(0)), ok(adv(0, 2, MADV_DONTDUMP)), ok(adv(0, 4, MADV_DODUMP))],
        ),
        case(
            "madvise: SEQUENTIAL, RANDOM, NORMAL",
            vec![
                at(fixed(0, 6, RW), a(0)),
                ok(adv(0, 2, MADV_SEQUENTIAL)),
                ok(adv(4, 2, MADV_RANDOM)),
                ok(adv(0, 6, MADV_NORMAL)),
            ],
        ),
        case(
            "madvise: HUGEPAGE / NOHUGEPAGE",
            vec![at(fixed(0, 6, RW), a(0)), ok(adv(1, 2, MADV_HUGEPAGE)), ok(adv(2, 2, MADV_NOHUGEPAGE))],
        ),
        case(
            "madvise: MERGEABLE / UNMERGEABLE",
            vec![at(fixed(0, 4, RW), a(0)), ok(adv(0, 2, MADV_MERGEABLE)), ok(adv(0, 4, MADV_UNMERGEABLE))],
        ),
        case(
            "madvise: FREE on shared is EINVAL",
            vec![
                at(mmap(a(0), P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED), a(0)),
                err(adv(0, 1, MADV_FREE), E::EINVAL),
            ],
        ),
        case(
            "madvise: DONTNEED on locked is EINVAL, DONTNEED_LOCKED is not",
            vec![
                at(mmap(a(0), 2 * P, RW, f | MAP_LOCKED), a(0)),
                err(adv(0, 1, MADV_DONTNEED), E::EINVAL),
                ok(adv(0, 1, MADV_DONTNEED_LOCKED)),
            ],
        ),
        case(
            "madvise: REMOVE on private anonymous is EINVAL",
            vec![at(fixed(0, 1, RW), a(0)), err(adv(0, 1, MADV_REMOVE), E::EINVAL)],
        ),
        case(
            "madvise: REMOVE on a shared memfd",
            vec![at(mmapf(a(0), 2 * P, RW, MAP_SHARED | MAP_FIXED, 0, 0), a(0)), ok(adv(0, 1, MADV_REMOVE))],
        ),
        case(
            "madvise: REMOVE on a read-only shared memfd is EACCES",
            vec![
                at(mmapf(a(0), P, PROT_READ, MAP_SHARED | MAP_FIXED, 1, 0), a(0)),
                err(adv(0, 1, MADV_REMOVE), E::EACCES),
            ],
        ),
        case(
            "madvise: COLD, PAGEOUT, WILLNEED, DONTNEED, FREE",
            vec![
                at(fixed(0, 4, RW), a(0)),
                ok(adv(0, 4, MADV_COLD)),
                ok(adv(0, 4, MADV_PAGEOUT)),
                ok(adv(0, 4, MADV_WILLNEED)),
                ok(adv(0, 4, MADV_DONTNEED)),
                ok(adv(0, 4, MADV_FREE)),
            ],
        ),
        case(
            "madvise: POPULATE_WRITE on read-only is EINVAL",
            vec![
                at(fixed(0, 2, PROT_READ), a(0)),
                err(adv(0, 2, MADV_POPULATE_WRITE), E::EINVAL),
                ok(adv(0, 2, MADV_POPULATE_READ)),
            ],
        ),
        case(
            "madvise: POPULATE_READ on PROT_NONE is EINVAL",
            vec![at(fixed(0, 2, PROT_NONE), a(0)), err(adv(0, 2, MADV_POPULATE_READ), E::EINVAL)],
        ),
        case(
            "madvise: POPULATE over a hole is ENOMEM",
            vec![at(fixed(0, 2, RW), a(0)), err(adv(0, 3, MADV_POPULATE_WRITE), E::ENOMEM)],
        ),
        // --- merge.c ---
        case(
            "merge: unfaulted neighbours merge after mprotect",
            vec![at(fixed(0, 3, RW), a(0)), at(fixed(3, 3, PROT_READ), a(3)), ok(prot(3, 3, RW))],
        ),
        case(
            "merge: faulted and unfaulted merge",
            vec![at(fixed(0, 3, RW), a(0)), ok(adv(0, 3, MADV_POPULATE_WRITE)), at(fixed(3, 3, RW), a(3))],
        ),
        case(
            "merge: two faulted VMAs do not merge",
            vec![
                at(fixed(0, 3, RW), a(0)),
                ok(adv(0, 3, MADV_POPULATE_WRITE)),
                at(fixed(4, 3, RW), a(4)),
                ok(adv(4, 3, MADV_POPULATE_WRITE)),
                at(fixed(3, 1, RW), a(3)),
            ],
        ),
        case(
            "merge: a faulted split merges back",
            vec![
                at(fixed(0, 6, RW), a(0)),
                ok(adv(0, 6, MADV_POPULATE_WRITE)),
                ok(prot(2, 2, PROT_READ)),
                ok(prot(2, 2, RW)),
            ],
        ),
        case(
            "merge: anon_vma reused from a neighbour",
            vec![
                at(fixed(0, 3, RW), a(0)),
                ok(adv(0, 3, MADV_POPULATE_WRITE)),
                at(fixed(3, 3, PROT_READ), a(3)),
                ok(prot(3, 3, RW)),
                ok(adv(3, 3, MADV_POPULATE_WRITE)),
            ],
        ),
        case(
            "merge: mremap of unfaulted memory next to its neighbour merges",
            vec![
                at(fixed(0, 3, RW), a(0)),
                at(fixed(10, 3, RW), a(10)),
                at(remap(10, 3, 3, MREMAP_MAYMOVE | MREMAP_FIXED, 3), a(3)),
            ],
        ),
        case(
            "merge: mremap of faulted memory keeps its offset",
            vec![
                at(fixed(0, 3, RW), a(0)),
                at(fixed(10, 3, RW), a(10)),
                ok(adv(10, 3, MADV_POPULATE_WRITE)),
                at(remap(10, 3, 3, MREMAP_MAYMOVE | MREMAP_FIXED, 3), a(3)),
            ],
        ),
        case(
            "merge: faulted mremap back to where it was merges",
            vec![
                at(fixed(0, 6, RW), a(0)),
                ok(adv(0, 6, MADV_POPULATE_WRITE)),
                at(remap(3, 3, 3, MREMAP_MAYMOVE | MREMAP_FIXED, 20), a(20)),
                at(remap(20, 3, 3, MREMAP_MAYMOVE | MREMAP_FIXED, 3), a(3)),
            ],
        ),
        case(
            "merge: forked child's VMAs do not merge with new ones",
            vec![
                at(fixed(0, 3, RW), a(0)),
                ok(adv(0, 3, MADV_POPULATE_WRITE)),
                ok(Op::Fork),
                at(fixed(3, 3, RW), a(3)),
                ok(prot(0, 6, PROT_READ)),
            ],
        ),
        // --- mremap.cc / mremap_test.c ---
        case(
            "mremap: new_len 0 is EINVAL",
            vec![at(fixed(0, 2, RW), a(0)), err(remap(0, 2, 0, 0, 0), E::EINVAL)],
        ),
        case(
            "mremap: unknown flag is EINVAL",
            vec![at(fixed(0, 2, RW), a(0)), err(remap(0, 2, 2, 8, 0), E::EINVAL)],
        ),
        case(
            "mremap: unaligned is EINVAL",
            vec![err(Op::Mremap { addr: a(0) + 1, old: P, new: P, flags: 0, new_addr: 0 }, E::EINVAL)],
        ),
        case("mremap: unmapped is EFAULT", vec![err(remap(0, 1, 2, MREMAP_MAYMOVE, 0), E::EFAULT)]),
        case("mremap: same size is a no-op", vec![at(fixed(0, 2, RW), a(0)), at(remap(0, 2, 2, 0, 0), a(0))]),
        case("mremap: shrink in place", vec![at(fixed(0, 8, RW), a(0)), at(remap(0, 8, 3, 0, 0), a(0))]),
        case(
            "mremap: shrink across VMA boundaries",
            vec![at(fixed(0, 2, RW), a(0)), at(fixed(2, 2, PROT_READ), a(2)), at(remap(0, 4, 1, 0, 0), a(0))],
        ),
        case(
            "mremap: grow in place when free",
            vec![at(fixed(0, 2, RW), a(0)), at(remap(0, 2, 6, 0, 0), a(0))],
        ),
        case(
            "mremap: grow in place merges with the next",
            vec![at(fixed(0, 2, RW), a(0)), at(fixed(4, 2, RW), a(4)), at(remap(0, 2, 4, 0, 0), a(0))],
        ),
        case(
            "mremap: grow blocked without MAYMOVE is ENOMEM",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(2, 2, PROT_READ), a(2)),
                err(remap(0, 2, 4, 0, 0), E::ENOMEM),
            ],
        ),
        case(
            "mremap: grow across the VMA end is EFAULT",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(2, 2, PROT_READ), a(2)),
                err(remap(0, 4, 8, MREMAP_MAYMOVE, 0), E::EFAULT),
            ],
        ),
        case(
            "mremap: grow blocked with MAYMOVE moves",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(2, 2, PROT_READ), a(2)),
                any(remap(0, 2, 4, MREMAP_MAYMOVE, 0)),
            ],
        ),
        case(
            "mremap: move of part of a VMA to 2 MiB is THP-aligned",
            vec![
                at(mmap(a(0), MB2, RW, f), a(0)),
                at(fixed(512, 1, PROT_READ), a(512)),
                any(Op::Mremap { addr: a(0), old: MB2, new: 2 * MB2, flags: MREMAP_MAYMOVE, new_addr: 0 }),
            ],
        ),
        case(
            "mremap: FIXED moves",
            vec![at(fixed(0, 4, RW), a(0)), at(remap(1, 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, 10), a(10))],
        ),
        case(
            "mremap: FIXED without MAYMOVE is EINVAL",
            vec![at(fixed(0, 4, RW), a(0)), err(remap(0, 2, 2, MREMAP_FIXED, 10), E::EINVAL)],
        ),
        case(
            "mremap: FIXED overlapping is EINVAL",
            vec![at(fixed(0, 4, RW), a(0)), err(remap(0, 4, 4, MREMAP_MAYMOVE | MREMAP_FIXED, 2), E::EINVAL)],
        ),
        case(
            "mremap: FIXED replaces the destination",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(10, 4, PROT_READ), a(10)),
                at(remap(0, 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, 11), a(11)),
            ],
        ),
        case(
            "mremap: FIXED grows while moving",
            vec![at(fixed(0, 2, RW), a(0)), at(remap(0, 2, 5, MREMAP_MAYMOVE | MREMAP_FIXED, 10), a(10))],
        ),
        case(
            "mremap: FIXED shrinks while moving",
            vec![at(fixed(0, 4, RW), a(0)), at(remap(0, 4, 1, MREMAP_MAYMOVE | MREMAP_FIXED, 10), a(10))],
        ),
        case(
            "mremap: FIXED moves several VMAs (6.17)",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(3, 2, PROT_READ), a(3)),
                at(remap(0, 5, 5, MREMAP_MAYMOVE | MREMAP_FIXED, 20), a(20)),
            ],
        ),
        case(
            "mremap: DONTUNMAP",
            vec![
                at(fixed(0, 4, RW), a(0)),
                at(remap(0, 4, 4, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, 10), a(10)),
            ],
        ),
        case(
            "mremap: DONTUNMAP of part unlocks the source VMA",
            vec![
                at(mmap(a(0), 4 * P, RW, f | MAP_LOCKED), a(0)),
                at(remap(1, 2, 2, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 10), a(10)),
                ok(Op::Mlock { addr: a(0), len: P }),
            ],
        ),
        case(
            "mremap: DONTUNMAP resizing is EINVAL",
            vec![
                at(fixed(0, 4, RW), a(0)),
                err(remap(0, 4, 2, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0), E::EINVAL),
            ],
        ),
        case(
            "mremap: DONTUNMAP without MAYMOVE is EINVAL",
            vec![at(fixed(0, 4, RW), a(0)), err(remap(0, 4, 4, MREMAP_DONTUNMAP, 10), E::EINVAL)],
        ),
        case(
            "mremap: old_len 0 of private memory is EINVAL",
            vec![at(fixed(0, 4, RW), a(0)), err(remap(0, 0, 2, MREMAP_MAYMOVE, 0), E::EINVAL)],
        ),
        case(
            "mremap: locked grow in place",
            vec![at(mmap(a(0), 2 * P, RW, f | MAP_LOCKED), a(0)), at(remap(0, 2, 4, 0, 0), a(0))],
        ),
        // --- mlock.cc / mlock2-tests.c ---
        case(
            "mlock: locks and merges back on munlock",
            vec![
                at(fixed(0, 8, RW), a(0)),
                ok(Op::Mlock { addr: a(2), len: 2 * P }),
                ok(Op::Munlock { addr: a(2), len: 2 * P }),
            ],
        ),
        case(
            "mlock: unaligned start rounds down",
            vec![at(fixed(0, 8, RW), a(0)), ok(Op::Mlock { addr: a(2) + 10, len: P })],
        ),
        case(
            "mlock: a hole is ENOMEM after locking",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(3, 2, RW), a(3)),
                err(Op::Mlock { addr: a(0), len: 5 * P }, E::ENOMEM),
            ],
        ),
        case(
            "mlock: starting in a hole is ENOMEM",
            vec![at(fixed(1, 2, RW), a(1)), err(Op::Mlock { addr: a(0), len: 3 * P }, E::ENOMEM)],
        ),
        case(
            "mlock: PROT_NONE locks, then fails to populate with ENOMEM",
            vec![
                at(fixed(0, 2, PROT_NONE), a(0)),
                err(Op::Mlock { addr: a(0), len: 2 * P }, E::ENOMEM),
                err(Op::Msync { addr: a(0), len: P, flags: MS_INVALIDATE }, E::EBUSY),
            ],
        ),
        case(
            "mlock: stops populating at PROT_NONE",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(2, 2, PROT_NONE), a(2)),
                at(fixed(4, 2, RW), a(4)),
                err(Op::Mlock { addr: a(0), len: 6 * P }, E::ENOMEM),
                at(fixed(6, 1, RW), a(6)),
            ],
        ),
        case(
            "mlock2: ONFAULT",
            vec![
                at(fixed(0, 4, RW), a(0)),
                ok(Op::Mlock2 { addr: a(1), len: 2 * P, flags: MLOCK_ONFAULT }),
                ok(Op::Mlock2 { addr: a(1), len: P, flags: 0 }),
            ],
        ),
        case(
            "mlock2: unknown flag is EINVAL",
            vec![at(fixed(0, 4, RW), a(0)), err(Op::Mlock2 { addr: a(0), len: P, flags: 2 }, E::EINVAL)],
        ),
        case(
            "mlockall: invalid flags are EINVAL",
            vec![
                err(Op::Mlockall { flags: 0 }, E::EINVAL),
                err(Op::Mlockall { flags: MCL_ONFAULT }, E::EINVAL),
                err(Op::Mlockall { flags: 8 }, E::EINVAL),
            ],
        ),
        case(
            "mlockall: MCL_FUTURE locks new mappings",
            vec![
                ok(Op::Mlockall { flags: MCL_FUTURE }),
                at(fixed(0, 2, RW), a(0)),
                ok(Op::Munlockall),
                at(fixed(2, 2, RW), a(2)),
            ],
        ),
        case(
            "mlockall: MCL_FUTURE|MCL_ONFAULT",
            vec![
                ok(Op::Mlockall { flags: MCL_FUTURE | MCL_ONFAULT }),
                at(fixed(0, 2, RW), a(0)),
                ok(Op::Munlockall),
            ],
        ),
        case(
            "mlockall: MCL_CURRENT locks everything (ENOMEM over RLIMIT_MEMLOCK without CAP_IPC_LOCK)",
            vec![
                at(fixed(0, 2, RW), a(0)),
                (
                    Op::Mlockall { flags: MCL_CURRENT },
                    Some(if support_kernel::live_params().cap_ipc_lock { Ok(0) } else { Err(E::ENOMEM) }),
                ),
                ok(Op::Munlockall),
            ],
        ),
        case(
            "mlock: locks are not inherited by a fork child",
            vec![at(fixed(0, 4, RW), a(0)), ok(Op::Mlock { addr: a(0), len: 2 * P }), ok(Op::Fork)],
        ),
        // --- msync.cc ---
        case(
            "msync: unaligned is EINVAL",
            vec![err(Op::Msync { addr: a(0) + 1, len: P, flags: MS_SYNC }, E::EINVAL)],
        ),
        case(
            "msync: ASYNC|SYNC is EINVAL",
            vec![
                at(fixed(0, 1, RW), a(0)),
                err(Op::Msync { addr: a(0), len: P, flags: MS_ASYNC | MS_SYNC }, E::EINVAL),
            ],
        ),
        case(
            "msync: unknown flag is EINVAL",
            vec![at(fixed(0, 1, RW), a(0)), err(Op::Msync { addr: a(0), len: P, flags: 8 }, E::EINVAL)],
        ),
        case("msync: zero length succeeds", vec![ok(Op::Msync { addr: a(0), len: 0, flags: MS_SYNC })]),
        case(
            "msync: unmapped is ENOMEM",
            vec![err(Op::Msync { addr: a(0), len: P, flags: MS_SYNC }, E::ENOMEM)],
        ),
        case(
            "msync: a hole is ENOMEM",
            vec![
                at(fixed(0, 1, RW), a(0)),
                at(fixed(2, 1, RW), a(2)),
                err(Op::Msync { addr: a(0), len: 3 * P, flags: MS_SYNC }, E::ENOMEM),
                err(Op::Msync { addr: a(0), len: 3 * P, flags: MS_ASYNC }, E::ENOMEM),
            ],
        ),
        case(
            "msync: INVALIDATE on locked is EBUSY",
            vec![
                at(mmap(a(0), P, RW, f | MAP_LOCKED), a(0)),
                err(Op::Msync { addr: a(0), len: P, flags: MS_INVALIDATE }, E::EBUSY),
                ok(Op::Msync { addr: a(0), len: P, flags: MS_SYNC }),
            ],
        ),
        case(
            "msync: a shared memfd",
            vec![
                at(mmapf(a(0), 2 * P, RW, MAP_SHARED | MAP_FIXED, 0, 0), a(0)),
                ok(Op::Msync { addr: a(0), len: 2 * P, flags: MS_SYNC | MS_INVALIDATE }),
            ],
        ),
        // --- mseal_test.c ---
        case(
            "mseal: flags are EINVAL",
            vec![at(fixed(0, 2, RW), a(0)), err(Op::Mseal { addr: a(0), len: P, flags: 1 }, E::EINVAL)],
        ),
        case(
            "mseal: unaligned is EINVAL",
            vec![err(Op::Mseal { addr: a(0) + 1, len: P, flags: 0 }, E::EINVAL)],
        ),
        case("mseal: zero length succeeds", vec![ok(Op::Mseal { addr: a(0), len: 0, flags: 0 })]),
        case(
            "mseal: a hole is ENOMEM and seals nothing",
            vec![
                at(fixed(0, 2, RW), a(0)),
                at(fixed(3, 2, RW), a(3)),
                err(Op::Mseal { addr: a(0), len: 5 * P, flags: 0 }, E::ENOMEM),
                ok(unmap(0, 5)),
            ],
        ),
        case(
            "mseal: then munmap, mprotect, mremap are EPERM",
            vec![
                at(fixed(0, 4, RW), a(0)),
                ok(Op::Mseal { addr: a(1), len: 2 * P, flags: 0 }),
                err(unmap(1, 1), E::EPERM),
                err(prot(1, 1, PROT_READ), E::EPERM),
                err(prot(1, 1, RW), E::EPERM),
                err(remap(1, 1, 2, MREMAP_MAYMOVE, 0), E::EPERM),
                err(fixed(2, 1, RW), E::EPERM),
            ],
        ),
        case(
            "mseal: munmap over a sealed VMA keeps the split",
            vec![
                at(fixed(0, 4, RW), a(0)),
                at(fixed(4, 2, PROT_READ), a(4)),
                ok(Op::Mseal { addr: a(4), len: 2 * P, flags: 0 }),
                err(unmap(2, 4), E::EPERM),
            ],
        ),
        case(
            "mseal: mprotect applies up to the sealed VMA",
            vec![
                at(fixed(0, 4, RW), a(0)),
                at(fixed(4, 2, PROT_READ), a(4)),
                ok(Op::Mseal { addr: a(4), len: 2 * P, flags: 0 }),
                err(prot(0, 6, PROT_READ), E::EPERM),
            ],
        ),
        case(
            "mseal: discard advice on sealed read-only anonymous is EPERM",
            vec![
                at(fixed(0, 2, PROT_READ), a(0)),
                ok(Op::Mseal { addr: a(0), len: 2 * P, flags: 0 }),
                err(adv(0, 1, MADV_DONTNEED), E::EPERM),
                err(adv(0, 1, MADV_FREE), E::EPERM),
                ok(adv(0, 1, MADV_NORMAL)),
                ok(adv(0, 1, MADV_WILLNEED)),
            ],
        ),
        case(
            "mseal: discard advice on sealed writable anonymous is allowed",
            vec![
                at(fixed(0, 2, RW), a(0)),
                ok(Op::Mseal { addr: a(0), len: 2 * P, flags: 0 }),
                ok(adv(0, 1, MADV_DONTNEED)),
                ok(adv(0, 2, MADV_DONTDUMP)),
            ],
        ),
        case(
            "mseal: sealing merges and splits",
            vec![
                at(fixed(0, 6, RW), a(0)),
                ok(Op::Mseal { addr: a(2), len: 2 * P, flags: 0 }),
                ok(Op::Mseal { addr: a(0), len: 2 * P, flags: 0 }),
            ],
        ),
        case(
            "mseal: mlock of sealed memory is allowed",
            vec![
                at(fixed(0, 2, RW), a(0)),
                ok(Op::Mseal { addr: a(0), len: 2 * P, flags: 0 }),
                ok(Op::Mlock { addr: a(0), len: P }),
            ],
        ),
        // --- guard-regions.c ---
        case(
            "guard: install and remove",
            vec![
                at(fixed(0, 8, RW), a(0)),
                ok(adv(2, 2, MADV_GUARD_INSTALL)),
                err(adv(0, 8, MADV_POPULATE_WRITE), Errno::EFAULT),
                ok(adv(2, 2, MADV_GUARD_REMOVE)),
                ok(adv(0, 8, MADV_POPULATE_WRITE)),
            ],
        ),
        case(
            "guard: install on locked is EINVAL",
            vec![
                at(mmap(a(0), 2 * P, RW, f | MAP_LOCKED), a(0)),
                err(adv(0, 1, MADV_GUARD_INSTALL), E::EINVAL),
                ok(adv(0, 1, MADV_GUARD_REMOVE)),
            ],
        ),
        case(
            "guard: survive DONTNEED, gone after munmap",
            vec![
                at(fixed(0, 4, RW), a(0)),
                ok(adv(1, 1, MADV_GUARD_INSTALL)),
                ok(adv(0, 4, MADV_DONTNEED)),
                err(adv(0, 4, MADV_POPULATE_READ), E::EFAULT),
                ok(unmap(0, 4)),
                at(fixed(0, 4, RW), a(0)),
                ok(adv(0, 4, MADV_POPULATE_READ)),
            ],
        ),
        case(
            "guard: move with mremap",
            vec![
                at(fixed(0, 4, RW), a(0)),
                ok(adv(1, 1, MADV_GUARD_INSTALL)),
                at(remap(0, 4, 4, MREMAP_MAYMOVE | MREMAP_FIXED, 10), a(10)),
                err(adv(10, 4, MADV_POPULATE_READ), E::EFAULT),
            ],
        ),
        case(
            "guard: mlock over a guard",
            vec![
                at(fixed(0, 4, RW), a(0)),
                ok(adv(1, 1, MADV_GUARD_INSTALL)),
                any(Op::Mlock { addr: a(0), len: 4 * P }),
            ],
        ),
        case(
            "guard: kept by a fork child",
            vec![
                at(fixed(0, 4, RW), a(0)),
                ok(adv(1, 1, MADV_GUARD_INSTALL)),
                ok(Op::Fork),
                err(adv(0, 4, MADV_POPULATE_READ), E::EFAULT),
            ],
        ),
        case(
            "guard: file-backed and shmem markers are kept by a fork child",
            vec![
                at(mmapf(a(0), 2 * P, RW, MAP_PRIVATE | MAP_FIXED, 0, 0), a(0)),
                at(mmap(a(2), 2 * P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED), a(2)),
                ok(adv(0, 4, MADV_GUARD_INSTALL)),
                ok(Op::Fork),
                err(Op::Mlock { addr: a(1), len: 2 * P }, E::ENOMEM),
                err(adv(2, 1, MADV_POPULATE_READ), E::EFAULT),
            ],
        ),
        case(
            "guard: file-backed markers prepare no anon_vma (pieces merge after fork)",
            vec![
                at(mmapf(a(0), 4 * P, RW, MAP_PRIVATE | MAP_FIXED, 0, 0), a(0)),
                ok(adv(1, 1, MADV_GUARD_INSTALL)),
                ok(adv(2, 2, MADV_RANDOM)),
                ok(Op::Fork),
                ok(adv(0, 4, MADV_NORMAL)),
            ],
        ),
        case(
            "guard: on sealed read-only anonymous is EPERM",
            vec![
                at(fixed(0, 2, PROT_READ), a(0)),
                ok(Op::Mseal { addr: a(0), len: 2 * P, flags: 0 }),
                err(adv(0, 1, MADV_GUARD_INSTALL), E::EPERM),
            ],
        ),
        // --- fork ---
        case(
            "fork: DONTFORK dropped, WIPEONFORK kept",
            vec![
                at(fixed(0, 6, RW), a(0)),
                ok(adv(0, 2, MADV_DONTFORK)),
                ok(adv(4, 2, MADV_WIPEONFORK)),
                ok(Op::Fork),
                at(fixed(0, 2, RW), a(0)),
            ],
        ),
        case(
            "fork: sealed stays sealed",
            vec![
                at(fixed(0, 2, RW), a(0)),
                ok(Op::Mseal { addr: a(0), len: 2 * P, flags: 0 }),
                ok(Op::Fork),
                err(unmap(0, 1), E::EPERM),
            ],
        ),
        // --- brk ---
        case("brk: query, grow, shrink, below start", vec![any(Op::Brk { addr: 0 })]),
    ]
}

/// Limits lowered in the child, relative to what it maps (so the cases hold whatever the test
/// process looks like): RLIMIT_AS, RLIMIT_DATA, RLIMIT_MEMLOCK.
fn limit_cases(files: &[TestFile]) -> Vec<String> {
    use Errno as E;
    let mut failures = Vec::new();
    let mut run = |name: &str, f: &dyn Fn(&Kernel) -> Vec<Step>| {
        let mut k = Kernel::start(files);
        for (op, want) in f(&k) {
            match k.step(op) {
                Ok(got) if want.is_some_and(|w| w != got) => {
                    failures.push(format!("{name}: {op:?}: kernel {got:?}, the case expects {want:?}"));
                    return;
                }
                Ok(_) => {}
                Err(d) => {
                    failures.push(format!("{name}: {d}"));
                    return;
                }
            }
        }
    };
    let rl = |resource: u32, bytes: u64| Op::Setrlimit { resource: u64::from(resource), bytes };
    run("limits: RLIMIT_AS refuses mmap, mremap growth and brk", &|k| {
        let cap = (k.mm.total_vm() + 16) * P;
        vec![
            ok(rl(libc::RLIMIT_AS, cap)),
            err(fixed(0, 32, RW), E::ENOMEM),
            at(fixed(0, 8, RW), a(0)),
            err(remap(0, 8, 40, MREMAP_MAYMOVE, 0), E::ENOMEM),
            at(remap(0, 8, 12, 0, 0), a(0)),
            at(Op::Brk { addr: k.mm.brk + 64 * P }, k.mm.brk),
            err(fixed(0, 20, PROT_NONE), E::ENOMEM),
            at(fixed(0, 16, PROT_NONE), a(0)),
        ]
    });
    run("limits: RLIMIT_DATA refuses private writable memory only", &|k| {
        let cap = (k.mm.data_vm() + 4) * P;
        vec![
            ok(rl(libc::RLIMIT_DATA, cap)),
            err(fixed(0, 8, RW), E::ENOMEM),
            at(fixed(0, 8, PROT_READ), a(0)),
            at(mmap(a(8), 8 * P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED), a(8)),
            err(prot(0, 8, RW), E::ENOMEM),
            ok(prot(0, 2, RW)),
        ]
    });
    run("limits: RLIMIT_MEMLOCK (ignored with CAP_IPC_LOCK)", &|k| {
        let ipc = k.mm.params.cap_ipc_lock;
        let over = if ipc { Ok(0) } else { Err(E::ENOMEM) };
        let eagain = if ipc { Ok(a(0)) } else { Err(E::EAGAIN) };
        vec![
            ok(rl(libc::RLIMIT_MEMLOCK, 4 * P)),
            at(fixed(8, 8, RW), a(8)),
            (Op::Mlock { addr: a(8), len: 8 * P }, Some(over)),
            ok(Op::Mlock { addr: a(8), len: 2 * P }),
            (mmap(a(0), 8 * P, RW, FIX | MAP_LOCKED), Some(eagain)),
        ]
    });
    failures
}

fn brk_case(k: &mut Kernel) -> Result<(), String> {
    let cur = k.mm.brk;
    for target in [cur + 3 * P, cur + 10 * P + 5, cur + P, cur, k.mm.start_brk - P] {
        let _ = k.step(Op::Brk { addr: target }).map_err(|d| d.to_string())?;
    }
    Ok(())
}

#[test]
fn ported_cases_equal_the_kernel() {
    let files: Vec<TestFile> = memfds(16);
    let all = cases();
    let mut failures = Vec::new();
    for c in &all {
        let mut k = Kernel::start(&files);
        let mut fail = None;
        for (op, want) in &c.ops {
            match k.step(*op) {
                Ok(got) => {
                    if let Some(w) = want {
                        if got != *w {
                            fail = Some(format!("{op:?}: kernel answered {got:?}, the case expects {w:?}"));
                            break;
                        }
                    }
                }
                Err(d) => {
                    fail = Some(d.to_string());
                    break;
                }
            }
        }
        if fail.is_none() && c.name.starts_with("brk") {
            fail = brk_case(&mut k).err();
        }
        if let Some(f) = fail {
            failures.push(format!("{}: {f}", c.name));
        }
    }
    let limits = limit_cases(&files);
    let total = all.len() + 3;
    failures.extend(limits);
    println!("{} cases, {} differ", total, failures.len());
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), total, failures.join("\n"));
}
