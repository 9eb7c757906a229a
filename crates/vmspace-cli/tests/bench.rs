//! `vmspace bench` measures each workload against its alternative and prints ratios.

use std::process::Command;

#[test]
fn bench_prints_a_ratio_for_every_workload() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmspace")).args(["bench", "ring", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.starts_with("[{") && json.contains("\"ratio\":") && json.contains("\"group\":\"ring\""),
        "{json}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vmspace")).args(["bench", "scratch"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("claim + release") && table.contains("RATIO"), "{table}");
    let svg = std::env::temp_dir().join(format!("vmspace-bench-{}.svg", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_vmspace"))
        .args(["bench", "ring", "--plot"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let check = Command::new("python3")
        .args(["-c", "import sys, xml.dom.minidom; d = xml.dom.minidom.parse(sys.argv[1]); print(len(d.getElementsByTagName('rect')))"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(check.status.success(), "the plot is not valid XML: {}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "1", "one bar per workload");
    std::fs::remove_file(&svg).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_vmspace")).args(["bench", "nonsense"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "an unknown benchmark is a one-line error (exit 2)");
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
    // The allocator comparison's options are refused elsewhere, not silently ignored.
    let stray =
        Command::new(env!("CARGO_BIN_EXE_vmspace")).args(["bench", "ring", "--secs", "3"]).output().unwrap();
    assert_eq!(stray.status.code(), Some(2), "an alloc option on another benchmark is an error (exit 2)");
    assert!(String::from_utf8_lossy(&stray.stderr).contains("bench alloc"));
}
