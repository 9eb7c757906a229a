//! `vmspace bench`: the comparison benchmarks in one process, each workload against its named
//! alternative in the same run, printed as a table of medians and ratios. Quicker and rougher than
//! the criterion benches (`cargo bench`), which remain the reference figures.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use vmspace::reclaim::{Action, ReclaimRing};
use vmspace::scratch::ScratchSpace;
use vmspace::{AddressSpace, FindSpec, MapSpec, Prot, VmMap};

const PS: u64 = 4096;

/// One line of the table: a workload, vmspace's time, the alternative's, in ns per operation.
pub struct Row {
    /// The benchmark group.
    pub group: &'static str,
    /// What is measured.
    pub workload: String,
    /// The alternative measured against.
    pub alternative: &'static str,
    /// vmspace, ns per operation (median of 7 samples).
    pub vmspace_ns: f64,
    /// The alternative, ns per operation.
    pub alternative_ns: f64,
}

/// Median ns per call of `f` over 7 samples of `iters` calls.
fn median_ns(iters: u64, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[3]
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn map_rows(rows: &mut Vec<Row>) -> Result<(), String> {
    const N: u64 = 100_000;
    let base = 0x1000_0000u64;
    let at = |i: u64| base + i * 4 * PS + (i / 8) * PS;
    let prot = |i: u64| if i.is_multiple_of(2) { Prot::RW } else { Prot::READ };
    let mut vm: VmMap = VmMap::new(base, base + (N + 64) * 8 * PS).map_err(|e| e.to_string())?;
    let mut bt: BTreeMap<u64, (u64, u8)> = BTreeMap::new();
    for i in 0..N {
        vm.insert(at(i)..at(i) + 4 * PS, MapSpec::new(prot(i), Prot::ALL)).map_err(|e| e.to_string())?;
        bt.insert(at(i), (at(i) + 4 * PS, prot(i).bits()));
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let probes: Vec<u64> = (0..4096).map(|_| at(rng(&mut seed) % N) + PS).collect();
    let (mut i, mut j) = (0usize, 0usize);
    rows.push(Row {
        group: "map",
        workload: format!("random lookup, {N} entries"),
        alternative: "BTreeMap range map",
        vmspace_ns: median_ns(200_000, || {
            i = (i + 1) & 4095;
            black_box(vm.lookup_entry(probes[i]).map(|e| e.prot()));
        }),
        alternative_ns: median_ns(200_000, || {
            j = (j + 1) & 4095;
            black_box(
                bt.range(..=probes[j]).next_back().filter(|(_, (e, _))| probes[j] < *e).map(|(_, (_, p))| *p),
            );
        }),
    });
    let (min, max) = (vm.min(), vm.max());
    let spec = FindSpec { align: 16 * PS, ..FindSpec::new(16 * PS) };
    rows.push(Row {
        group: "map",
        workload: format!("64 KiB-aligned find_space, {N} fragmented entries"),
        alternative: "linear scan of BTreeMap gaps",
        vmspace_ns: median_ns(20_000, || {
            black_box(vm.find_space_with(&spec).ok());
        }),
        alternative_ns: median_ns(20, || {
            let mut prev = min;
            let mut found = None;
            for (s, (e, _)) in &bt {
                let a = prev.div_ceil(16 * PS) * 16 * PS;
                if a + 16 * PS <= *s {
                    found = Some(a);
                    break;
                }
                prev = *e;
            }
            black_box(found.or(Some(prev)).filter(|a| *a < max));
        }),
    });
    let p = at((N / 2) & !1) + PS;
    rows.push(Row {
        group: "map",
        workload: format!("protect a middle page and back, {N} entries"),
        alternative: "BTreeMap range map that knows the layout (split, rejoin)",
        vmspace_ns: median_ns(20_000, || {
            vm.protect(p..p + PS, Prot::READ).unwrap();
            vm.protect(p..p + PS, Prot::RW).unwrap();
        }),
        alternative_ns: median_ns(20_000, || {
            // Split the entry around the page, then put it back whole: what a plain range map does.
            let (start, (end, old)) = bt.range(..=p).next_back().map(|(k, v)| (*k, *v)).unwrap();
            bt.insert(start, (p, old));
            bt.insert(p, (p + PS, Prot::READ.bits()));
            bt.insert(p + PS, (end, old));
            bt.remove(&p);
            bt.remove(&(p + PS));
            bt.insert(start, (end, old));
        }),
    });
    Ok(())
}

fn space_rows(rows: &mut Vec<Row>) -> Result<(), String> {
    const N: u64 = 10_000;
    let e = |e: vmspace::Error| e.to_string();
    let s = AddressSpace::reserve((N + 8) * 4 * PS).map_err(e)?;
    let a = s.map(N * 4 * PS, MapSpec::new(Prot::RW, Prot::ALL)).map_err(e)?;
    let raw = AddressSpace::reserve(4 * PS).map_err(e)?;
    let r = raw.map(3 * PS, MapSpec::new(Prot::RW, Prot::ALL)).map_err(e)?;
    for i in (1..N).step_by(2) {
        s.protect(a + i * 4 * PS..a + (i + 1) * 4 * PS, Prot::READ).map_err(e)?;
    }
    let p = a + ((N / 2) & !1) * 4 * PS + PS;
    rows.push(Row {
        group: "space",
        workload: format!("protect a page and back, {N} entries"),
        alternative: "two mprotect calls",
        vmspace_ns: median_ns(2_000, || {
            s.protect(p..p + PS, Prot::READ).unwrap();
            s.protect(p..p + PS, Prot::RW).unwrap();
        }),
        // SAFETY: `r` is this benchmark's own mapping; nothing holds a reference into it.
        alternative_ns: median_ns(2_000, || unsafe {
            vmspace::os::protect(r + PS, PS, Prot::READ).unwrap();
            vmspace::os::protect(r + PS, PS, Prot::RW).unwrap();
        }),
    });
    rows.push(Row {
        group: "space",
        workload: format!("map and unmap a page, {N} entries"),
        alternative: "mmap + munmap",
        vmspace_ns: median_ns(2_000, || {
            let m = s.map(PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
            s.unmap(m..m + PS).unwrap();
        }),
        alternative_ns: median_ns(2_000, || {
            let m = vmspace::os::reserve(PS).unwrap();
            // SAFETY: the page just reserved, known to no one else.
            unsafe { vmspace::os::unmap(m, PS) }.unwrap();
        }),
    });
    Ok(())
}

fn ring_rows(rows: &mut Vec<Row>) -> Result<(), String> {
    let cap = ReclaimRing::round_capacity(1024);
    let mut ring = ReclaimRing::builder().capacity(cap, cap).build().map_err(|e| e.to_string())?;
    let list: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::with_capacity(1024));
    rows.push(Row {
        group: "ring",
        workload: "try_enter + try_cancel of a freed block".into(),
        alternative: "push + pop on a Mutex<Vec> free list",
        vmspace_ns: median_ns(200_000, || {
            let mut e = ring.try_enter(0x10_0000, 0x10000, Action::Deallocate, None).unwrap();
            if e.id.is_none() {
                // Full of cancelled holes: let the reclaimer pass them, as a real user would.
                let _ = ring.drain();
                e = ring.try_enter(0x10_0000, 0x10000, Action::Deallocate, None).unwrap();
            }
            let id = e.id.expect("an empty ring takes an entry");
            let _ = black_box(ring.try_cancel(id, 0x10_0000, 0x10000, Action::Deallocate).unwrap());
        }),
        alternative_ns: median_ns(200_000, || {
            list.lock().unwrap().push((0x10_0000, 0x10000));
            black_box(list.lock().unwrap().pop());
        }),
    });
    Ok(())
}

fn scratch_rows(rows: &mut Vec<Row>) -> Result<(), String> {
    let scratch = ScratchSpace::new().map_err(|e| e.to_string())?;
    let pool: Mutex<Vec<u32>> = Mutex::new((0..64).collect());
    rows.push(Row {
        group: "scratch",
        workload: "claim + release a slot".into(),
        alternative: "pop + push on a Mutex<Vec>",
        vmspace_ns: median_ns(200_000, || {
            let s = scratch.claim().unwrap();
            black_box(s.write_addr());
            scratch.release(s).unwrap();
        }),
        alternative_ns: median_ns(200_000, || {
            let s = pool.lock().unwrap().pop().unwrap();
            pool.lock().unwrap().push(black_box(s));
        }),
    });
    Ok(())
}

/// Runs the chosen benchmarks (`map`, `space`, `ring`, `scratch` or `all`).
pub fn run(which: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let all = which == "all";
    if !all && !["map", "space", "ring", "scratch"].contains(&which) {
        return Err(format!("unknown benchmark {which:?}: map, space, ring, scratch, all or alloc"));
    }
    if all || which == "map" {
        map_rows(&mut rows)?;
    }
    if all || which == "space" {
        space_rows(&mut rows)?;
    }
    if all || which == "ring" {
        ring_rows(&mut rows)?;
    }
    if all || which == "scratch" {
        scratch_rows(&mut rows)?;
    }
    Ok(rows)
}

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<8} {:<52} {:>12} {:>12} {:>8}  {}\n",
        "GROUP", "WORKLOAD", "VMSPACE", "OTHER", "RATIO", "AGAINST"
    );
    for r in rows {
        s += &format!(
            "{:<8} {:<52} {:>10.1}ns {:>10.1}ns {:>7.2}x  {}\n",
            r.group,
            r.workload,
            r.vmspace_ns,
            r.alternative_ns,
            r.vmspace_ns / r.alternative_ns,
            r.alternative
        );
    }
    s + "ratio = vmspace / other (below 1: vmspace is faster); medians of 7 samples\n"
}

