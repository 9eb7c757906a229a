//! The fault path: stacks that grow on demand, overflows, guard hits and protection faults reported
//! with their range (in child processes: they die of the signal), faults outside vmspace reaching the
//! previous handler, and lookups that never see a half-applied change.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vmspace::fault::spawn_on_stack;
use vmspace::{AddressSpace, MapSpec, Prot};

const PS: u64 = 4096;

/// Recurses `depth` times with a 1 KiB frame; returns a checksum that depends on every frame.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let below = if depth == 0 { 0 } else { recurse(depth - 1) };
    std::hint::black_box(&frame);
    below.wrapping_mul(31).wrapping_add(u64::from(frame[(depth % 1024) as usize]))
}

fn expected(depth: u64) -> u64 {
    (0..=depth).fold(0u64, |acc, d| acc.wrapping_mul(31).wrapping_add(u64::from(d as u8)))
}

#[test]
fn a_small_stack_grows_on_demand() {
    let space = Arc::new(AddressSpace::reserve(64 << 20).unwrap());
    let s2 = Arc::clone(&space);
    let t = spawn_on_stack(&space, 16 << 20, 64 << 10, move || {
        let sum = recurse(4000); // about 4-5 MiB of frames: dozens of 64 KiB growths
        let stack: u64 = s2
            .regions()
            .iter()
            .filter(|e| e.flags().contains(vmspace::EntryFlags::STACK))
            .map(|e| e.len())
            .sum();
        (sum, stack)
    })
    .unwrap();
    let stack = t.stack();
    let (sum, grown) = t.join().unwrap();
    assert_eq!(sum, expected(4000));
    assert!(grown >= 4 << 20, "the stack grew to {grown} bytes");
    assert!(grown <= stack.end - stack.start);
    assert!(space.regions().is_empty(), "joining unmaps the stack");
    assert!(space.kernel_differences().unwrap().is_empty());
}

/// Runs this test binary again as a child that does `mode`; returns (signal, stderr).
fn child(mode: &str) -> (Option<i32>, Option<i32>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("VMSPACE_FAULT_CHILD", mode)
        .output()
        .unwrap();
    (out.status.signal(), out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The child's side of the tests above: does nothing unless run by `child`.
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var("VMSPACE_FAULT_CHILD") else { return };
    let space = Arc::new(AddressSpace::reserve(64 << 20).unwrap());
    match mode.as_str() {
        "overflow" => {
            let t = spawn_on_stack(&space, 1 << 20, 64 << 10, || recurse(u64::MAX / 2)).unwrap();
            let _ = t.join();
        }
        "guard" => {
            let a = space.map(4 * PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
            space.guard(a + PS..a + 2 * PS).unwrap();
            eprintln!("guard at {:#x}..{:#x}", a + PS, a + 2 * PS);
            vmspace::fault::install();
            // SAFETY: deliberately touching the guard page; the process dies of it.
            unsafe { std::ptr::write_volatile((a + PS + 8) as *mut u64, 1) };
        }
        "readonly" => {
            let a = space.map(4 * PS, MapSpec::new(Prot::READ, Prot::ALL)).unwrap();
            eprintln!("read-only at {:#x}..{:#x}", a, a + 4 * PS);
            vmspace::fault::install();
            // SAFETY: deliberately writing read-only memory; the process dies of it.
            unsafe { std::ptr::write_volatile((a + 2 * PS) as *mut u64, 1) };
        }
        "outside" => {
            extern "C" fn previous(_: libc::c_int) {
                let msg = b"previous handler ran\n";
                // SAFETY: write(2) and _exit are async-signal-safe.
                unsafe {
                    libc::write(2, msg.as_ptr().cast(), msg.len());
                    libc::_exit(42);
                }
            }
            // SAFETY: installing a plain handler before vmspace's, so vmspace chains to it.
            unsafe { libc::signal(libc::SIGSEGV, previous as *const () as libc::sighandler_t) };
            vmspace::fault::install();
            let _keep = space.map(PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
            // SAFETY: deliberately faulting outside any vmspace range.
            unsafe { std::ptr::write_volatile(16 as *mut u64, 1) };
        }
        _ => panic!("unknown mode {mode}"),
    }
    unreachable!("the child should have died");
}

#[test]
fn overflow_is_reported_as_a_stack_overflow() {
    let (sig, _, err) = child("overflow");
    assert_eq!(sig, Some(libc::SIGSEGV), "stderr: {err}");
    assert!(err.contains("vmspace: stack overflow at"), "stderr: {err}");
    assert!(err.contains("1024 KiB") && err.contains("size limit"), "stderr: {err}");
}

#[test]
fn guard_hit_is_reported_with_its_range() {
    let (sig, _, err) = child("guard");
    assert_eq!(sig, Some(libc::SIGSEGV), "stderr: {err}");
    let range = err.lines().next().unwrap().trim_start_matches("guard at ").to_string();
    assert!(err.contains("vmspace: guard region hit at"), "stderr: {err}");
    assert!(err.contains(&format!("guard {range}")), "stderr: {err}");
}

#[test]
fn write_to_read_only_memory_is_reported_with_its_range() {
    let (sig, _, err) = child("readonly");
    assert_eq!(sig, Some(libc::SIGSEGV), "stderr: {err}");
    let range = err.lines().next().unwrap().trim_start_matches("read-only at ").to_string();
    assert!(err.contains("protection violation at"), "stderr: {err}");
    assert!(err.contains(&format!("{range} is r-- (max rwx)")), "stderr: {err}");
}

#[test]
fn faults_elsewhere_reach_the_previous_handler() {
    let (sig, code, err) = child("outside");
    assert_eq!((sig, code), (None, Some(42)), "stderr: {err}");
    assert!(err.contains("previous handler ran"), "stderr: {err}");
}

#[test]
fn readers_never_see_a_half_applied_change() {
    // Two pages far apart are always changed together, in one call; a reader must always see them equal.
    let space = Arc::new(AddressSpace::reserve(1 << 22).unwrap());
    let a = space.map(64 * PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (space, stop) = (Arc::clone(&space), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (x, y) = space.with_map(|m| {
                        (m.lookup_entry(a).map(|e| e.prot()), m.lookup_entry(a + 63 * PS).map(|e| e.prot()))
                    });
                    assert_eq!(x, y, "a reader saw half of a change");
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for i in 0..3000u64 {
        let p = if i % 2 == 0 { Prot::READ } else { Prot::RW };
        space.protect(a..a + 64 * PS, p).unwrap();
        // And a change in the middle that splits and merges, to move entries around.
        space.protect(a + 30 * PS..a + 31 * PS, Prot::NONE).unwrap();
        space.protect(a + 30 * PS..a + 31 * PS, p).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let seen: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(seen > 100, "readers ran {seen} times");
    assert!(space.kernel_differences().unwrap().is_empty());
}
