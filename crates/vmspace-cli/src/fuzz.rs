//! `vmspace fuzz-kernel`: random sequences of Linux's memory calls with random and invalid arguments,
//! each run in a forked child against the live kernel and on `vmspace_linux::mm::Mm` started from the
//! child's maps; every result and the whole maps list after every call are compared, and a divergence
//! is shrunk to the shortest sequence that shows it and printed as a runnable case.
//!
//! The runner is the one `vmspace-linux`'s tests use (`tests/support_kernel`), included here rather
//! than copied, so the command and the CI test drive the same code.

#[allow(dead_code, clippy::all)]
#[path = "../../vmspace-linux/tests/support_kernel/mod.rs"]
mod kernel;

/// Runs `ops` calls from `seed`; prints the figures (text or JSON) and returns the exit status:
/// 0 when the model and the kernel agreed on every call, 1 when any diverged, 2 when the run could
/// not be made.
pub fn run(ops: u64, seed: u64, json: bool, print: impl Fn(&str) -> Result<(), String>) -> u8 {
    let started = std::time::Instant::now();
    let result = std::panic::catch_unwind(|| {
        let files = kernel::memfds(16);
        kernel::fuzz::run(&files, seed, ops, |_| {})
    });
    let report = match result {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the run panicked".into());
            eprintln!("vmspace: error: fuzz-kernel could not run: {}", msg.escape_debug());
            return 2;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let text = if json {
        format!(
            "{{\"ops\": {}, \"divergences\": {}, \"seed\": {}, \"seconds\": {:.3}}}\n",
            report.ops,
            report.divergences.len(),
            seed,
            secs
        )
    } else {
        let mut t = String::new();
        for d in &report.divergences {
            t.push_str(&d.escape_default().to_string().replace("\\n", "\n"));
            t.push('\n');
        }
        t.push_str(&format!(
            "{} calls from seed {seed:#x} in {secs:.1} s: {} divergences\n",
            report.ops,
            report.divergences.len()
        ));
        t
    };
    if let Err(e) = print(&text) {
        eprintln!("vmspace: error: {e}");
        return 2;
    }
    u8::from(!report.divergences.is_empty())
}
