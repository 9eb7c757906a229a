//! The recorder's system calls: starting a traced command behind a seccomp filter, waiting for its
//! stops, reading a stopped thread's system call (`PTRACE_GET_SYSCALL_INFO`, Linux 5.3+, or the
//! registers on x86-64 before that) and resuming it. The only place in the recorder that calls the
//! kernel.
//!
//! The filter makes the kernel stop the tracee only at the calls the recorder wants
//! (`SECCOMP_RET_TRACE`, as `strace --seccomp-bpf` does): every other call runs at full speed.

use std::ffi::CString;
use std::io;

use super::calls::TRACED;

/// A stopped thread's call at a seccomp stop (entry) or a syscall-exit stop (its result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallInfo {
    /// Entering call `nr` with its six arguments.
    Entry { nr: u64, args: [u64; 6] },
    /// Returning `ret` (negative errno on failure, as the raw call returns).
    Exit { ret: i64 },
    /// Neither (a stop the kernel did not describe).
    Other,
    /// The thread is gone (killed while stopped: another thread's `exit_group` or `execve`); its
    /// exit status follows.
    Gone,
}

/// `struct ptrace_syscall_info` (include/uapi/linux/ptrace.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct SyscallInfo {
    op: u8,
    _pad: [u8; 3],
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    /// entry/seccomp: nr, args[6], (ret_data); exit: rval, is_error.
    data: [u64; 8],
}

const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
const OP_ENTRY: u8 = 1;
const OP_EXIT: u8 = 2;
const OP_SECCOMP: u8 = 3;

/// What a `waitpid` reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The thread exited with a status.
    Exited(i32),
    /// The thread was killed by a signal.
    Killed(i32),
    /// A seccomp stop: the thread is entering a traced call.
    Seccomp,
    /// A syscall-exit stop (after `PTRACE_SYSCALL` from a seccomp stop).
    SyscallExit,
    /// `PTRACE_EVENT_FORK`, `VFORK` or `CLONE`: the new thread's id.
    Forked { child: i32, event: i32 },
    /// `PTRACE_EVENT_EXEC`: the thread id the exec'ing thread had before.
    Exec { former: i32 },
    /// `PTRACE_EVENT_EXIT`: the thread is about to exit.
    Exiting,
    /// A signal for the thread (to be passed on), or the first SIGSTOP of a new thread.
    Signal(i32),
}

/// Starts `argv` traced: forked, `PTRACE_TRACEME`, the seccomp filter installed, stopped with SIGSTOP
/// before `execvp`. Returns its pid, stopped, with the options set and not yet resumed.
pub fn spawn(argv: &[String]) -> io::Result<i32> {
    if argv.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no command to record"));
    }
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an argument holds a NUL byte"))?;
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let filter = filter();
    let prog =
        libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    // The child reports a failed exec through this pipe (closed on a successful exec).
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the child calls only async-signal-safe functions on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        close_pair(fds);
        return Err(e);
    }
    if pid == 0 {
        // SAFETY: in the child, before exec: raw calls on prepared memory only.
        unsafe {
            libc::close(fds[0]);
            let fail = |step: i32| -> ! {
                let e = *libc::__errno_location();
                let msg = [step, e];
                libc::write(fds[1], msg.as_ptr().cast(), std::mem::size_of_val(&msg));
                libc::_exit(127)
            };
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                fail(1);
            }
            if libc::geteuid() != 0 && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                fail(2);
            }
            if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog)
                != 0
            {
                fail(3);
            }
            libc::raise(libc::SIGSTOP);
            libc::execvp(ptrs[0], ptrs.as_ptr());
            fail(4);
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let status = wait_for(pid)?;
    if !libc::WIFSTOPPED(status) {
        close_pair([fds[0], -1]);
        return Err(child_error(fds[0]).unwrap_or_else(|| io::Error::other("the command did not start")));
    }
    let opts = libc::PTRACE_O_TRACESYSGOOD
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_TRACEEXIT
        | libc::PTRACE_O_TRACESECCOMP
        | libc::PTRACE_O_EXITKILL;
    // SAFETY: `pid` is our stopped tracee.
    if unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts as libc::c_long) } != 0 {
        let e = io::Error::last_os_error();
        kill(pid);
        return Err(e);
    }
    // The exec's outcome is known once the child runs on: keep the read end to look at it then.
    EXEC_PIPE.with(|p| p.set(fds[0]));
    Ok(pid)
}

