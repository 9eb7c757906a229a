//! `vmspace bench alloc`: issue 8's allocator comparison, a child process per run (the `vmspace`
//! binary re-executed with the hidden `alloc-child` command). The workloads, the allocators written
//! for the comparison, the runs and the output live in [`vmspace_bench::alloc`]; this module is their
//! old path, and adds the progress line the command shows on a terminal.

use std::io::IsTerminal;

pub use vmspace_bench::alloc::{
    ALLOCATORS, ChildArgs, Churn, KeepAlloc, MmapAlloc, Options, Outcome, Phases, Report, Row, Workload,
    child, json, table,
};

/// Runs the allocator comparison: every chosen allocator through the chosen workloads, each run in
/// its own child process, with a progress line on stderr when it is a terminal (each run takes
/// seconds).
pub fn run(o: &Options) -> Result<Report, String> {
    if !std::io::stderr().is_terminal() {
        return vmspace_bench::alloc::run(o);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let r = vmspace_bench::alloc::run_with(o, &mut |done, total, next| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(next.to_string());
    });
    bar.finish_and_clear();
    r
}
