//! One measured run in a child process (the hidden `alloc-child` command), and the lines it prints
//! for the parent: `result k=v …`, for phases `series t:rss …`, and `stats …`.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::allocators::Local;
use super::parent::{Churn, Phases};
use super::workload::{self, ChurnRun, PhasesRun};
use super::{ChildArgs, Workload, check_times};

/// The churn run's `result` line.
fn churn_line(r: &ChurnRun) -> String {
    let ChurnRun { ops, secs, faults, peak_rss, hwm, rss_after, live } = r;
    format!(
        "result ops={ops} secs={secs} faults={faults} peak_rss={peak_rss} hwm={hwm} rss_after={rss_after} live={live}"
    )
}

/// The phases run's `result` and `series` lines.
fn phases_lines(p: &PhasesRun) -> String {
    let mut out = format!(
        "result busy1_ops={} busy1_secs={} busy1_faults={} rss_busy1_end={} rss_idle_probe={} \
         rss_idle_end={} busy2_ops={} busy2_secs={} busy2_faults={} busy2_early_ops={} busy2_early_secs={}\nseries",
        p.busy1.0,
        p.busy1.1,
        p.busy1.2,
        p.rss.0,
        p.rss.1,
        p.rss.2,
        p.busy2.0,
        p.busy2.1,
        p.busy2.2,
        p.busy2_early.0,
        p.busy2_early.1,
    );
    for (t, r) in &p.series {
        let _ = write!(out, " {t:.3}:{r}");
    }
    out
}

/// Runs one measurement in this process (the hidden `alloc-child` command) and returns its output:
/// a `result k=v …` line, for phases a `series t:rss …` line, and a `stats …` line when the
/// allocator keeps counters.
pub fn child(args: &ChildArgs) -> Result<String, String> {
    check_times(args.secs, args.settle)?;
    if !(1..=256).contains(&args.threads) {
        return Err(format!("--threads {}: 1 to 256", args.threads));
    }
    let local = Local::new(&args.allocator)?;
    let mut out = match args.workload {
        Workload::Churn => churn_line(&workload::churn(local.get(), args.threads, args.secs, args.settle)),
        Workload::Phases => phases_lines(&workload::phases(local.get())),
        Workload::Both => return Err("a child runs one workload: churn or phases".into()),
    };
    out.push('\n');
    if let Some(s) = local.stats() {
        out += &format!("stats {s}\n");
    }
    Ok(out)
}

/// A child's output: the numbers of its `result` line, its `series`, its `stats`.
pub(crate) struct ChildOut {
    nums: HashMap<String, f64>,
    series: Vec<(f64, u64)>,
    stats: Option<String>,
}

impl ChildOut {
    /// Reads a child's output.
    pub(crate) fn parse(text: &str) -> Result<ChildOut, String> {
        let mut c = ChildOut { nums: HashMap::new(), series: Vec::new(), stats: None };
        for line in text.lines() {
            if let Some(r) = line.strip_prefix("result ") {
                for kv in r.split_whitespace() {
                    let (k, v) = kv.split_once('=').ok_or_else(|| format!("bad child field {kv:?}"))?;
                    let v = v.parse::<f64>().map_err(|_| format!("bad child number {kv:?}"))?;
                    c.nums.insert(k.to_string(), v);
                }
            } else if let Some(s) = line.strip_prefix("series") {
                c.series = s
                    .split_whitespace()
                    .filter_map(|p| p.split_once(':'))
                    .filter_map(|(t, r)| Some((t.parse().ok()?, r.parse().ok()?)))
                    .collect();
            } else if let Some(s) = line.strip_prefix("stats ") {
                c.stats = Some(s.to_string());
            }
        }
        if c.nums.is_empty() { Err("the child printed no result".into()) } else { Ok(c) }
    }

    fn num(&self, k: &str) -> Result<f64, String> {
        self.nums.get(k).copied().ok_or_else(|| format!("the child's result lacks {k}"))
    }

    fn bytes(&self, k: &str) -> Result<u64, String> {
        self.num(k).map(|v| v as u64)
    }

    /// The churn row of a child's output.
    pub(crate) fn churn(self, threads: usize) -> Result<Churn, String> {
        let ops = self.num("ops")?;
        Ok(Churn {
            threads,
            ops_per_sec: ops / self.num("secs")?,
            faults_per_op: self.num("faults")? / ops.max(1.0),
            peak_rss: self.bytes("peak_rss")?,
            hwm: self.bytes("hwm")?,
            rss_after: self.bytes("rss_after")?,
            live: self.bytes("live")?,
            stats: self.stats,
        })
    }

    /// The phases row of a child's output.
    pub(crate) fn phases(self) -> Result<Phases, String> {
        let (b1, b2) = (self.num("busy1_ops")?, self.num("busy2_ops")?);
        Ok(Phases {
            busy1_ops_per_sec: b1 / self.num("busy1_secs")?,
            busy2_early_ops_per_sec: self.num("busy2_early_ops")? / self.num("busy2_early_secs")?,
            busy2_ops_per_sec: b2 / self.num("busy2_secs")?,
            busy1_faults_per_op: self.num("busy1_faults")? / b1.max(1.0),
            busy2_faults_per_op: self.num("busy2_faults")? / b2.max(1.0),
            rss_busy1_end: self.bytes("rss_busy1_end")?,
            rss_idle_2s: self.bytes("rss_idle_probe")?,
            rss_idle_end: self.bytes("rss_idle_end")?,
            series: self.series,
            stats: self.stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_result_line_becomes_a_churn_row() {
        let out = "result ops=200 secs=2 faults=600 peak_rss=4194304 hwm=8388608 rss_after=1048576 live=2097152\n\
                   stats AllocStats { mapped: 1 }\n";
        let c = ChildOut::parse(out).unwrap().churn(2).unwrap();
        assert_eq!((c.ops_per_sec, c.faults_per_op, c.peak_rss, c.live), (100.0, 3.0, 4 << 20, 2 << 20));
        assert_eq!(c.stats.as_deref(), Some("AllocStats { mapped: 1 }"));
        assert!(ChildOut::parse("nothing").is_err());
        assert!(ChildOut::parse("result ops=1").unwrap().churn(1).is_err(), "a missing field is an error");
    }

    #[test]
    fn the_lines_a_child_prints_are_the_lines_the_parent_reads() {
        let r = ChurnRun {
            ops: 10,
            secs: 0.5,
            faults: 30,
            peak_rss: 1 << 20,
            hwm: 2 << 20,
            rss_after: 3 << 20,
            live: 4 << 20,
        };
        let c = ChildOut::parse(&churn_line(&r)).unwrap().churn(1).unwrap();
        assert_eq!(
            (c.ops_per_sec, c.faults_per_op, c.hwm, c.rss_after, c.live),
            (20.0, 3.0, 2 << 20, 3 << 20, 4 << 20)
        );
        let p = PhasesRun {
            busy1: (100, 2.0, 50),
            busy2: (80, 2.0, 8),
            busy2_early: (4, 0.2),
            rss: (9 << 20, 1 << 20, 1 << 20),
            series: vec![(0.1, 4096), (0.2, 8192)],
        };
        let q = ChildOut::parse(&phases_lines(&p)).unwrap().phases().unwrap();
        assert_eq!(
            (q.busy1_ops_per_sec, q.busy2_early_ops_per_sec, q.busy2_faults_per_op),
            (50.0, 20.0, 0.1)
        );
        assert_eq!((q.rss_busy1_end, q.series.len()), (9 << 20, 2));
    }
}
