//! `proc::smaps`, `proc::rollup` and `proc::vmflags` against the live kernel: a stopped child's smaps
//! parses, every header is its maps line byte for byte, every VmFlags line is written back as the
//! kernel wrote it, and the exact counters (the kB counts the kernel does not round per VMA) add up
//! to `smaps_rollup`.

use vmspace_linux::proc::counters::Counters;
use vmspace_linux::proc::{rollup, smaps, vmflags::VmFlags};

/// A `sleep` stopped by SIGSTOP (nothing in it changes while it is read), killed on drop.
struct Stopped(std::process::Child);

impl Stopped {
    fn new() -> Stopped {
        // Wrapped at once, so Drop kills and reaps it on every path.
        let s = Stopped(std::process::Command::new("sleep").arg("30").spawn().unwrap());
        let c = &s.0;
        let pid = rustix::process::Pid::from_raw(c.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
        for _ in 0..500 {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.id())).unwrap();
            if stat.rsplit(')').next().unwrap().trim_start().starts_with('T') {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("sleep did not stop");
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_stopped_process_smaps_adds_up_to_its_rollup() {
    let s = Stopped::new();
    let pid = s.0.id();
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let entries = smaps::parse(&text).unwrap();
    assert!(entries.len() > 5);
    let headers: Vec<&str> = text.lines().filter(|l| smaps::SmapsParser::is_header(l)).collect();
    assert_eq!(headers.len(), entries.len());
    for (e, h) in entries.iter().zip(&headers) {
        assert_eq!(e.maps.to_string(), *h, "header written back as the kernel wrote it");
        assert_eq!(e.size, e.maps.len());
    }
    for l in text.lines().filter_map(|l| l.strip_prefix("VmFlags:")) {
        assert_eq!(VmFlags::parse(l).to_string(), l.trim(), "a mnemonic this table lacks");
    }
    let r = rollup::parse(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap()).unwrap();
    let vmas: Vec<_> = entries.iter().filter(|e| e.maps.name != "[vsyscall]").collect();
    assert_eq!(r.range, vmas[0].maps.range.start..vmas[vmas.len() - 1].maps.range.end);
    let mut sum = Counters::default();
    for e in &vmas {
        sum.add(&e.counters);
    }
    let exact = |c: &Counters| {
        [
            c.rss,
            c.shared_clean,
            c.shared_dirty,
            c.private_clean,
            c.private_dirty,
            c.referenced,
            c.anonymous,
            c.swap,
        ]
    };
    assert_eq!(exact(&sum), exact(&r.counters));
    assert!(sum.pss <= r.counters.pss && r.counters.pss - sum.pss < 1024 * vmas.len() as u64);
}

#[test]
fn malformed_smaps_is_refused() {
    assert!(smaps::parse("Rss: 4 kB\n").is_err());
    assert!(smaps::parse("1000-2000 r--p 0 00:00 0\nRss: x kB\n").is_err());
    assert!(smaps::parse("2000-3000 r--p 0 00:00 0\n1000-2000 r--p 0 00:00 0\n").is_err());
    assert!(rollup::parse("nothing here\n").is_err());
    assert!(rollup::parse("Rss: 99999999999999999999 kB\n").is_err());
    let e = smaps::parse("1000-2000 r--p 0 00:00 0\nRss:  8 kB\nVmFlags: rd mr gu \n").unwrap();
    assert_eq!(e[0].counters.rss, 8192);
    assert!(e[0].vm_flags.unwrap().has("gu"));
}
