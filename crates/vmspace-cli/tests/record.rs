//! `vmspace record`: the calls it records are the calls strace sees, with the same results (both run
//! without address randomisation, so the kernel places everything at the same addresses); the
//! register fallback records the same as PTRACE_GET_SYSCALL_INFO; threads, forks and execs are
//! followed, each process gets its maps at exec and at exit; the command's status is passed on and
//! a command that cannot run is an error (exit 2).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::{bin, cc, tmpdir};
use serde_json::Value;

const MEMORY: [&str; 5] = ["mmap", "munmap", "mprotect", "brk", "madvise"];

/// Per process (sorted, as pids differ between runs): each memory call's name and result.
type Calls = Vec<Vec<(String, i64)>>;

fn group(items: impl Iterator<Item = (i64, String, i64)>) -> Calls {
    let mut order: Vec<i64> = Vec::new();
    let mut by: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    for (pid, name, ret) in items {
        if !by.contains_key(&pid) {
            order.push(pid);
        }
        by.entry(pid).or_default().push((name, ret));
    }
    // Processes that run at once start in either order: compare them as a sorted set.
    let mut groups: Calls = order.into_iter().map(|p| by.remove(&p).unwrap()).collect();
    groups.sort();
    groups
}

fn events(trace: &Path) -> Vec<Value> {
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("trace line {l:?}: {e}")))
        .collect()
}

/// Records `cmd` with vmspace (no randomisation), with extra environment; returns the trace's events.
fn vmspace_record(dir: &Path, name: &str, env: &[(&str, &str)], cmd: &[&str]) -> Vec<Value> {
    let trace = dir.join(format!("{name}.trace"));
    let out = Command::new("setarch")
        .args(["-R", env!("CARGO_BIN_EXE_vmspace"), "record", "-o"])
        .arg(&trace)
        .arg("--")
        .args(cmd)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("setarch (util-linux) runs");
    assert!(
        out.status.success(),
        "vmspace record {cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    events(&trace)
}

fn memory_calls(ev: &[Value]) -> Calls {
    // Calls made before a process's first exec belong to the recorder's own forked child.
    let mut live: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut v = Vec::new();
    for e in ev {
        match e["event"].as_str().unwrap() {
            "exec" => {
                live.insert(e["pid"].as_i64().unwrap());
            }
            "fork" => {
                live.insert(e["child"].as_i64().unwrap());
            }
            "call" => {
                let pid = e["pid"].as_i64().unwrap();
                let name = e["name"].as_str().unwrap();
                if live.contains(&pid) && MEMORY.contains(&name) {
                    v.push((pid, name.to_string(), e["ret"].as_i64().unwrap()));
                }
            }
            _ => {}
        }
    }
    group(v.into_iter())
}

/// Records `cmd` with `strace -f` (no randomisation): its memory calls.
fn strace_calls(dir: &Path, name: &str, cmd: &[&str]) -> Calls {
    let log = dir.join(format!("{name}.strace"));
    let st = Command::new("setarch")
        .args(["-R", "strace", "-f", "-qq", "-e", "raw=all", "-e"])
        .arg(format!("trace={}", MEMORY.join(",")))
        .arg("-o")
        .arg(&log)
        .args(cmd)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("strace is installed (.ci/run installs it): this test compares with it");
    assert!(st.success(), "strace {cmd:?}: {st}");
    let text = std::fs::read_to_string(&log).unwrap();
    let items = text.lines().filter_map(|l| {
        let (pid, rest) = l.split_once(' ')?;
        let rest = rest.trim_start();
        // Calls of processes running at once are split: `mmap(… <unfinished ...>`, then
        // `<... mmap resumed>…) = 0x…`; the result line counts.
        let name = match rest.strip_prefix("<... ") {
            Some(r) => &r[..r.find(' ')?],
            None => &rest[..rest.find('(')?],
        };
        // strace pads between the call and its result: `brk(0)        = 0x…`.
        let ret = rest.rsplit_once(')')?.1.trim_start().strip_prefix("= ")?.split(' ').next()?;
        let ret = match ret.strip_prefix("0x") {
            Some(h) => i64::from_str_radix(h, 16).ok()?,
            None => ret.parse().ok()?,
        };
        Some((pid.parse().ok()?, name.to_string(), ret))
    });
    group(items)
}

fn same(ours: &Calls, theirs: &Calls) {
    assert_eq!(ours.len(), theirs.len(), "processes: ours {ours:?}\nstrace {theirs:?}");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a.len(), b.len(), "process {i}: ours {a:?}\nstrace {b:?}");
        for (x, y) in a.iter().zip(b) {
            // strace shows a failure as -1 with the errno beside it; the raw result is -errno.
            let ok = x.0 == y.0 && (x.1 == y.1 || (x.1 < 0 && y.1 == -1));
            assert!(ok, "process {i}: ours {x:?}, strace {y:?}");
        }
    }
}

