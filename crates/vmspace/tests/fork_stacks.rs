//! A thread's vmspace stack grows on either side of a `fork()`; the harness and its rules for a
//! child: `fork_load_support`.

mod fork_load_support;

use fork_load_support::*;

// ---- 3. a stack grows on either side of a fork --------------------------------------------------

/// Recurses `depth` times with a 1 KiB frame and runs `f` at the bottom; returns `f`'s result.
#[inline(never)]
fn recurse_then<R>(depth: u64, f: &mut dyn FnMut() -> R) -> R {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let r = if depth == 0 { f() } else { recurse_then(depth - 1, f) };
    std::hint::black_box(&frame);
    r
}

/// Recurses `depth` times with a 1 KiB frame; a checksum of every frame (see [`expected`]).
#[inline(never)]
fn recurse_plain(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let below = if depth == 0 { 0 } else { recurse_plain(depth - 1) };
    std::hint::black_box(&frame);
    below.wrapping_mul(31).wrapping_add(u64::from(frame[(depth % 1024) as usize]))
}

/// In a process of its own: a thread on a vmspace stack is half-way down a deep recursion (its stack
/// grown by the fault handler a few times) when another thread forks; the child uses the spaces;
/// afterwards the thread recurses on, and its stack must go on growing in the parent.
fn parent_stack_grows_after_a_fork(k: Knobs) {
    let s = Arc::new(AddressSpace::reserve(64 << 20).unwrap());
    s.map(PS, rw()).unwrap();
    let phase = Arc::new(AtomicU32::new(0));
    let p2 = Arc::clone(&phase);
    let t = spawn_on_stack(&s, 4 << 20, 64 << 10, move || {
        recurse_then(700, &mut || {
            p2.store(1, Ordering::SeqCst);
            while p2.load(Ordering::SeqCst) != 2 {
                std::thread::yield_now();
            }
            // About 1.5 MiB below the top now, the thread goes 1 MiB deeper.
            recurse_plain(1000)
        })
    })
    .unwrap();
    while phase.load(Ordering::SeqCst) != 1 {
        std::thread::yield_now();
    }
    let out = fork_child(k, || use_space(&s, "space").map(|()| String::new())).out;
    assert!(matches!(out, Outcome::Passed(_)), "the child: {out}");
    phase.store(2, Ordering::SeqCst);
    let sum = t.join().expect("the thread on the stack");
    assert_eq!(sum, expected(1000));
    agree(&s, "space", "after the thread went").unwrap();
}

/// In a process of its own: a thread on a vmspace stack forks half-way down a recursion; in the child
/// (whose one thread runs on that stack) and in the parent it recurses 1 MiB deeper, and the stack
/// must grow on both sides.
fn child_stack_grows_after_a_fork(k: Knobs) {
    let s = Arc::new(AddressSpace::reserve(64 << 20).unwrap());
    s.map(PS, rw()).unwrap();
    let s2 = Arc::clone(&s);
    let t = spawn_on_stack(&s, 4 << 20, 64 << 10, move || {
        recurse_then(500, &mut || {
            let out = fork_child(k, || {
                let sum = recurse_plain(1000);
                if sum != expected(1000) {
                    return Err(format!("the child's stack lost frames: {sum:#x}"));
                }
                use_space(&s2, "space").map(|()| String::new())
            })
            .out;
            (out, recurse_plain(1000))
        })
    })
    .unwrap();
    let (out, sum) = t.join().expect("the thread on the stack");
    assert!(matches!(out, Outcome::Passed(_)), "the child: {out}");
    assert_eq!(sum, expected(1000), "the parent's stack lost frames");
    agree(&s, "space", "after the thread went").unwrap();
}

/// A thread's vmspace stack goes on growing on demand after a fork: in the parent, when another
/// thread forked while it was half-way down a recursion; in the child, when the thread forked from
/// that stack. Each scenario runs in a fresh process of this binary, with a bound.
#[test]
fn a_stack_grows_on_either_side_of_a_fork() {
    let _serial = serial();
    let k = knobs();
    let mut failures = Vec::new();
    for which in ["parent", "child"] {
        let (ok, err) = subprocess(which, k.bound);
        if !ok {
            failures.push(err);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Where this file's scenarios run, in a process of their own (see [`subprocess`]): a stack that
/// cannot grow kills its process with SIGSEGV, which would take every test of this binary with it.
/// Not a test: ignored, and a no-op unless [`subprocess`] started it.
#[test]
#[ignore = "the entry of this file's subprocesses, started by the tests"]
fn subprocess_entry() {
    fork_load_support::subprocess_entry(&[
        ("parent", parent_stack_grows_after_a_fork),
        ("child", child_stack_grows_after_a_fork),
    ]);
}
