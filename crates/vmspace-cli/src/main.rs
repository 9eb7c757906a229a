//! `vmspace`: look at live processes' address spaces, replay traces, run the benchmarks.

fn main() {
    println!("vmspace: under construction");
}
