//! `vmspace bench alloc`: issue 8's allocator comparison. Large-block churn (64 live blocks per
//! thread of 64 KiB, 256 KiB, 1 MiB or 4 MiB, every page touched, random replacement) and a
//! busy–idle–busy phase run, through glibc malloc, jemalloc and mimalloc (`LD_PRELOAD`), a bare
//! mmap/munmap allocator, a keep-everything free list, and `vmspace::alloc::LargeAlloc`.
//!
//! Every (allocator, workload, thread count) runs in a fresh child process (the `vmspace` binary
//! re-executed with the hidden `alloc-child` command), so each is measured from the same starting
//! point: no allocator inherits another's heap, faults or resident set, and preloading an allocator
//! affects only its own run. The child prints one `result k=v …` line the parent parses. A program
//! that calls [`run`] must answer `alloc-child ARGS` by calling [`child`] (the `vmspace` command does).
//!
//! By job: [`workload`] is the churn and phases workloads (the one definition, also run in-process by
//! `cargo bench -p vmspace-bench --bench alloc`), `allocators` the two allocators written for the
//! comparison, `measure` the resident set and fault counters, `child` one run in a child process
//! and the line it prints, `parent` the runs and their rows, `output` the tables and JSON.

use std::time::Duration;

mod allocators;
mod child;
mod measure;
mod output;
mod parent;
pub mod workload;

pub use allocators::{KeepAlloc, MmapAlloc};
pub use child::child;
pub use output::{json, table};
pub use parent::{Churn, Outcome, Phases, Report, Row, run, run_with};

/// The allocators compared, in table order.
pub const ALLOCATORS: [&str; 6] = ["glibc", "jemalloc", "mimalloc", "mmap", "keep", "vmspace"];
/// Block sizes, drawn uniformly.
pub(crate) const SIZES: [usize; 4] = [64 << 10, 256 << 10, 1 << 20, 4 << 20];
/// Live blocks per thread.
pub(crate) const LIVE: usize = 64;
/// One write per this many bytes: a 4 KiB page.
pub(crate) const TOUCH_STRIDE: usize = 4096;
/// The layout's alignment (what `malloc` guarantees on 64-bit Linux).
pub(crate) const ALIGN: usize = 16;
/// Thread counts of the churn workload.
pub(crate) const THREADS: [usize; 2] = [1, 2];
/// How often the churn workload samples the resident set.
pub(crate) const CHURN_SAMPLE: Duration = Duration::from_millis(10);
/// How often the phases workload samples the resident set.
pub(crate) const PHASES_SAMPLE: Duration = Duration::from_millis(100);
/// The phases workload: busy, idle, busy.
pub(crate) const BUSY: Duration = Duration::from_secs(2);
/// The phases workload's idle phase.
pub(crate) const IDLE: Duration = Duration::from_secs(3);
/// When, into the idle phase, the resident set is read ("has memory gone back yet").
pub(crate) const IDLE_PROBE: Duration = Duration::from_secs(2);
/// The start of the second busy phase compared with the first's average ("does memory come back fast").
pub(crate) const EARLY: Duration = Duration::from_millis(200);
/// Where Debian and Ubuntu put shared libraries (multiarch first), then the generic places.
pub(crate) const LIB_DIRS: [&str; 6] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/local/lib",
];

pub(crate) const MIB: f64 = (1u64 << 20) as f64;

/// Which workloads to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Large-block churn, 1 and 2 threads.
    Churn,
    /// Busy 2 s, idle 3 s, busy 2 s (1 thread).
    Phases,
    /// Both.
    #[default]
    Both,
}

/// `vmspace bench alloc`'s options (flattened into `vmspace bench`).
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct Options {
    /// (alloc) Seconds each churn run lasts.
    #[arg(long, value_name = "F", default_value_t = 4.0)]
    pub secs: f64,
    /// (alloc) Only these allocators: glibc, jemalloc, mimalloc, mmap, keep, vmspace.
    #[arg(long, value_name = "A,B,..", value_delimiter = ',')]
    pub allocators: Vec<String>,
    /// (alloc) Which workload: churn, phases or both.
    #[arg(long, value_enum, default_value_t = Workload::Both)]
    pub workload: Workload,
    /// (alloc) Seconds between the end of the load (live blocks still held) and reading the resident
    /// set ("RSS +2s").
    #[arg(long, value_name = "F", default_value_t = 2.0, hide = true)]
    pub settle: f64,
    /// (alloc) Also print each allocator's own counters (vmspace's `stats()`).
    #[arg(long, short)]
    pub verbose: bool,
}

/// The hidden `vmspace alloc-child` command: one measured run in this process.
#[derive(clap::Args, Clone, Debug)]
pub struct ChildArgs {
    /// glibc, jemalloc, mimalloc, mmap, keep or vmspace.
    #[arg(long)]
    pub allocator: String,
    /// churn or phases.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Churn threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Churn seconds.
    #[arg(long, default_value_t = 4.0)]
    pub secs: f64,
    /// Seconds between the end of the load (live blocks still held) and reading the resident set.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
}

/// `--secs` and `--settle` checked: a positive and a non-negative number of seconds.
pub(crate) fn check_times(secs: f64, settle: f64) -> Result<(), String> {
    if !(secs.is_finite() && secs > 0.0 && secs < 1e6) {
        return Err(format!("--secs {secs}: a positive number of seconds"));
    }
    if !(settle.is_finite() && (0.0..1e6).contains(&settle)) {
        return Err(format!("--settle {settle}: zero or more seconds"));
    }
    Ok(())
}
