//! `fork()` while another thread is inside a once-only setup; the harness and its rules for a
//! child: `fork_load_support`.

mod fork_load_support;

use fork_load_support::*;

// ---- 4. fork while another thread is inside a once-only setup -----------------------------------

/// What a thread does first in [`fork_during_a_first_time_setup`], and the system call of that
/// setup at which it is held (`seccomp` user notification) while another thread forks.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// The first `map` with `Inherit::Zero` probes the kernel's features (`os::features`, outside
    /// any lock); held at the probe's `madvise(MADV_GUARD_INSTALL)`.
    Features,
    /// The first `fault::install` installs the handler (a `Once`); held at its first `sigaction`
    /// (the query of SIGSEGV's action).
    Install,
}

/// `MADV_GUARD_INSTALL` (Linux 6.13; older kernels refuse it, but the probe still makes the call).
const MADV_GUARD_INSTALL: u32 = 102;

/// The offset of the low 32 bits of argument `i` in `struct seccomp_data`.
fn arg_lo(i: u32) -> u32 {
    let at = 16 + 8 * i;
    if cfg!(target_endian = "little") { at } else { at + 4 }
}

/// The offset of the high 32 bits of argument `i` in `struct seccomp_data`.
fn arg_hi(i: u32) -> u32 {
    arg_lo(i) ^ 4
}

/// Installs, on the calling thread only, a seccomp filter that holds the system call `nr` whose
/// 32-bit argument words at the given offsets have the given values until a supervisor answers
/// (`SECCOMP_RET_USER_NOTIF`); every other call is allowed. Returns the listener.
fn hold_call(nr: i64, words: &[(u32, u32)]) -> OwnedFd {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jeq = |k: u32, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: 0,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    // ld nr; jeq nr; (ld word; jeq value)*; ret notify; ret allow — every mismatch jumps to allow.
    let n = words.len();
    let mut prog = vec![stmt(ld, 0), jeq(nr as u32, (2 * n + 1) as u8)];
    for (i, &(off, val)) in words.iter().enumerate() {
        prog.push(stmt(ld, off));
        prog.push(jeq(val, (2 * (n - i) - 1) as u8));
    }
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_USER_NOTIF));
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    // SAFETY: no_new_privs for this thread (required for an unprivileged filter), then a filter
    // program that lives across the call; the kernel copies it.
    let fd = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    };
    assert!(fd >= 0, "seccomp(NEW_LISTENER): {}", std::io::Error::last_os_error());
    // SAFETY: the listener was just created and is owned here alone.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Waits up to `bound` for a held call on `listener`; its id.
fn held_call(listener: &OwnedFd, bound: Duration) -> Option<u64> {
    let mut p = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: poll(2) on one valid pollfd.
    let ready = unsafe { libc::poll(&mut p, 1, bound.as_millis() as i32) };
    if ready != 1 || p.revents & libc::POLLIN == 0 {
        return None;
    }
    // SAFETY: an all-zero seccomp_notif is what NOTIF_RECV expects; the ioctl fills it.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: NOTIF_RECV on our listener into a seccomp_notif of the kernel's layout.
    let r = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
    (r == 0).then_some(req.id)
}

/// Lets the held call `id` go on as if it had not been held.
fn release_call(listener: &OwnedFd, id: u64) {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: NOTIF_SEND on our listener of a response to a call it reported.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
}

/// In a process of its own: a thread is held inside vmspace's once-only setup `setup` (its first
/// call of the kind) when the main thread forks; the child must not wait for that setup, which no
/// thread of it will finish. The held thread is let go once `fork()` has returned in the parent, or
/// after a second (should `fork()` itself wait for the setup to finish, which is a fix too).
fn fork_during_a_first_time_setup(k: Knobs, setup: Setup) {
    let s = Arc::new(AddressSpace::reserve(16 << 20).unwrap());
    let (tx, rx) = mpsc::channel::<OwnedFd>();
    let s2 = Arc::clone(&s);
    let t = std::thread::spawn(move || {
        let listener = match setup {
            Setup::Features => hold_call(libc::SYS_madvise, &[(arg_lo(2), MADV_GUARD_INSTALL)]),
            Setup::Install => hold_call(
                libc::SYS_rt_sigaction,
                &[(arg_lo(0), libc::SIGSEGV as u32), (arg_lo(1), 0), (arg_hi(1), 0)],
            ),
        };
        tx.send(listener).unwrap();
        match setup {
            Setup::Features => {
                s2.map(PS, rw().with_inherit(Inherit::Zero)).map(drop).map_err(|e| e.to_string())
            }
            Setup::Install => {
                vmspace::fault::install();
                Ok(())
            }
        }
    });
    let listener = rx.recv().unwrap();
    let id =
        held_call(&listener, k.bound).unwrap_or_else(|| panic!("{setup:?}: the setup's call was never held"));
    // The main thread lets the held call go once fork() has returned here, or after 1 s.
    let (forked_tx, forked_rx) = mpsc::channel::<()>();
    let releaser = std::thread::spawn(move || {
        let _ = forked_rx.recv_timeout(Duration::from_secs(1));
        release_call(&listener, id);
        listener
    });
    let sp = Arc::clone(&s);
    let out = {
        let (rx_pipe, tx_pipe) = pipe();
        // SAFETY: as in `fork_child`: the child runs vmspace's calls and raw system calls only.
        match unsafe { fork() } {
            Ok(Forked::Child) => child_main(&tx_pipe, || {
                match setup {
                    Setup::Features => use_space(&sp, "space")?,
                    Setup::Install => grow_a_stack(&sp, "space")?,
                }
                Ok(String::new())
            }),
            Ok(Forked::Parent(pid)) => {
                let _ = forked_tx.send(());
                drop(tx_pipe);
                wait_bounded(pid, Knobs { bound: k.bound / 4, ..k }, &rx_pipe)
            }
            Err(e) => Outcome::Failed(format!("fork() refused: {e}")),
        }
    };
    drop(releaser.join().unwrap());
    t.join().unwrap().unwrap();
    assert!(matches!(out, Outcome::Passed(_)), "{setup:?}: the child forked during the setup: {out}");
}

/// A thread inside one of vmspace's once-only setups (the kernel feature probe of its first
/// `map(Inherit::Zero)`; the first `fault::install`) when another thread forks: the child inherits
/// the setup half-done, as it inherits a lock half-held, and must not wait for it. The setup thread
/// is held at one of the setup's system calls with a seccomp user notification, so the fork lands
/// inside it every time. Each case runs in a fresh process of this binary (the setups are once per
/// process).
#[test]
fn fork_during_a_first_time_setup_in_another_thread() {
    let _serial = serial();
    let k = knobs();
    let mut failures = Vec::new();
    for which in ["setup-features", "setup-install"] {
        let (ok, err) = subprocess(which, k.bound + Duration::from_secs(10));
        if !ok {
            failures.push(err);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Where this file's scenarios run, in a process of their own (see [`subprocess`]): a stack that
/// cannot grow kills its process with SIGSEGV, which would take every test of this binary with it.
/// Not a test: ignored, and a no-op unless [`subprocess`] started it.
#[test]
#[ignore = "the entry of this file's subprocesses, started by the tests"]
fn subprocess_entry() {
    fork_load_support::subprocess_entry(&[
        ("setup-features", setup_features),
        ("setup-install", setup_install),
    ]);
}

fn setup_features(k: Knobs) {
    fork_during_a_first_time_setup(k, Setup::Features);
}

fn setup_install(k: Knobs) {
    fork_during_a_first_time_setup(k, Setup::Install);
}