#[test]
fn records_what_strace_sees() {
    let dir = tmpdir("record-strace");
    for (name, cmd) in [
        ("ls", vec!["/bin/ls", "-l", "/"]),
        ("sh", vec!["/bin/sh", "-c", "/bin/ls / > /dev/null; /bin/true | /bin/cat"]),
    ] {
        let ev = vmspace_record(&dir, name, &[], &cmd);
        let ours = memory_calls(&ev);
        assert!(ours.iter().map(Vec::len).sum::<usize>() > 10, "{name}: too few calls recorded");
        same(&ours, &strace_calls(&dir, name, &cmd));
        // The register fallback (before Linux 5.3) records the same.
        let regs = vmspace_record(&dir, &format!("{name}-regs"), &[("VMSPACE_RECORD_REGS", "1")], &cmd);
        same(&memory_calls(&regs), &ours);
    }
}

const THREADS_C: &str = r#"
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
static void *work(void *a) {
    (void)a;
    for (int i = 0; i < 10; i++) {
        void *p = mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        mprotect(p, 5 * 4096, PROT_READ);
        munmap(p, 65536);
    }
    return 0;
}
int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, work, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    pid_t c = fork();
    if (c == 0) { work(0); execl("/bin/true", "true", (char *)0); _exit(1); }
    waitpid(c, 0, 0);
    return 0;
}
"#;

/// Every thread and process made during the recording appears first in its creator's fork event,
/// before any event of its own.
fn assert_forks_come_first(ev: &[Value]) {
    let first = ev.iter().find(|e| e["event"] == "exec").expect("an exec event")["pid"].as_i64().unwrap();
    let mut announced = std::collections::HashSet::from([first]);
    for (i, e) in ev.iter().enumerate() {
        if e["event"] == "fork" {
            announced.insert(e["child"].as_i64().unwrap());
        }
        for key in ["pid", "tid"] {
            if let Some(id) = e[key].as_i64() {
                assert!(announced.contains(&id), "event {i} of {key} {id} comes before its fork: {e}");
            }
        }
    }
}

/// Four threads that each start 25 short children (exec of /bin/true) and make a thread of their own.
const FORKS_C: &str = r#"
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
static void *idle(void *a) { return a; }
static void *work(void *a) {
    pthread_t t;
    pthread_create(&t, 0, idle, 0);
    for (int i = 0; i < 25; i++) {
        pid_t c = fork();
        if (c == 0) { execl("/bin/true", "true", (char *)0); _exit(1); }
        waitpid(c, 0, 0);
    }
    pthread_join(t, 0);
    return a;
}
int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, work, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    return 0;
}
"#;

#[test]
fn forks_are_written_before_anything_their_children_do() {
    // Threads and processes made from several threads at once: a new one can reach its first stop
    // (and, if let go, its exec and exit) before the recorder has seen its creator's fork event.
    let dir = tmpdir("record-fork-order");
    let prog = cc(&dir, "forks", FORKS_C, &["-O1", "-pthread"]);
    let ev = vmspace_record(&dir, "forks", &[], &[prog.to_str().unwrap()]);
    let forks = ev.iter().filter(|e| e["event"] == "fork").count();
    assert_eq!(forks, 4 + 4 + 100, "threads, their threads, children");
    assert_forks_come_first(&ev);
    assert_eq!(ev.iter().filter(|e| e["event"] == "exec").count(), 101, "the program and 100 /bin/true");
}

