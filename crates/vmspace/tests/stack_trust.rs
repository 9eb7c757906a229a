//! A thread on a vmspace stack and its own space: it may call the space however near the bottom of
//! its mapped stack it is (the stack never has to grow while the thread holds the space's lock); a
//! `with_map` closure that needs more than the headroom dies of a reported overflow instead of
//! waiting for itself; a `StackThread` dropped while it runs is waited for, so dropping the space after
//! it never pulls the stack from under a running thread. Each case runs in a child process (this test
//! binary again) with a time bound: a crash or a hang is a failure of the test, not of the suite.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmspace::fault::spawn_on_stack;
use vmspace::space::HEADROOM;
use vmspace::{AddressSpace, EntryFlags, MapSpec, Prot};

const PS: u64 = 4096;

/// Runs this binary again as a child that does `mode`; returns (signal, exit code, stderr), or panics
/// after `bound` (killing the child).
fn child(mode: &str, bound: Duration) -> (Option<i32>, Option<i32>, String) {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("VMSPACE_STACK_CHILD", mode)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = c.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.signal(), status.code(), err);
        }
        if start.elapsed() > bound {
            let _ = c.kill();
            let _ = c.wait();
            panic!("{mode}: the child did not finish within {bound:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An address in the calling frame.
#[inline(never)]
fn sp() -> u64 {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as u64
}

/// The lowest mapped address of the stack holding `addr`.
fn mapped_bottom(s: &AddressSpace, addr: u64) -> u64 {
    let regions = s.regions();
    let mut e = regions.iter().find(|e| e.range().contains(&addr)).expect("on a vmspace stack");
    while let Some(below) = regions.iter().find(|b| b.end == e.start && b.flags().contains(EntryFlags::STACK))
    {
        e = below;
    }
    e.start
}

/// Recurses with 512-byte frames until the stack pointer is within `above` bytes of `bottom`, then
/// runs `f` there.
#[inline(never)]
fn descend(bottom: u64, above: u64, f: &dyn Fn()) {
    let frame = [0u8; 512];
    std::hint::black_box(&frame);
    if sp() > bottom + above {
        descend(bottom, above, f);
    } else {
        f();
    }
    std::hint::black_box(&frame);
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let below = if depth == 0 { 0 } else { recurse(depth - 1) };
    std::hint::black_box(&frame);
    below.wrapping_add(u64::from(frame[(depth % 1024) as usize]))
}

/// The children's side: does nothing unless run by `child`.
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var("VMSPACE_STACK_CHILD") else { return };
    let space = Arc::new(AddressSpace::reserve(64 << 20).unwrap());
    // One page per growth step, so any frame past the mapped bottom needs a growth of its own.
    space.set_stack_growth(PS).unwrap();
    match mode.as_str() {
        "calls near the bottom" => {
            for above in [128, 512, 1024, 2048, 4096, 8192] {
                let s = Arc::clone(&space);
                let t = spawn_on_stack(&space, 8 << 20, 64 << 10, move || {
                    let bottom = mapped_bottom(&s, sp());
                    descend(bottom, above, &|| {
                        let a = s.map(4 * PS, MapSpec::new(Prot::RW, Prot::ALL)).unwrap();
                        s.protect(a..a + PS, Prot::READ).unwrap();
                        s.wire(a + PS..a + 2 * PS).unwrap();
                        s.unmap(a..a + 4 * PS).unwrap();
                        assert!(s.kernel_differences().unwrap().is_empty());
                        let _ = s.stats().unwrap();
                        let _ = s.to_string();
                    });
                })
                .unwrap();
                t.join().unwrap();
            }
            assert!(space.kernel_differences().unwrap().is_empty());
            eprintln!("all calls made");
            std::process::exit(0);
        }
        "deep read" => {
            let s = Arc::clone(&space);
            let t = spawn_on_stack(&space, 8 << 20, 64 << 10, move || {
                // A reader's closure that needs far more stack than the headroom.
                s.with_map(|_| recurse((4 * HEADROOM) / 1024))
            })
            .unwrap();
            let _ = t.join();
            eprintln!("the deep read returned");
            std::process::exit(3);
        }
        "drop while running" => {
            let t = spawn_on_stack(&space, 8 << 20, 64 << 10, || {
                std::thread::sleep(Duration::from_millis(300));
                recurse(200)
            })
            .unwrap();
            drop(t);
            drop(space);
            // Long enough for a thread left running to wake up on its stack.
            std::thread::sleep(Duration::from_millis(600));
            eprintln!("dropped the thread and the space");
            std::process::exit(0);
        }
        _ => panic!("unknown mode {mode}"),
    }
}

/// A thread near the bottom of its mapped stack calls its own space: map, protect, wire, unmap,
/// compare with the kernel, stats. (Before the fix the fault inside the call's lock was refused and
/// the thread died of SIGSEGV.)
#[test]
fn a_thread_calls_its_own_space_near_the_bottom_of_its_stack() {
    let (sig, code, err) = child("calls near the bottom", Duration::from_secs(60));
    assert_eq!((sig, code), (None, Some(0)), "stderr: {err}");
    assert!(err.contains("all calls made"), "stderr: {err}");
}

/// A `with_map` closure deeper than the headroom: reported as an overflow from inside a read of the
/// thread's own map, and the process dies of it, instead of hanging on its own reader mark.
#[test]
fn a_read_deeper_than_the_headroom_is_reported_not_hung() {
    let (sig, _, err) = child("deep read", Duration::from_secs(60));
    assert_eq!(sig, Some(libc::SIGSEGV), "stderr: {err}");
    assert!(err.contains("inside a read of its own map"), "stderr: {err}");
}

/// Dropping a running `StackThread`, then its space: the drop waits for the thread. (Before the fix
/// the space unmapped the stack of the running thread, which died of SIGSEGV.)
#[test]
fn dropping_a_running_stack_thread_then_its_space_is_safe() {
    let (sig, code, err) = child("drop while running", Duration::from_secs(60));
    assert_eq!((sig, code), (None, Some(0)), "stderr: {err}");
    assert!(err.contains("dropped the thread and the space"), "stderr: {err}");
}
