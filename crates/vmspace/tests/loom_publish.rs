//! Loom model of the left-right publication protocol (`publish.rs`): a reader never sees a copy the
//! writer is changing, so two fields the writer always changes together always read equal, and the
//! published value is the latest. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p vmspace --test loom_publish --release`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use vmspace::publish::LeftRight;

#[derive(Clone)]
struct Pair(u64, u64);

#[test]
fn readers_see_whole_changes_only() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let lr = Arc::new(LeftRight::new(Pair(0, 0)));
        let reader = {
            let lr = Arc::clone(&lr);
            thread::spawn(move || {
                for _ in 0..2 {
                    let (a, b) = lr.read(|p| (p.0, p.1));
                    assert_eq!(a, b, "a reader saw half a change");
                }
            })
        };
        for v in 1..=2u64 {
            let mut w = lr.try_write(1).unwrap();
            w.write(
                |p| {
                    p.0 = v;
                    p.1 = v;
                    ((), true)
                },
                |other, done| *other = done.clone(),
            );
        }
        reader.join().unwrap();
        assert_eq!(lr.read(|p| (p.0, p.1)), (2, 2), "the last change is the one published");
    });
}

#[test]
fn the_write_lock_refuses_its_own_holder() {
    loom::model(|| {
        let lr = LeftRight::new(Pair(0, 0));
        let _w = lr.try_write(7).unwrap();
        assert!(lr.try_write(7).is_err(), "a handler on the writer's own thread must not wait for itself");
    });
}
