//! Fork in real child processes: share sees the parent's later writes, copy sees a snapshot, none is
//! unmapped, zero reads zeros, wiring is not inherited, and the child's map agrees with its kernel.
//! One test in this binary, so no other test thread is running when it forks.

use vmspace::fork::{Forked, fork};
use vmspace::{AddressSpace, Backing, Inherit, MapSpec, Prot};

const PS: u64 = 4096;

fn write(addr: u64, v: u64) {
    // SAFETY: only pages mapped read-write in the test's own space.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: only pages mapped readable in the test's own space.
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

/// Runs in the child: returns a failure message, or None.
fn child_checks(
    s: &AddressSpace,
    share: u64,
    copy: u64,
    none: u64,
    zero: u64,
    wired: u64,
    pipe: &std::fs::File,
) -> Option<String> {
    use std::io::Read;
    // Wait until the parent has written its later values.
    let mut b = [0u8; 1];
    (&*pipe).read_exact(&mut b).ok()?;
    if read(share) != 2 {
        return Some(format!("share: child sees {} instead of the parent's later 2", read(share)));
    }
    if read(copy) != 1 {
        return Some(format!("copy: child sees {} instead of the snapshot 1", read(copy)));
    }
    if read(zero) != 0 {
        return Some(format!("zero: child reads {}", read(zero)));
    }
    if s.lookup_entry(none).is_some() {
        return Some("none: the child's map still has the range".into());
    }
    let w = s.lookup_entry(wired)?;
    if w.wired_count() != 0 {
        return Some("wiring was inherited by the map".into());
    }
    let d = s.kernel_differences().ok()?;
    if !d.is_empty() {
        return Some(format!("child map and kernel disagree:\n{}", d.join("\n")));
    }
    // The none range is reservation again in the child, and can be mapped.
    s.map_at(none..none + PS, MapSpec::new(Prot::RW, Prot::ALL)).ok()?;
    write(none, 9);
    if read(none) != 9 || !s.kernel_differences().ok()?.is_empty() {
        return Some("remapping the none range failed".into());
    }
    None
}

#[test]
fn fork_follows_inheritance_in_real_children() {
    let s = AddressSpace::reserve(1 << 22).unwrap();
    let rw = || MapSpec::new(Prot::RW, Prot::ALL);
    let share = s.map(PS, rw().with_object(Backing::shared_anonymous(PS).unwrap(), 0)).unwrap();
    let copy = s.map(PS, rw()).unwrap();
    let none = s.map(PS, rw().with_inherit(Inherit::None).with_flags(vmspace::EntryFlags::EMPTY)).unwrap();
    let zero = s.map(PS, rw().with_inherit(Inherit::Zero)).unwrap();
    let wired = s.map(PS, MapSpec::new(Prot::READ, Prot::ALL)).unwrap();
    s.wire(wired..wired + PS).unwrap();
    for a in [share, copy, none, zero] {
        write(a, 1);
    }
    let (rx, tx) = std::io::pipe().unwrap();
    let rx: std::fs::File = std::os::fd::OwnedFd::from(rx).into();
    // SAFETY: this binary has a single test; the child only reads memory, talks through the pipe and
    // leaves with _exit.
    match unsafe { fork() }.unwrap() {
        Forked::Child => {
            let code = match child_checks(&s, share, copy, none, zero, wired, &rx) {
                None => 0,
                Some(msg) => {
                    eprintln!("child: {msg}");
                    1
                }
            };
            // SAFETY: leaving the child without running the parent's destructors or test harness.
            unsafe { libc::_exit(code) };
        }
        Forked::Parent(pid) => {
            use std::io::Write;
            write(share, 2);
            write(copy, 2);
            (&tx).write_all(b"x").unwrap();
            let mut status = 0;
            // SAFETY: waiting for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child failed: status {status:#x}"
            );
            // The parent is untouched, and its copies are now marked copy-on-write.
            assert_eq!(read(none), 1);
            assert_eq!(read(copy), 2);
            assert!(s.lookup_entry(copy).unwrap().flags().contains(vmspace::EntryFlags::COW));
            assert_eq!(s.lookup_entry(wired).unwrap().wired_count(), 1);
            assert!(s.kernel_differences().unwrap().is_empty());
        }
    }
}
