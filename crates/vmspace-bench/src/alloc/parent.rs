//! The parent: one child process per run, parsed into rows.

use std::process::Command;

use super::allocators::{find_lib, preload_lib, unknown_allocator};
use super::child::ChildOut;
use super::{ALLOCATORS, Options, THREADS, Workload, check_times};

/// A run's result, or why there is none.
#[derive(Clone, Debug)]
pub enum Outcome<T> {
    /// Measured.
    Done(T),
    /// A preloaded allocator whose library is missing: the Debian package to install.
    NotInstalled(&'static str),
    /// The child failed: its last line of error output, or how it died.
    Failed(String),
}

impl<T> Outcome<T> {
    /// The result, if measured.
    pub fn done(&self) -> Option<&T> {
        match self {
            Outcome::Done(t) => Some(t),
            _ => None,
        }
    }

    /// Why there is no result (for the table and JSON), if there is none.
    pub fn why_not(&self) -> Option<String> {
        match self {
            Outcome::Done(_) => None,
            Outcome::NotInstalled(pkg) => Some(format!("not installed (apt-get install {pkg})")),
            Outcome::Failed(e) => Some(format!("failed: {e}")),
        }
    }

    fn map<U>(self, f: impl FnOnce(T) -> Result<U, String>) -> Outcome<U> {
        match self {
            Outcome::Done(t) => f(t).map_or_else(Outcome::Failed, Outcome::Done),
            Outcome::NotInstalled(p) => Outcome::NotInstalled(p),
            Outcome::Failed(e) => Outcome::Failed(e),
        }
    }
}

/// One churn run.
#[derive(Clone, Debug)]
pub struct Churn {
    /// Threads, each with its own 64 blocks.
    pub threads: usize,
    /// Operations (one free + one allocation) per second, all threads together.
    pub ops_per_sec: f64,
    /// Minor + major page faults per operation over the timed part.
    pub faults_per_op: f64,
    /// The largest resident set sampled during the timed part, bytes.
    pub peak_rss: u64,
    /// `VmHWM` at the end (includes the untimed fill), bytes.
    pub hwm: u64,
    /// The resident set `settle` seconds after the load stopped, the live blocks still held, bytes.
    pub rss_after: u64,
    /// The bytes of the blocks live at the end of the load.
    pub live: u64,
    /// The allocator's own counters, when it has them.
    pub stats: Option<String>,
}

/// The phases run.
#[derive(Clone, Debug)]
pub struct Phases {
    /// The first busy phase's operations per second.
    pub busy1_ops_per_sec: f64,
    /// The second busy phase's operations per second over its first 200 ms.
    pub busy2_early_ops_per_sec: f64,
    /// The second busy phase's operations per second over all of it.
    pub busy2_ops_per_sec: f64,
    /// Faults per operation in the first busy phase.
    pub busy1_faults_per_op: f64,
    /// Faults per operation in the second busy phase.
    pub busy2_faults_per_op: f64,
    /// The resident set at the end of the first busy phase (blocks still live), bytes.
    pub rss_busy1_end: u64,
    /// The resident set two seconds into the idle phase, bytes.
    pub rss_idle_2s: u64,
    /// The resident set at the end of the idle phase, bytes.
    pub rss_idle_end: u64,
    /// The resident set every 100 ms: (seconds since the start, bytes).
    pub series: Vec<(f64, u64)>,
    /// The allocator's own counters, when it has them.
    pub stats: Option<String>,
}

/// One allocator's runs.
#[derive(Clone, Debug)]
pub struct Row {
    /// The allocator's name.
    pub allocator: String,
    /// Churn runs, one per thread count (empty when churn was not asked for).
    pub churn: Vec<(usize, Outcome<Churn>)>,
    /// The phases run, when asked for.
    pub phases: Option<Outcome<Phases>>,
}

impl Row {
    /// The churn run with `threads` threads, if measured.
    pub fn churn(&self, threads: usize) -> Option<&Churn> {
        self.churn.iter().find(|(t, _)| *t == threads).and_then(|(_, o)| o.done())
    }
}

/// Every allocator's runs, with the settings they ran with.
#[derive(Clone, Debug)]
pub struct Report {
    /// Seconds per churn run.
    pub secs: f64,
    /// Seconds between the end of the load (live blocks still held) and the "RSS after" reading.
    pub settle: f64,
    /// One row per allocator, in the order asked for.
    pub rows: Vec<Row>,
}

/// Runs `alloc-child` (this program again) for one measurement and returns its standard output.
fn spawn_child(name: &str, workload: &str, threads: usize, o: &Options) -> Outcome<String> {
    let mut cmd = match std::env::current_exe() {
        Ok(exe) => Command::new(exe),
        Err(e) => return Outcome::Failed(format!("cannot find this program: {e}")),
    };
    cmd.args(["alloc-child", "--allocator", name, "--workload", workload])
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--secs")
        .arg(o.secs.to_string())
        .arg("--settle")
        .arg(o.settle.to_string())
        // Only the allocator under test is preloaded, never one from the caller's environment.
        .env_remove("LD_PRELOAD");
    if let Some((file, pkg)) = preload_lib(name) {
        match find_lib(file) {
            Some(p) => cmd.env("LD_PRELOAD", p),
            None => return Outcome::NotInstalled(pkg),
        };
    }
    match cmd.output() {
        Ok(out) if out.status.success() => Outcome::Done(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            Outcome::Failed(if last.is_empty() { out.status.to_string() } else { last.to_string() })
        }
        Err(e) => Outcome::Failed(format!("cannot start the child: {e}")),
    }
}

/// The allocators asked for, checked, in the order given (all of them when none are named).
fn chosen(o: &Options) -> Result<Vec<String>, String> {
    if o.allocators.is_empty() {
        return Ok(ALLOCATORS.iter().map(|s| s.to_string()).collect());
    }
    let mut v: Vec<String> = Vec::new();
    for a in &o.allocators {
        let a = a.trim();
        if !ALLOCATORS.contains(&a) {
            return Err(unknown_allocator(a));
        }
        if !v.iter().any(|x| x == a) {
            v.push(a.to_string());
        }
    }
    Ok(v)
}

/// Runs the allocator comparison: every chosen allocator through the chosen workloads, each run in
/// its own child process (this program re-run as `alloc-child`).
pub fn run(o: &Options) -> Result<Report, String> {
    run_with(o, &mut |_, _, _| {})
}

/// [`run`], telling `step(runs done, runs in all, the next run's name)` before each run and
/// `step(all, all, "")` at the end (for a progress line).
pub fn run_with(o: &Options, step: &mut dyn FnMut(usize, usize, &str)) -> Result<Report, String> {
    check_times(o.secs, o.settle)?;
    let names = chosen(o)?;
    let (do_churn, do_phases) = (o.workload != Workload::Phases, o.workload != Workload::Churn);
    let per = if do_churn { THREADS.len() } else { 0 } + usize::from(do_phases);
    let total = names.len() * per;
    let mut done = 0;
    let mut next = |msg: String| {
        step(done, total, &msg);
        done += 1;
    };
    let mut rows = Vec::new();
    for name in names {
        let mut row = Row { allocator: name.clone(), churn: Vec::new(), phases: None };
        if do_churn {
            for t in THREADS {
                next(format!("{name}: churn, {t} thread(s)"));
                let out = spawn_child(&name, "churn", t, o);
                row.churn.push((t, out.map(|s| ChildOut::parse(&s)?.churn(t))));
            }
        }
        if do_phases {
            next(format!("{name}: phases"));
            let out = spawn_child(&name, "phases", 1, o);
            row.phases = Some(out.map(|s| ChildOut::parse(&s)?.phases()));
        }
        rows.push(row);
    }
    step(total, total, "");
    Ok(Report { secs: o.secs, settle: o.settle, rows })
}
