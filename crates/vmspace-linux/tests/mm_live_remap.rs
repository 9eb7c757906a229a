//! Cases ported from gVisor's `test/syscalls/linux/{mremap,mlock,msync}.cc` and Linux's
//! `tools/testing/selftests/mm/{mremap_test,mseal_test,guard-regions,mlock2-tests}.c`, plus fork, brk
//! and lowered rlimits, written anew as call sequences run in forked children against the live kernel
//! and on an `Mm` from each child's maps (see `mm_live.rs`).

mod support_kernel;

use support_kernel::cases::*;
use support_kernel::{Kernel, Op, TestFile, memfds};
use vmspace_linux::abi::*;

fn cases() -> Vec<Case> {
    use Errno as E;
    let f = FIX;
    vec![
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

#[test]
fn ported_remap_lock_sync_seal_guard_fork_cases_equal_the_kernel() {
    let files: Vec<TestFile> = memfds(16);
    let all = cases();
    let mut failures = run_cases(&files, &all);
    failures.extend(limit_cases(&files));
    let total = all.len() + 3;
    println!("{} cases, {} differ", total, failures.len());
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), total, failures.join("\n"));
}
