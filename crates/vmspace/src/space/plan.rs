//! Planning a call: the map operation runs on the copy of the map readers do not see, validates and
//! decides, and leaves its effects in the map's list — the plan the kernel step carries out as it is
//! (`kernel.rs`), then the commit publishes (`commit.rs`).
//!
//! Invariant: a plan is the map's effect list in order, then the ranges it seals (`seal_ranges`:
//! irrevocable, so after every step that can fail). A refused operation changes nothing and leaves no
//! plan. After every plan of a space with stacks, the map has room for stack growth from the fault
//! handler, where nothing may be allocated.

use std::ops::Range;

use vmspace_core::{Effect, EntryFlags, VmError, VmMap};

use crate::backing::Backing;

/// Entries and journal room kept for growth from the handler (two per growth, with slack).
pub(crate) const GROWTH_RESERVE: usize = 16;

/// Keeps room in `m` for growth from the fault handler, where nothing may be allocated: after every
/// change (growths spend it) and on every fresh copy of the map (a fork's). A few compares when the
/// room is there.
pub(crate) fn keep_growth_room(m: &mut VmMap<Backing>) {
    let _ = m.reserve(GROWTH_RESERVE);
    m.reserve_journal(4 * GROWTH_RESERVE);
}

/// Runs the map operation `op` on `m` (it validates and decides; on `Err` nothing changed), keeping
/// growth room afterwards when the space has `stacks`.
pub(super) fn plan<R>(
    m: &mut VmMap<Backing>,
    op: impl FnOnce(&mut VmMap<Backing>) -> Result<R, VmError>,
    stacks: bool,
) -> Result<R, VmError> {
    let r = op(m)?;
    if stacks {
        keep_growth_room(m);
    }
    Ok(r)
}

/// Whether an effect seals (a `Seal`, or a sealed entry mapped).
pub(super) fn seals(fx: &Effect<Backing>) -> bool {
    match fx {
        Effect::Seal(_) => true,
        Effect::Map(e) => e.flags().contains(EntryFlags::SEALED),
        _ => false,
    }
}

/// The ranges a successful operation seals, in order: its `Seal` effects and the sealed entries it
/// mapped, adjacent ranges joined. An iterator, so the success path allocates nothing.
pub(super) fn seal_ranges(effects: &[Effect<Backing>]) -> impl Iterator<Item = Range<u64>> + '_ {
    let mut sealed = effects.iter().filter_map(|fx| match fx {
        Effect::Seal(r) => Some(r.clone()),
        Effect::Map(e) if e.flags().contains(EntryFlags::SEALED) => Some(e.start..e.end),
        _ => None,
    });
    let mut pending = sealed.next();
    std::iter::from_fn(move || {
        let mut r = pending.take()?;
        for next in sealed.by_ref() {
            if next.start == r.end {
                r.end = next.end;
            } else {
                pending = Some(next);
                break;
            }
        }
        Some(r)
    })
}

/// Which step of a plan failed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Failed {
    /// The effect at this index of the map's list.
    Effect(usize),
    /// The seal at this index of [`seal_ranges`].
    Seal(usize),
}

impl Failed {
    /// What recovery must put back after this step failed: the effects done (the last perhaps
    /// half-way) and the seals made or tried.
    pub(super) fn done(self, effects: &[Effect<Backing>]) -> (Vec<Effect<Backing>>, Vec<Range<u64>>) {
        match self {
            Failed::Effect(i) => (effects[..=i].to_vec(), Vec::new()),
            Failed::Seal(j) => (effects.to_vec(), seal_ranges(effects).take(j + 1).collect()),
        }
    }
}
