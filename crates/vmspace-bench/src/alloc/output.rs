//! The report as tables (churn, the vmspace / mimalloc ratios, phases) and as JSON.

use std::fmt::Write as _;

use super::parent::{Churn, Outcome, Phases, Report, Row};
use super::{BUSY, IDLE, LIVE, MIB, PHASES_SAMPLE, THREADS};
use crate::grouped;

/// `s` as a JSON string.
fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// `a / b` as `1.23x`, or `-` when either is missing or `b` is zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// `v` with the formatter, or `-` when the run has no result.
fn cell<T>(v: Option<&T>, f: impl Fn(&T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn churn_table(r: &Report, verbose: bool) -> String {
    let mut s = format!(
        "churn: {LIVE} live blocks per thread of 64 KiB/256 KiB/1 MiB/4 MiB, every page touched, random \
         replacement, {} s per run\n{:<10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10} {:>12}\n",
        r.secs,
        "ALLOCATOR",
        "OPS/S 1T",
        "OPS/S 2T",
        "FAULTS/OP",
        "PEAK RSS",
        format!("RSS +{}s", r.settle),
        "LIVE SET",
        "RSS+/LIVE"
    );
    for row in &r.rows {
        if row.churn.iter().all(|(_, o)| o.done().is_none()) {
            // Not installed, or every run failed: one line says why.
            let why = row.churn.first().and_then(|(_, o)| o.why_not()).unwrap_or_default();
            let _ = writeln!(s, "{:<10} {why}", row.allocator);
            continue;
        }
        let (one, two) = (row.churn(1), row.churn(2));
        let _ = writeln!(
            s,
            "{:<10} {:>10} {:>10} {:>10} {:>8} MiB {:>8} MiB {:>6} MiB {:>12}",
            row.allocator,
            cell(one, |c| grouped(c.ops_per_sec as u64)),
            cell(two, |c| grouped(c.ops_per_sec as u64)),
            cell(one, |c| format!("{:.2}", c.faults_per_op)),
            cell(one, |c| format!("{:.1}", mib(c.peak_rss))),
            cell(one, |c| format!("{:.1}", mib(c.rss_after))),
            cell(one, |c| format!("{:.1}", mib(c.live))),
            cell(one, |c| format!("{:.2}", c.rss_after as f64 / c.live.max(1) as f64)),
        );
        for (t, o) in &row.churn {
            if let Some(why) = o.why_not() {
                let _ = writeln!(s, "{:<10}   {t} thread(s): {why}", "");
            }
            if let (true, Some(st)) = (verbose, o.done().and_then(|c| c.stats.as_ref())) {
                let _ = writeln!(s, "{:<10}   {t} thread(s): {st}", "");
            }
        }
    }
    s + "faults/op, peak RSS, RSS after and live set are of the 1-thread run; one op = one free + one \
         allocation\n"
}

fn churn_ratios(r: &Report) -> String {
    let find = |name: &str| r.rows.iter().find(|x| x.allocator == name);
    let (v, m) = (find("vmspace"), find("mimalloc"));
    let get = |row: Option<&Row>, t: usize, f: fn(&Churn) -> f64| row.and_then(|x| x.churn(t)).map(f);
    if v.is_none() || m.is_none() {
        return String::new();
    }
    let mut s = String::from("vmspace / mimalloc:");
    for t in THREADS {
        let _ =
            write!(s, " ops/s {t}T {},", ratio(get(v, t, |c| c.ops_per_sec), get(m, t, |c| c.ops_per_sec)));
    }
    let _ = writeln!(
        s,
        " faults/op {} (ops/s above 1x: vmspace is faster)",
        ratio(get(v, 1, |c| c.faults_per_op), get(m, 1, |c| c.faults_per_op))
    );
    let kept = |row| ratio(get(row, 1, |c| c.rss_after as f64), get(row, 1, |c| c.live as f64));
    let _ = writeln!(
        s,
        "RSS +{}s / live set (resident beyond the live blocks once the load stops, 1 thread): vmspace {}, mimalloc {}",
        r.settle,
        kept(v),
        kept(m)
    );
    s
}

fn phases_table(r: &Report, verbose: bool) -> String {
    let mut s = format!(
        "phases (1 thread): busy {} s, idle {} s (every block freed), busy {} s; RSS sampled every {} ms\n\
         {:<10} {:>11} {:>13} {:>13} {:>13} {:>14} {:>9} {:>12}\n",
        BUSY.as_secs(),
        IDLE.as_secs(),
        BUSY.as_secs(),
        PHASES_SAMPLE.as_millis(),
        "ALLOCATOR",
        "BUSY1 OPS/S",
        "RSS BUSY1",
        "RSS IDLE+2s",
        "RSS IDLE END",
        "BUSY2 0.2s OPS",
        "VS BUSY1",
        "BUSY2 FLT/OP"
    );
    for row in &r.rows {
        let Some(o) = &row.phases else { continue };
        let Some(p) = o.done() else {
            let _ = writeln!(s, "{:<10} {}", row.allocator, o.why_not().unwrap_or_default());
            continue;
        };
        let _ = writeln!(
            s,
            "{:<10} {:>11} {:>9.1} MiB {:>9.1} MiB {:>9.1} MiB {:>14} {:>9} {:>12.2}",
            row.allocator,
            grouped(p.busy1_ops_per_sec as u64),
            mib(p.rss_busy1_end),
            mib(p.rss_idle_2s),
            mib(p.rss_idle_end),
            grouped(p.busy2_early_ops_per_sec as u64),
            ratio(Some(p.busy2_early_ops_per_sec), Some(p.busy1_ops_per_sec)),
            p.busy2_faults_per_op,
        );
        if let (true, Some(st)) = (verbose, &p.stats) {
            let _ = writeln!(s, "{:<10}   {st}", "");
        }
    }
    s + "BUSY2 0.2s OPS: ops/s over the second busy phase's first 200 ms; VS BUSY1: against the first \
         busy phase's average. Each busy phase starts with no live block: its first 64 operations refill \
         them (allocations only)\n"
}

/// The report as tables: churn, the vmspace / mimalloc ratios, phases.
pub fn table(r: &Report, verbose: bool) -> String {
    let mut s = String::new();
    if r.rows.iter().any(|x| !x.churn.is_empty()) {
        s += &churn_table(r, verbose);
        s += &churn_ratios(r);
    }
    if r.rows.iter().any(|x| x.phases.is_some()) {
        if !s.is_empty() {
            s.push('\n');
        }
        s += &phases_table(r, verbose);
    }
    s
}

/// A JSON number, `null` when not finite.
fn jnum(v: f64) -> String {
    if v.is_finite() { format!("{v:.3}") } else { "null".into() }
}

/// The `"status"` and, when not measured, `"error"` members of a run.
fn jstatus<T>(o: &Outcome<T>) -> String {
    match o.why_not() {
        None => "\"status\":\"ok\"".into(),
        Some(w) => format!(
            "\"status\":\"{}\",\"error\":{}",
            if matches!(o, Outcome::NotInstalled(_)) { "not_installed" } else { "failed" },
            json_str(&w)
        ),
    }
}

fn jstats(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "null".into(), json_str)
}

fn churn_json(name: &str, t: usize, o: &Outcome<Churn>) -> String {
    let mut s = format!("{{\"allocator\":{},\"threads\":{t},{}", json_str(name), jstatus(o));
    if let Some(c) = o.done() {
        let _ = write!(
            s,
            ",\"ops_per_sec\":{},\"faults_per_op\":{},\"peak_rss_mib\":{},\"hwm_mib\":{},\"rss_after_mib\":{},\
             \"live_mib\":{},\"stats\":{}",
            jnum(c.ops_per_sec),
            jnum(c.faults_per_op),
            jnum(mib(c.peak_rss)),
            jnum(mib(c.hwm)),
            jnum(mib(c.rss_after)),
            jnum(mib(c.live)),
            jstats(&c.stats)
        );
    }
    s + "}"
}

fn phases_json(name: &str, o: &Outcome<Phases>) -> String {
    let mut s = format!("{{\"allocator\":{},{}", json_str(name), jstatus(o));
    if let Some(p) = o.done() {
        let series: Vec<String> =
            p.series.iter().map(|(t, r)| format!("[{},{}]", jnum(*t), jnum(mib(*r)))).collect();
        let _ = write!(
            s,
            ",\"busy1_ops_per_sec\":{},\"busy1_faults_per_op\":{},\"rss_busy1_end_mib\":{},\"rss_idle_2s_mib\":{},\
             \"rss_idle_end_mib\":{},\"busy2_early_ops_per_sec\":{},\"busy2_ops_per_sec\":{},\
             \"busy2_faults_per_op\":{},\"rss_series_mib\":[{}],\"stats\":{}",
            jnum(p.busy1_ops_per_sec),
            jnum(p.busy1_faults_per_op),
            jnum(mib(p.rss_busy1_end)),
            jnum(mib(p.rss_idle_2s)),
            jnum(mib(p.rss_idle_end)),
            jnum(p.busy2_early_ops_per_sec),
            jnum(p.busy2_ops_per_sec),
            jnum(p.busy2_faults_per_op),
            series.join(","),
            jstats(&p.stats)
        );
    }
    s + "}"
}

/// The report as JSON: `{"secs", "settle", "churn": [one object per allocator and thread count],
/// "phases": [one object per allocator]}`; RSS figures in MiB.
pub fn json(r: &Report) -> String {
    let churn: Vec<String> =
        r.rows.iter().flat_map(|x| x.churn.iter().map(|(t, o)| churn_json(&x.allocator, *t, o))).collect();
    let phases: Vec<String> =
        r.rows.iter().filter_map(|x| x.phases.as_ref().map(|o| phases_json(&x.allocator, o))).collect();
    format!(
        "{{\"secs\":{},\"settle\":{},\"churn\":{},\"phases\":{}}}\n",
        jnum(r.secs),
        jnum(r.settle),
        jarray(&churn),
        jarray(&phases)
    )
}

/// A JSON array with one item per line (`[]` when empty).
fn jarray(items: &[String]) -> String {
    if items.is_empty() { "[]".into() } else { format!("[\n{}\n]", items.join(",\n")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_row_that_says_what_to_install() {
        let missing = |name: &str, pkg| Row {
            allocator: name.into(),
            churn: THREADS.iter().map(|&t| (t, Outcome::NotInstalled(pkg))).collect(),
            phases: Some(Outcome::NotInstalled(pkg)),
        };
        let r = Report { secs: 4.0, settle: 2.0, rows: vec![missing("jemalloc", "libjemalloc2")] };
        let t = table(&r, false);
        assert!(
            t.lines().any(|l| l.starts_with("jemalloc") && l.ends_with("(apt-get install libjemalloc2)")),
            "{t}"
        );
        let j = json(&r);
        assert!(j.contains("\"status\":\"not_installed\"") && !j.contains("ops_per_sec"), "{j}");
    }
}
