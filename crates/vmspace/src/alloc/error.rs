//! What the allocator reports: why an Allocator-style call failed, and its counters.
//!
//! Invariant: plain values, no behaviour; every failure the allocator can report has a variant here.

/// Why an Allocator-style call failed (the stable stand-in for `core::alloc::AllocError`, with the
/// reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// No memory: the space is full or the wrapped allocator returned null (`KERN_NO_SPACE`).
    OutOfMemory,
    /// The pointer lies in the space but is no live block: a double free or an interior pointer
    /// (libmalloc's "pointer being freed was not allocated").
    NotAllocated,
    /// A large layout with a pointer this allocator never handed out (outside the space).
    Foreign,
    /// The layout differs from the one the block was allocated (or last reallocated) with.
    LayoutMismatch,
    /// The size overflows when rounded, or the new layout is invalid.
    InvalidLayout,
}

impl std::fmt::Display for AllocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AllocError::OutOfMemory => "out of memory",
            AllocError::NotAllocated => "pointer being freed was not allocated (double free?)",
            AllocError::Foreign => "pointer not allocated by this allocator",
            AllocError::LayoutMismatch => "layout differs from the allocation's",
            AllocError::InvalidLayout => "invalid layout",
        })
    }
}

impl std::error::Error for AllocError {}

/// Counters over the allocator's life ([`LargeAlloc::stats`](super::LargeAlloc::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Large blocks mapped fresh from the space.
    pub mapped: u64,
    /// Large blocks handed out again from the cache (cancel answered reusable).
    pub reused: u64,
    /// Cached blocks whose cancel lost the race to the reclaimer (dropped, never touched).
    pub lost: u64,
    /// Partial flushes because the ring was full.
    pub flushes: u64,
    /// Blocks unmapped at once (ring full after the flush, cache over its limit, or too large to enter).
    pub unmapped: u64,
    /// `realloc`s done in place (within the class, or grown into adjacent space).
    pub realloc_in_place: u64,
    /// Large blocks handed out now.
    pub live: u64,
    /// Bytes the ring holds now (freed, not yet reclaimed, not cancelled).
    pub reclaimable_bytes: u64,
    /// Bytes the reclaimer (policy, pressure, flushes) gave back over the ring's life.
    pub reclaimed_bytes: u64,
}
