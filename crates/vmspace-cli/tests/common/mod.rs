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

/// Checks that strace can trace here; a test that needs it fails with a clear message when it
/// cannot, instead of passing without having run. Returns `true` (kept for the callers' `if`).
pub fn strace_works() -> bool {
    let st =
        Command::new("strace").args(["-f", "-e", "trace=memory,process", "-o", "/dev/null", "true"]).status();
    match st {
        Ok(s) if s.success() => true,
        Ok(s) => panic!("this test needs strace, which cannot trace here ({s}: ptrace denied?)"),
        Err(e) => {
            panic!("this test needs strace, which cannot be run ({e}): install it (apt-get install strace)")
        }
    }
}

/// Runs `cmd` under `strace -f -e trace=memory,process,ipc -o DIR/NAME.trace` with extra environment
/// for the traced program only; returns the trace path.
pub fn record(dir: &Path, name: &str, env: &[(&str, &str)], cmd: &[&str]) -> PathBuf {
    let trace = dir.join(format!("{name}.trace"));
    let mut c = Command::new("strace");
    c.args(["-f", "-e", "trace=memory,process,ipc", "-o"]).arg(&trace);
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
    // Every call was applied as the kernel answered it.
    assert_eq!(rep.warnings_total, 0, "inconsistencies in {}: {:?}", trace.display(), rep.warnings);
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

/// A C program that builds an address space with the features an inspector must show, then stops
/// itself (SIGSTOP) so that it can be read while nothing changes: a guard region (MADV_GUARD_INSTALL,
/// Linux 6.13+) inside an anonymous mapping, a locked range (mlock), a huge-page-advised range
/// (MADV_HUGEPAGE, touched), a shared anonymous mapping, a file whose name holds an ESC, a TAB and a
/// newline, mapped, and `argv[2]` extra one-page VMAs of alternating protection (for 60k-VMA
/// spaces). `argv[1]` is the directory for the file.
pub const ODD_SPACE_C: &str = r#"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long ps = sysconf(_SC_PAGESIZE);
    char *g = mmap(0, 16 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(g, 1, 16 * ps);
    if (madvise(g + 4 * ps, 2 * ps, 102 /* MADV_GUARD_INSTALL */) != 0) return 10;
    char *l = mmap(0, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mlock(l, 8 * ps) != 0) return 11;
    size_t hl = 8 << 20;
    char *h = mmap(0, hl, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *ha = (char *)(((unsigned long)h + (2 << 20) - 1) & ~((2UL << 20) - 1));
    madvise(ha, 4 << 20, MADV_HUGEPAGE);
    memset(ha, 2, 4 << 20);
    char *s = mmap(0, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(s, 3, 2 * ps);
    char path[4096];
    snprintf(path, sizeof path, "%s/odd\x1b[31mname\twith\nnewline", argc > 1 ? argv[1] : "/tmp");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return 12;
    if (ftruncate(fd, 3 * ps) != 0) return 13;
    char *f = mmap(0, 3 * ps, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f == MAP_FAILED) return 14;
    volatile char c = f[0]; (void)c;
    long n = argc > 2 ? atol(argv[2]) : 0;
    if (n > 0) {
        char *m = mmap(0, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) return 15;
        for (long i = 0; i < n; i += 2) mprotect(m + i * ps, ps, PROT_READ);
    }
    printf("%lx %lx %lx %lx %lx\n", (unsigned long)g, (unsigned long)l, (unsigned long)ha, (unsigned long)s,
           (unsigned long)f);
    fflush(stdout);
    raise(SIGSTOP);
    return 0;
}
"#;

/// A stopped child running [`ODD_SPACE_C`]; killed when dropped. `addrs`: the guard mapping, the
/// locked range, the huge-page range, the shared mapping, the odd file's mapping.
pub struct OddSpace {
    pub child: std::process::Child,
    pub addrs: Vec<u64>,
    pub dir: PathBuf,
}

impl OddSpace {
    /// Builds and starts the program with `extra` one-page VMAs, and waits until it has stopped.
    #[allow(clippy::zombie_processes)] // the child is killed and waited for on every path: here on a panic, else by Drop
    pub fn start(name: &str, extra: u64) -> OddSpace {
        use std::io::BufRead;
        let dir = tmpdir(name);
        // Static, so that it shares no page with `vmspace` (whose running would change its Pss).
        let exe = cc(&dir, "odd", ODD_SPACE_C, &["-O1", "-static"]);
        let mut child = Command::new(&exe)
            .arg(&dir)
            .arg(extra.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run the odd-space program");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addrs: Vec<u64> = line.split_whitespace().map(|a| u64::from_str_radix(a, 16).unwrap()).collect();
        if addrs.len() != 5 {
            let _ = child.kill();
            let st = child.wait();
            panic!("the odd-space program failed: {line:?} {st:?}");
        }
        // Stopped: /proc/PID/stat's state is T.
        for _ in 0..500 {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
            if stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('T')) {
                return OddSpace { child, addrs, dir };
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the odd-space program did not stop");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for OddSpace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
