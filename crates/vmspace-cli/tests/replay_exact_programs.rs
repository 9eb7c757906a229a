//! The real programs — python3, node, java, gcc, git, xz, sqlite3, perl, sort — recorded with
//! `vmspace record` while doing some work each, and replayed with `vmspace replay --exact`: no result
//! and no exit snapshot may differ from the kernel's, and at least 99.9% of the placements the kernel
//! chose must be predicted. `.ci/run` installs the programs; a missing one fails with its package name.
//!
//! The programs run without address randomisation (`setarch -R`): whether two written anonymous
//! mappings end up side by side (and then do not merge, for an `anon_vma` no call shows) depends on
//! the layout, so with randomisation a run now and then differs by one VMA boundary
//! (`bench/exact-corpus.sh` measures how often); here each run is the same every time.

mod common;

use std::path::Path;
use std::process::Command;

use common::{bin, tmpdir};
use serde_json::Value;

/// The programs, each as (name, Debian package, command).
fn programs(dir: &Path) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let d = dir.display();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (
            "python3",
            "python3",
            s(&[
                "python3",
                "-c",
                "import threading\nb=[bytearray(300000) for _ in range(200)]\n\
                 t=[threading.Thread(target=lambda: sum(range(10**5))) for _ in range(4)]\n\
                 [x.start() for x in t]; [x.join() for x in t]",
            ]),
        ),
        (
            "node",
            "nodejs",
            s(&[
                "node",
                "-e",
                "const a=[]; for (let i = 0; i < 50; i++) a.push(Buffer.alloc(1 << 20)); console.log(a.length)",
            ]),
        ),
        ("java", "default-jre-headless", s(&["java", "-version"])),
        (
            "gcc",
            "gcc",
            vec![
                "gcc".into(),
                "-O2".into(),
                "-c".into(),
                format!("{d}/x.c"),
                "-o".into(),
                format!("{d}/x.o"),
            ],
        ),
        (
            "git",
            "git",
            vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "cd {d} && git init -q repo && cd repo && echo hi > f && git add f && \
                     git -c user.name=a -c user.email=a@b commit -qm m && git log --oneline"
                ),
            ],
        ),
        ("xz", "xz-utils", vec!["xz".into(), "-6".into(), "-k".into(), "-f".into(), format!("{d}/nums.txt")]),
        (
            "sqlite3",
            "sqlite3",
            vec![
                "sqlite3".into(),
                format!("{d}/db.sqlite"),
                "create table t(x); insert into t select value from generate_series(1, 20000); \
                 create index i on t(x); select count(*) from t;"
                    .into(),
            ],
        ),
        (
            "perl",
            "perl",
            s(&[
                "perl",
                "-e",
                "my @a = map { 'x' x 100000 } 1..100; my %h = map { $_ => 1 } 1..50000; print scalar(@a)",
            ]),
        ),
        (
            "sort",
            "coreutils",
            vec![
                "sort".into(),
                "--parallel=2".into(),
                "-S".into(),
                "20M".into(),
                "-o".into(),
                format!("{d}/sorted.txt"),
                format!("{d}/nums.txt"),
            ],
        ),
    ]
}

#[test]
fn real_programs_replay_exactly() {
    let dir = tmpdir("exact-programs");
    std::fs::write(dir.join("x.c"), "int f(int x) { return x * 2; }\n").unwrap();
    let nums: String = (0..200_000u64).map(|i| format!("{}\n", (i * 7919) % 200_003)).collect();
    std::fs::write(dir.join("nums.txt"), nums).unwrap();
    let mut failures = Vec::new();
    let (mut placements, mut predicted) = (0, 0);
    for (name, package, cmd) in programs(&dir) {
        let found = Command::new("sh").args(["-c", &format!("command -v {}", cmd[0])]).output().unwrap();
        assert!(found.status.success(), "this test needs {} (apt-get install {package})", cmd[0]);
        let trace = dir.join(format!("{name}.trace"));
        let out = bin()
            .args(["record", "-o"])
            .arg(&trace)
            .args(["--", "setarch", std::env::consts::ARCH, "-R"])
            .args(&cmd)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "record {name}: {}", String::from_utf8_lossy(&out.stderr));
        let out = bin().args(["replay", "--exact", "--json"]).arg(&trace).output().unwrap();
        let code = out.status.code().unwrap();
        assert_ne!(code, 2, "replay {name}: {}", String::from_utf8_lossy(&out.stderr));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{name}: no integer {k} in {r}"));
        assert!(n("calls") > 20 && n("snapshots") >= 1, "{name}: too little recorded: {r}");
        placements += n("placements");
        predicted += n("placements_equal");
        println!(
            "{name}: {} calls, {} processes, placements {}/{}, results differ {}, maps differ {}",
            n("calls"),
            n("processes"),
            n("placements_equal"),
            n("placements"),
            n("results_differ"),
            n("maps_differ")
        );
        if code != 0
            || n("results_differ") != 0
            || n("maps_differ") != 0
            || n("placements_equal") * 1000 < n("placements") * 999
        {
            let text = bin().args(["replay", "--exact"]).arg(&trace).output().unwrap();
            failures.push(format!("{name}: {r}\n{}", String::from_utf8_lossy(&text.stdout)));
        }
    }
    println!("all: placements {predicted}/{placements}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