#[test]
fn follows_threads_forks_and_execs() {
    let dir = tmpdir("record-threads");
    let prog = cc(&dir, "threads", THREADS_C, &["-O1", "-pthread"]);
    let ev = vmspace_record(&dir, "threads", &[], &[prog.to_str().unwrap()]);
    let first = ev.iter().find(|e| e["event"] == "exec").expect("an exec event")["pid"].as_i64().unwrap();
    let forks: Vec<&Value> = ev.iter().filter(|e| e["event"] == "fork").collect();
    const CLONE_THREAD: u64 = 0x10000;
    let threads = forks.iter().filter(|f| f["flags"].as_u64().unwrap() & CLONE_THREAD != 0).count();
    let processes: Vec<i64> = forks
        .iter()
        .filter(|f| f["flags"].as_u64().unwrap() & CLONE_THREAD == 0)
        .map(|f| f["child"].as_i64().unwrap())
        .collect();
    assert_eq!(threads, 4, "four threads made");
    assert_eq!(processes.len(), 1, "one child process");
    assert_forks_come_first(&ev);
    // The threads' calls are the process's, each from its own thread.
    let calls = |pid: i64, name: &str| {
        ev.iter().filter(|e| e["event"] == "call" && e["pid"] == pid && e["name"] == name).count()
    };
    let tids: std::collections::HashSet<i64> = ev
        .iter()
        .filter(|e| {
            e["event"] == "call" && e["pid"] == first && e["name"] == "mprotect" && e["args"][1] == 5 * 4096
        })
        .map(|e| e["tid"].as_i64().unwrap())
        .collect();
    assert!(tids.len() == 4 && !tids.contains(&first), "mprotects from four threads: {tids:?}");
    assert!(calls(first, "mprotect") >= 40);
    let child = processes[0];
    assert!(calls(child, "munmap") >= 10, "the child's own calls");
    // Two execs (the program, then /bin/true in the child), and each address space's maps at exit.
    let execs: Vec<&Value> = ev.iter().filter(|e| e["event"] == "exec").collect();
    assert_eq!(execs.len(), 2);
    assert!(execs[1]["path"].as_str().unwrap().ends_with("/true"), "{}", execs[1]["path"]);
    for e in &execs {
        let maps = vmspace_linux::proc::maps::parse(e["maps"].as_str().unwrap()).expect("exec maps parse");
        assert!(maps.len() > 3);
        assert!(e["start_brk"].as_u64().unwrap() > 0 && e["start_stack"].as_u64().unwrap() > 0);
        assert!(!e["auxv"].as_array().unwrap().is_empty());
    }
    let exits: Vec<i64> =
        ev.iter().filter(|e| e["event"] == "exit").map(|e| e["pid"].as_i64().unwrap()).collect();
    assert!(exits.contains(&first) && exits.contains(&child), "exit maps for both: {exits:?}");
    for e in ev.iter().filter(|e| e["event"] == "exit") {
        vmspace_linux::proc::maps::parse(e["maps"].as_str().unwrap()).expect("exit maps parse");
    }
    let end = ev.last().unwrap();
    assert_eq!(end["event"], "end");
    assert_eq!(end["status"], 0);
}

#[test]
fn status_is_recorded_and_a_command_that_cannot_run_is_an_error() {
    let dir = tmpdir("record-status");
    let trace = dir.join("s.trace");
    for (cmd, status) in [("exit 3", 3), ("kill -TERM $$", 128 + 15)] {
        let out =
            bin().args(["record", "-o"]).arg(&trace).args(["--", "/bin/sh", "-c", cmd]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        let ev = events(&trace);
        assert_eq!(ev.last().unwrap()["status"], status, "{cmd}");
    }
    let out = bin().args(["record", "-o"]).arg(&trace).args(["--", "/nonexistent/program"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exec") && err.contains("No such file"), "{err}");
    let out = bin().args(["record", "-o", "/nonexistent-dir/x.trace", "--", "/bin/true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
