//! The values a scratch space hands out and the errors it reports: a slot's addresses (`SlotView`),
//! a claimed slot's handle (`ScratchSlot`), `ScratchError`.
//!
//! Invariant: a `ScratchSlot` is made only by its space's pool (its fields cannot be forged outside
//! `scratch`), so the id, index and sequence it carries are what a release checks against.

use std::fmt;

use crate::error::Error;

use super::icache;
use super::pool::SlotRef;

/// Smallest slot size the builder accepts.
pub const MIN_SLOT_SIZE: usize = 16;

/// Why a scratch-space call failed. In every case the free list and the address space are intact.
#[derive(Debug)]
pub enum ScratchError {
    /// Allocating a page failed in the address space or the kernel (`memfd_create`, `mmap`,
    /// `madvise`); whatever was mapped was unmapped again (the seed leaked it).
    Space(Error),
    /// The space has allocated its `max_pages` over its life.
    Exhausted,
    /// The slot was released already (this handle or a copy of it).
    DoubleRelease,
    /// The slot belongs to another scratch space.
    ForeignSlot,
    /// The slot's page was dropped by `exec_exit`, or the slot was claimed in the parent of this
    /// forked process (the seed's release after `dtrace_ptss_exec_exit`, which it ignores).
    Stale,
    /// The slot size is not a power of two between [`MIN_SLOT_SIZE`] and the page size.
    InvalidSlotSize(usize),
    /// `max_pages` is 0, or pages × slots per page do not fit 32-bit slot indices.
    InvalidMaxPages(u32),
    /// [`ScratchSpace::current`](super::ScratchSpace::current) was called while this thread's locals are being destroyed.
    ThreadExiting,
}

impl From<Error> for ScratchError {
    fn from(e: Error) -> ScratchError {
        ScratchError::Space(e)
    }
}

impl fmt::Display for ScratchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScratchError::Space(e) => write!(f, "scratch page allocation failed: {e}"),
            ScratchError::Exhausted => f.write_str("scratch space has no page numbers left"),
            ScratchError::DoubleRelease => f.write_str("scratch slot released twice"),
            ScratchError::ForeignSlot => f.write_str("scratch slot of another scratch space"),
            ScratchError::Stale => f.write_str("scratch slot retired by exec_exit or fork"),
            ScratchError::InvalidSlotSize(n) => {
                write!(f, "slot size {n} is not a power of two in [{MIN_SLOT_SIZE}, page size]")
            }
            ScratchError::InvalidMaxPages(n) => write!(f, "max_pages {n} out of range"),
            ScratchError::ThreadExiting => f.write_str("thread is exiting"),
        }
    }
}

impl std::error::Error for ScratchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ScratchError::Space(e) => Some(e),
            _ => None,
        }
    }
}

/// The addresses of one slot (the seed's `dtrace_ptss_page_entry` without its `next`): what
/// [`ScratchSpace::current`](super::ScratchSpace::current) hands out, and what a [`ScratchSlot`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotView {
    pub(super) addr: u64,
    pub(super) write_addr: u64,
    pub(super) len: u32,
}

impl SlotView {
    /// The executable view of the slot, read+execute (the seed's `addr`).
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The writable alias of the same bytes, read+write (the seed's `write_addr`, added in the newer
    /// header; the older one had a single RWX `addr`).
    pub fn write_addr(&self) -> u64 {
        self.write_addr
    }

    /// The slot's size in bytes (`DTRACE_PTSS_SCRATCH_SPACE_PER_THREAD`, 64 by default).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Makes what was written through [`write_addr`](Self::write_addr) visible to instruction fetch
    /// at [`addr`](Self::addr) (xnu's `dtrace_flush_caches` after `uwrite` on arm64). On x86-64 this
    /// is only a compiler fence: the CPU keeps instruction fetch coherent with stores. On aarch64 it
    /// cleans the data cache by the alias, invalidates the instruction cache by the executable
    /// address, and ends with `dsb ish; isb` (another thread that will run the code still needs its
    /// own context synchronisation, e.g. `isb`).
    pub fn sync_icache(&self) {
        icache::sync(self.addr, self.write_addr, u64::from(self.len))
    }
}

/// A claimed slot (the seed's `struct dtrace_ptss_page_entry *`): its two addresses plus what a
/// release checks. A plain `Copy` value like the seed's pointer, so a copy can be released twice: the
/// second release fails with [`ScratchError::DoubleRelease`] and changes nothing. Dropping a handle
/// without releasing it leaks the slot until `exec_exit` (the seed's behaviour when a thread's entry
/// is lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a claimed slot stays claimed until released"]
pub struct ScratchSlot {
    // Every field is 8 bytes: a lone 4-byte field makes the compiler copy handles with wider loads
    // of narrower stores, which the CPU cannot forward (a stall of ~10 ns per claim).
    pub(super) addr: u64,
    pub(super) write_addr: u64,
    pub(super) space: u64,
    /// The slot's index (low half) and length (high half).
    pub(super) index_len: u64,
    pub(super) seq: u64,
    pub(super) slot: SlotRef,
}

impl ScratchSlot {
    /// The executable view (the seed's `addr`); see [`SlotView::addr`].
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The writable alias (the seed's `write_addr`); see [`SlotView::write_addr`].
    pub fn write_addr(&self) -> u64 {
        self.write_addr
    }

    /// The slot's size in bytes (`DTRACE_PTSS_SCRATCH_SPACE_PER_THREAD`).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        (self.index_len >> 32) as usize
    }

    /// Instruction-cache synchronisation after a write; see [`SlotView::sync_icache`].
    pub fn sync_icache(&self) {
        self.view().sync_icache()
    }

    /// The addresses alone.
    pub fn view(&self) -> SlotView {
        SlotView { addr: self.addr, write_addr: self.write_addr, len: (self.index_len >> 32) as u32 }
    }

    /// The slot's index in its space (page number × entries per page + entry).
    pub fn index(&self) -> u32 {
        self.index_len as u32
    }
}
