//! `LargeAlloc` across forks taken while other threads are anywhere inside it: every child, within a
//! time bound, allocates, reallocates and frees large blocks, and frees a block its parent allocated
//! before the fork. Forks go through `vmspace::fork::fork()` and through plain `fork(2)`, with threads
//! hammering the allocator, and while another thread is in the middle of an allocator's first-time
//! setup. A child that does not finish within the bound is killed and fails the test.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vmspace::alloc::LargeAlloc;

/// Every test here forks: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const BOUND: Duration = Duration::from_secs(20);

fn layout(n: u64) -> Layout {
    Layout::from_size_align(((64 << 10) + (n % 64) * (64 << 10)) as usize, 8).unwrap()
}

fn fill(p: NonNull<[u8]>, v: u8) {
    let p = p.cast::<u8>().as_ptr();
    // SAFETY: the block is ours, at least 64 KiB long.
    unsafe {
        p.write_volatile(v);
        p.add((64 << 10) - 1).write_volatile(v);
    }
}

fn check(p: NonNull<u8>, v: u8) -> bool {
    // SAFETY: the block is ours, at least 64 KiB long.
    unsafe { p.as_ptr().read_volatile() == v && p.as_ptr().add((64 << 10) - 1).read_volatile() == v }
}

/// The child's work: large blocks in and out, a realloc across classes, and the parent's block
/// `(ptr, layout, value)` freed. Returns the exit code (0: pass).
fn child_work(a: &LargeAlloc, parents: NonNull<u8>, pl: Layout, pv: u8) -> i32 {
    if !check(parents, pv) {
        return 3;
    }
    for i in 0..16u64 {
        let Ok(p) = a.allocate(layout(i * 7)) else { return 4 };
        fill(p, i as u8);
        // SAFETY: `p` came from `a` with this layout.
        let Ok(q) = (unsafe { a.reallocate(p.cast(), layout(i * 7), 3 << 20) }) else { return 5 };
        if !check(q.cast(), i as u8) {
            return 6;
        }
        // SAFETY: `q` came from `a` with this layout.
        if unsafe { a.deallocate(q.cast(), Layout::from_size_align(3 << 20, 8).unwrap()) }.is_err() {
            return 7;
        }
    }
    // SAFETY: the parent allocated it from `a` with `pl` before the fork; this is the child's copy.
    if unsafe { a.deallocate(parents, pl) }.is_err() {
        return 8;
    }
    0
}

/// Waits for `pid` up to the bound; true if it exited with 0. A child still running is killed.
fn reap(pid: i32) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: polling our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(())
            } else {
                Err(format!("child {pid} ended with status {status:#x}"))
            };
        }
        if start.elapsed() > BOUND {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!("child {pid} HUNG for {BOUND:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Forks (through vmspace or plain fork(2)); the child runs `work` and `_exit`s with its code.
fn fork_and_run(through_vmspace: bool, work: impl FnOnce() -> i32) -> Result<(), String> {
    let pid = if through_vmspace {
        // SAFETY: the child only allocates, frees and exits.
        match unsafe { vmspace::fork::fork() }.map_err(|e| e.to_string())? {
            vmspace::fork::Forked::Child => 0,
            vmspace::fork::Forked::Parent(pid) => pid,
        }
    } else {
        // SAFETY: as above.
        unsafe { libc::fork() }
    };
    if pid == 0 {
        let code = work();
        // SAFETY: ends the child without running the parent's exit handlers or the test harness.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        return Err("fork failed".into());
    }
    reap(pid)
}

#[test]
fn children_of_forks_during_allocator_traffic_allocate_and_free() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let a = Arc::new(LargeAlloc::builder().max_age(Duration::from_millis(5)).build());
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..3u64)
        .map(|t| {
            let (a, stop, rounds) = (Arc::clone(&a), Arc::clone(&stop), Arc::clone(&rounds));
            std::thread::spawn(move || {
                let mut live: Vec<(NonNull<[u8]>, Layout)> = Vec::new();
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let l = layout(n >> 33);
                    let p = a.allocate(l).unwrap();
                    fill(p, n as u8);
                    live.push((p, l));
                    if live.len() > 8 {
                        let (p, l) = live.swap_remove((n >> 40) as usize % live.len());
                        if n % 3 == 0 {
                            // SAFETY: `p` came from `a` with `l`.
                            let q = unsafe { a.reallocate(p.cast(), l, l.size() * 2) }.unwrap();
                            let l2 = Layout::from_size_align(l.size() * 2, 8).unwrap();
                            // SAFETY: `q` came from `a` with `l2`.
                            unsafe { a.deallocate(q.cast(), l2) }.unwrap();
                        } else {
                            // SAFETY: `p` came from `a` with `l`.
                            unsafe { a.deallocate(p.cast(), l) }.unwrap();
                        }
                    }
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
                for (p, l) in live {
                    // SAFETY: as above.
                    unsafe { a.deallocate(p.cast(), l) }.unwrap();
                }
            })
        })
        .collect();
    let forks = 300;
    let mut failures = Vec::new();
    for i in 0..forks {
        let pl = layout(i);
        let parents = a.allocate(pl).unwrap();
        fill(parents, 0x5a);
        let a2 = Arc::clone(&a);
        if let Err(e) = fork_and_run(i % 2 == 0, move || child_work(&a2, parents.cast(), pl, 0x5a)) {
            failures.push(format!("fork {i} ({}): {e}", if i % 2 == 0 { "vmspace" } else { "fork(2)" }));
        }
        // SAFETY: the parent's block, allocated above with `pl`.
        unsafe { a.deallocate(parents.cast(), pl) }.unwrap();
        std::thread::sleep(Duration::from_micros(200 + (i * 37 % 500)));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    eprintln!(
        "alloc_fork: {forks} forks during {} allocator rounds of 3 threads, {} failed",
        rounds.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "{} of {forks} children failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_fork_during_an_allocators_first_use_leaves_the_child_able_to_use_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut failures = Vec::new();
    let tries = 60;
    for i in 0..tries {
        // A fresh allocator each time: its first large request makes its space, ring and reclaimer.
        let a = Arc::new(LargeAlloc::builder().build());
        let a2 = Arc::clone(&a);
        let first = std::thread::spawn(move || {
            let p = a2.allocate(layout(1)).unwrap();
            // SAFETY: `p` came from `a2` with this layout.
            unsafe { a2.deallocate(p.cast(), layout(1)) }.unwrap();
        });
        // Fork as the other thread starts its first use, a little later each time.
        std::thread::sleep(Duration::from_micros((i * 53) % 900));
        let a3 = Arc::clone(&a);
        let got = fork_and_run(i % 2 == 0, move || {
            let Ok(p) = a3.allocate(layout(2)) else { return 4 };
            fill(p, 9);
            // SAFETY: `p` came from `a3` with this layout.
            if unsafe { a3.deallocate(p.cast(), layout(2)) }.is_err() { 5 } else { 0 }
        });
        if let Err(e) = got {
            failures.push(format!("try {i}: {e}"));
        }
        first.join().unwrap();
    }
    assert!(failures.is_empty(), "{} of {tries} children failed:\n{}", failures.len(), failures.join("\n"));
}
