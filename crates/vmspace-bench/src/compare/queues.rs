//! The reclaim ring's and the scratch slots' rows, against a `Mutex<Vec>`.

use std::hint::black_box;
use std::sync::Mutex;

use vmspace::reclaim::{Action, ReclaimRing};
use vmspace::scratch::ScratchSpace;

use super::Row;
use crate::timing::median_ns;

/// The ring's row.
pub(super) fn ring_rows(rows: &mut Vec<Row>) -> Result<(), String> {
    let cap = ReclaimRing::round_capacity(1024);
    let mut ring = ReclaimRing::builder().capacity(cap, cap).build().map_err(|e| e.to_string())?;
    let list: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::with_capacity(1024));
    rows.push(Row {
        group: "ring",
        workload: "try_enter + try_cancel of a freed block".into(),
        alternative: "push + pop on a Mutex<Vec> free list",
        vmspace_ns: median_ns(200_000, || {
            let mut e = ring.try_enter(0x10_0000, 0x10000, Action::Deallocate, None).unwrap();
            if e.id.is_none() {
                // Full of cancelled holes: let the reclaimer pass them, as a real user would.
                let _ = ring.drain();
                e = ring.try_enter(0x10_0000, 0x10000, Action::Deallocate, None).unwrap();
            }
            let id = e.id.expect("an empty ring takes an entry");
            let _ = black_box(ring.try_cancel(id, 0x10_0000, 0x10000, Action::Deallocate).unwrap());
        }),
        alternative_ns: median_ns(200_000, || {
            list.lock().unwrap().push((0x10_0000, 0x10000));
            black_box(list.lock().unwrap().pop());
        }),
    });
    Ok(())
}

/// The scratch slots' row.
pub(super) fn scratch_rows(rows: &mut Vec<Row>) -> Result<(), String> {
    let scratch = ScratchSpace::new().map_err(|e| e.to_string())?;
    let pool: Mutex<Vec<u32>> = Mutex::new((0..64).collect());
    rows.push(Row {
        group: "scratch",
        workload: "claim + release a slot".into(),
        alternative: "pop + push on a Mutex<Vec>",
        vmspace_ns: median_ns(200_000, || {
            let s = scratch.claim().unwrap();
            black_box(s.write_addr());
            scratch.release(s).unwrap();
        }),
        alternative_ns: median_ns(200_000, || {
            let s = pool.lock().unwrap().pop().unwrap();
            pool.lock().unwrap().push(black_box(s));
        }),
    });
    Ok(())
}
