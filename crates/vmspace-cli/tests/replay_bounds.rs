//! The replay's memory follows the live address spaces, not the trace's history: a space whose last
//! pid left is freed at once (keeping a summary), except the one `--against` will compare; and a line
//! is read a buffer at a time up to a limit, past which the replay stops with exit code 2 before the
//! rest of the line is read. What the report says must not change for it.

mod common;

use std::io::{BufReader, Read, Write};
use std::process::Stdio;

use common::*;
use vmspace_cli::replay::model::{Origin, Replayer};
use vmspace_cli::replay::{self, MAX_LINE, Options};

const FORK: &str = "clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f0000000a10)";
const THREAD: &str = "clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, child_tid=0x7f1d51d88990, exit_signal=0}, 88)";

fn mmap(pid: u32, addr: u64, len: u64, prot: &str) -> String {
    format!("{pid}  mmap({addr:#x}, {len}, {prot}, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {addr:#x}")
}

/// Parent 100 with 200 separate mappings, then `forks` children (pids 1000..1050, reused) that each
/// map 64 KiB, unmap one of the parent's pages and exit; a thread of the parent comes and goes now and
/// then.
fn churn(forks: u32) -> Vec<String> {
    let mut t = Vec::new();
    for i in 0..200u64 {
        t.push(mmap(100, 0x7f00_0000_0000 + i * 0x10000, 8192, "PROT_READ|PROT_WRITE"));
    }
    for k in 0..forks {
        let c = 1000 + k % 50;
        t.push(format!("100  {FORK} = {c}"));
        t.push(mmap(c, 0x7e00_0000_0000, 65536, "PROT_READ"));
        t.push(format!("{c}  munmap(0x7f0000000000, 4096) = 0"));
        t.push(format!("{c}  exit_group(0) = ?"));
        t.push(format!("{c}  +++ exited with 0 +++"));
        if k % 100 == 0 {
            t.push(format!("100  {THREAD} = 5000"));
            t.push(mmap(5000, 0x7d00_0000_0000, 4096, "PROT_READ"));
            t.push("5000  +++ exited with 0 +++".into());
        }
    }
    t
}

/// A replayer fed `t`, line by line (every line must be accepted).
fn replay_lines<S: AsRef<str>>(t: &[S]) -> Replayer {
    let mut rep = Replayer::new();
    for (i, l) in t.iter().enumerate() {
        let l = l.as_ref();
        rep.feed(i as u64 + 1, l).unwrap_or_else(|e| panic!("{l}: {e:?}"));
    }
    rep
}

#[test]
fn fork_and_exit_churn_holds_only_the_live_spaces() {
    let mut rep = Replayer::new();
    let mut most = 0;
    for (i, l) in churn(2000).iter().enumerate() {
        rep.feed(i as u64 + 1, l).unwrap_or_else(|e| panic!("{l}: {e:?}"));
        most = most.max(rep.held());
    }
    rep.finish();
    // The parent and at most one child at a time: 2,000 forks must not mean 2,000 maps.
    assert!(most <= 2, "held {most} maps at once");
    assert_eq!(rep.spaces.len(), 2001);
    assert_eq!(rep.held(), 1, "only the parent is still live");
    assert!(!rep.spaces[0].freed);
    // What the report shows of each dead child is what it ended with.
    let parent_entries = rep.spaces[0].entries();
    assert_eq!(parent_entries, 201, "200 mappings and the thread's");
    for s in &rep.spaces[1..] {
        assert!(s.freed && s.map.is_empty() && s.known.is_empty());
        assert!(matches!(s.origin, Origin::Fork { from: 0 }));
        assert_eq!(s.pids.len(), 1);
        // The parent's mappings (its thread's one or not, by when it forked) and the child's own, one
        // page of the first unmapped.
        assert!(s.entries() == 201 || s.entries() == 202, "{}", s.entries());
        assert_eq!(s.mapped() % 4096, 0);
        assert!(s.touched() >= 200 * 8192 + 65536, "{}", s.touched());
        s.map.check_invariants().unwrap();
    }
    // The thread churn: one space, the parent and 20 threads, all sharing tid 5000.
    assert_eq!(rep.spaces[0].pids, vec![100, 5000]);
}

