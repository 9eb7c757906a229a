//! The preload under real programs: a C program that calls every interposed function, a fork +
//! threads stress, and python3, sort and xz, each run with and without
//! `LD_PRELOAD=libvmspace_malloc.so`, with identical output. A missing tool fails with a message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

fn preload() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
        let lib = dir.join("libvmspace_malloc.so");
        if !lib.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "vmspace-malloc"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            assert!(cmd.status().expect("cargo build").success(), "cargo build -p vmspace-malloc failed");
        }
        assert!(lib.exists(), "no {}", lib.display());
        lib
    })
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("vmspace-malloc-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Runs `cmd` with `input` on stdin, killing it after `limit` (a hang fails the test, it never
/// passes by timing out).
fn run(mut cmd: Command, input: &[u8], limit: Duration) -> Output {
    let name = format!("{cmd:?}");
    let mut child = match cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "{name}: not found — the preload tests need cc (gcc), python3, sort and xz (apt-get install gcc python3 coreutils xz-utils)"
            )
        }
        Err(e) => panic!("{name}: {e}"),
    };
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            // SAFETY: a signal to our own child, which has not been reaped (the waiter has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{name}: still running after {limit:?} (a hang)");
        }
    };
    let _ = feeder.join();
    out
}

fn compile(src: &str, pthread: bool) -> PathBuf {
    let out = scratch().join(src.trim_end_matches(".c"));
    let mut cmd = Command::new("cc");
    cmd.args(["-O1", "-Wall", "-Werror", "-o"]).arg(&out).arg(format!("{CRATE}/tests/c/{src}"));
    if pthread {
        cmd.arg("-pthread");
    }
    let o = run(cmd, b"", Duration::from_secs(60));
    assert!(o.status.success(), "cc {src}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// Runs `prog args` without and with the preload (stats on for the second): the same exit status and
/// stdout; no stderr of ours without the stats; returns the stats run's `large=N`.
fn same_output(prog: &str, args: &[&str], input: &[u8]) -> u64 {
    let limit = Duration::from_secs(60);
    let mut plain = Command::new(prog);
    plain.args(args).env_remove("LD_PRELOAD");
    let base = run(plain, input, limit);
    assert!(
        base.status.success(),
        "{prog} failed without the preload: {}",
        String::from_utf8_lossy(&base.stderr)
    );

    let mut quiet = Command::new(prog);
    quiet.args(args).env("LD_PRELOAD", preload()).env_remove("VMSPACE_MALLOC_STATS");
    let q = run(quiet, input, limit);
    assert_eq!(q.status.code(), base.status.code(), "{prog}: exit status");
    assert!(q.stdout == base.stdout, "{prog}: output differs under the preload");
    assert!(!String::from_utf8_lossy(&q.stderr).contains("vmspace-malloc"), "printed without being asked");

    let mut loud = Command::new(prog);
    loud.args(args).env("LD_PRELOAD", preload()).env("VMSPACE_MALLOC_STATS", "1");
    let l = run(loud, input, limit);
    assert!(l.stdout == base.stdout, "{prog}: output differs under the preload with stats");
    let err = String::from_utf8_lossy(&l.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("vmspace-malloc: "))
        .unwrap_or_else(|| panic!("no stats line: {err}"));
    assert!(line.contains("returned_bytes="), "{line}");
    let large = line.split_whitespace().find_map(|w| w.strip_prefix("large=")).expect("large=N");
    large.parse().expect("a number")
}

#[test]
fn c_program_every_function_across_the_threshold() {
    let bin = compile("api.c", false);
    let large = same_output(bin.to_str().unwrap(), &[], b"");
    assert!(large >= 2000, "the churn's large blocks came from the ring: large={large}");
}

#[test]
fn fork_and_threads_stress() {
    let bin = compile("stress.c", true);
    let large = same_output(bin.to_str().unwrap(), &[], b"");
    assert!(large > 0);
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

#[test]
fn python3_large_buffers() {
    let script = "import hashlib\n\
        h = hashlib.sha256()\n\
        for i in range(60):\n\
        \x20   b = bytearray((i % 7 + 1) << 19)\n\
        \x20   b[::4096] = bytes([i % 256]) * len(b[::4096])\n\
        \x20   h.update(bytes(b))\n\
        \x20   s = b'x' * (300000 + i) + b'y'\n\
        \x20   h.update(s[-10:])\n\
        l = [str(i) * 10 for i in range(100000)]\n\
        print(h.hexdigest(), len(''.join(l)))\n";
    let large = same_output(python(), &["-c", script], b"");
    assert!(large >= 60, "large={large}");
}

fn numbers() -> Vec<u8> {
    let mut x: u64 = 88172645463325252;
    let mut s = String::new();
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{}\n", x % 1_000_000_007));
    }
    s.into_bytes()
}

#[test]
fn sort_numbers() {
    let large = same_output("sort", &["-n", "-S", "16M"], &numbers());
    assert!(large >= 1, "sort's buffer is large: large={large}");
}

#[test]
fn xz_round_trip() {
    let data = numbers();
    let large = same_output("xz", &["-6", "-c", "-T1"], &data);
    assert!(large >= 1, "xz's dictionary is large: large={large}");
}
