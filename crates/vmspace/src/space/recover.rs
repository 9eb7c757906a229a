//! Recovery after a system call failed half-way through an operation: the map is undone, the kernel is
//! put back to it step by step, and where the kernel cannot be put back the map is made to say what
//! the kernel has.
//!
//! Invariant: when `recover` returns, the map and the kernel agree over every range the operation
//! touched. Reverting carries on past a failing step; the steps are ordered so each can succeed
//! (mappings dropped first, then protection, fork and paging advice, then locks released, guard
//! markers installed, and only then memory locked again: Linux refuses markers on locked memory and
//! cannot populate inaccessible pages). What cannot be reverted — contents an unmap or guard markers
//! dropped, a seal that took — and every range where a step failed, is read back from the kernel
//! (`/proc/self/smaps`, pagemap for guard markers) and adopted by the map; those ranges are returned.

use std::ops::Range;

use vmspace_core::{Advice, Effect, Entry, EntryFlags, Inherit, MapSpec, Observed, VmMap};

use crate::backing::Backing;
use crate::error::Error;
use crate::os::pagemap;
use crate::smaps;

use super::kernel::Kernel;

/// Puts the kernel back to the map as it was before the operation whose effects `done` were applied
/// (the last one perhaps half-way), `sealed` being the seals made or tried. Returns the ranges where
/// the kernel kept part of the operation, now adopted by the map (empty: the operation left no trace).
pub(super) fn recover(
    k: &mut Kernel<'_>,
    m: &mut VmMap<Backing>,
    done: &[Effect<Backing>],
    sealed: &[Range<u64>],
) -> Vec<Range<u64>> {
    m.undo();
    let prot_guards = k.prot_guards;
    let mut doubt = Doubt(sealed.to_vec());
    // 1. New mappings go; what an unmap or guard markers dropped cannot come back: read it back.
    for fx in done {
        match fx {
            Effect::Map(e) => doubt.note(&e.range(), k.unmap(&e.range())),
            Effect::Unmap(r) => doubt.0.push(r.clone()),
            Effect::Guard(r) if !prot_guards => doubt.0.push(r.clone()),
            _ => {}
        }
    }
    // 2. Protection, fork and paging advice, as the map says.
    for fx in done {
        match fx {
            Effect::Protect(r, _) | Effect::Guard(r) | Effect::Unguard(r) if prot_guards => {
                each_piece(k, m, r, &mut doubt, |k, e, p| {
                    let prot = k.kernel_prot(e);
                    k.protect(p, prot)
                })
            }
            Effect::Protect(r, _) => each_piece(k, m, r, &mut doubt, |k, e, p| k.protect(p, e.prot())),
            Effect::Inherit(r, _) => each_piece(k, m, r, &mut doubt, |k, e, p| k.inherit(p, e.inherit())),
            Effect::Advise(r, Advice::Normal | Advice::Sequential | Advice::Random) => {
                each_piece(k, m, r, &mut doubt, |k, e, p| k.behavior(p, e.behavior()))
            }
            Effect::Advise(r, Advice::NoCore | Advice::Core) => each_piece(k, m, r, &mut doubt, |k, e, p| {
                k.dump(p, e.flags().contains(EntryFlags::NOCOREDUMP))
            }),
            _ => {}
        }
    }
    // 3. Locks off where the map says unwired, and where guard markers must go back on.
    let relock = |fx: &Effect<Backing>| match fx {
        Effect::Wire(r) | Effect::Unwire(r) => Some(r.clone()),
        Effect::Unguard(r) if !prot_guards => Some(r.clone()),
        _ => None,
    };
    let relocked: Vec<Range<u64>> = done.iter().filter_map(relock).collect();
    for r in &relocked {
        each_piece(k, m, r, &mut doubt, |k, _, p| k.unlock(p));
    }
    // 4. Guard markers back where the map says guard.
    for fx in done {
        if let Effect::Unguard(r) = fx
            && !prot_guards
        {
            each_piece(k, m, r, &mut doubt, |k, e, p| {
                if e.flags().contains(EntryFlags::GUARD) {
                    k.advise(p, crate::os::Advice::GuardInstall)
                } else {
                    Ok(())
                }
            });
        }
    }
    // 5. Locks back where the map says wired.
    let future = m.wire_future();
    for r in &relocked {
        each_piece(
            k,
            m,
            r,
            &mut doubt,
            |k, e, p| if e.wired_count() > 0 { k.lock(e, p, future) } else { Ok(()) },
        );
    }
    if doubt.0.is_empty() {
        return Vec::new();
    }
    let mapped: Vec<&Entry<Backing>> = done
        .iter()
        .filter_map(|fx| match fx {
            Effect::Map(e) => Some(e),
            _ => None,
        })
        .collect();
    adopt(k, m, &doubt.0, &mapped)
}

