//! What pmap, smem and vmmap users expect (issue 19): `map --summary` equal to `smaps_rollup`, the
//! per-VMA listing equal to procps' `pmap -X`, several pids, filters, top's USS/dirty and filters.
//! All on stopped children with guard regions, locked and huge-page ranges and odd file names.

mod common;

use std::collections::HashMap;
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

/// `python3 -c code` over `input`: prints one value per line.
fn python(code: &str, input: &str) -> Vec<String> {
    let mut c = Command::new("python3")
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (the tests read JSON with it)");
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(c.stdin.take());
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed on {input:.300}");
    String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect()
}

/// The `Key: N kB` lines of `smaps_rollup`, in bytes.
fn rollup(pid: u32) -> HashMap<String, u64> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_string(), v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()? * 1024))
        })
        .collect()
}

fn check_summary(odd: &OddSpace) {
    let pid = odd.pid();
    // Pss depends on how many processes map each page, which other processes change: read until
    // two rollups around one summary agree.
    for _ in 0..10 {
        let before = rollup(pid);
        let (code, out, err) = run(&["map", &pid.to_string(), "--summary", "--json"]);
        assert_eq!(code, 0, "{err}");
        let after = rollup(pid);
        if before != after {
            continue;
        }
        let v = python(
            "import json,sys\nd=json.load(sys.stdin)\nt=d['totals']\n\
             print(t['resident'],t['pss'],t['dirty'],t['clean'],t['swapped'],t['uss'])\n\
             print(sum(r['resident'] for r in d['rows']), sum(r['dirty'] for r in d['rows']), sum(r['uss'] for r in d['rows']), sum(r['swapped'] for r in d['rows']))\n\
             print(' '.join(sorted(set(r['kind'] for r in d['rows']))))",
            &out,
        );
        let r = &before;
        let want = format!(
            "{} {} {} {} {} {}",
            r["Rss"],
            r["Pss"],
            r["Shared_Dirty"] + r["Private_Dirty"],
            r["Shared_Clean"] + r["Private_Clean"],
            r["Swap"],
            r["Private_Clean"] + r["Private_Dirty"]
        );
        assert_eq!(v[0], want, "totals vs smaps_rollup");
        // The rows' exact counters add up to the rollup too (Pss is rounded per VMA, so not it).
        let rows = format!(
            "{} {} {} {}",
            r["Rss"],
            r["Shared_Dirty"] + r["Private_Dirty"],
            r["Private_Clean"] + r["Private_Dirty"],
            r["Swap"]
        );
        assert_eq!(v[1], rows, "rows vs smaps_rollup");
        for k in ["file", "heap", "stack", "anon", "shared-anon", "vdso"] {
            assert!(v[2].split(' ').any(|x| x == k), "no {k} row: {}", v[2]);
        }
        return;
    }
    panic!("smaps_rollup of a stopped process kept changing");
}

#[test]
fn summary_equals_smaps_rollup() {
    check_summary(&OddSpace::start("summary", 0));
}

#[test]
fn summary_equals_smaps_rollup_with_60k_vmas() {
    check_summary(&OddSpace::start("summary60k", 60_000));
}

/// `pmap -X PID` as rows keyed by start address: (Size, Rss, Anonymous, Swap, Locked) in bytes.
fn pmap(pid: u32) -> Vec<(u64, [u64; 5])> {
    let out = Command::new("pmap").arg("-X").arg(pid.to_string()).output().expect("pmap (procps) is needed");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().skip(1);
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let cols = [col("Size"), col("Rss"), col("Anonymous"), col("Swap"), col("Locked")];
    lines
        .take_while(|l| !l.trim_start().starts_with("===="))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (u64::from_str_radix(w[0], 16).unwrap(), cols.map(|c| w[c].parse::<u64>().unwrap() * 1024))
        })
        .collect()
}

