//! Every readable process on the machine, loaded into a map: every map passes `check_invariants()`,
//! and its totals equal what the kernel says in `smaps_rollup` (Rss and Swap exactly; Pss, SwapPss and
//! Locked, which the kernel rounds down per VMA in `smaps` but once in the rollup, within one kB per
//! VMA) and in `status` (mapped bytes = `VmSize` + the `[vsyscall]` gate page, which is no VMA).
//! Processes that exit meanwhile are skipped; one whose memory keeps changing is read again.
//! This is the only test in its binary, so the test process itself is quiet while it reads itself.

use vmspace::procmaps::{self, Pid, ProcMaps, Stats, parse_rollup};

fn rollup(pid: u32) -> Option<Stats> {
    parse_rollup(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?).ok()
}

/// Why a reading of `p` disagrees with the kernel's totals `r`, if it does.
fn mismatch(p: &ProcMaps, r: &Stats) -> Option<String> {
    let t = p.totals();
    let slack = 1024 * p.regions.len() as u64;
    let within = |sum: u64, total: u64| sum <= total && total - sum < slack.max(1);
    if t.rss != r.rss {
        return Some(format!("Rss: sum {} ≠ rollup {}", t.rss, r.rss));
    }
    if t.swap != r.swap {
        return Some(format!("Swap: sum {} ≠ rollup {}", t.swap, r.swap));
    }
    if !within(t.pss, r.pss) {
        return Some(format!("Pss: sum {} vs rollup {}", t.pss, r.pss));
    }
    if !within(t.swap_pss, r.swap_pss) {
        return Some(format!("SwapPss: sum {} vs rollup {}", t.swap_pss, r.swap_pss));
    }
    if !within(t.locked, r.locked) {
        return Some(format!("Locked: sum {} vs rollup {}", t.locked, r.locked));
    }
    let mapped: u64 = p.regions.iter().map(|r| r.len()).sum();
    if p.map.size() != mapped {
        return Some(format!("map size {} ≠ sum of VMAs {}", p.map.size(), mapped));
    }
    if p.map.size() != p.status.vm_size + p.gate_size() {
        return Some(format!(
            "map size {} ≠ VmSize {} + gate {}",
            p.map.size(),
            p.status.vm_size,
            p.gate_size()
        ));
    }
    None
}

#[test]
fn every_process_matches_its_rollup() {
    let me = std::process::id();
    let mut buf = String::with_capacity(4 << 20);
    let (mut checked, mut gone, mut kernel, mut unstable) = (Vec::new(), 0, 0, Vec::new());
    for pid in procmaps::all_pids().unwrap() {
        let mut outcome: Option<Result<(), String>> = None;
        for _attempt in 0..8 {
            let Some(r1) = rollup(pid) else {
                outcome = None;
                break;
            };
            let p = match ProcMaps::load_with(Pid::Id(pid), &mut buf) {
                Ok(p) => p,
                Err(e) if e.is_gone() || e.is_denied() => {
                    outcome = None;
                    break;
                }
                Err(e) => panic!("pid {pid}: {e}"),
            };
            p.map.check_invariants().unwrap_or_else(|e| panic!("pid {pid}: {e}"));
            if p.regions.is_empty() {
                kernel += 1;
                outcome = None;
                break;
            }
            let r2 = rollup(pid);
            if r2 != Some(r1) || p.rollup != Some(r1) {
                outcome = Some(Err("memory kept changing while read".into()));
                continue;
            }
            match mismatch(&p, &r1) {
                None => {
                    outcome = Some(Ok(()));
                    break;
                }
                Some(m) => outcome = Some(Err(m)),
            }
        }
        match outcome {
            None => gone += 1,
            Some(Ok(())) => checked.push(pid),
            Some(Err(m)) => unstable.push((pid, m)),
        }
    }
    eprintln!(
        "checked {} processes; {gone} gone or unreadable, {kernel} kernel threads; unsettled: {unstable:?}",
        checked.len()
    );
    assert!(checked.contains(&me), "the test process itself did not match: {unstable:?}");
    assert!(checked.len() >= 4, "too few processes checked: {checked:?}; unsettled: {unstable:?}");
    // A process whose memory moves all the time may never give a settled reading; most do.
    assert!(unstable.len() * 4 <= checked.len(), "too many unsettled: {unstable:?}");
}
