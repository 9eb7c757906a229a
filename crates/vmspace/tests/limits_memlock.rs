//! `RLIMIT_MEMLOCK` as an unprivileged user (uid/gid 65534), in a child process of its own
//! (`limits_support`): a wire beyond the limit, and a sealed `map_at` under `wire_future` whose
//! implied lock fails, must leave nothing locked, nothing sealed and no reservation behind.
//!
//! A regression test of a recovery defect (fails on aa91570, before the recovery work): a sealed
//! `map_at` whose implied lock failed, after which the map was empty while the kernel held sealed
//! memory (the range could not be mapped again, nor the reservation dropped).

mod limits_support;

use limits_support::*;

#[test]
fn memlock_limit_as_an_unprivileged_user() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // The child must be able to execute the binary as nobody; if some directory above it or the file
    // itself is closed to others, run a copy from a directory that is not.
    let exe = this_exe();
    let copy = (root && !runnable_by_others(&exe)).then(|| TempCopy::of(&exe));
    let run = copy.as_ref().map_or(exe.as_path(), |c| c.exe.as_path());
    expect_done("memlock", run, |cmd| {
        if root {
            // std drops the supplementary groups (setgroups) before setuid when started by root.
            cmd.uid(NOBODY).gid(NOBODY).current_dir("/");
        }
        // SAFETY: the closure runs in the forked child before exec; it only calls setrlimit, which is
        // async-signal-safe, and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit { rlim_cur: MEMLOCK_LIMIT, rlim_max: MEMLOCK_LIMIT };
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    drop(copy);
}

/// A copy of the test binary in a directory of its own, mode 0755 both, removed when dropped.
struct TempCopy {
    dir: PathBuf,
    exe: PathBuf,
}

impl TempCopy {
    fn of(exe: &Path) -> TempCopy {
        let dir = std::env::temp_dir().join(format!("vmspace-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let to = dir.join("limits");
        std::fs::copy(exe, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempCopy { dir, exe: to }
    }
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The children's side of the tests above: does nothing unless run by `run_child`.
#[test]
fn child_entry() {
    limits_support::child_entry(&[("memlock", memlock)]);
}

/// Scenario 2: RLIMIT_MEMLOCK as an unprivileged user. The parent dropped to nobody and set the
/// limit before exec; the child checks it got there, then a wire beyond the limit (whole, and after
/// two pieces that fit) and a sealed `map_at` under `wire_future` whose lock fails must leave
/// nothing locked, nothing sealed, and no reservation behind.
fn memlock() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) }, 0);
    assert_eq!(lim.rlim_cur, MEMLOCK_LIMIT, "the parent should have set RLIMIT_MEMLOCK");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff in /proc/self/status");
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        cap_eff & (1 << CAP_IPC_LOCK) == 0,
        "the child (euid {euid}) still has CAP_IPC_LOCK (CapEff {cap_eff:#x}): RLIMIT_MEMLOCK does not bind it"
    );
    eprintln!(
        "limits child memlock: euid {euid}, RLIMIT_MEMLOCK {} KiB, CapEff {cap_eff:#x}",
        lim.rlim_cur >> 10
    );
    assert!(vmspace::os::features().mseal, "the kernel lacks mseal (6.10): the sealed map_at cannot run");
    let locked = || status_kib(&std::fs::read_to_string("/proc/self/status").unwrap(), "VmLck:");
    let mut maps = Maps::new(1 << 16);
    let s = AddressSpace::reserve(1 << 30).unwrap();
    let a = s.range().start;
    let limit_pages = MEMLOCK_LIMIT / PS;

    // A wire of twice the limit in one piece.
    s.map_at(a..a + 4 * limit_pages * PS, rw()).unwrap();
    for p in 0..4 * limit_pages {
        write(a + p * PS, tag(a + p * PS));
    }
    let got = s.wire(a..a + 2 * limit_pages * PS);
    eprintln!("limits child memlock: wire of twice the limit: {got:?}");
    let e = got.expect_err("a wire beyond RLIMIT_MEMLOCK should fail");
    assert_eq!(kernel_error(&e).map(|k| k.0), Some(libc::ENOMEM), "{e}");
    agree(&s, "wire beyond the limit");
    intact(&s, a..a + 4 * limit_pages * PS, "wire beyond the limit");
    assert_eq!(locked(), 0, "nothing should be locked");

    // The same over three entries: the first two fit the limit exactly and are locked, the third
    // fails; recovery must unlock the two.
    let b = a + 8 * limit_pages * PS;
    let half = limit_pages / 2;
    s.map_at(b..b + 4 * limit_pages * PS, rw()).unwrap();
    s.protect(b + half * PS..b + 2 * half * PS, Prot::READ).unwrap();
    for p in 0..4 * limit_pages {
        if !(half..2 * half).contains(&p) {
            write(b + p * PS, tag(b + p * PS));
        }
    }
    let got = s.wire(b..b + 4 * limit_pages * PS);
    eprintln!("limits child memlock: wire of three entries, the third beyond the limit: {got:?}");
    let e = got.expect_err("a wire beyond RLIMIT_MEMLOCK should fail");
    assert_eq!(kernel_error(&e).map(|k| k.0), Some(libc::ENOMEM), "{e}");
    agree(&s, "wire of three entries beyond the limit");
    assert_eq!(locked(), 0, "recovery should have unlocked the pieces that fit");
    // The whole limit is free again.
    s.wire(a..a + limit_pages * PS).expect("a wire of exactly the limit, with nothing else locked");
    agree(&s, "wire of exactly the limit");
    s.unwire(a..a + limit_pages * PS).unwrap();
    s.unmap(b..b + 4 * limit_pages * PS).unwrap();

    // wire_future, then a sealed map_at larger than the limit: the implied lock fails. Sealing is
    // irrevocable, so it must not have happened.
    let r = a + 16 * limit_pages * PS..a + 18 * limit_pages * PS;
    s.set_wire_future(true).unwrap();
    let got = s.map_at(r.clone(), rw().with_flags(EntryFlags::SEALED));
    eprintln!("limits child memlock: sealed map_at under wire_future beyond the limit: {got:?}");
    let e = got.expect_err("the lock implied by wire_future is beyond RLIMIT_MEMLOCK");
    assert_eq!(kernel_error(&e).map(|k| k.0), Some(libc::ENOMEM), "{e}");
    agree(&s, "sealed map_at under wire_future beyond the limit");
    assert!(s.lookup_entry(r.start).is_none(), "the failed map_at left an entry:\n{s}");
    let sealed = sealed_in_kernel(&outer(&s));
    assert!(sealed.is_empty(), "the kernel holds sealed memory {sealed:#x?} after the map_at failed:\n{s}");
    assert_eq!(locked(), 0, "nothing should be locked");
    s.set_wire_future(false).unwrap();
    s.map_at(r.clone(), rw()).expect("the range of the failed map_at can be mapped again");
    write(r.start, 7);
    assert_eq!(read(r.start), 7);
    agree(&s, "map_at again");
    let range = outer(&s);
    drop(s);
    let (n, bytes) = maps.over(&range);
    assert_eq!((n, bytes), (0, 0), "the dropped space left {n} VMAs, {bytes} bytes of {range:#x?}");
}
