//! The C tests: C programs (tests/c/) compiled with the system's `cc` against the built
//! `libvmspace.so` / `libvmspace.a` and `include/vm_reclaim.h`, run as child processes. Each ring case
//! runs in its own process (the ring is one per process). A missing `cc` or `pkg-config` fails the
//! test with a message that says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

/// The directory holding `libvmspace.so` and `libvmspace.a`: the test binary's profile directory
/// (`target/<profile>/deps/c-HASH` → `target/<profile>`), built with cargo first if they are missing.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
        if !dir.join("libvmspace.so").exists() || !dir.join("libvmspace.a").exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "vmspace-c"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("run cargo build -p vmspace-c");
            assert!(st.success(), "cargo build -p vmspace-c failed");
        }
        assert!(dir.join("libvmspace.so").exists(), "no libvmspace.so in {}", dir.display());
        dir
    })
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("vmspace-c-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    })
}

fn run(cmd: &mut Command) -> Output {
    let name = format!("{cmd:?}");
    match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "{name}: not found — the C tests need a C compiler (`cc`, e.g. apt-get install gcc) and pkg-config"
            )
        }
        Err(e) => panic!("{name}: {e}"),
    }
}

/// Compile `tests/c/<src>` into the scratch dir, linked with the shared library (rpath set).
fn compile(src: &str, extra: &[&str]) -> PathBuf {
    let out = scratch().join(src.trim_end_matches(".c"));
    let lib = lib_dir();
    let o = run(Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
        .arg(&out)
        .arg(format!("-I{CRATE}/include"))
        .arg(format!("{CRATE}/tests/c/{src}"))
        .args(extra)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lvmspace"));
    assert!(o.status.success(), "cc {src} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn ring_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile("ring.c", &[]))
}

fn check(o: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// Run one case of ring.c; memory pressure is ignored so that no background drain races the
/// exact states a case checks (the background case turns the trim on itself).
fn case(name: &str, env: &[(&str, &str)]) {
    let o = run(Command::new(ring_bin())
        .arg(name)
        .env("VMSPACE_RECLAIM_PRESSURE", "0")
        .envs(env.iter().copied()));
    let out = check(&o, name);
    assert_eq!(out.trim(), format!("ok {name}"));
}

#[test]
fn abi_values_are_the_seeds() {
    // -pedantic: the header needs nothing but C11 and itself.
    let out = scratch().join("abi");
    let o = run(Command::new("cc")
        .args(["-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(format!("-I{CRATE}/include"))
        .arg(format!("{CRATE}/tests/c/abi.c")));
    assert!(o.status.success(), "cc abi.c: {}", String::from_utf8_lossy(&o.stderr));
    let text = check(&run(&mut Command::new(&out)), "abi");
    let lines: Vec<&str> = text.lines().collect();
    // err_vm = err_system(0x8) = 0x20000000; err_sub(1) = 0x4000 (xnu osfmk/mach/error.h).
    let errors: Vec<i64> = (0..8).map(|e| if e == 0 { 0 } else { 0x2000_4000 + e }).collect();
    let want = errors.iter().map(i64::to_string).collect::<Vec<_>>().join(" ");
    assert_eq!(lines[0], want);
    assert_eq!(lines[1], "1 2 1 2 3 4");
    assert_eq!(lines[2], format!("{} {}", u64::MAX, u32::MAX));
}

#[test]
fn init() {
    case("init", &[]);
}

#[test]
fn single_entry_flush_deallocates() {
    case("single_entry", &[]);
}

#[test]
fn reuse_after_deallocate_faults_and_mincore_shows_pages_gone() {
    case("reuse_dealloc", &[]);
}

#[test]
fn reuse_after_free_is_legal() {
    case("reuse_free", &[]);
}

#[test]
fn cancel_unreclaimed_keeps_contents() {
    case("cancel_keeps", &[]);
}

#[test]
fn reuse_of_ids() {
    case("reuse_id", &[]);
}

#[test]
fn full_ring_gives_id_null() {
    case("full", &[]);
}

#[test]
fn errors_null_pointers_and_bad_rings() {
    case("errors", &[]);
}

#[test]
fn resize_with_entries_in_flight() {
    case("resize", &[]);
}

#[test]
fn fork_inherits_the_ring() {
    case("fork", &[]);
}

#[test]
fn reclaimer_thread_trims_idle_entries() {
    case("background", &[("VMSPACE_RECLAIM_PERIOD_MS", "50"), ("VMSPACE_RECLAIM_MIN_TRIM", "4096")]);
}

#[test]
fn threads_with_their_own_locking() {
    let bin = compile("threads.c", &[]);
    let out = check(&run(Command::new(bin).env("VMSPACE_RECLAIM_PRESSURE", "0")), "threads");
    assert!(out.starts_with("ok threads entered=2400"), "{out}");
}

/// Install into a temporary prefix with install.sh, then build the seed-only program exactly as the
/// README says (`cc prog.c $(pkg-config --cflags --libs vmspace)`), shared and static.
#[test]
fn seed_only_program_builds_with_pkg_config_after_install() {
    let prefix = scratch().join("prefix");
    let o = run(Command::new("sh").arg(format!("{CRATE}/install.sh")).arg(&prefix).arg(lib_dir()));
    check(&o, "install.sh");
    assert!(prefix.join("include/vm_reclaim.h").exists() && prefix.join("lib/libvmspace.a").exists());
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/vmspace.pc")).unwrap();
    assert!(pc.contains(&format!("prefix={}", prefix.display())), "{pc}");

    let src = format!("{CRATE}/tests/c/seed_only.c");
    let shared = scratch().join("seed_shared");
    let o = run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cc -std=c11 -Wall -Werror -o '{}' '{src}' $(pkg-config --cflags --libs vmspace)",
            shared.display()
        ))
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")));
    check(&o, "cc seed_only.c $(pkg-config --cflags --libs vmspace)");
    let o = run(Command::new(&shared).env("LD_LIBRARY_PATH", prefix.join("lib")));
    assert_eq!(check(&o, "seed_only (shared)").trim(), "seed-only: reused=4 reclaimed=4");

    let stat = scratch().join("seed_static");
    let o = run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cc -std=c11 -Wall -Werror -o '{}' '{src}' $(pkg-config --cflags vmspace) '{}' $(pkg-config --libs-only-other --static vmspace) -lpthread -ldl -lm",
            stat.display(),
            prefix.join("lib/libvmspace.a").display()
        ))
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")));
    check(&o, "cc seed_only.c libvmspace.a");
    // No LD_LIBRARY_PATH: the static build needs no libvmspace.so.
    let o = run(Command::new(&stat).env_remove("LD_LIBRARY_PATH"));
    assert_eq!(check(&o, "seed_only (static)").trim(), "seed-only: reused=4 reclaimed=4");
}
