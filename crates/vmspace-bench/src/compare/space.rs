//! The real-memory rows: each `AddressSpace` workload against the same system calls plus the
//! simplest record ("record"), against the bare calls on a layout in the same kernel state, and
//! against the bare calls on a small mapping of their own (what the rows measured before the
//! same-state layout: the kernel's VMA tree around that target is not the space's).

use super::Row;
use crate::layouts::{BareLayout, SpaceLayout, fresh_map_unmap, same_state};
use crate::timing::{SHORT_ITERS, SHORT_ROUNDS, interleaved};

/// Entries in each layout.
const N: u64 = 10_000;
/// Interleaved rounds: more than the other rows' 7 samples, and short ones (see [`SHORT_ROUNDS`]).
pub(super) const ROUNDS: usize = SHORT_ROUNDS;

/// The space's rows.
pub(super) fn rows(rows: &mut Vec<Row>) -> Result<(), String> {
    let s = SpaceLayout::new(N).map_err(|e| e.to_string())?;
    let b = BareLayout::new(N).map_err(|e| format!("the bare layout: {e}"))?;
    let small = BareLayout::new(1).map_err(|e| format!("the small mapping: {e}"))?;
    same_state(&s, &b)?;
    let (sp, bp, small_p) = (s.middle_page(), b.middle_page(), small.middle_page());
    if sp - s.range().start != bp - b.range().start
        || s.free_page() - s.range().start != b.free_page() - b.range().start
    {
        return Err("the space's targets are not at the bare layout's offsets".into());
    }
    let free = b.free_page();
    let (mut bt, mut bt_map) = (b.record(), b.record());
    // All the closures take turns in every round: a slow stretch of the machine falls on all alike.
    let m = interleaved(
        ROUNDS,
        SHORT_ITERS,
        &mut [
            &mut || s.flip(sp),
            &mut || b.flip_recorded(&mut bt, bp),
            &mut || b.flip(bp),
            &mut || small.flip(small_p),
            &mut || s.map_unmap(),
            &mut || b.map_unmap_recorded(&mut bt_map, free),
            &mut || b.map_unmap(free),
            &mut || fresh_map_unmap(),
        ],
    );
    // Every operation put back what it changed.
    same_state(&s, &b)?;
    let protect = format!("protect a page and back, {N} entries");
    let map = format!("map and unmap a page, {N} entries");
    let alternatives = [
        (&protect, "record", m[1]),
        (&protect, "bare calls, same kernel state", m[2]),
        (&protect, "two mprotect calls", m[3]),
        (&map, "record", m[5]),
        (&map, "bare calls, same kernel state", m[6]),
        (&map, "mmap + munmap", m[7]),
    ];
    for (i, (workload, alternative, alternative_ns)) in alternatives.into_iter().enumerate() {
        let vmspace_ns = if i < 3 { m[0] } else { m[4] };
        rows.push(Row {
            group: "space",
            workload: workload.clone(),
            alternative,
            vmspace_ns,
            alternative_ns,
        });
    }
    Ok(())
}
