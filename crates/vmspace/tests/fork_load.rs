//! `fork()` under load (DESIGN.md, "Failure paths"): other threads change spaces, grow stacks in the
//! fault handler and fork themselves; the harness and its rules for a child: `fork_load_support`.

mod fork_load_support;

use fork_load_support::*;

// ---- 2. fork under load -------------------------------------------------------------------------

/// Recurses `depth` times with a 1 KiB frame, reading `space` at the bottom (from deep in a stack of
/// that space: the headroom path); returns a checksum of every frame.
#[inline(never)]
fn recurse(depth: u64, space: &AddressSpace) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let below = if depth == 0 {
        // 0 when the map has the frame's page, as the checksum expects.
        let sp = std::hint::black_box(&frame) as *const _ as u64;
        u64::from(space.lookup_entry(sp).is_none())
    } else {
        recurse(depth - 1, space)
    };
    std::hint::black_box(&frame);
    below.wrapping_mul(31).wrapping_add(u64::from(frame[(depth % 1024) as usize]))
}
/// The mutator: mappings come and go with every attribute a fork treats specially (copy, zero, none,
/// shared, wired, guarded), are re-protected and wired/unwired and guarded/unguarded, until `stop`.
/// Leaves the space as it found it.
fn mutate(s: &AddressSpace, stop: &Stop, seed: u64) -> Result<u64, String> {
    let mut rng = Rng::new(seed);
    let mut held: Vec<u64> = Vec::new();
    let mut ops = 0u64;
    let e = |what: &'static str| move |e: vmspace::Error| format!("mutator: {what}: {e}");
    while !stop.stopped() {
        if held.len() < 6 && (held.is_empty() || rng.below(2) == 0) {
            let spec = match rng.below(4) {
                0 => rw().with_inherit(Inherit::Zero),
                1 => rw().with_inherit(Inherit::None),
                2 => {
                    rw().with_object(Backing::shared_anonymous(8 * PS).map_err(|e| format!("memfd: {e}"))?, 0)
                }
                _ => rw(),
            };
            let a = s.map(8 * PS, spec).map_err(e("map"))?;
            for p in 0..8 {
                write(a + p * PS, p);
            }
            held.push(a);
        } else {
            let a = held.swap_remove(rng.below(held.len() as u64) as usize);
            s.unmap(a..a + 8 * PS).map_err(e("unmap"))?;
        }
        if let Some(&a) = held.get(rng.below(held.len().max(1) as u64) as usize) {
            // Pages 6 and 7 are wired and guarded below; the protect stays off them.
            let p = a + rng.below(6) * PS;
            s.protect(p..p + PS, Prot::READ).map_err(e("protect"))?;
            s.wire(a + 6 * PS..a + 7 * PS).map_err(e("wire"))?;
            s.guard(a + 7 * PS..a + 8 * PS).map_err(e("guard"))?;
            std::hint::black_box(s.lookup_entry(p));
            s.unguard(a + 7 * PS..a + 8 * PS).map_err(e("unguard"))?;
            s.unwire(a + 6 * PS..a + 7 * PS).map_err(e("unwire"))?;
            s.protect(p..p + PS, Prot::RW).map_err(e("protect back"))?;
            if rng.below(2) == 0 {
                s.guard(a + 7 * PS..a + 8 * PS).map_err(e("guard"))?;
            }
        }
        ops += 1;
    }
    for a in held {
        s.unmap(a..a + 8 * PS).map_err(e("unmap at the end"))?;
    }
    Ok(ops)
}

/// The stack grower: threads on stacks of `s`, each recursing about 1.5 MiB deep (two dozen growths
/// by the fault handler), one after another until `stop`.
fn grow_stacks(s: &Arc<AddressSpace>, stop: &Stop) -> Result<u64, String> {
    const DEPTH: u64 = 1500;
    let mut threads = 0;
    while !stop.stopped() {
        let s2 = Arc::clone(s);
        let t = spawn_on_stack(s, 4 << 20, 64 << 10, move || recurse(DEPTH, &s2))
            .map_err(|e| format!("spawn_on_stack: {e}"))?;
        let sum = t.join().map_err(|_| "a stack thread panicked".to_string())?;
        if sum != expected(DEPTH) {
            return Err(format!("a grown stack lost frames: checksum {sum:#x}"));
        }
        threads += 1;
    }
    Ok(threads)
}

