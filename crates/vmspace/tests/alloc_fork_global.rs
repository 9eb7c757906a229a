//! `LargeAlloc` as the global allocator, forked (plain `fork(2)` and `vmspace::fork::fork()`) while
//! other threads churn large vectors: every child allocates and frees large vectors, and frees one its
//! parent allocated, within a time bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vmspace::alloc::LargeAlloc;

#[global_allocator]
static A: LargeAlloc = LargeAlloc::new();

fn child(parents: Vec<u8>) -> i32 {
    if parents.iter().step_by(4096).any(|&b| b != 7) {
        return 3;
    }
    drop(parents);
    for i in 1..20usize {
        let v = vec![i as u8; i << 17];
        if v[v.len() - 1] != i as u8 {
            return 4;
        }
    }
    0
}

#[test]
fn forks_of_a_program_on_the_large_allocator_never_hang() {
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                let mut n = t + 1usize;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(2862933555777941757).wrapping_add(3037000493);
                    keep.push(vec![n as u8; ((n >> 40) % 32 + 1) << 16]);
                    if keep.len() > 6 {
                        keep.swap_remove((n >> 20) % keep.len());
                    }
                }
            })
        })
        .collect();
    let mut failed = Vec::new();
    for i in 0..120 {
        let parents = vec![7u8; 1 << 20];
        assert!(A.owns(parents.as_ptr()));
        let pid = if i % 2 == 0 {
            // SAFETY: the child only allocates, frees and exits.
            match unsafe { vmspace::fork::fork() }.unwrap() {
                vmspace::fork::Forked::Child => 0,
                vmspace::fork::Forked::Parent(p) => p,
            }
        } else {
            // SAFETY: as above.
            unsafe { libc::fork() }
        };
        if pid == 0 {
            let code = child(parents);
            // SAFETY: ends the child without the harness or the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: polling our own child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    failed.push(format!("fork {i}: status {status:#x}"));
                }
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                // SAFETY: killing and reaping our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                failed.push(format!("fork {i}: HUNG"));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in churn {
        c.join().unwrap();
    }
    assert!(failed.is_empty(), "{} of 120 children failed:\n{}", failed.len(), failed.join("\n"));
}
