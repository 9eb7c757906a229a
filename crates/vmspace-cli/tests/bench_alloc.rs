//! `vmspace bench alloc`: each allocator runs in a child process of its own, and the figures obey
//! what each strategy must do (an mmap per block faults every page, a keep-everything free list
//! does not; munmap gives memory back; every touched page of the live set is resident).

use std::collections::HashMap;
use std::process::Command;

/// One churn run from the JSON, as python3's `json` module reads it.
#[derive(Debug)]
struct Run {
    status: String,
    ops_per_sec: f64,
    faults_per_op: f64,
    peak_rss_mib: f64,
    rss_after_mib: f64,
    live_mib: f64,
}

/// Parses `--json` output with python3 (which also checks that it is valid JSON) into
/// `"allocator threads" → run`.
fn churn_runs(json: &str) -> HashMap<String, Run> {
    let script = "import json, sys\n\
                  d = json.load(sys.stdin)\n\
                  for r in d['churn']:\n    \
                      print(r['allocator'], r['threads'], r['status'], *(r.get(k, 0) for k in \
                      ('ops_per_sec', 'faults_per_op', 'peak_rss_mib', 'rss_after_mib', 'live_mib')))";
    let text = python(script, json);
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f[i].parse::<f64>().unwrap_or_else(|_| panic!("not a number in {l:?}"));
            let run = Run {
                status: f[2].to_string(),
                ops_per_sec: n(3),
                faults_per_op: n(4),
                peak_rss_mib: n(5),
                rss_after_mib: n(6),
                live_mib: n(7),
            };
            (format!("{} {}", f[0], f[1]), run)
        })
        .collect()
}

/// Runs a python3 script on `input`; its standard output.
fn python(script: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (CI installs it)");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 could not read the JSON: {}\n{input}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn bench_alloc(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vmspace"))
        .args(["bench", "alloc", "--settle", "0.2", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn churn_figures_follow_each_allocators_strategy() {
    let json =
        bench_alloc(&["--secs", "0.3", "--allocators", "glibc,keep,mmap,vmspace", "--workload", "churn"]);
    let runs = churn_runs(&json);
    assert_eq!(runs.len(), 8, "four allocators × 1 and 2 threads: {json}");
    for (key, r) in &runs {
        assert_eq!(r.status, "ok", "{key}: {json}");
        assert!(r.ops_per_sec > 0.0, "{key}: {r:?}");
        // 64 blocks per thread of 64 KiB to 4 MiB.
        let threads: f64 = key.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(r.live_mib >= threads * 4.0 && r.live_mib <= threads * 256.0, "{key}: {r:?}");
        // Every page of the live blocks was written, and the last sample is taken before they are freed.
        assert!(r.peak_rss_mib + 0.01 >= r.live_mib, "{key}: peak RSS below the live set: {r:?}");
    }
    let run = |k: &str| &runs[k];
    for t in ["1", "2"] {
        let (keep, mmap) = (run(&format!("keep {t}")), run(&format!("mmap {t}")));
        assert!(
            keep.faults_per_op < mmap.faults_per_op,
            "a kept block is not faulted again: {keep:?} {mmap:?}"
        );
        // The smallest block, 64 KiB, is 16 pages, every one faulted in a fresh mapping.
        assert!(mmap.faults_per_op >= 16.0, "{mmap:?}");
        // munmap per free: once the load stops, only the live blocks (and the program) are resident.
        assert!(mmap.rss_after_mib <= mmap.live_mib * 1.2 + 8.0, "{mmap:?}");
        // keep never returns memory: what it held at the peak is still resident.
        assert!(keep.rss_after_mib + 2.0 >= keep.peak_rss_mib, "{keep:?}");
        assert!(keep.rss_after_mib + 1.0 >= keep.live_mib, "{keep:?}");
    }
    assert!(run("vmspace 1").live_mib > 0.0);
}

#[test]
fn phases_show_memory_leaving_and_coming_back() {
    let json = bench_alloc(&["--allocators", "mmap", "--workload", "phases"]);
    let script = "import json, sys\n\
                  p = json.load(sys.stdin)['phases'][0]\n\
                  print(p['status'], p['rss_busy1_end_mib'], p['rss_idle_2s_mib'], p['rss_idle_end_mib'], \
                  p['busy2_faults_per_op'], p['busy2_early_ops_per_sec'], len(p['rss_series_mib']))";
    let line = python(script, &json);
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[0], "ok", "{json}");
    let n = |i: usize| f[i].parse::<f64>().unwrap();
    assert!(n(2) < n(1) && n(3) < n(1), "everything is unmapped while idle: {line}");
    assert!(n(4) >= 16.0, "busy again faults every page in: {line}");
    assert!(n(5) > 0.0, "{line}");
    // 7 s sampled every 100 ms.
    assert!((50.0..=80.0).contains(&n(6)), "{line}");
}

#[test]
fn unknown_allocator_is_a_one_line_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmspace"))
        .args(["bench", "alloc", "--allocators", "glibc,tcmalloc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcmalloc") && err.lines().count() == 1, "{err}");
}
