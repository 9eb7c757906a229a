//! `vmspace bench`: the comparison benchmarks in one process, each workload against its named
//! alternative in the same run, printed as a table of medians and ratios. Quicker and rougher than
//! the criterion benches (`cargo bench -p vmspace-bench`), which remain the reference figures.
//!
//! By job: `map` (the map against the record), `space` (real memory against the record and the
//! bare calls in the same kernel state), `queues` (the reclaim ring and the scratch slots against a
//! `Mutex<Vec>`), `output` (table, JSON, SVG).

mod map;
mod output;
mod queues;
mod space;

pub use output::{json, svg, table};

/// One line of the table: a workload, vmspace's time, the alternative's, in ns per operation.
pub struct Row {
    /// The benchmark group.
    pub group: &'static str,
    /// What is measured.
    pub workload: String,
    /// The alternative measured against.
    pub alternative: &'static str,
    /// vmspace, ns per operation (median of 7 samples; of 15 interleaved rounds for the space rows).
    pub vmspace_ns: f64,
    /// The alternative, ns per operation.
    pub alternative_ns: f64,
}

/// Runs the chosen benchmarks (`map`, `space`, `ring`, `scratch` or `all`).
pub fn run(which: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let all = which == "all";
    if !all && !["map", "space", "ring", "scratch"].contains(&which) {
        return Err(format!("unknown benchmark {which:?}: map, space, ring, scratch, all or alloc"));
    }
    if all || which == "map" {
        map::rows(&mut rows)?;
    }
    if all || which == "space" {
        space::rows(&mut rows)?;
    }
    if all || which == "ring" {
        queues::ring_rows(&mut rows)?;
    }
    if all || which == "scratch" {
        queues::scratch_rows(&mut rows)?;
    }
    Ok(rows)
}
