//! W^X in the hardware: in a forked child (so that the fault kills only the child), storing to a
//! slot's executable view and jumping to its writable alias both end in SIGSEGV, after the same slot
//! has run code written through the alias. One test in this binary, so no other test thread is
//! running when it forks.

mod scratch_support;

use scratch_support::{call, emit, exit_child, wait};
use vmspace::AddressSpace;
use vmspace::fork::{Forked, fork};
use vmspace::scratch::ScratchSpace;

#[derive(Clone, Copy, Debug)]
enum Fault {
    WriteToAddr,
    ExecuteWriteAddr,
}

fn in_child(scratch: &ScratchSpace<'_>, fault: Fault) -> ! {
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain setrlimit on this (child) process, so the expected crash writes no core file.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    // The child's scratch space starts empty and allocates its own page.
    if scratch.pages() != 0 {
        exit_child(10);
    }
    let Ok(slot) = scratch.claim() else { exit_child(11) };
    emit(&slot.view(), 0xfeed);
    if call(slot.addr()) != 0xfeed {
        exit_child(12);
    }
    match fault {
        // SAFETY: deliberately faulting: the executable view is read+execute only.
        Fault::WriteToAddr => unsafe { std::ptr::write_volatile(slot.addr() as *mut u8, 0xC3) },
        Fault::ExecuteWriteAddr => {
            std::hint::black_box(call(slot.write_addr()));
        }
    }
    exit_child(13)
}

#[test]
fn executable_view_is_not_writable_and_alias_is_not_executable() {
    let s = AddressSpace::reserve(1 << 22).unwrap();
    let scratch = ScratchSpace::enable(&s).unwrap();
    let mine = scratch.claim().unwrap();
    emit(&mine.view(), 1);
    for fault in [Fault::WriteToAddr, Fault::ExecuteWriteAddr] {
        // SAFETY: this binary has a single test; the child touches only its own scratch page and
        // leaves with _exit or by the fault.
        match unsafe { fork() }.unwrap() {
            Forked::Child => in_child(&scratch, fault),
            Forked::Parent(pid) => {
                let status = wait(pid);
                assert!(
                    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
                    "{fault:?}: child status {status:#x} (exit {}), expected SIGSEGV",
                    libc::WEXITSTATUS(status)
                );
            }
        }
    }
    // The parent is untouched.
    assert_eq!(call(mine.addr()), 1);
    assert_eq!(scratch.pages(), 1);
    scratch.release(mine).unwrap();
}
