//! Measuring: resident set, faults, a sampler thread.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// (`VmRSS`, `VmHWM`) in bytes, read without allocating (the sampler runs beside the allocator under
/// test and must not use it).
pub(crate) fn rss_hwm() -> (u64, u64) {
    let mut buf = [0u8; 8192];
    let mut n = 0;
    if let Ok(mut f) = std::fs::File::open("/proc/self/status") {
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    }
    let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
    let kb = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// `VmRSS` in bytes.
pub(crate) fn rss() -> u64 {
    rss_hwm().0
}

/// Minor + major page faults of this process so far (`getrusage(RUSAGE_SELF)`).
pub(crate) fn faults() -> u64 {
    // SAFETY: a zeroed `rusage` is a valid value, and `getrusage` only writes the struct we pass. It
    // cannot fail for `RUSAGE_SELF` with a valid pointer, so its result is not checked.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    (u.ru_minflt + u.ru_majflt) as u64
}

/// What a [`Sampler`] saw.
pub(crate) struct Samples {
    /// The largest resident set seen, bytes.
    pub(crate) peak: u64,
    /// (seconds since the start, resident bytes).
    pub(crate) series: Vec<(f64, u64)>,
}

/// Reads the resident set every interval on its own thread until [`finish`](Sampler::finish).
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Samples>,
}

impl Sampler {
    /// Starts sampling every `every`.
    pub(crate) fn start(every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let t0 = Instant::now();
            // Room for 40 s of 10 ms samples or 400 s of 100 ms ones, so the loop does not allocate
            // beside the allocator under test (beyond that only the peak is kept).
            let mut s = Samples { peak: 0, series: Vec::with_capacity(4096) };
            while !flag.load(Ordering::Relaxed) {
                let r = rss();
                s.peak = s.peak.max(r);
                if s.series.len() < s.series.capacity() {
                    s.series.push((t0.elapsed().as_secs_f64(), r));
                }
                thread::park_timeout(every);
            }
            s
        });
        Sampler { stop, handle }
    }

    /// Stops, and what was seen (with one last reading).
    pub(crate) fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.thread().unpark();
        let mut s = self.handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        // One last reading: the end of the load may fall between two samples.
        s.peak = s.peak.max(rss());
        s
    }
}
