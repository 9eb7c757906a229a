//! xnu's "deallocate then cancel" test: once the reclaimer has deallocated a region, a cancel reports it
//! not reusable and touching the memory faults. The touch happens in a forked child (which dies of
//! SIGSEGV); one test in this binary, so no other test thread runs at the fork.

use std::time::Duration;

use vmspace::reclaim::{Action, ReclaimRing, ReclaimState, Reclaimer, ReclaimerConfig};
use vmspace::{Prot, os};

const PS: u64 = 4096;

/// Fork a child that reads `addr`; return how it ended (exit code or signal).
fn child_reads(addr: u64) -> (Option<i32>, Option<i32>) {
    // SAFETY: the child only reads memory and calls `_exit`; nothing it does needs a lock.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: a read of an address that is either mapped readable (exit 0) or unmapped (SIGSEGV,
        // which kills the child: the point of the test).
        let v = unsafe { std::ptr::read_volatile(addr as *const u64) };
        // SAFETY: `_exit` ends the child without running the parent's destructors.
        unsafe { libc::_exit(if v == 0x5eed { 0 } else { 3 }) }
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let exited = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let signalled = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
    (exited, signalled)
}

#[test]
fn deallocate_then_cancel_faults_and_free_keeps_the_mapping() {
    let r = Reclaimer::spawn(ReclaimerConfig {
        tick: Duration::from_secs(3600),
        pressure: None,
        ..Default::default()
    })
    .unwrap();
    let mut ring = ReclaimRing::builder().reclaimer(&r).build().unwrap();
    let len = 4 * PS;
    let a = os::reserve(2 * len).unwrap();
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::map_fixed(a, 2 * len, Prot::RW, os::Fixed::Anonymous) }.unwrap();
    let (d, f) = (a, a + len);
    for p in [d, f] {
        // SAFETY: just mapped read-write above.
        unsafe { std::ptr::write_volatile(p as *mut u64, 0x5eed) };
    }
    assert_eq!(child_reads(d), (Some(0), None), "readable before reclaim");
    let id_d = ring.try_enter(d, len, Action::Deallocate, None).unwrap().id.unwrap();
    let id_f = ring.try_enter(f, len, Action::Free, None).unwrap().id.unwrap();
    assert_eq!(ring.flush(2).unwrap().reclaimed, 2);
    let c = ring.try_cancel(id_d, d, len, Action::Deallocate).unwrap();
    assert_eq!(c.state, ReclaimState::Deallocated);
    assert!(!c.state.is_reusable());
    assert_eq!(child_reads(d), (None, Some(libc::SIGSEGV)), "deallocated memory must fault");
    let c = ring.try_cancel(id_f, f, len, Action::Free).unwrap();
    assert_eq!(c.state, ReclaimState::Freed);
    assert!(c.state.is_reusable());
    let (exited, signalled) = child_reads(f);
    assert!(signalled.is_none() && matches!(exited, Some(0) | Some(3)), "freed memory stays mapped");
    drop(ring);
    // `d` is already unmapped by the ring; only `f` is still ours.
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::unmap(f, len) }.unwrap();
}
