//! vmspace's benchmarks: each workload beside its alternatives, as a library.
//!
//! - [`compare`]: the comparisons of `vmspace bench [map|space|ring|scratch|all]`, one process,
//!   rows of medians and ratios (table, JSON, SVG);
//! - [`alloc`]: `vmspace bench alloc`, the allocator comparison, a child process per run; its churn
//!   workload ([`alloc::workload`]) is also what `cargo bench --bench alloc` runs in-process;
//! - [`layouts`]: the real-memory layouts (an `AddressSpace` and its bare-call twin in the same kernel
//!   state) that `compare` and `benches/space.rs` measure on;
//! - [`record`]: the simplest record of a layout, a `BTreeMap` range map;
//! - [`timing`]: medians and interleaved medians.
//!
//! The criterion benches are in `benches/` (`cargo bench -p vmspace-bench --bench map|space|scratch|
//! fault|reclaim|alloc`). The `vmspace` command (crate `vmspace-cli`) is the user's entry point.

pub mod alloc;
pub mod compare;
pub mod layouts;
pub mod record;
pub mod timing;

/// A number with thousands separators, `1,234,567`: the reports' format, which the `vmspace` command
/// shares.
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
