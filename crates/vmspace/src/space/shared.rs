//! What the spaces, the fault handler and `fork` share of one address space: its reservation, its map
//! published left-right, its options and test hooks, and which spaces this thread is reading.
//!
//! Invariant: `maps` is the only copy of the space's map, and it changes only under its write lock,
//! through `commit.rs` (calls) or `fork.rs` (after `fork(2)`); a thread's reading marks are exact for
//! the first four spaces it is inside a read of, and count the rest.

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::AtomicBool;

use vmspace_core::VmMap;

use crate::backing::Backing;
use crate::os;
use crate::publish::LeftRight;

use super::inject::Injection;
use super::kernel::Options;

pub(crate) struct Shared {
    /// The whole reservation, with one guard page below and above the map's range.
    outer: Range<u64>,
    /// The map, published left-right: lookups never wait for a change (see `publish.rs`).
    pub(crate) maps: LeftRight<VmMap<Backing>>,
    /// Test hook: which system call fails, with which errno and how.
    pub(super) inject: Injection,
    /// Test hook: the same for the calls recovery makes after a failure.
    pub(super) inject_recovery: Injection,
    /// The space has (or had) stacks: every change keeps room for their growth in both copies.
    pub(super) stacks: AtomicBool,
    pub(super) opts: Options,
}

/// The spaces this thread is inside a read of, innermost last (more than fit: all of them count), so
/// the fault handler never grows a stack whose map this very thread is reading (the writer would wait
/// for this thread's own reader mark), and `fork` is never called from inside a read.
#[derive(Clone, Copy)]
struct Reading {
    depth: usize,
    spaces: [usize; 4],
}

thread_local! {
    static READING: Cell<Reading> = const { Cell::new(Reading { depth: 0, spaces: [0; 4] }) };
}

/// Leaves the innermost read when dropped.
struct LeaveRead;

impl Drop for LeaveRead {
    fn drop(&mut self) {
        let _ = READING.try_with(|r| {
            let mut v = r.get();
            v.depth -= 1;
            r.set(v);
        });
    }
}

/// Whether this thread is inside a read of any space (fork refuses to run there).
pub(crate) fn reading_any() -> bool {
    READING.try_with(|r| r.get().depth > 0).unwrap_or(false)
}

impl Shared {
    pub(super) fn new(outer: Range<u64>, map: VmMap<Backing>, opts: Options) -> Shared {
        Shared {
            outer,
            maps: LeftRight::new(map),
            inject: Injection::off(),
            inject_recovery: Injection::off(),
            stacks: AtomicBool::new(false),
            opts,
        }
    }

    /// The whole reservation, guard pages included.
    pub(crate) fn outer(&self) -> &Range<u64> {
        &self.outer
    }

    /// The guard mode in force: `PROT_NONE` guards (fallback) or guard markers.
    pub(crate) fn prot_guards(&self) -> bool {
        self.opts.guard_fallback || !os::features().guard_install
    }

    /// Reads the map as published now, marking this thread as a reader of this space meanwhile.
    /// Async-signal-safe.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&VmMap<Backing>) -> R) -> R {
        let me = self as *const Shared as usize;
        let _ = READING.try_with(|r| {
            let mut v = r.get();
            if v.depth < v.spaces.len() {
                v.spaces[v.depth] = me;
            }
            v.depth += 1;
            r.set(v);
        });
        let _leave = LeaveRead;
        self.maps.read(f)
    }

    /// Whether the calling thread is inside a read of this space. Async-signal-safe.
    pub(crate) fn read_by_me(&self) -> bool {
        let me = self as *const Shared as usize;
        READING
            .try_with(|r| {
                let v = r.get();
                v.depth > v.spaces.len() || v.spaces[..v.depth].contains(&me)
            })
            .unwrap_or(true)
    }
}
