//! `Mm` alone (no kernel): random calls with random and extreme arguments never panic and always
//! leave a well-formed VMA list; and a few facts that need no kernel to check.

use vmspace_linux::abi::*;
use vmspace_linux::mm::{FileRef, Layout, Mm, Params};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn arg(&mut self, base: u64) -> u64 {
        match self.next() % 8 {
            0 => self.next(),
            1 => u64::MAX - self.next() % 8192,
            2 => 0,
            3 => (self.next() % 4096) << 12,
            _ => base + (self.next() % 128) * 4096 + if self.next().is_multiple_of(16) { 1 } else { 0 },
        }
    }
}

fn file() -> FileRef {
    FileRef {
        id: 7,
        dev: (0, 1),
        inode: 99,
        name: "/memfd:x (deleted)".into(),
        readable: true,
        writable: true,
        append: false,
        noexec: false,
        shmem: true,
        mappable: true,
        size: 16 << 12,
        thp_placement: false,
    }
}

#[test]
fn random_calls_never_panic_and_keep_the_invariants() {
    let layout = Layout {
        start_brk: 0x5555_0000_0000,
        brk: 0x5555_0000_0000,
        start_stack: 0x7ffd_0000_0000,
        ..Layout::default()
    };
    let mut mm = Mm::new(Params::default(), layout);
    mm.mmap_base = 0x7f00_0000_0000;
    let f = file();
    let mut r = Rng(0x1234_5678_9abc_def1);
    let base = 0x2000_0000_0000;
    let mut calls = 0;
    for i in 0..200_000u32 {
        let (a, b, c, d) = (r.arg(base), r.arg(0), r.next() % 64, r.next());
        let flags = d & 0x1f_ffff;
        let _ = match r.next() % 14 {
            0 | 1 => mm.mmap(
                a,
                b % (1 << 24),
                c & 7,
                flags,
                if d & (1 << 40) != 0 { Some(&f) } else { None },
                (d >> 44) << 12,
            ),
            2 => mm.munmap(a, b),
            3 => mm.mprotect(a, b, c | (d & PROT_GROWSDOWN)),
            4 => mm.madvise(a, b, r.next() % 110),
            5 => mm.mlock(a, b),
            6 => mm.mlock2(a, b, c & 3),
            7 => mm.munlock(a, b),
            8 => mm.mlockall(c & 7),
            9 => mm.mseal(a, b, c & 1),
            10 => mm.msync(a, b, c & 7),
            11 => mm.mremap(a, b, r.arg(0), c & 7, r.arg(base)),
            12 => Ok(mm.brk(r.arg(0x5555_0000_0000))),
            _ => {
                if i % 1000 == 0 {
                    mm = mm.fork();
                }
                mm.munlockall()
            }
        };
        calls += 1;
        if let Err(e) = mm.check_invariants() {
            panic!("after call {i}: {e}");
        }
    }
    assert_eq!(calls, 200_000);
}

#[test]
fn placement_is_top_down_below_mmap_base_and_thp_aligned_for_2mib() {
    let mut mm = Mm::new(Params::default(), Layout::default());
    mm.mmap_base = 0x7f00_0000_0000;
    let a = mm.mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, None, 0).unwrap();
    assert_eq!(a, 0x7f00_0000_0000 - 4096);
    let b = mm.mmap(0, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, None, 0).unwrap();
    assert_eq!(b, a - 8192, "placed right below, and merged");
    assert_eq!(mm.vmas().count(), 1);
    let t = mm.mmap(0, 2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, None, 0).unwrap();
    assert_eq!(t % (2 << 20), 0, "2 MiB anonymous mappings are THP-aligned");
    let old = Params { version: (6, 6), ..Params::default() };
    let mut mm = Mm::new(old, Layout::default());
    mm.mmap_base = 0x7f00_0000_0000 - 4096;
    let u = mm.mmap(0, 2 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, None, 0).unwrap();
    assert_ne!(u % (2 << 20), 0, "6.6 does not align");
    assert_eq!(mm.mseal(u, 4096, 0), Err(Errno::ENOSYS), "mseal came in 6.10");
    let mut mm = Mm::new(Params::default(), Layout::default());
    let s = mm
        .mmap(0x2000_0000_0000, 0x2000, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, None, 0)
        .unwrap();
    assert_eq!(mm.mseal(s, 0x1000, 0), Ok(0));
    assert_eq!(mm.munmap(s, 0x2000), Err(Errno::EPERM));
}

#[test]
fn max_map_count_refuses_splits_with_enomem() {
    let p = Params { max_map_count: 3, ..Params::default() };
    let mut mm = Mm::new(p, Layout::default());
    let base = 0x2000_0000_0000;
    let rw = PROT_READ | PROT_WRITE;
    for i in 0..3 {
        assert_eq!(
            mm.mmap(base + i * 0x10000, 0x4000, rw, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, None, 0),
            Ok(base + i * 0x10000)
        );
    }
    assert_eq!(mm.mprotect(base + 0x1000, 0x1000, PROT_READ), Err(Errno::ENOMEM));
    assert_eq!(mm.munmap(base + 0x1000, 0x1000), Err(Errno::ENOMEM));
    assert_eq!(mm.munmap(base, 0x1000), Ok(0), "trimming an end needs no new VMA");
}