/// Everything a child under load checks: each space is usable and agrees with its kernel, a stack
/// grows in it, a new space works.
fn child_under_load(spaces: &[Arc<AddressSpace>], marks: &[AtomicU32]) -> Result<String, String> {
    let caught = marks.iter().any(|m| m.load(Ordering::SeqCst) > 0);
    for (i, s) in spaces.iter().enumerate() {
        use_space(s, &format!("space {i}"))?;
    }
    grow_a_stack(&spaces[1], "space 1")?;
    new_space()?;
    Ok(if caught { "reading".into() } else { String::new() })
}

/// The body of `fork_under_load` (run in a process of its own).
fn load_scenario(k: Knobs) {
    let _dog = watchdog("fork_under_load", k.bound * 4 + Duration::from_secs(240));
    vmspace::fault::install();
    let seed = seed();
    // 0: mutated; 1: stacks; 2: steady, with every inheritance and a wired page and a guard.
    let steady = striped_space(16);
    let r = steady.range();
    let zero = steady.map(4 * PS, rw().with_inherit(Inherit::Zero)).unwrap();
    steady.guard(zero + PS..zero + 2 * PS).unwrap();
    let none = steady.map(2 * PS, rw().with_inherit(Inherit::None)).unwrap();
    let wired = steady.map(PS, rw()).unwrap();
    steady.wire(wired..wired + PS).unwrap();
    write(none, 1);
    assert!(r.contains(&none));
    let spaces: Vec<Arc<AddressSpace>> = vec![
        Arc::new(AddressSpace::reserve(16 << 20).unwrap()),
        Arc::new(AddressSpace::reserve(64 << 20).unwrap()),
        Arc::new(steady),
    ];
    // Every space has an entry at all times, so a reader always sees one.
    spaces[0].map(PS, rw()).unwrap();
    spaces[1].map(PS, rw()).unwrap();
    for (i, s) in spaces.iter().enumerate() {
        agree(s, &format!("space {i}"), "at the start").unwrap();
    }
    let before: Vec<_> = spaces.iter().map(|s| vmas_in(&outer(s)).unwrap()).collect();
    let stop = Arc::new(Stop::default());
    let marks: Arc<[AtomicU32; 3]> = Arc::new([const { AtomicU32::new(0) }; 3]);
    let reads = Arc::new(AtomicU64::new(0));

    let reader = {
        let (spaces, stop, marks, reads) =
            (spaces.clone(), Arc::clone(&stop), Arc::clone(&marks), Arc::clone(&reads));
        std::thread::spawn(move || {
            let mut round = 0;
            while !stop.stopped() {
                for (i, s) in spaces.iter().enumerate() {
                    if let Err(e) = read_round(s, i, &marks[..], round) {
                        stop.fail(e);
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
                round += 1;
            }
        })
    };
    let mutator = {
        let (s, stop) = (Arc::clone(&spaces[0]), Arc::clone(&stop));
        std::thread::spawn(move || {
            mutate(&s, &stop, seed ^ 0x9e37).unwrap_or_else(|e| {
                stop.fail(e);
                0
            })
        })
    };
    let grower = {
        let (s, stop) = (Arc::clone(&spaces[1]), Arc::clone(&stop));
        std::thread::spawn(move || {
            grow_stacks(&s, &stop).unwrap_or_else(|e| {
                stop.fail(e);
                0
            })
        })
    };
    // The second forker runs on a stack of space 1 (fork() from a vmspace stack, with its headroom).
    let second_forks = 150;
    let forker = {
        let (sp, stop, mk) = (spaces.clone(), Arc::clone(&stop), Arc::clone(&marks));
        spawn_on_stack(&spaces[1], 8 << 20, 256 << 10, move || {
            let mut rng = Rng::new(seed ^ 0x51);
            let mut tally = Tally::default();
            for _ in 0..second_forks {
                if stop.stopped() || tally.hung.len() as u64 >= k.max_hangs {
                    break;
                }
                std::thread::sleep(Duration::from_micros(rng.below(2000)));
                tally.add(fork_child(k, || child_under_load(&sp, &mk[..])));
            }
            tally
        })
        .unwrap()
    };

    let main_forks = 400;
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let started = Instant::now();
    for round in 0..main_forks {
        if stop.stopped() || tally.hung.len() as u64 >= k.max_hangs {
            break;
        }
        std::thread::sleep(Duration::from_micros(rng.below(1000)));
        tally.add(fork_child(k, || child_under_load(&spaces, &marks[..])));
        if round % 50 == 0 {
            for (i, s) in spaces.iter().enumerate() {
                if let Err(e) = agree(s, &format!("space {i}"), "in the parent") {
                    stop.fail(e);
                }
            }
        }
    }
    let second = forker.join().expect("the forker on a vmspace stack panicked");
    let elapsed = started.elapsed();
    stop.stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let ops = mutator.join().unwrap();
    let stacks = grower.join().unwrap();
    eprintln!(
        "fork_load: fork_under_load: main thread {}; thread on a vmspace stack {}; in {elapsed:.1?}, \
         with {} read rounds, {ops} mutator rounds, {stacks} grown stack threads, seed {seed}",
        tally.summary(),
        second.summary(),
        reads.load(Ordering::Relaxed),
    );
    // For the parent process's count.
    eprintln!("FORKS {}", TOTAL_FORKS.load(Ordering::Relaxed));
    stop.check();
    let (main_n, second_n) = (tally.forks, second.forks);
    tally.merge(second);
    tally.check("fork_under_load");
    assert_eq!((main_n, second_n), (main_forks, second_forks), "every round forked");
    assert!(ops > 0 && stacks > 0, "the mutator ({ops}) and the stack grower ({stacks}) ran");
    assert!(tally.overlapped > 0, "no two fork() calls overlapped: the test did not test that");
    // The spaces' Arcs: the workers' clones are gone with them.
    let spaces =
        Arc::new(spaces.into_iter().map(|s| Arc::try_unwrap(s).expect("workers let go")).collect::<Vec<_>>());
    finish(spaces, before);
}

/// 1–4 threads read, map and unmap, protect, wire, guard and grow stacks (threads of
/// `spawn_on_stack` taking faults), while the main thread forks at random moments and a thread on a
/// vmspace stack forks too (two `fork()`s at once). Every child finishes, agrees with its kernel in
/// every space, uses each and makes a new one. It runs in a fresh process of this binary, so that a
/// stack that cannot grow (SIGSEGV) fails this test and not every test of the binary.
#[test]
fn fork_under_load() {
    let _serial = serial();
    let k = knobs();
    let limit = k.bound * 5 + Duration::from_secs(300);
    let (ok, err) = subprocess("load", limit);
    for line in err.lines() {
        if let Some(n) = line.strip_prefix("FORKS ") {
            TOTAL_FORKS.fetch_add(n.trim().parse().unwrap_or(0), Ordering::Relaxed);
        }
    }
    for line in err.lines().filter(|l| l.starts_with("fork_load:")) {
        eprintln!("{line}");
    }
    eprintln!("fork_load: binary total so far {} forks", TOTAL_FORKS.load(Ordering::Relaxed));
    assert!(ok, "fork_under_load, in its own process: {err}");
}

/// Where this file's scenarios run, in a process of their own (see [`subprocess`]): a stack that
/// cannot grow kills its process with SIGSEGV, which would take every test of this binary with it.
/// Not a test: ignored, and a no-op unless [`subprocess`] started it.
#[test]
#[ignore = "the entry of this file's subprocesses, started by the tests"]
fn subprocess_entry() {
    fork_load_support::subprocess_entry(&[("load", load_scenario)]);
}
