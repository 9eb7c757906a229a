//! Guard pages in wipe-on-fork memory: the child gets fresh zero memory there, which has lost the
//! kernel's guard markers; the child's map and kernel must still agree (the markers are put back).
//! One test in this binary, so no other test thread is running when it forks.

use vmspace::fork::{Forked, fork};
use vmspace::{AddressSpace, EntryFlags, Inherit, MapSpec, Options, Prot};

const PS: u64 = 4096;

/// Whether the kernel marks `page` as a guard (pagemap bit 58, `PM_GUARD_REGION`).
fn kernel_guard(page: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open("/proc/self/pagemap").unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, page / PS * 8).unwrap();
    u64::from_ne_bytes(b) & (1 << 58) != 0
}

/// Runs in the child: a failure message, or None.
fn child_checks(s: &AddressSpace, a: u64) -> Option<String> {
    let map_guard = s.lookup_entry(a + PS).is_some_and(|e| e.flags().contains(EntryFlags::GUARD));
    let prot_guards = s.options().guard_fallback || !vmspace::os::features().guard_install;
    if !prot_guards && map_guard != kernel_guard(a + PS) {
        return Some(format!("the child's map says guard {map_guard}, its kernel {}", kernel_guard(a + PS)));
    }
    let d = s.kernel_differences().ok()?;
    if !d.is_empty() {
        return Some(format!("child map and kernel disagree:\n{}", d.join("\n")));
    }
    // The rest of the wiped range reads as zero.
    // SAFETY: a page mapped read-write in the child's copy of the space.
    let v = unsafe { std::ptr::read_volatile(a as *const u64) };
    (v != 0).then(|| format!("wiped memory reads {v}"))
}

#[test]
fn guards_in_wipe_on_fork_memory_stay_guards_in_the_child() {
    if !vmspace::os::features().guard_install || !vmspace::os::features().wipe_on_fork {
        panic!("this test needs MADV_GUARD_INSTALL (Linux 6.13) and MADV_WIPEONFORK (4.14)");
    }
    for opts in [Options::default(), Options { guard_fallback: true, ..Options::default() }] {
        let s = AddressSpace::reserve_with(1 << 20, opts).unwrap();
        let a = s.map(4 * PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
        // SAFETY: the page is mapped read-write in the test's own space.
        unsafe { std::ptr::write_volatile(a as *mut u64, 5) };
        s.guard(a + PS..a + 2 * PS).unwrap();
        s.inherit(a..a + 4 * PS, Inherit::Zero).unwrap();
        // SAFETY: one test in this binary; the child only checks and exits.
        match unsafe { fork() }.unwrap() {
            Forked::Child => {
                let code = match child_checks(&s, a) {
                    None => 0,
                    Some(msg) => {
                        eprintln!("{msg}");
                        1
                    }
                };
                // SAFETY: ending the child without running the parent's atexit handlers or test harness.
                unsafe { libc::_exit(code) };
            }
            Forked::Parent(pid) => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "{opts:?}: the child failed"
                );
            }
        }
        assert!(s.kernel_differences().unwrap().is_empty());
    }
}
