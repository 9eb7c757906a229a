//! `vmspace bench`: the comparison benchmarks in one process, each workload against its named
//! alternative in the same run, printed as a table of medians and ratios. The workloads, their
//! alternatives and the output formats live in [`vmspace_bench::compare`]; this module is their
//! old path, kept.

pub use vmspace_bench::compare::{Row, json, run, svg, table};