#[test]
fn rlimit_as_and_memlock_refuse() {
    let p = Params { rlimit_as: 1 << 20, rlimit_memlock: 8192, ..Params::default() };
    let mut mm = Mm::new(p, Layout::default());
    assert_eq!(
        mm.mmap(0x2000_0000_0000, 2 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, None, 0),
        Err(Errno::ENOMEM)
    );
    let a = mm
        .mmap(0x2000_0000_0000, 0x4000, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, None, 0)
        .unwrap();
    assert_eq!(mm.mlock(a, 0x4000), Err(Errno::ENOMEM), "over RLIMIT_MEMLOCK");
    assert_eq!(mm.mlock(a, 0x2000), Ok(0));
    assert_eq!(
        mm.mmap(0, 0x4000, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, None, 0),
        Err(Errno::EAGAIN)
    );
}

/// The replay-like mix (placement, fixed maps, protects, advice, unmaps, mremap, brk): `n` calls,
/// the fixed ones at random pages of `window` pages from `base`; returns the seconds taken.
fn replay_like_mix(mm: &mut Mm, seed: u64, n: u64, base: u64, window: u64) -> f64 {
    let mut r = Rng(seed);
    let started = std::time::Instant::now();
    let mut placed = Vec::new();
    for i in 0..n {
        let x = r.next();
        let b = base + (x % window) * 4096;
        match i % 8 {
            0 => {
                let len = ((x >> 20) % 16 + 1) * 4096;
                if let Ok(a) = mm.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, None, 0) {
                    placed.push(a);
                }
            }
            1 => {
                let _ = mm.mmap(b, 4 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, None, 0);
            }
            2 => {
                let _ = mm.mprotect(b, 2 * 4096, PROT_READ | PROT_WRITE);
            }
            3 => {
                let _ = mm.madvise(b, 3 * 4096, MADV_DONTNEED);
            }
            4 => {
                let _ = mm.munmap(b, 4096);
            }
            5 => {
                let _ = mm.mremap(b, 4096, 2 * 4096, MREMAP_MAYMOVE, 0);
            }
            6 => {
                if placed.len() > 64 {
                    let a = placed.swap_remove((x % 64) as usize);
                    let _ = mm.munmap(a, 16 * 4096);
                }
            }
            _ => {
                let _ = mm.brk(0);
            }
        }
    }
    started.elapsed().as_secs_f64()
}

/// Prints how fast `Mm` runs the replay-like mix over a few hundred VMAs: a figure for the notes,
/// never asserted (times are not asserted in tests).
#[test]
fn replay_like_mix_throughput_is_printed() {
    let mut mm = Mm::new(Params::default(), Layout::default());
    mm.mmap_base = 0x7f00_0000_0000;
    let n = 1_000_000u64;
    let secs = replay_like_mix(&mut mm, 0x9e37_79b9_7f4a_7c15, n, 0x2000_0000_0000, 512);
    println!(
        "{n} calls in {secs:.3} s: {:.2}M calls/s, {} VMAs at the end",
        n as f64 / secs / 1e6,
        mm.map_count()
    );
    assert!(mm.check_invariants().is_ok());
}

/// `maps` names `[heap]` the VMAs that overlap `[start_brk, brk)` (`vma_is_initial_heap`, strict
/// bounds): not the bss ending at `start_brk` (seen without address randomisation, where the heap
/// starts right after it), and nothing while the heap is empty.
#[test]
fn heap_is_named_by_strict_bounds() {
    let start_brk = 0x5555_5556_d000;
    let mut mm = Mm::new(Params::default(), Layout { start_brk, brk: start_brk, ..Layout::default() });
    let bss = start_brk - 4 * 4096;
    let fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    assert_eq!(mm.mmap(bss, 4 * 4096, PROT_READ, fixed, None, 0), Ok(bss));
    assert_eq!(mm.maps()[0].name, "", "empty heap: the bss is not it");
    assert_eq!(mm.brk(start_brk + 8 * 4096), start_brk + 8 * 4096);
    let names: Vec<String> = mm.maps().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["", "[heap]"], "the bss, then the heap");
}

/// A second mix for the notes, never asserted: the replay-like calls over a memory of ~20,000 VMAs
/// (a large process: a JVM's or a browser's), where placement and every lookup meet a deep list.
#[test]
fn many_vmas_mix_throughput_is_printed() {
    let mut mm = Mm::new(Params::default(), Layout::default());
    mm.mmap_base = 0x7f00_0000_0000;
    let base = 0x2000_0000_0000u64;
    let window = 60_000u64;
    for i in 0..window / 3 {
        let prot = if i % 2 == 0 { PROT_READ } else { PROT_READ | PROT_WRITE };
        let a = base + i * 3 * 4096;
        let _ = mm.mmap(a, 2 * 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, None, 0);
    }
    let below = mm.mmap_base - 2 * window * 4096;
    for i in 0..window / 6 {
        let prot = if i % 2 == 0 { PROT_READ } else { PROT_NONE };
        let a = below + i * 6 * 4096;
        let _ = mm.mmap(a, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, None, 0);
    }
    let at_start = mm.map_count();
    let n = 200_000u64;
    let secs = replay_like_mix(&mut mm, 0x2545_f491_4f6c_dd1d, n, base, window);
    println!(
        "many VMAs: {n} calls in {secs:.3} s: {:.2}M calls/s, {at_start} VMAs at the start, {} at the end",
        n as f64 / secs / 1e6,
        mm.map_count()
    );
    assert!(mm.check_invariants().is_ok());
}
