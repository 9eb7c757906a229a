//! The inspector as a new user meets it (issue 19's defects): closed pipes, exit codes, the layout
//! up to TASK_SIZE, JSON numbers, kernel names and every VmFlags mnemonic, escaped control bytes,
//! replay's inputs, zombies, a picture of 60,000 VMAs.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).env("NO_COLOR", "1").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn python(code: &str, input: &str) -> String {
    let mut c = Command::new("python3")
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (the tests check JSON with it)");
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(c.stdin.take());
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed on {:.300}", input);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `args`, reads one line of its output, closes the pipe, and returns the status and stderr.
fn closed_after_one_line(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut c = bin().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(!line.is_empty());
    let out = c.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["tour"][..], &["synth-trace", "2000000"], &["top"], &["map", "self"]] {
        let (st, err) = closed_after_one_line(args);
        assert!(err.is_empty(), "{args:?} wrote to stderr: {err}");
        assert!(st.success() || st.signal() == Some(13), "{args:?}: {st}");
        assert_ne!(st.code(), Some(101), "{args:?} panicked");
    }
}

#[test]
fn exit_codes_separate_differences_from_errors() {
    let dir = tmpdir("exitcodes");
    // Not a trace: a binary and a text file.
    for f in ["/bin/ls", "/etc/passwd"] {
        let (code, out, err) = run(&["replay", f]);
        assert_eq!(code, 2, "{f}: {out}");
        assert!(out.is_empty(), "{f}: echoed {out:.200}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("not an strace trace"), "{err}");
    }
    let t = dir.join("t.trace");
    std::fs::write(
        &t,
        "mmap(0x7f0000000000, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x7f0000000000\n",
    )
    .unwrap();
    let same = dir.join("same.maps");
    std::fs::write(&same, "7f0000000000-7f0000002000 rw-p 00000000 00:00 0\n").unwrap();
    let differs = dir.join("differs.maps");
    std::fs::write(&differs, "7f0000000000-7f0000002000 r--p 00000000 00:00 0\n").unwrap();
    let empty = dir.join("empty.maps");
    std::fs::write(&empty, "").unwrap();
    let smaps = dir.join("same.smaps");
    std::fs::write(
        &smaps,
        "7f0000000000-7f0000002000 rw-p 00000000 00:00 0 \nSize:                  8 kB\nRss:                   0 kB\nVmFlags: rd wr mr mw me ac \n",
    )
    .unwrap();
    let t = t.to_str().unwrap();
    assert_eq!(run(&["replay", t, "--against", same.to_str().unwrap()]).0, 0);
    assert_eq!(run(&["replay", t, "--against", smaps.to_str().unwrap()]).0, 0, "smaps as a snapshot");
    assert_eq!(run(&["replay", t, "--against", differs.to_str().unwrap()]).0, 1);
    let (code, _, err) = run(&["replay", t, "--against", empty.to_str().unwrap()]);
    assert_eq!(code, 2, "an empty snapshot is an error");
    assert!(err.contains("empty snapshot"), "{err}");
    // map and top: errors are 2, usage is 2.
    assert_eq!(run(&["map", "999999999"]).0, 2);
    assert_eq!(run(&["map", "x"]).0, 2);
    assert_eq!(run(&["top", "--sort", "nothing"]).0, 2);
    // Every command's help says what the codes mean.
    for cmd in ["top", "map", "replay", "bench", "tour"] {
        let (code, out, _) = run(&[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("Exit status"), "{cmd} --help: {out}");
    }
}

#[test]
fn the_layout_ends_user_space_at_task_size() {
    let (code, out, _) = run(&["map", "self"]);
    assert_eq!(code, 0);
    assert!(!out.contains("16777088"), "the kernel half shown as free:\n{out}");
    // No free gap above 2^47 on 4-level x86-64 (or 2^48 elsewhere): every size has three digits at most.
    for l in out.lines().filter(|l| l.contains("(free)")) {
        let size = l.split_whitespace().nth(2).unwrap();
        let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        assert!(digits.len() <= 4 && !digits.ends_with('.'), "{l}");
        let end = u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert!(end <= 1 << 57, "a free gap past TASK_SIZE: {l}");
    }
    if cfg!(target_arch = "x86_64") {
        assert!(
            out.contains("7ffffffff000 (free)")
                || out.contains("(not user space: TASK_SIZE is 0x7ffffffff000)")
        );
        assert!(out.contains("not user space: TASK_SIZE is 0x7ffffffff000"), "{out}");
    }
}

#[test]
fn map_json_uses_numbers_and_bytes() {
    let (code, out, _) = run(&["map", "self", "--json"]);
    assert_eq!(code, 0);
    let check = python(
        "import json,sys\n\
         d=json.load(sys.stdin)\n\
         assert isinstance(d['pid'], int), d['pid']\n\
         assert isinstance(d['task_size'], int)\n\
         for r in d['regions']:\n\
         \x20 assert all(isinstance(r[k], int) for k in ('start','end','size','offset','inode')), r\n\
         \x20 assert r['size'] == r['end'] - r['start']\n\
         \x20 assert all(isinstance(v, int) for v in r['stats'].values()), r\n\
         assert all(isinstance(v, int) for v in d['summary']['totals'].values())\n\
         print(d['pid'])",
        &out,
    );
    assert!(check.trim().parse::<u32>().unwrap() > 0);
}

#[test]
fn names_flags_and_control_bytes_as_the_kernel_writes_them() {
    let odd = OddSpace::start("odd", 0);
    let pid = odd.pid().to_string();
    let (code, out, err) = run(&["map", &pid]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\x1b') && !out.contains('\t'), "raw control bytes in the listing");
    assert!(out.contains("odd\\e[31mname\\twith"), "the odd name not escaped:\n{out}");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for l in maps.lines() {
        let name = l.split_whitespace().nth(5).unwrap_or("");
        if name.starts_with('[') {
            assert!(out.contains(name), "kernel name {name} not shown as written");
        }
    }
    let line_at = |addr: u64| {
        out.lines()
            .find(|l| {
                let mut w = l.split_whitespace();
                let (s, e) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
                let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
                    return false;
                };
                s <= addr && addr < e && !l.contains("(free)")
            })
            .unwrap_or_else(|| panic!("no line for {addr:#x}:\n{out}"))
            .to_string()
    };
    let flags =
        |l: &str| l.split_whitespace().nth(6).unwrap().split(',').map(String::from).collect::<Vec<_>>();
    assert!(flags(&line_at(odd.addrs[0])).contains(&"gu".to_string()), "guard: {}", line_at(odd.addrs[0]));
    assert!(flags(&line_at(odd.addrs[1])).contains(&"lo".to_string()), "locked: {}", line_at(odd.addrs[1]));
    // The guard pages themselves, from pagemap (Linux 6.15+ marks them): pages 4 and 5 of the mapping.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut ver = release.split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
    if (ver.next().unwrap(), ver.next().unwrap()) >= (6, 15) {
        let (g0, g1) = (odd.addrs[0] + 4 * 4096, odd.addrs[0] + 6 * 4096);
        let want = format!("{g0:>16x} {g1:>16x}     8K   guard region (MADV_GUARD_INSTALL)");
        assert!(out.contains(&want), "no guard range {want:?}:\n{out}");
    }
    assert!(flags(&line_at(odd.addrs[2])).contains(&"hg".to_string()), "huge: {}", line_at(odd.addrs[2]));
    // JSON keeps the name as it is (JSON escapes it) and lists every mnemonic smaps printed.
    let (_, json, _) = run(&["map", &pid, "--json"]);
    let names = python(
        "import json,sys\nd=json.load(sys.stdin)\nprint('\\n'.join(' '.join(r['vm_flags']) for r in d['regions']))\nprint(any('\\x1b' in r['name'] for r in d['regions']))",
        &json,
    );
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let kernel: Vec<&str> =
        smaps.lines().filter_map(|l| l.strip_prefix("VmFlags:")).map(|f| f.trim()).collect();
    let ours: Vec<&str> = names.lines().collect();
    assert_eq!(&ours[..kernel.len()], &kernel[..], "VmFlags differ from smaps");
    assert_eq!(ours[kernel.len()], "True", "the ESC is kept in JSON's name");
}

#[test]
fn top_tells_zombies_from_kernel_threads() {
    // A child that exits and is not reaped while top runs.
    let mut z = Command::new("sh").args(["-c", "exit 0"]).spawn().unwrap();
    let pid = z.id();
    for _ in 0..200 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if st.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (code, out, _) = run(&["top", "--json"]);
    let _ = z.wait();
    assert_eq!(code, 0);
    let zombies = python("import json,sys\nd=json.load(sys.stdin)\nprint(d['skipped']['zombies'])", &out);
    assert!(zombies.trim().parse::<u64>().unwrap() >= 1, "{out:.400}");
    let (_, text, _) = run(&["top", "--sort", "pid"]);
    let pids: Vec<u32> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.contains(" processes"))
        .filter(|l| !l.contains("not permitted"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(pids.windows(2).all(|w| w[0] < w[1]), "--sort pid is ascending");
}

#[test]
fn a_picture_of_60k_vmas_is_small_and_has_a_legend() {
    let odd = OddSpace::start("svg60k", 60_000);
    let svg = odd.dir.join("big.svg");
    let (code, _, err) = run(&["map", &odd.pid().to_string(), "--svg", svg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.len() < 2 << 20, "{} bytes", text.len());
    assert!(text.contains("r--") && text.contains("rw-") && text.contains("dashed = free"));
    assert!(text.contains("VMAs,"), "no aggregated band");
    let ok = Command::new("python3")
        .args(["-c", "import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])"])
        .arg(&svg)
        .status()
        .unwrap();
    assert!(ok.success(), "invalid XML");
}

#[test]
fn replay_reads_ff_verbose_and_stack_traces() {
    strace_works();
    let dir = tmpdir("straceforms");
    let prog = ["sh", "-c", "true; ls / >/dev/null"];
    let plain = record(&dir, "plain", &[], &prog);
    let count = |args: &[&str]| -> (String, String) {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!out.contains("not understood"), "{args:?}:\n{out}");
        let failed = python(
            "import json,sys\nd=json.load(sys.stdin)\nk=d['calls_by_kind']\nprint(sum(v['failed'] for n,v in k.items() if n.startswith('exit')))\nprint(d['calls'])",
            &out,
        );
        let mut l = failed.lines();
        (l.next().unwrap().to_string(), l.next().unwrap().to_string())
    };
    let (exit_failed, calls) = count(&["replay", plain.to_str().unwrap(), "--json"]);
    assert_eq!(exit_failed, "0", "exit_group counted as failed");
    for (name, extra) in [("verbose", &["-X", "verbose"][..]), ("stack", &["-k"][..])] {
        let t = dir.join(format!("{name}.trace"));
        let st = Command::new("strace")
            .args(["-f", "-e", "trace=memory,process"])
            .args(extra)
            .arg("-o")
            .arg(&t)
            .args(prog)
            .status()
            .unwrap();
        assert!(st.success());
        let (f, c) = count(&["replay", t.to_str().unwrap(), "--json"]);
        assert_eq!(f, "0");
        assert!(c.parse::<u64>().unwrap() > 10, "{name}: {c} calls");
    }
    let prefix = dir.join("ff");
    let st = Command::new("strace")
        .args(["-ff", "-e", "trace=memory,process", "-o"])
        .arg(&prefix)
        .args(prog)
        .status()
        .unwrap();
    assert!(st.success());
    let (_, c) = count(&["replay", prefix.to_str().unwrap(), "--json"]);
    assert_eq!(c, calls, "-ff files replay the same calls as -f");
}
