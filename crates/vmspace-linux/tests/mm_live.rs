//! Cases ported from gVisor's `test/syscalls/linux/{mmap,munmap,mprotect,madvise}.cc` and Linux's
//! `tools/testing/selftests/mm/{merge,map_fixed_noreplace}.c`, written anew as call sequences: each
//! case runs in a forked child of its own against the live kernel and on an `Mm` started from that
//! child's maps, and every result and the whole maps list after every call must be equal.
//! (`mm_live_remap.rs` has the rest: mremap, mlock, msync, mseal, guard regions, fork, brk, limits.)

mod support_kernel;

use support_kernel::cases::*;
use support_kernel::{Op, memfds};
use vmspace_linux::abi::*;

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
    ]
}

#[test]
fn ported_map_protect_advise_merge_cases_equal_the_kernel() {
    let files = memfds(16);
    let all = cases();
    let failures = run_cases(&files, &all);
    println!("{} cases, {} differ", all.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