thread_local! {
    static EXEC_PIPE: std::cell::Cell<i32> = const { std::cell::Cell::new(-1) };
}

/// After the first exec event (success) or the child's exit (failure): why the exec failed, if it did.
pub fn exec_failure() -> Option<io::Error> {
    let fd = EXEC_PIPE.with(|p| p.replace(-1));
    if fd < 0 {
        return None;
    }
    let e = child_error(fd);
    // SAFETY: our read end, not used again.
    unsafe { libc::close(fd) };
    e
}

fn child_error(fd: i32) -> Option<io::Error> {
    let mut msg = [0i32; 2];
    // SAFETY: reading into a local buffer of that size.
    let n = unsafe { libc::read(fd, msg.as_mut_ptr().cast(), std::mem::size_of_val(&msg)) };
    if n != std::mem::size_of_val(&msg) as isize {
        return None;
    }
    let what = match msg[0] {
        1 => "PTRACE_TRACEME",
        2 => "PR_SET_NO_NEW_PRIVS",
        3 => "installing the seccomp filter",
        _ => "exec",
    };
    let e = io::Error::from_raw_os_error(msg[1]);
    Some(io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn close_pair(fds: [i32; 2]) {
    for fd in fds {
        if fd >= 0 {
            // SAFETY: a descriptor of ours, not used again.
            unsafe { libc::close(fd) };
        }
    }
}

fn wait_for(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r >= 0 {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits for the next stop of any tracee: `(tid, what)`; `None` when no tracee is left.
pub fn wait_any() -> io::Result<Option<(i32, Stop)>> {
    let mut status = 0;
    let tid = loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if r >= 0 {
            break r;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(None),
            _ => return Err(e),
        }
    };
    let stop = if libc::WIFEXITED(status) {
        Stop::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Stop::Killed(libc::WTERMSIG(status))
    } else {
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        match event {
            0 if sig == libc::SIGTRAP | 0x80 => Stop::SyscallExit,
            0 => Stop::Signal(sig),
            libc::PTRACE_EVENT_SECCOMP => Stop::Seccomp,
            libc::PTRACE_EVENT_EXEC => Stop::Exec { former: event_msg(tid) as i32 },
            libc::PTRACE_EVENT_EXIT => Stop::Exiting,
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                Stop::Forked { child: event_msg(tid) as i32, event }
            }
            // PTRACE_EVENT_STOP and anything newer: nothing to pass on.
            _ => Stop::Signal(0),
        }
    };
    Ok(Some((tid, stop)))
}

fn event_msg(tid: i32) -> u64 {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: `tid` is stopped at a ptrace event; `msg` is a valid out-pointer.
    unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, tid, 0, &mut msg as *mut libc::c_ulong) };
    msg as u64
}

/// Whether `PTRACE_GET_SYSCALL_INFO` is to be used: Linux 5.3+, unless `VMSPACE_RECORD_REGS=1` asks
/// for the register fallback (which tests use to check it).
fn use_syscall_info() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| std::env::var_os("VMSPACE_RECORD_REGS").is_none_or(|v| v != "1"))
}

