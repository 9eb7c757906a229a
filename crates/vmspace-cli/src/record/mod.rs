//! `vmspace record -- CMD`: runs a command under ptrace and writes every memory call of every process
//! and thread it makes, with the result, and each process's maps at exec and at exit (see
//! [`trace`] for the format). No strace needed: a seccomp filter stops the command only at the
//! calls recorded (`calls::TRACED`), so everything else runs at full speed.
//!
//! Follows forks, vforks, threads and execs (`PTRACE_O_TRACE*`); passes every signal on; kills the
//! command if the recorder dies (`PTRACE_O_EXITKILL`).

pub mod calls;
mod procinfo;
mod ptrace;
pub mod trace;

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use ptrace::{CallInfo, Stop};
use trace::Event;

/// What a recording saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Calls recorded.
    pub calls: u64,
    /// Processes (thread groups) seen.
    pub processes: u64,
    /// Threads seen.
    pub threads: u64,
    /// Execs recorded.
    pub execs: u64,
    /// The command's exit status (128 + signal when killed).
    pub status: i32,
}

/// A call entered by a thread and not yet returned.
struct Pending {
    nr: u64,
    entered: u64,
    name: &'static str,
    args: [u64; 6],
    file: Option<trace::FileInfo>,
}

/// The recorder's view of the traced threads.
#[derive(Default)]
struct Tracees {
    /// Thread → its process.
    tgid: HashMap<i32, i32>,
    /// Process → its live threads.
    threads: HashMap<i32, HashSet<i32>>,
    /// Calls in flight.
    pending: HashMap<i32, Pending>,
    /// Processes whose exit maps were written since their last exec.
    exited: HashSet<i32>,
    /// Threads seen stopped at least once.
    started: HashSet<i32>,
    /// New threads whose first stop came before their creator's fork event: kept stopped until that
    /// event is written, so that a trace names a process's fork before anything the process does (on
    /// a loaded machine a short child could otherwise exec and exit before its fork is written).
    held: HashSet<i32>,
}

impl Tracees {
    fn join(&mut self, tid: i32, pid: i32) {
        self.tgid.insert(tid, pid);
        self.threads.entry(pid).or_default().insert(tid);
    }

    fn pid_of(&mut self, tid: i32) -> i32 {
        if let Some(p) = self.tgid.get(&tid) {
            return *p;
        }
        let pid = procinfo::tgid(tid).unwrap_or(tid);
        self.join(tid, pid);
        pid
    }

    fn leave(&mut self, tid: i32) {
        if let Some(pid) = self.tgid.remove(&tid)
            && let Some(t) = self.threads.get_mut(&pid)
        {
            t.remove(&tid);
            if t.is_empty() {
                self.threads.remove(&pid);
            }
        }
        self.pending.remove(&tid);
        self.started.remove(&tid);
        self.held.remove(&tid);
    }
}

/// Records `argv`, writing the trace to `out`.
pub fn record(argv: &[String], out: &mut dyn Write) -> io::Result<Summary> {
    let un = rustix::system::uname();
    let start = Event::Start {
        version: trace::VERSION,
        command: argv.to_vec(),
        kernel: un.release().to_string_lossy().into_owned(),
        machine: un.machine().to_string_lossy().into_owned(),
        page_size: rustix::param::page_size() as u64,
        max_map_count: procinfo::sysctl("/proc/sys/vm/max_map_count"),
        mmap_min_addr: procinfo::sysctl("/proc/sys/vm/mmap_min_addr"),
        overcommit_memory: procinfo::sysctl("/proc/sys/vm/overcommit_memory"),
        thp: procinfo::thp_mode(),
    };
    emit(out, &start)?;
    let first = ptrace::spawn(argv)?;
    let mut t = Tracees::default();
    t.join(first, first);
    t.started.insert(first);
    let mut sum = Summary { processes: 1, threads: 1, ..Summary::default() };
    let result = drive(first, &mut t, &mut sum, out);
    if result.is_err() {
        for tid in t.tgid.keys() {
            ptrace::kill(*tid);
        }
    }
    result?;
    emit(out, &Event::End { status: sum.status, calls: sum.calls })?;
    out.flush()?;
    Ok(sum)
}