fn check_pmap(odd: &OddSpace) {
    let pid = odd.pid();
    let theirs = pmap(pid);
    let (code, out, err) = run(&["map", &pid.to_string(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let ours: Vec<(u64, [u64; 5])> = python(
        "import json,sys\nd=json.load(sys.stdin)\nfor r in d['regions']:\n s=r['stats']\n print(r['start'],r['size'],s['rss'],s['anonymous'],s['swap'],s['locked'])",
        &out,
    )
    .iter()
    .map(|l| {
        let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
        (v[0], [v[1], v[2], v[3], v[4], v[5]])
    })
    .collect();
    assert_eq!(ours.len(), theirs.len(), "VMA count vs pmap -X");
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t, "VMA at {:#x}: ours (size rss anon swap locked) vs pmap -X", o.0);
    }
    assert!(ours.iter().any(|(_, v)| v[4] > 0), "no locked range compared");
}

#[test]
fn the_listing_equals_pmap_x() {
    check_pmap(&OddSpace::start("pmap", 0));
}

#[test]
fn the_listing_equals_pmap_x_with_60k_vmas() {
    check_pmap(&OddSpace::start("pmap60k", 60_000));
}

#[test]
fn several_pids_and_filters() {
    let a = OddSpace::start("multi-a", 0);
    let b = OddSpace::start("multi-b", 0);
    let (pa, pb) = (a.pid().to_string(), b.pid().to_string());
    let (code, out, _) = run(&["map", &pa, &pb]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("pid {pa} ")) && out.contains(&format!("pid {pb} ")));
    let (code, out, _) = run(&["map", &pa, &pb, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "one JSON object per process");
    // One bad pid among good ones: the good ones are shown, the exit status says error.
    let (code, out, err) = run(&["map", &pa, "999999999"]);
    assert_eq!(code, 2);
    assert!(out.contains(&format!("pid {pa} ")) && err.contains("does not exist"), "{err}");
    // Filters: --kind, --file, --addr.
    let (_, out, _) = run(&["map", &pa, "--kind", "stack"]);
    let rows: Vec<&str> = out.lines().skip(2).take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].ends_with("[stack]"));
    let (_, out, _) = run(&["map", &pa, "--file", "[31mname"]);
    assert!(out.lines().skip(2).take_while(|l| !l.is_empty()).all(|l| l.contains("odd\\e[31mname")), "{out}");
    let at = format!("{:x}", a.addrs[1]);
    let (_, out, _) = run(&["map", &pa, "--addr", &at]);
    let rows: Vec<&str> = out.lines().skip(2).take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].split_whitespace().nth(6).unwrap().contains("lo"), "{out}");
    assert_eq!(run(&["map", &pa, "--kind", "nonsense"]).0, 2);
    assert_eq!(run(&["map", &pa, "--addr", "zz"]).0, 2);
}

#[test]
fn top_shows_uss_and_dirty_and_filters() {
    let a = OddSpace::start("topfilter", 0);
    let pid = a.pid().to_string();
    let (code, out, _) = run(&["top", "--pid", &pid, "--json"]);
    assert_eq!(code, 0);
    let v = python(
        "import json,sys\nd=json.load(sys.stdin)\nprint(len(d['processes']))\np=d['processes'][0]\nprint(p['pid'],p['uss'],p['dirty'])",
        &out,
    );
    assert_eq!(v[0], "1");
    let r = rollup(a.pid());
    let want = format!(
        "{pid} {} {}",
        r["Private_Clean"] + r["Private_Dirty"],
        r["Shared_Dirty"] + r["Private_Dirty"]
    );
    assert_eq!(v[1], want);
    let (_, out, _) = run(&["top", "--name", "odd", "--user", "root"]);
    assert!(out.lines().any(|l| l.split_whitespace().next() == Some(pid.as_str())), "{out}");
    assert!(out.contains("USS") && out.contains("DIRTY"));
    let (_, out, _) = run(&["top", "--name", "no-such-command-here", "--json"]);
    assert!(out.starts_with("{\"processes\":[]"), "{out}");
    assert_eq!(run(&["top", "--user", "no-such-user-here"]).0, 2);
}

#[test]
fn top_as_nobody_lists_what_it_may_read_and_marks_the_rest() {
    let exe = env!("CARGO_BIN_EXE_vmspace");
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", exe, "top", "--json"])
        .output()
        .expect("setpriv (util-linux) runs the command as nobody");
    assert!(out.status.success(), "exit {} {}", out.status, String::from_utf8_lossy(&out.stderr));
    let v = python(
        "import json,sys\nd=json.load(sys.stdin)\nps=d['processes']\n\
         print(sum(1 for p in ps if p['readable']), sum(1 for p in ps if not p['readable']))\n\
         print(any(p['pid']==1 and not p['readable'] for p in ps))\n\
         print(all(p['name']=='vmspace' for p in ps if p['readable']))",
        &String::from_utf8_lossy(&out.stdout),
    );
    let counts: Vec<u64> = v[0].split(' ').map(|x| x.parse().unwrap()).collect();
    assert!(counts[0] >= 1, "not even itself readable: {v:?}");
    assert!(counts[1] >= 1, "nothing marked unreadable: {v:?}");
    assert_eq!(v[1], "True", "pid 1 (root's) not listed as unreadable");
    assert_eq!(v[2], "True", "nobody read another user's memory");
    let text = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", exe, "top"])
        .output()
        .unwrap();
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("not permitted: another user's process"));
}