/// The rows as JSON.
pub fn json(rows: &[Row]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"group\":\"{}\",\"workload\":\"{}\",\"alternative\":\"{}\",\"vmspace_ns\":{:.1},\"alternative_ns\":{:.1},\"ratio\":{:.3}}}",
                r.group,
                r.workload,
                r.alternative,
                r.vmspace_ns,
                r.alternative_ns,
                r.vmspace_ns / r.alternative_ns
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

/// The rows as an SVG bar chart: one bar per workload, its length the ratio on a log scale
/// (0.01× to 100×), with a line at 1× (parity).
pub fn svg(rows: &[Row]) -> String {
    let (w, row_h, left) = (900.0, 28.0, 430.0);
    let h = 60.0 + row_h * rows.len() as f64;
    let x = |ratio: f64| left + (ratio.clamp(0.01, 100.0).log10() + 2.0) / 4.0 * (w - left - 20.0);
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">vmspace / alternative (log scale; left of the line: vmspace is faster)</text>\n\
         <line x1=\"{p}\" y1=\"30\" x2=\"{p}\" y2=\"{h}\" stroke=\"#444\" stroke-dasharray=\"4 3\"/>\n",
        p = x(1.0)
    );
    for (i, r) in rows.iter().enumerate() {
        let ratio = r.vmspace_ns / r.alternative_ns;
        let y = 40.0 + row_h * i as f64;
        let (a, b) = (x(1.0).min(x(ratio)), x(1.0).max(x(ratio)));
        let colour = if ratio <= 1.0 { "#2e7d32" } else { "#c62828" };
        s += &format!(
            "<text x=\"10\" y=\"{ty}\">{g}: {wk}</text>\n<rect x=\"{a:.1}\" y=\"{y}\" width=\"{bw:.1}\" height=\"18\" fill=\"{colour}\"><title>{g}: {wk}: {ratio:.3}x against {alt}</title></rect>\n<text x=\"{tx:.1}\" y=\"{ty}\">{ratio:.2}x</text>\n",
            ty = y + 13.0,
            g = r.group,
            wk = esc(&r.workload),
            alt = esc(r.alternative),
            bw = (b - a).max(1.0),
            tx = b + 4.0,
        );
    }
    s + "</svg>\n"
}