#[test]
fn a_space_keeps_only_its_first_pids() {
    let mut t = vec![mmap(100, 0x7f00_0000_0000, 4096, "PROT_READ")];
    for k in 0..1000 {
        let tid = 2000 + k;
        t.push(format!("100  {THREAD} = {tid}"));
        t.push(format!("{tid}  +++ exited with 0 +++"));
    }
    let rep = replay_lines(&t);
    let s = &rep.spaces[0];
    assert_eq!(s.pid_count, 1001);
    assert_eq!(s.pids.len(), vmspace_cli::replay::model::MAX_PIDS);
    assert_eq!(s.members, 1);
}

/// Replays `lines` through the command with `--against` a snapshot of `maps` lines; returns the exit
/// code and the output.
fn against(name: &str, lines: &[String], maps: &str, pid: Option<u32>) -> (i32, String, String) {
    let dir = tmpdir(name);
    let t = dir.join("t.trace");
    std::fs::write(&t, lines.join("\n") + "\n").unwrap();
    let m = dir.join("maps");
    std::fs::write(&m, maps).unwrap();
    let mut c = bin();
    c.args(["replay", t.to_str().unwrap(), "--against", m.to_str().unwrap()]);
    if let Some(p) = pid {
        c.args(["--pid", &p.to_string()]);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `/proc/PID/maps` lines of a churn process: the thread's page, a child's 64 KiB, the parent's
/// 200 mappings (the first from `first`).
fn churn_maps(child: bool, first: u64) -> String {
    let mut m = String::from("7d0000000000-7d0000001000 r--p 00000000 00:00 0\n");
    if child {
        m.push_str("7e0000000000-7e0000010000 r--p 00000000 00:00 0\n");
    }
    for i in 0..200u64 {
        let a = 0x7f00_0000_0000 + i * 0x10000;
        let from = if i == 0 { first } else { a };
        m.push_str(&format!("{from:x}-{:x} rw-p 00000000 00:00 0\n", a + 8192));
    }
    m
}

#[test]
fn against_an_exited_pid_after_many_forks_and_a_reused_pid() {
    // Child 1007 of the churn exits, and its number is reused 40 times: --pid 1007 is its last use,
    // which unmapped the parent's first page.
    let lines = churn(2000);
    let (code, out, err) = against("bounds-reused", &lines, &churn_maps(true, 0x7f00_0000_1000), Some(1007));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no difference"), "{out}");
    // That page is compared too: a snapshot with it mapped differs.
    let (code, out, _) =
        against("bounds-reused-diff", &lines, &churn_maps(true, 0x7f00_0000_0000), Some(1007));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 differences") && out.contains("trace unmapped, snapshot rw-p"), "{out}");
    // The parent, exited at the very end, with its first page.
    let mut lines = lines;
    lines.push("100  exit_group(0) = ?".into());
    lines.push("100  +++ exited with 0 +++".into());
    let (code, out, err) = against("bounds-parent", &lines, &churn_maps(false, 0x7f00_0000_0000), Some(100));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no difference"), "{out}");
}

#[test]
fn against_the_last_exec_after_it_exited_and_others_forked() {
    let mut t = vec![mmap(100, 0x7f00_0000_0000, 8192, "PROT_READ")];
    t.push(format!("100  {FORK} = 300"));
    t.push("300  execve(\"/bin/x\", [\"x\"], 0x7ffd /* 1 var */) = 0".into());
    t.push(mmap(300, 0x7c00_0000_0000, 12288, "PROT_READ|PROT_WRITE"));
    t.push("300  mprotect(0x7c0000001000, 4096, PROT_NONE) = 0".into());
    t.push("300  +++ exited with 0 +++".into());
    for k in 0..500 {
        let c = 400 + k % 7;
        t.push(format!("100  {FORK} = {c}"));
        t.push(mmap(c, 0x7c00_0000_0000, 65536, "PROT_READ"));
        t.push(format!("{c}  +++ exited with 0 +++"));
    }
    let rep = replay_lines(&t);
    assert_eq!(rep.held(), 2, "the parent and the exec'd space, dead but the default target");
    let maps = "7c0000000000-7c0000001000 rw-p 00000000 00:00 0\n7c0000001000-7c0000002000 ---p 00000000 00:00 0\n7c0000002000-7c0000003000 rw-p 00000000 00:00 0\n";
    let (code, out, err) = against("bounds-exec", &t, maps, None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("comparison of #2"), "{out}");
}

#[test]
fn exec_by_a_thread_frees_the_old_space() {
    // As strace prints it (recorded): thread 11227 execs, the other threads exit, the leader is
    // "superseded" and its pid gets the execve's result.
    let t = [
        "11224 mmap(NULL, 8392704, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK, -1, 0) = 0x7f1d51588000",
        "11224 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, child_tid=0x7f1d51d88990, parent_tid=0x7f1d51d88990, exit_signal=0, stack=0x7f1d51588000, stack_size=0x7fff80, tls=0x7f1d51d886c0} => {parent_tid=[11225]}, 88) = 11225",
        "11224 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, child_tid=0x7f1d50d86990, parent_tid=0x7f1d50d86990, exit_signal=0, stack=0x7f1d50586000, stack_size=0x7fff80, tls=0x7f1d50d866c0} => {parent_tid=[11227]}, 88) = 11227",
        "11227 execve(\"/bin/true\", [\"true\"], 0x7ffc0ee77c08 /* 39 vars */ <unfinished ...>",
        "11225 +++ exited with 0 +++",
        "11224 +++ superseded by execve in pid 11227 +++",
        "11224 <... execve resumed>)             = 0",
        "11224 brk(NULL)                         = 0x55d0c1000000",
        "11224 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000",
    ];
    let rep = replay_lines(&t);
    assert_eq!(rep.spaces.len(), 2, "{:?}", rep.spaces.iter().map(|s| &s.origin).collect::<Vec<_>>());
    assert!(rep.spaces[0].freed, "no thread is left in the old space");
    let s = &rep.spaces[1];
    assert_eq!(s.origin, Origin::Exec { from: Some(0), path: "/bin/true".into() });
    assert_eq!(s.pids, vec![11224]);
    assert_eq!(s.entries(), 1);
    assert_eq!(rep.target(None), Ok(1));
    assert_eq!(rep.target(Some(11224)), Ok(1));
}

#[test]
fn a_clone_that_returns_after_its_child_has_exited_adopts_it_once() {
    // On a loaded machine strace can print a fork's return after the whole short life of the child
    // (here: exec, a call, exit); the return must not make the child a second, fresh fork.
    let t = [
        mmap(100, 0x7f00_0000_0000, 8192, "PROT_READ"),
        "100  clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD <unfinished ...>"
            .into(),
        "101  execve(\"/usr/bin/readlink\", [\"readlink\"], 0x7ffd /* 1 var */) = 0".into(),
        mmap(101, 0x7e00_0000_0000, 4096, "PROT_READ"),
        "101  exit_group(0)                     = ?".into(),
        "101  +++ exited with 0 +++".into(),
        "100  <... clone resumed>, child_tidptr=0x7f00) = 101".into(),
        mmap(100, 0x7f00_0010_0000, 4096, "PROT_READ"),
        // A later process that happens to reuse the pid, forked by 100 in the usual order.
        "100  clone(child_stack=NULL, flags=SIGCHLD) = 101".into(),
        mmap(101, 0x7f00_0020_0000, 4096, "PROT_READ"),
    ];
    let rep = replay_lines(&t);
    let origins: Vec<&Origin> = rep.spaces.iter().map(|s| &s.origin).collect();
    assert_eq!(
        origins,
        [
            &Origin::Initial,
            &Origin::Fork { from: 0 },
            &Origin::Exec { from: Some(1), path: "/usr/bin/readlink".into() },
            &Origin::Fork { from: 0 },
        ],
        "one fork per clone"
    );
    assert_eq!(rep.spaces[0].entries(), 2);
    assert_eq!(rep.spaces[3].entries(), 3, "the second child: the parent's two mappings and its own");
}

#[test]
fn vfork_and_exec_keep_the_parent_a_reused_pid_is_no_parent() {
    let t = [
        mmap(100, 0x7f00_0000_0000, 8192, "PROT_READ"),
        "100  vfork( <unfinished ...>".into(),
        "101  execve(\"/bin/x\", [\"x\"], 0x7ffd /* 1 var */) = 0".into(),
        "100  <... vfork resumed>)                = 101".into(),
        mmap(101, 0x7e00_0000_0000, 4096, "PROT_READ"),
        mmap(100, 0x7f00_0010_0000, 4096, "PROT_READ"),
        "101  +++ exited with 0 +++".into(),
        // A clone that never returns: its caller is killed, and its pid is reused.
        "100  clone(child_stack=NULL, flags=SIGCHLD <unfinished ...>".into(),
        "100  +++ killed by SIGKILL +++".into(),
        mmap(100, 0x7f00_0000_0000, 4096, "PROT_READ"),
        mmap(102, 0x7f00_0000_0000, 4096, "PROT_READ"),
    ];
    let rep = replay_lines(&t);
    let origins: Vec<&Origin> = rep.spaces.iter().map(|s| &s.origin).collect();
    assert_eq!(
        origins,
        [
            &Origin::Initial,
            &Origin::Exec { from: Some(0), path: "/bin/x".into() },
            &Origin::Initial,
            &Origin::Initial
        ],
        "the new 100 and 102 are unrelated processes"
    );
    assert_eq!(rep.spaces[0].entries(), 2, "the vfork parent's space lives on after its child's exec");
    assert!(rep.spaces[0].freed, "and ends with the parent");
    assert!(!rep.spaces[1].freed, "the exec'd space is the default target");
    assert_eq!(rep.spaces[1].entries(), 1);
}

/// A reader that counts what is read from it.
struct Counting<R>(R, u64);
impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}

#[test]
fn a_line_is_read_a_buffer_at_a_time_up_to_the_limit() {
    let line = |n: usize| {
        let mut v = vec![b'a'; n];
        v.push(b'\n');
        v.extend_from_slice(b"next\n");
        v
    };
    let mut buf = Vec::new();
    // At the limit: read whole; the next line follows.
    let mut r = BufReader::with_capacity(4096, std::io::Cursor::new(line(100_000)));
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, 100_000).unwrap(), Some(100_001));
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, 100_000).unwrap(), Some(5));
    assert_eq!(buf, b"next\n");
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, 100_000).unwrap(), Some(0));
    // One past it: refused.
    let mut r = BufReader::with_capacity(4096, std::io::Cursor::new(line(100_001)));
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, 100_000).unwrap(), None);
    // A 1 GiB line is refused after the limit and one buffer, never read to its end.
    let mut r = BufReader::with_capacity(1 << 16, Counting(std::io::repeat(b'a').take(1 << 30), 0));
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, MAX_LINE).unwrap(), None);
    assert!(r.get_ref().1 <= (MAX_LINE + (1 << 16)) as u64, "read {}", r.get_ref().1);
    assert!(buf.len() <= MAX_LINE);
}