#[test]
fn diff_of_snapshots_and_live_processes() {
    let a = OddSpace::start("diff", 0);
    let pid = a.pid().to_string();
    let snap = a.dir.join("snap.json");
    let (code, out, _) = run(&["map", &pid, "--json"]);
    assert_eq!(code, 0);
    std::fs::write(&snap, &out).unwrap();
    let s = snap.to_str().unwrap();
    // A stopped process against its own snapshot: nothing differs.
    let (code, out, err) = run(&["diff", s, &pid]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 added, 0 removed, 0 changed"), "{out}");
    // A snapshot with one VMA removed, one changed in protection and resident bytes.
    let edited = a.dir.join("edited.json");
    let changed = python(
        "import json,sys\nd=json.load(sys.stdin)\nr=d['regions']\ndel r[1]\nr[2]['prot']='---'\nr[2]['stats']['rss']+=8192\nprint(json.dumps(d))",
        &out_of(&["map", &pid, "--json"]),
    );
    std::fs::write(&edited, changed.join("\n")).unwrap();
    let (code, out, _) = run(&["diff", s, edited.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("0 added, 1 removed, 1 changed"), "{out}");
    assert!(out.contains("rss +8K") && out.contains("prot "), "{out}");
    let (code, out, _) = run(&["diff", s, edited.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1);
    let v = python(
        "import json,sys\nd=json.load(sys.stdin)\nprint(len(d['removed']), len(d['changed']), d['rss_delta'])",
        &out,
    );
    assert_eq!(v[0].split(' ').take(2).collect::<Vec<_>>(), ["1", "1"]);
    // Errors.
    assert_eq!(run(&["diff", s, "999999999"]).0, 2);
    let junk = a.dir.join("junk.json");
    std::fs::write(&junk, "not json\n").unwrap();
    let (code, _, err) = run(&["diff", junk.to_str().unwrap(), s]);
    assert_eq!(code, 2);
    assert!(err.contains("not a `vmspace map --json` snapshot"), "{err}");
}

fn out_of(args: &[&str]) -> String {
    run(args).1
}

#[test]
fn map_watch_shows_what_appeared_and_grew() {
    // A stopped process: samples agree with maps (less the [vsyscall] gate, which is no VMA) and
    // nothing changes between them.
    let a = OddSpace::start("watch", 0);
    let pid = a.pid().to_string();
    let (code, out, err) = run(&["map", &pid, "--interval", "0.05", "--count", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = python(
        "import json,sys\nfor l in sys.stdin:\n d=json.loads(l)\n print(d['sample'],d['vmas'],len(d['appeared'])+len(d['gone'])+len(d['changed']),d['rss_delta'],d['procmap_query'])",
        &out,
    );
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let vmas = maps.lines().filter(|l| !l.ends_with("[vsyscall]")).count();
    for (i, l) in v.iter().enumerate() {
        let w: Vec<String> = l.split(' ').map(String::from).collect();
        assert_eq!(w[..4], [(i + 1).to_string(), vmas.to_string(), "0".into(), "0".into()], "{out}");
    }
    // Linux 6.11 and later answer PROCMAP_QUERY; the listing came from it there.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut ver = release.split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (ver.next().unwrap(), ver.next().unwrap());
    assert_eq!(v[0].ends_with("True"), (major, minor) >= (6, 11), "{release}: {out}");
    // A process that maps and writes 1 MiB every 50 ms: the samples see VMAs appear (or grow, when
    // the kernel merges them with a neighbour) and resident memory rise.
    let mut grower = Command::new("python3")
        .args([
            "-c",
            "import mmap,time\nl=[]\nfor i in range(200):\n m=mmap.mmap(-1,1<<20); m.write(b'x'*(1<<20)); l.append(m); time.sleep(0.05)",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, out, err) =
        run(&["map", &grower.id().to_string(), "--interval", "0.3", "--count", "4", "--json"]);
    let _ = grower.kill();
    let _ = grower.wait();
    assert_eq!(code, 0, "{err}");
    let v = python(
        "import json,sys\nch=0;rss=0\nfor l in sys.stdin:\n d=json.loads(l); ch+=len(d['appeared'])+len(d['changed']); rss+=d['rss_delta']\nprint(ch, rss)",
        &out,
    );
    let w: Vec<i64> = v[0].split(' ').map(|x| x.parse().unwrap()).collect();
    assert!(w[0] > 0, "no VMA appeared or grew: {out}");
    assert!(w[1] >= 1 << 20, "resident did not grow: {out}");
}

#[test]
fn top_watch_samples_with_deltas_and_cost() {
    let a = OddSpace::start("topwatch", 0);
    let pid = a.pid().to_string();
    let (code, out, err) = run(&["top", "--pid", &pid, "--interval", "0.05", "--count", "3", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = python(
        "import json,sys\nfor l in sys.stdin:\n d=json.loads(l); p=d['processes'][0]\n print(d['sample'], p['pid'], p['rss'], p['new'], p['rss_delta'], d['ms_per_process'] > 0)",
        &out,
    );
    let rss = rollup(a.pid())["Rss"];
    assert_eq!(
        v,
        [
            format!("1 {pid} {rss} True 0 True"),
            format!("2 {pid} {rss} False 0 True"),
            format!("3 {pid} {rss} False 0 True")
        ]
    );
    let (code, out, _) = run(&["top", "--pid", &pid, "--interval", "0.05", "--count", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("-- sample 2") && out.contains("ms per process") && out.contains("ΔRSS"), "{out}");
    assert_eq!(run(&["top", "--interval", "0"]).0, 2);
    assert_eq!(run(&["top", "--interval", "nan"]).0, 2);
}
