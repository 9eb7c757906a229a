//! `fork()` while other threads read a space (DESIGN.md, "Failure paths"); the harness and its
//! rules for a child: `fork_load_support`.

mod fork_load_support;

use fork_load_support::*;

// ---- 1. fork while other threads read -----------------------------------------------------------

/// The main thread forks hundreds of times while two threads loop on every read of two spaces; each
/// child uses every space and finds map and kernel equal. Before the fix, a child that inherited a
/// reader's mark waited for it forever in its first change.
#[test]
fn fork_while_other_threads_read() {
    let _serial = serial();
    let k = knobs();
    let rounds = knob("VMSPACE_FORK_ROUNDS", 600);
    let _dog = watchdog("fork_while_other_threads_read", k.bound * 4 + Duration::from_secs(240));
    let spaces: Arc<Vec<AddressSpace>> = Arc::new(vec![striped_space(64), striped_space(24)]);
    for (i, s) in spaces.iter().enumerate() {
        agree(s, &format!("space {i}"), "at the start").unwrap();
    }
    let before: Vec<_> = spaces.iter().map(|s| vmas_in(&outer(s)).unwrap()).collect();
    let marks: Arc<[AtomicU32; 2]> = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
    let stop = Arc::new(Stop::default());
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (spaces, marks, stop, reads) =
                (Arc::clone(&spaces), Arc::clone(&marks), Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                let mut round = t as u64;
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
        })
        .collect();
    // The readers are under way before the first fork.
    while reads.load(Ordering::Relaxed) < 4 && !stop.stopped() {
        std::thread::yield_now();
    }
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let started = Instant::now();
    for round in 0..rounds {
        if stop.stopped() || tally.hung.len() as u64 >= k.max_hangs {
            break;
        }
        std::thread::sleep(Duration::from_micros(rng.below(300)));
        let (sp, mk) = (&spaces, &marks);
        tally.add(fork_child(k, || {
            // Whether a reader was inside a `with_map` at the fork: the marks are in the memory the
            // child inherited.
            let caught = mk.iter().any(|m| m.load(Ordering::SeqCst) > 0);
            for (i, s) in sp.iter().enumerate() {
                use_space(s, &format!("space {i}"))?;
            }
            Ok(if caught { "reading".into() } else { String::new() })
        }));
        if round % 25 == 0 {
            for (i, s) in spaces.iter().enumerate() {
                if let Err(e) = agree(s, &format!("space {i}"), "in the parent") {
                    stop.fail(e);
                }
            }
        }
    }
    let elapsed = started.elapsed();
    stop.stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    eprintln!(
        "fork_load: fork_while_other_threads_read: {} in {elapsed:.1?}, {} read rounds by 2 readers, \
         seed {seed} (binary total so far {} forks)",
        tally.summary(),
        reads.load(Ordering::Relaxed),
        TOTAL_FORKS.load(Ordering::Relaxed)
    );
    stop.check();
    tally.check("fork_while_other_threads_read");
    assert_eq!(tally.forks, rounds, "every round forked");
    assert!(tally.caught_reading > 0, "no fork caught a reader inside a read: the test did not test");
    finish(spaces, before);
}