/// The ranges whose kernel state is in doubt after recovery: read back at the end.
struct Doubt(Vec<Range<u64>>);

impl Doubt {
    fn note(&mut self, r: &Range<u64>, res: Result<(), Error>) {
        if res.is_err() {
            self.0.push(r.clone());
        }
    }
}

/// Runs `step` over each entry piece of `r` in `m`, noting the pieces whose step failed.
fn each_piece(
    k: &mut Kernel<'_>,
    m: &VmMap<Backing>,
    r: &Range<u64>,
    doubt: &mut Doubt,
    mut step: impl FnMut(&mut Kernel<'_>, &Entry<Backing>, &Range<u64>) -> Result<(), Error>,
) {
    for e in m.overlapping(r.clone()) {
        let piece = e.start.max(r.start)..e.end.min(r.end);
        doubt.note(&piece, step(k, e, &piece));
    }
}

/// Reads the kernel back over `doubt` and makes the map say what it has; `mapped` are the entries the
/// failed operation mapped (what memory found where the map has a hole is). Returns the ranges the map
/// changed, joined.
pub(super) fn adopt(
    k: &mut Kernel<'_>,
    m: &mut VmMap<Backing>,
    doubt: &[Range<u64>],
    mapped: &[&Entry<Backing>],
) -> Vec<Range<u64>> {
    let mut doubt: Vec<Range<u64>> =
        doubt.iter().map(|r| r.start.max(m.min())..r.end.min(m.max())).filter(|r| r.start < r.end).collect();
    doubt.sort_by_key(|r| r.start);
    let joined = join(doubt);
    let over = joined.first().map_or(0, |r| r.start)..joined.last().map_or(0, |r| r.end);
    let Ok(vmas) = smaps::read_self_over(&over) else {
        // Nothing to read the kernel with: say every doubtful range may differ.
        return joined;
    };
    let seen_guards = !k.prot_guards && pagemap::shows_guards();
    let mut kept = Vec::new();
    for r in joined {
        let guards = if seen_guards { pagemap::guard_runs(r.clone()).ok() } else { None };
        for (seg, want, got) in smaps::diverging(m, &vmas, guards.as_deref(), k.prot_guards, r) {
            kept.push(seg.clone());
            take_kernel_view(k, m, &seg, want, got, mapped);
        }
    }
    m.take_effects();
    join(kept)
}

/// Makes the map say over `seg` what the kernel shows (`got`; `None`: nothing at all is mapped).
fn take_kernel_view(
    k: &mut Kernel<'_>,
    m: &mut VmMap<Backing>,
    seg: &Range<u64>,
    want: smaps::Look,
    got: Option<smaps::Look>,
    mapped: &[&Entry<Backing>],
) {
    let Some(got) = got.filter(|g| g.mapped) else {
        let _ = m.forget(seg.clone());
        if got.is_none() {
            // Not even the reservation is there: put it back, so the space still owns the range.
            let _ = k.unmap(seg);
        }
        return;
    };
    if !want.mapped {
        // Memory the map does not know: what the failed operation mapped there, or anonymous memory.
        let spec = mapped
            .iter()
            .find(|e| e.start <= seg.start && seg.end <= e.end)
            .map(|e| {
                MapSpec::new(got.prot, e.max_prot() | got.prot)
                    .with_object(e.object().clone(), e.offset() + (seg.start - e.start))
            })
            .unwrap_or_else(|| MapSpec::new(got.prot, vmspace_core::Prot::ALL));
        if m.insert(seg.clone(), spec).is_err() {
            return;
        }
    }
    let Some(e) = m.lookup_entry(seg.start) else { return };
    let f = got.flags;
    let inherit = if f[1] {
        Inherit::None
    } else if f[2] {
        Inherit::Zero
    } else if got.shared {
        Inherit::Share
    } else {
        Inherit::Copy
    };
    let behavior = if f[4] {
        vmspace_core::Behavior::Sequential
    } else if f[5] {
        vmspace_core::Behavior::Random
    } else {
        vmspace_core::Behavior::Normal
    };
    let guard = e.flags().contains(EntryFlags::GUARD);
    // In the fallback a guard's pages are PROT_NONE: the entry keeps its own protection while the
    // kernel still shows the guard.
    let prot = if k.prot_guards && guard && got.prot.is_none() { e.prot() } else { got.prot };
    let seen = Observed {
        prot,
        wired: f[0],
        inherit,
        behavior,
        nocoredump: f[3],
        sealed: f[6],
        guard: if k.prot_guards { Some(guard && got.prot.is_none()) } else { got.guard },
    };
    let _ = m.adopt(seg.clone(), &seen);
}

/// Sorted ranges with touching or overlapping ones joined.
fn join(sorted: Vec<Range<u64>>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}