/// Lets go the held threads whose creator is no longer traced (it died before its fork event stop),
/// so no thread waits for an event that will not come; the trace then shows them without a fork.
fn release_orphans(t: &mut Tracees) -> io::Result<()> {
    let held: Vec<i32> = t.held.iter().copied().collect();
    for tid in held {
        let tgid = procinfo::tgid(tid).unwrap_or(tid);
        // A thread is announced by a thread of its own process, a process by its parent.
        let creator = if tgid != tid { tgid } else { procinfo::ppid(tid).unwrap_or(0) };
        if !t.threads.contains_key(&creator) {
            t.held.remove(&tid);
            ptrace::resume(tid, 0)?;
        }
    }
    Ok(())
}

fn emit(out: &mut dyn Write, e: &Event) -> io::Result<()> {
    serde_json::to_writer(&mut *out, e).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

fn drive(first: i32, t: &mut Tracees, sum: &mut Summary, out: &mut dyn Write) -> io::Result<()> {
    let mut first_exec_seen = false;
    // One clock over every thread's call entries and returns.
    let mut clock: u64 = 0;
    ptrace::resume(first, 0)?;
    while let Some((tid, stop)) = ptrace::wait_any()? {
        match stop {
            Stop::Exited(code) | Stop::Killed(code) => {
                let killed = matches!(stop, Stop::Killed(_));
                if tid == first {
                    if !first_exec_seen && let Some(e) = ptrace::exec_failure() {
                        return Err(e);
                    }
                    sum.status = if killed { 128 + code } else { code };
                }
                t.leave(tid);
                if !t.held.is_empty() {
                    release_orphans(t)?;
                }
            }
            Stop::Signal(sig) => {
                // A new thread's first stop is its SIGSTOP: swallow it, and hold the thread until its
                // fork event is written if that has not happened yet.
                let fresh = t.started.insert(tid);
                if fresh && sig == libc::SIGSTOP && !t.tgid.contains_key(&tid) {
                    t.held.insert(tid);
                    continue;
                }
                if fresh {
                    t.pid_of(tid);
                }
                ptrace::resume(tid, if fresh && sig == libc::SIGSTOP { 0 } else { sig })?;
            }
            Stop::Seccomp => {
                t.started.insert(tid);
                let pid = t.pid_of(tid);
                match ptrace::call_info(tid, false)? {
                    CallInfo::Entry { nr, args } => {
                        let Some(name) = calls::name(nr) else {
                            ptrace::resume(tid, 0)?;
                            continue;
                        };
                        let file = match name {
                            "shmat" => procinfo::segment_info(args[0] as i32),
                            _ => calls::fd_argument(name, &args).and_then(|fd| procinfo::file_info(tid, fd)),
                        };
                        clock += 1;
                        if name == "exit" || name == "exit_group" {
                            // Never returns: written now, with the result 0.
                            sum.calls += 1;
                            let (entered, exited) = (clock, clock);
                            let e = Event::Call {
                                pid,
                                tid,
                                name: name.into(),
                                args,
                                ret: 0,
                                file: None,
                                entered,
                                exited,
                            };
                            emit(out, &e)?;
                            if name == "exit_group" {
                                snapshot_exit(t, pid, tid, out)?;
                            }
                            ptrace::resume(tid, 0)?;
                        } else {
                            t.pending.insert(tid, Pending { nr, entered: clock, name, args, file });
                            ptrace::resume_to_exit(tid)?;
                        }
                    }
                    _ => ptrace::resume(tid, 0)?,
                }
            }
            Stop::SyscallExit => {
                let pid = t.pid_of(tid);
                if let Some(p) = t.pending.remove(&tid) {
                    let ret = match ptrace::call_info(tid, true)? {
                        CallInfo::Exit { ret } => ret,
                        // Killed while stopped: the call's result is lost with the thread.
                        CallInfo::Gone => continue,
                        _ => {
                            return Err(io::Error::other(format!(
                                "no result for call {} of thread {tid}",
                                p.nr
                            )));
                        }
                    };
                    sum.calls += 1;
                    clock += 1;
                    let (entered, exited) = (p.entered, clock);
                    let name = p.name.into();
                    emit(
                        out,
                        &Event::Call { pid, tid, name, args: p.args, ret, file: p.file, entered, exited },
                    )?;
                }
                ptrace::resume(tid, 0)?;
            }
            Stop::Forked { child, event } => {
                let pid = t.pid_of(tid);
                let flags = t.pending.get(&tid).map(|p| clone_flags(tid, p, event)).unwrap_or(0);
                let thread = flags & libc::CLONE_THREAD as u64 != 0;
                t.join(child, if thread { pid } else { child });
                if thread {
                    sum.threads += 1;
                } else {
                    sum.processes += 1;
                    sum.threads += 1;
                    t.exited.remove(&child);
                }
                emit(out, &Event::Fork { pid, tid, child, flags })?;
                if t.held.remove(&child) {
                    ptrace::resume(child, 0)?;
                }
                ptrace::resume(tid, 0)?;
            }
            Stop::Exec { former } => {
                first_exec_seen = true;
                let pid = t.pid_of(former);
                // Every other thread of the process is gone; the exec'ing one now has the leader's id.
                if let Some(others) = t.threads.remove(&pid) {
                    for o in others {
                        t.tgid.remove(&o);
                        if o != former {
                            t.pending.remove(&o);
                        }
                    }
                }
                if let Some(p) = t.pending.remove(&former) {
                    t.pending.insert(tid, p);
                }
                t.join(tid, pid);
                t.started.insert(tid);
                t.exited.remove(&pid);
                sum.execs += 1;
                let state = procinfo::exec_state(pid, tid, former)?;
                emit(out, &Event::Exec(Box::new(state)))?;
                // On to the execve's own return (PTRACE_SYSCALL was asked at its entry).
                ptrace::resume_to_exit(tid)?;
            }
            Stop::Exiting => {
                let pid = t.pid_of(tid);
                let last = t.threads.get(&pid).is_none_or(|s| s.len() <= 1);
                if last {
                    snapshot_exit(t, pid, tid, out)?;
                }
                ptrace::resume(tid, 0)?;
            }
        }
    }
    Ok(())
}

/// Writes process `pid`'s maps before it exits, once per address space.
fn snapshot_exit(t: &mut Tracees, pid: i32, tid: i32, out: &mut dyn Write) -> io::Result<()> {
    if !t.exited.insert(pid) {
        return Ok(());
    }
    // A process killed meanwhile has no maps left to read: nothing to write.
    if let Ok(maps) = procinfo::maps(tid) {
        emit(out, &Event::Exit { pid, tid, maps })?;
    }
    Ok(())
}

/// The clone flags of the call that made a new thread or process.
fn clone_flags(tid: i32, p: &Pending, event: i32) -> u64 {
    const SIGCHLD: u64 = 17;
    match p.name {
        "fork" => SIGCHLD,
        "vfork" => (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | SIGCHLD,
        "clone" => p.args[0],
        // struct clone_args: flags first, exit_signal fourth.
        "clone3" => ptrace::read_memory(tid, p.args[0], 32)
            .map(|b| {
                let flags = u64::from_ne_bytes(b[..8].try_into().unwrap());
                let exit_signal = u64::from_ne_bytes(b[24..32].try_into().unwrap());
                flags | (exit_signal & 0xff)
            })
            .unwrap_or(0),
        _ => match event {
            libc::PTRACE_EVENT_VFORK => (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | SIGCHLD,
            libc::PTRACE_EVENT_FORK => SIGCHLD,
            _ => 0,
        },
    }
}