/// The call of a thread stopped at a seccomp stop or a syscall-exit stop.
pub fn call_info(tid: i32, at_exit: bool) -> io::Result<CallInfo> {
    if use_syscall_info() {
        let mut info = SyscallInfo {
            op: 0,
            _pad: [0; 3],
            arch: 0,
            instruction_pointer: 0,
            stack_pointer: 0,
            data: [0; 8],
        };
        let size = std::mem::size_of::<SyscallInfo>();
        // SAFETY: `tid` is a stopped tracee; the kernel writes at most `size` bytes into `info`.
        let r = unsafe { libc::ptrace(PTRACE_GET_SYSCALL_INFO, tid, size, &mut info as *mut SyscallInfo) };
        if r > 0 {
            return Ok(match info.op {
                OP_ENTRY | OP_SECCOMP => {
                    let d = info.data;
                    CallInfo::Entry { nr: d[0], args: [d[1], d[2], d[3], d[4], d[5], d[6]] }
                }
                OP_EXIT => CallInfo::Exit { ret: info.data[0] as i64 },
                _ => CallInfo::Other,
            });
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ESRCH) => return Ok(CallInfo::Gone),
            Some(libc::EIO | libc::EINVAL) => {}
            _ => return Err(e),
        }
    }
    match regs_call_info(tid, at_exit) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(CallInfo::Gone),
        r => r,
    }
}

/// Before Linux 5.3: the call from the registers (x86-64 only).
#[cfg(target_arch = "x86_64")]
fn regs_call_info(tid: i32, at_exit: bool) -> io::Result<CallInfo> {
    // SAFETY: all-zero is a valid `user_regs_struct` (plain integers).
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: `tid` is a stopped tracee; `regs` is a valid out-pointer of the right type.
    if unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs as *mut libc::user_regs_struct) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if at_exit {
        CallInfo::Exit { ret: regs.rax as i64 }
    } else {
        CallInfo::Entry {
            nr: regs.orig_rax,
            args: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
        }
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn regs_call_info(_tid: i32, _at_exit: bool) -> io::Result<CallInfo> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "recording needs PTRACE_GET_SYSCALL_INFO (Linux 5.3) here",
    ))
}

/// Resumes `tid` to its next traced call (`PTRACE_CONT`), delivering `sig` (0 for none).
pub fn resume(tid: i32, sig: i32) -> io::Result<()> {
    restart(libc::PTRACE_CONT, tid, sig)
}

/// Resumes `tid` to the exit of the call it is entering (`PTRACE_SYSCALL`).
pub fn resume_to_exit(tid: i32) -> io::Result<()> {
    restart(libc::PTRACE_SYSCALL, tid, 0)
}

fn restart(req: libc::c_uint, tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: `tid` is a stopped tracee of ours.
    if unsafe { libc::ptrace(req, tid, 0, sig as libc::c_long) } != 0 {
        let e = io::Error::last_os_error();
        // A tracee killed meanwhile (SIGKILL from elsewhere, exit_group of another thread) is gone.
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

/// Kills a tracee (on an error of the recorder's own).
pub fn kill(pid: i32) {
    // SAFETY: sending a signal to a process of ours.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Reads `len` bytes of a stopped tracee's memory at `addr` (`/proc/TID/mem`).
pub fn read_memory(tid: i32, addr: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(format!("/proc/{tid}/mem"))?;
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, addr)?;
    Ok(buf)
}

/// The seccomp program: `SECCOMP_RET_TRACE` for the traced calls of this architecture, allow the rest.
fn filter() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    let ins = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let n = TRACED.len();
    let mut p = Vec::with_capacity(n + 5);
    // seccomp_data: nr at offset 0, arch at 4. Another architecture's calls (i386 on x86-64) run
    // untraced.
    p.push(ins(LD_W_ABS, 0, 0, 4));
    p.push(ins(JEQ_K, 0, (n + 1) as u8, ARCH));
    p.push(ins(LD_W_ABS, 0, 0, 0));
    for (i, (nr, _)) in TRACED.iter().enumerate() {
        // Equal: jump to the RET_TRACE after the list; else try the next.
        p.push(ins(JEQ_K, (n - i) as u8, 0, *nr as u32));
    }
    p.push(ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    p.push(ins(RET_K, 0, 0, libc::SECCOMP_RET_TRACE));
    p
}
