//! The `vmspace` command as a user runs it: exit codes, one-line errors, JSON and SVG that parse,
//! help with examples, processes that vanish or refuse.

mod common;

use std::process::{Command, Stdio};

use common::*;
use vmspace::procmaps::{Pid, ProcMaps};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).env("NO_COLOR", "1").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn python_ok(code: &str, file: &std::path::Path) -> bool {
    Command::new("python3").args(["-c", code]).arg(file).status().is_ok_and(|s| s.success())
}

fn valid_json(dir: &std::path::Path, text: &str) {
    let f = dir.join("out.json");
    std::fs::write(&f, text).unwrap();
    assert!(python_ok("import json,sys; json.load(open(sys.argv[1]))", &f), "invalid JSON: {text:.500}");
}

fn valid_xml(file: &std::path::Path) {
    assert!(
        python_ok("import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])", file),
        "invalid XML in {}",
        file.display()
    );
}

/// A process that sits still while it is looked at.
struct Sleeper(std::process::Child);
impl Sleeper {
    fn new() -> Sleeper {
        Sleeper(Command::new("sleep").arg("60").stdout(Stdio::null()).spawn().unwrap())
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn map_lists_a_process_with_holes_and_summary() {
    let s = Sleeper::new();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (code, out, err) = run(&["map", &s.pid().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[stack]") && out.contains("(free)") && out.contains("map entries"), "{out}");
    assert!(out.contains("PRT/MAX") && out.contains("vm.max_map_count"), "{out}");
    assert!(!out.contains('\x1b'), "colour without a terminal");
    let (code, out, _) = run(&["map", "self"]);
    assert_eq!(code, 0);
    assert!(out.contains("vmspace"));
}

#[test]
fn map_json_and_svg_are_valid_and_name_every_region() {
    let dir = tmpdir("mapsvg");
    let s = Sleeper::new();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let svg = dir.join("map.svg");
    let (code, out, err) = run(&["map", &s.pid().to_string(), "--json", "--svg", svg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    valid_json(&dir, &out);
    assert!(out.contains("\"entries\":[{"));
    valid_xml(&svg);
    let text = std::fs::read_to_string(&svg).unwrap();
    let p = ProcMaps::load(Pid::Id(s.pid())).unwrap();
    for r in &p.regions {
        let name = r.path();
        let shown = if name.is_empty() { "[anon]".to_string() } else { vmspace_cli::out::xml(name) };
        assert!(text.contains(&shown), "region {name:?} not named in the SVG");
        assert!(
            text.contains(&format!("{:012x}-{:012x}", r.range.start, r.range.end)),
            "range of {name} missing"
        );
    }
}

#[test]
fn map_errors_are_one_clear_line() {
    // An error is 2 (1 means "differences found").
    let (code, _, err) = run(&["map", "999999999"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = run(&["map", "abc"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a process id"));
    let (code, _, _) = run(&["map"]);
    assert_eq!(code, 2);
    if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
        let (code, _, err) = run(&["map", "2"]);
        assert_eq!(code, 2);
        assert!(err.contains("no address space"), "{err}");
    }
}

#[test]
fn exiting_processes_load_or_vanish_cleanly() {
    let e = ProcMaps::load(Pid::Id(0x3fff_fff0)).unwrap_err();
    assert!(e.is_gone(), "{e}");
    // Processes that exit while (or before) they are read: loaded or gone, never anything else.
    for _ in 0..30 {
        let mut c = Command::new("sh").args(["-c", "exit 0"]).spawn().unwrap();
        let pid = c.id();
        let r = ProcMaps::load(Pid::Id(pid));
        let _ = c.wait();
        let after = ProcMaps::load(Pid::Id(pid));
        for r in [r, after] {
            match r {
                Ok(p) => p.map.check_invariants().unwrap(),
                Err(e) => assert!(e.is_gone() || e.is_denied(), "{e}"),
            }
        }
    }
}

#[test]
fn top_lists_processes_and_sorts() {
    let dir = tmpdir("top");
    let s = Sleeper::new();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (code, out, err) = run(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("PID") && out.contains("MAXMAP") && out.contains("skipped:"), "{out}");
    assert!(out.lines().any(|l| l.split_whitespace().next() == Some(&s.pid().to_string())), "{out}");
    let (code, out, _) = run(&["top", "--sort", "entries", "--limit", "3"]);
    assert_eq!(code, 0);
    assert!(out.contains("(3 shown)"), "{out}");
    let (code, out, _) = run(&["top", "--sort", "entries", "--limit", "3", "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<u64> =
        out.split("\"entries\":").skip(1).map(|t| t[..t.find(',').unwrap()].parse().unwrap()).collect();
    assert!(rows.len() <= 3 && !rows.is_empty(), "{out}");
    assert!(rows.windows(2).all(|w| w[0] >= w[1]), "not sorted by entries: {rows:?}");
    let (code, out, _) = run(&["top", "--json", "--sort", "gap"]);
    assert_eq!(code, 0);
    valid_json(&dir, &out);
    let (code, _, _) = run(&["top", "--sort", "bogus"]);
    assert_eq!(code, 2);
}

#[test]
fn help_has_examples() {
    for cmd in
        [&["--help"][..], &["top", "--help"], &["map", "--help"], &["replay", "--help"], &["bench", "--help"]]
    {
        let (code, out, _) = run(cmd);
        assert_eq!(code, 0);
        assert!(out.contains("Examples"), "{cmd:?}: {out}");
    }
}

#[test]
fn replay_reports_bad_lines_and_strict_stops() {
    let dir = tmpdir("badtrace");
    let t = dir.join("t.trace");
    std::fs::write(
        &t,
        "100  mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000\n\
         100  this is not strace\n\
         100  mprotect(0x7f0000000000, 4096, PROT_READ) = 0\n\
         100  mmap(NULL, 8192, PROT_BOGUS, MAP_PRIVATE, -1, 0) = 0x7f0000100000\n\
         100  munmap(0x7f00000",
    )
    .unwrap();
    let (code, out, err) = run(&["replay", t.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("lines not understood: 3"), "{out}");
    assert!(out.contains("line 2:") && out.contains("line 4:") && out.contains("line 5:"), "{out}");
    // Errors exit with 2: 1 means "the maps differ".
    let (code, _, err) = run(&["replay", "--strict", t.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1);
    assert!(err.contains("line 2"), "{err}");
    let (code, _, err) = run(&["replay", dir.join("missing").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn replay_json_plot_and_against() {
    let dir = tmpdir("replayout");
    let t = dir.join("t.trace");
    let mut text = Vec::new();
    vmspace_cli::replay::synthetic_trace(5000, &mut text).unwrap();
    std::fs::write(&t, &text).unwrap();
    let plot = dir.join("plot.svg");
    let (code, out, err) = run(&["replay", t.to_str().unwrap(), "--json", "--plot", plot.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    valid_json(&dir, &out);
    valid_xml(&plot);
    // A snapshot that differs: one page protected differently, one page missing.
    let maps = dir.join("maps");
    std::fs::write(
        &maps,
        "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n7f0000001000-7f0000002000 r--p 00000000 00:00 0\n",
    )
    .unwrap();
    let t2 = dir.join("t2.trace");
    std::fs::write(
        &t2,
        "mmap(0x7f0000000000, 12288, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x7f0000000000\n",
    )
    .unwrap();
    let (code, out, _) = run(&["replay", t2.to_str().unwrap(), "--against", maps.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("2 differences"), "{out}");
    assert!(
        out.contains("trace rw-p, snapshot r--p") && out.contains("trace rw-p, snapshot unmapped"),
        "{out}"
    );
    let (code, _, err) =
        run(&["replay", t2.to_str().unwrap(), "--against", maps.to_str().unwrap(), "--pid", "5"]);
    assert_eq!(code, 2);
    assert!(err.contains("pid 5 does not appear"), "{err}");
}
