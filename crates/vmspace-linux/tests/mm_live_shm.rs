//! System V shared memory (`shmat`/`shmdt`) against the live kernel: the cases of gVisor's
//! `test/syscalls/linux/shm.cc` that concern the address space (placement, `SHM_RND`, `SHM_REMAP`,
//! `SHM_RDONLY`, `SHM_EXEC`, detaching fragments after `munmap`/`mprotect`/`mremap`, sealed VMAs,
//! fork), written anew; each runs in a child of its own and on an `Mm` from that child's maps.

mod support_kernel;

use support_kernel::cases::*;
use support_kernel::{Op, ShmSegments, memfds};
use vmspace_linux::abi::*;

fn shmat(shmid: u64, addr: u64, flags: u64) -> Op {
    Op::Shmat { shmid, addr, flags }
}
fn shmdt(addr: u64) -> Op {
    Op::Shmdt { addr }
}

fn cases(big: u64, small: u64) -> Vec<Case> {
    use Errno as E;
    vec![
        case("shmat: placed by the kernel", vec![any(shmat(big, 0, 0))]),
        case("shmat: at an address", vec![at(shmat(big, a(0), 0), a(0))]),
        case("shmat: unaligned address is EINVAL", vec![err(shmat(big, a(0) + 5, 0), E::EINVAL)]),
        case("shmat: SHM_RND rounds down", vec![at(shmat(big, a(0) + 5, SHM_RND), a(0))]),
        case("shmat: SHM_REMAP without an address is EINVAL", vec![err(shmat(big, 0, SHM_REMAP), E::EINVAL)]),
        case(
            "shmat: over a mapping is EINVAL, with SHM_REMAP it replaces",
            vec![
                at(fixed(0, 8, RW), a(0)),
                err(shmat(small, a(2), 0), E::EINVAL),
                at(shmat(small, a(2), SHM_REMAP), a(2)),
            ],
        ),
        case(
            "shmat: SHM_RDONLY cannot be made writable",
            vec![at(shmat(big, a(0), SHM_RDONLY), a(0)), err(prot(0, 1, RW), E::EACCES), ok(prot(0, 1, 0))],
        ),
        case("shmat: SHM_EXEC", vec![at(shmat(small, a(0), SHM_EXEC), a(0))]),
        case(
            "shmat: two attaches side by side do not merge",
            vec![at(shmat(small, a(0), 0), a(0)), at(shmat(small, a(2), 0), a(2))],
        ),
        case("shmat: unknown segment is EINVAL", vec![err(shmat(u64::from(u32::MAX >> 1), 0, 0), E::EINVAL)]),
        case(
            "shmdt: detaches, then EINVAL",
            vec![at(shmat(big, a(0), 0), a(0)), ok(shmdt(a(0))), err(shmdt(a(0)), E::EINVAL)],
        ),
        case(
            "shmdt: unaligned is EINVAL",
            vec![at(shmat(big, a(0), 0), a(0)), err(shmdt(a(0) + 8), E::EINVAL)],
        ),
        case("shmdt: nothing there is EINVAL", vec![err(shmdt(a(0)), E::EINVAL)]),
        case(
            "shmdt: a plain mapping is not a segment",
            vec![at(mmapf(a(0), 2 * P, RW, MAP_SHARED | MAP_FIXED, 0, 0), a(0)), err(shmdt(a(0)), E::EINVAL)],
        ),
        case(
            "shmdt: inside a segment finds no start",
            vec![at(shmat(big, a(0), 0), a(0)), err(shmdt(a(1)), E::EINVAL)],
        ),
        case(
            "shmdt: both fragments after a munmap in the middle",
            vec![at(shmat(big, a(0), 0), a(0)), ok(unmap(1, 1)), ok(shmdt(a(0)))],
        ),
        case(
            "shmdt: the front fragment gone, the rest found by offset",
            vec![at(shmat(big, a(0), 0), a(0)), ok(unmap(0, 1)), ok(shmdt(a(0)))],
        ),
        case(
            "shmdt: pieces split by mprotect",
            vec![at(shmat(big, a(0), 0), a(0)), ok(prot(1, 2, PROT_READ)), ok(shmdt(a(0)))],
        ),
        case(
            "shmdt: only the attach at the address, not its neighbour",
            vec![at(shmat(small, a(0), 0), a(0)), at(shmat(small, a(2), 0), a(2)), ok(shmdt(a(0)))],
        ),
        case(
            "shmdt: after mremap moved the segment",
            vec![
                at(shmat(small, a(0), 0), a(0)),
                at(remap(0, 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, 10), a(10)),
                err(shmdt(a(0)), E::EINVAL),
                ok(shmdt(a(10))),
            ],
        ),
        case(
            "shmdt: a sealed segment stays and the call succeeds",
            vec![
                at(shmat(small, a(0), 0), a(0)),
                ok(Op::Mseal { addr: a(0), len: 2 * P, flags: 0 }),
                ok(shmdt(a(0))),
            ],
        ),
        case(
            "shmdt: in a fork child",
            vec![at(shmat(big, a(0), 0), a(0)), ok(Op::Fork), ok(shmdt(a(0))), err(shmdt(a(0)), E::EINVAL)],
        ),
    ]
}

#[test]
fn shm_attach_and_detach_equal_the_kernel() {
    let files = memfds(16);
    let segs = ShmSegments::new(&[3 * P + 100, 2 * P]);
    let (big, small) = (segs.files[0].inode, segs.files[1].inode);
    let all = cases(big, small);
    let failures = run_cases_with(&files, &segs.files, &all);
    println!("{} cases, {} differ", all.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
