//! Shared helpers for the integration tests: temporary directories, strace recording, replay checks.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vmspace_cli::replay::{self, Options};

/// A fresh directory under the target's temporary area, removed and recreated.
pub fn tmpdir(name: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("vmspace-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The `vmspace` binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vmspace"))
}

/// Whether strace can trace at all here. Under CI (`CI` set) a missing or refused strace is a
/// failure, not a skip.
pub fn strace_works() -> bool {
    let ok = Command::new("strace")
        .args(["-f", "-e", "trace=memory,process", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("strace cannot run (missing, or ptrace denied), and CI is set: .ci/run must install it");
        }
        eprintln!("SKIPPED: strace cannot run here (missing, or ptrace denied)");
    }
    ok
}

/// Runs `cmd` under `strace -f -e trace=memory,process -o DIR/NAME.trace` with extra environment
/// for the traced program only; returns the trace path.
pub fn record(dir: &Path, name: &str, env: &[(&str, &str)], cmd: &[&str]) -> PathBuf {
    let trace = dir.join(format!("{name}.trace"));
    let mut c = Command::new("strace");
    c.args(["-f", "-e", "trace=memory,process", "-o"]).arg(&trace);
    for (k, v) in env {
        c.arg("-E").arg(format!("{k}={v}"));
    }
    c.args(cmd).current_dir(dir);
    let out = c.output().expect("run strace");
    assert!(
        out.status.success(),
        "strace {cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    trace
}

/// Replays `trace` and compares the space of `pid` (or the default target) with `maps`: asserts no
/// line was misunderstood and no page differs. Returns the bytes compared.
pub fn assert_matches(trace: &Path, maps: &Path, pid: Option<u32>) -> u64 {
    let opts =
        Options { trace: trace.to_path_buf(), against: Some(maps.to_path_buf()), pid, ..Default::default() };
    let mut report = String::new();
    let code = replay::run(&opts, &mut report).unwrap_or_else(|e| panic!("replay {}: {e}", trace.display()));
    let (rep, _) = replay::replay(&opts).unwrap();
    assert_eq!(rep.bad_total, 0, "unparsed lines in {}:\n{report}", trace.display());
    for s in &rep.spaces {
        s.map.check_invariants().unwrap();
    }
    let s = rep.target(pid).unwrap();
    let snap = vmspace::procmaps::parse_maps(&std::fs::read_to_string(maps).unwrap()).unwrap();
    let cmp = replay::compare(&rep.spaces[s], &snap);
    assert_eq!(code, 0, "differences for pid {pid:?} in {}:\n{report}", trace.display());
    assert!(cmp.diffs.is_empty());
    assert!(cmp.compared > 0, "nothing compared for {pid:?}:\n{report}");
    cmp.compared
}

/// The `maps.PID` files a traced program left in `dir` (written by the preload library or the C
/// helper), as (pid, path).
pub fn dumps(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let pid = name.strip_prefix("maps.")?.parse().ok()?;
            Some((pid, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// A library that, loaded with LD_PRELOAD, writes the process's /proc/self/maps to
/// `$VMSPACE_MAPS_DIR/maps.PID` at exit (a destructor, after the program's own atexit handlers), with
/// raw system calls only so that dumping changes nothing in the address space.
pub const PRELOAD_C: &str = r#"
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
static char buf[1 << 20];
static char path[4096];
__attribute__((destructor)) static void dump(void) {
    const char *dir = getenv("VMSPACE_MAPS_DIR");
    if (!dir) return;
    size_t n = 0;
    while (dir[n] && n < 4000) { path[n] = dir[n]; n++; }
    const char *m = "/maps.";
    for (int i = 0; m[i]; i++) path[n++] = m[i];
    char digits[16]; int d = 0; int pid = getpid();
    do { digits[d++] = '0' + pid % 10; pid /= 10; } while (pid);
    while (d) path[n++] = digits[--d];
    path[n] = 0;
    int in = open("/proc/self/maps", O_RDONLY);
    if (in < 0) return;
    ssize_t len = 0, r;
    while ((r = read(in, buf + len, sizeof buf - len)) > 0) len += r;
    close(in);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) return;
    ssize_t w = 0;
    while (w < len && (r = write(out, buf + w, len - w)) > 0) w += r;
    close(out);
}
"#;

/// Compiles C source with `cc`; returns the output path.
pub fn cc(dir: &Path, name: &str, src: &str, extra: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let st = Command::new("cc").args(extra).arg("-o").arg(&out).arg(&c).status().expect("run cc");
    assert!(st.success(), "cc {name} failed");
    out
}