#[test]
fn a_line_past_the_limit_through_a_pipe_is_refused_with_exit_2() {
    let mut child = bin()
        .args(["replay", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let total = 64usize << 20;
    let writer = std::thread::spawn(move || {
        let mut sent = 0usize;
        let first = mmap(100, 0x7f00_0000_0000, 4096, "PROT_READ") + "\n";
        if stdin.write_all(first.as_bytes()).is_err() {
            return sent;
        }
        let chunk = vec![b'a'; 1 << 20];
        while sent < total {
            if stdin.write_all(&chunk).is_err() {
                return sent;
            }
            sent += chunk.len();
        }
        let _ = stdin.write_all(b"\n");
        sent
    });
    let out = child.wait_with_output().unwrap();
    let sent = writer.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 2 is longer than 8 MiB"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
    // The replay stopped reading after the limit: the writer could not hand it the whole line.
    assert!(sent < total, "the whole 64 MiB line was read");
}

#[test]
fn a_long_line_under_the_limit_is_replayed() {
    let dir = tmpdir("bounds-long");
    let t = dir.join("t.trace");
    let long = format!("100  execve(\"/bin/x\", [\"{}\"], 0x7ffd /* 1 var */) = 0", "a".repeat(4 << 20));
    std::fs::write(&t, [long, mmap(100, 0x7f00_0000_0000, 4096, "PROT_READ")].join("\n")).unwrap();
    let (rep, _) = replay::replay(&Options { trace: t, strict: true, ..Default::default() }).unwrap();
    assert_eq!(rep.spaces.len(), 1);
    assert_eq!(rep.spaces[0].map.len(), 1);
    assert_eq!(rep.spaces[0].program(), "/bin/x");
}
