//! The shared memory of a ring: a 64-byte header followed by 16-byte entries, and views over it.
//!
//! Invariant: every byte of the shared region is reached only through an atomic (`AtomicU64`,
//! `AtomicU32`, `AtomicU8`), so any number of threads or processes may read and write it at once without
//! undefined behaviour; what a racing or hostile writer can do is change values, never break memory
//! safety. The layout is fixed (`repr(C)`, sizes asserted at compile time), so a ring built by one
//! process over an `mmap`'d range is read identically by another.
//!
//! Layout (offsets in bytes; the first 48 are xnu v2's `struct mach_vm_reclaim_ring_s` field for field):
//!
//! | off | field | written by |
//! |---|---|---|
//! | 0 | `va_in_buffer` u64 | producer: net bytes entered minus bytes cancelled |
//! | 8 | `last_accounting_given_to_kernel` u64 | producer: the value last reported |
//! | 16 | `len` u32 | producer: capacity (the reclaimer keeps its own copy and never trusts this one) |
//! | 20 | `max_len` u32 | producer: the capacity the entry region can hold |
//! | 24 | `head` u64 | reclaimer: ids `< head` are reclaimed |
//! | 32 | `tail` u64 | producer: the next id; every entered id is `< tail` |
//! | 40 | `busy` u64 | reclaimer: ids in `[head, busy)` are being reclaimed now |
//! | 48 | `magic` u32, `version` u32 | [`RingView::initialize`] (not in xnu) |
//! | 56 | reserved u64 | zero |
//! | 64 | `entries[max_len]` | |
//!
//! An entry is xnu's: `address` u64 @0, `size` u32 @8, `behavior` (action) u8 @12; xnu's three unused
//! bytes @13 hold a 24-bit check of the other thirteen, so the reclaimer skips an entry that a stray write
//! has changed. An all-zero entry is a hole (a cancelled entry, or a slot already reclaimed).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::primitive::{AtomicU8, AtomicU32, AtomicU64, RELAXED};
use super::types::{Action, ReclaimError};

/// Size of the shared header in bytes (xnu v2: 48; here 64, with a magic and a version).
pub const HEADER_SIZE: usize = 64;
/// Size of one entry in bytes (xnu: `sizeof(mach_vm_reclaim_entry_s)`).
pub const ENTRY_SIZE: usize = 16;
/// `VM_RECLAIM_MAX_BUFFER_SIZE`: the largest ring mapping, header included (128 MiB).
pub const MAX_BUFFER_SIZE: usize = 128 << 20;
/// `VM_RECLAIM_MAX_CAPACITY`: the most entries a ring can hold (8 388 604 with this header).
pub const MAX_CAPACITY: u32 = ((MAX_BUFFER_SIZE - HEADER_SIZE) / ENTRY_SIZE) as u32;
/// `VM_RECLAIM_REGION_SIZE_MAX`: the largest region one entry can describe (`u32::MAX` bytes).
pub const REGION_SIZE_MAX: u64 = u32::MAX as u64;
/// The header's magic number ("VMRR"), written by [`RingView::initialize`].
pub const RING_MAGIC: u32 = 0x564D_5252;
/// The layout version this code reads and writes (2: entries carry [`entry_check`]; version 1 carried
/// a GF(2)-linear fold that compensating byte flips could pass).
pub const RING_VERSION: u32 = 2;

/// `mach_vm_reclaim_round_capacity`: the largest capacity whose ring (header + entries) fills the same
/// number of whole pages as `capacity` needs, clamped to `max` and to [`MAX_CAPACITY`].
///
/// `round_capacity(0, ..)` is a full page's worth, as in xnu. With 4 KiB pages, 1 → 252 and 512 → 764;
/// with 16 KiB pages, 1 → 1020 (xnu v2's 48-byte header gives 253, 765 and 1021). A `page_size` of 0 is
/// treated as 1.
pub const fn round_capacity(capacity: u32, page_size: u64, max: u32) -> u32 {
    let page = if page_size == 0 { 1 } else { page_size };
    let bytes = HEADER_SIZE as u64 + capacity as u64 * ENTRY_SIZE as u64;
    let rounded = bytes.div_ceil(page) * page;
    let fits = (rounded - HEADER_SIZE as u64) / ENTRY_SIZE as u64;
    let limit = if max < MAX_CAPACITY { max } else { MAX_CAPACITY };
    if fits > limit as u64 { limit } else { fits as u32 }
}

/// The number of bytes a ring of `max_capacity` entries occupies (header included), before rounding to
/// pages: what the std crate maps.
pub const fn ring_bytes(max_capacity: u32) -> usize {
    HEADER_SIZE + max_capacity as usize * ENTRY_SIZE
}

/// `struct mach_vm_reclaim_ring_s` without its entries: the shared indices, capacity and accounting.
///
/// Every field is atomic; the producer and the reclaimer touch it only through the protocol
/// ([`Producer`](super::Producer), [`Consumer`](super::Consumer)).
#[repr(C)]
#[derive(Debug)]
pub struct RingHeader {
    pub(crate) va_in_buffer: AtomicU64,
    pub(crate) last_accounting: AtomicU64,
    pub(crate) capacity: AtomicU32,
    pub(crate) max_capacity: AtomicU32,
    pub(crate) head: AtomicU64,
    pub(crate) tail: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) magic: AtomicU32,
    pub(crate) version: AtomicU32,
    pub(crate) reserved: AtomicU64,
}

impl RingHeader {
    /// A zeroed header (not yet [initialized](RingView::initialize)).
    #[inline]
    pub fn new() -> RingHeader {
        RingHeader {
            va_in_buffer: AtomicU64::new(0),
            last_accounting: AtomicU64::new(0),
            capacity: AtomicU32::new(0),
            max_capacity: AtomicU32::new(0),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            magic: AtomicU32::new(0),
            version: AtomicU32::new(0),
            reserved: AtomicU64::new(0),
        }
    }
}

impl Default for RingHeader {
    fn default() -> Self {
        RingHeader::new()
    }
}

/// `struct mach_vm_reclaim_entry_s`: one 16-byte slot of the ring.
#[repr(C)]
#[derive(Debug)]
pub struct Entry {
    address: AtomicU64,
    size: AtomicU32,
    action: AtomicU8,
    check: [AtomicU8; 3],
}

#[cfg(not(all(loom, test)))]
const _: () = {
    assert!(core::mem::size_of::<RingHeader>() == HEADER_SIZE);
    assert!(core::mem::align_of::<RingHeader>() == 8);
    assert!(core::mem::size_of::<Entry>() == ENTRY_SIZE);
    assert!(core::mem::align_of::<Entry>() == 8);
    assert!(HEADER_SIZE.is_multiple_of(ENTRY_SIZE));
};

/// The thirteen meaningful bytes of an entry, as read in one pass (not atomically as a whole).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct RawEntry {
    pub(crate) address: u64,
    pub(crate) size: u32,
    pub(crate) action: u8,
    pub(crate) check: u32,
}

/// `x · 2` in GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D), in which 2 generates
/// every non-zero element.
const fn gf_double(x: u8) -> u8 {
    (x << 1) ^ if x & 0x80 != 0 { 0x1D } else { 0 }
}

/// The 24-bit check stored in an entry's three spare bytes (the layout's; [`RawEntry`] and the
/// scribbling tests use it).
///
/// The thirteen bytes `d_0..d_12` (address, size, action, little-endian) are taken as elements of
/// GF(2^8) and the check's bytes are `c_k = Σ d_i · g^(k·i)` for `k = 0, 1, 2` and `g = 2`, each xored
/// with a constant so an all-zero slot is not intact. The parity matrix is a Vandermonde matrix on
/// distinct points, every square submatrix of which is invertible, so the entry and its check form
/// an MDS code of distance 4 (a shortened Reed–Solomon code): **any change confined to at most three
/// of the sixteen bytes is always detected**, whatever the values, and a random change of more goes
/// unnoticed with probability 2^-24. (A GF(2)-linear fold, the first version, mapped some bytes onto
/// the same check bits, so two compensating byte flips passed it one time in 255.)
pub const fn entry_check(address: u64, size: u32, action: u8) -> u32 {
    let a = address.to_le_bytes();
    let s = size.to_le_bytes();
    let d = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], s[0], s[1], s[2], s[3], action];
    // Horner from the last byte: c1 = ((d12·g + d11)·g + …)·g + d0, and c2 likewise with g².
    let (mut c0, mut c1, mut c2) = (0u8, 0u8, 0u8);
    let mut i = d.len();
    while i > 0 {
        i -= 1;
        c0 ^= d[i];
        c1 = gf_double(c1) ^ d[i];
        c2 = gf_double(gf_double(c2)) ^ d[i];
    }
    u32::from_le_bytes([c0, c1, c2, 0]) ^ 0x00A5_C3E1
}

impl RawEntry {
    /// The entry a producer writes for a region.
    #[inline]
    pub(crate) const fn new(address: u64, size: u32, action: Action) -> RawEntry {
        RawEntry { address, size, action: action.raw(), check: entry_check(address, size, action.raw()) }
    }

    /// An all-zero slot: a hole.
    #[inline]
    pub(crate) const fn is_hole(&self) -> bool {
        self.address == 0 && self.size == 0 && self.action == 0
    }

    /// Whether the check bytes match the other fields.
    pub(crate) const fn is_intact(&self) -> bool {
        self.check == entry_check(self.address, self.size, self.action)
    }
}

impl Entry {
    /// An empty slot (a hole).
    #[inline]
    pub fn new() -> Entry {
        Entry {
            address: AtomicU64::new(0),
            size: AtomicU32::new(0),
            action: AtomicU8::new(0),
            check: [AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0)],
        }
    }

    #[inline]
    pub(crate) fn read(&self) -> RawEntry {
        let c = &self.check;
        RawEntry {
            address: self.address.load(RELAXED),
            size: self.size.load(RELAXED),
            action: self.action.load(RELAXED),
            check: u32::from_le_bytes([c[0].load(RELAXED), c[1].load(RELAXED), c[2].load(RELAXED), 0]),
        }
    }

    #[inline]
    pub(crate) fn write(&self, e: RawEntry) {
        self.address.store(e.address, RELAXED);
        self.size.store(e.size, RELAXED);
        self.action.store(e.action, RELAXED);
        let [b0, b1, b2, _] = e.check.to_le_bytes();
        self.check[0].store(b0, RELAXED);
        self.check[1].store(b1, RELAXED);
        self.check[2].store(b2, RELAXED);
    }

    #[inline]
    pub(crate) fn clear(&self) {
        self.write(RawEntry::default());
    }
}

impl Default for Entry {
    fn default() -> Self {
        Entry::new()
    }
}

/// A snapshot of the shared indices, for diagnostics (each read separately: not a consistent triple while
/// the ring is in use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Indices {
    /// Ids below `head` are reclaimed.
    pub head: u64,
    /// Ids in `[head, busy)` are being reclaimed.
    pub busy: u64,
    /// The next id to be assigned.
    pub tail: u64,
}

/// A ring's shared memory seen from one side: its header and its entry region (sized for the maximum
/// capacity, as xnu maps the ring for `max_len` up front).
///
/// A view is `Copy` and never owns the memory; build one over an `mmap`'d range with
/// [`from_raw_parts`](RingView::from_raw_parts) or over Rust-owned memory with [`new`](RingView::new) or
/// [`OwnedRing`].
#[derive(Clone, Copy, Debug)]
pub struct RingView<'a> {
    header: &'a RingHeader,
    entries: &'a [Entry],
}

impl<'a> RingView<'a> {
    /// A view over a header and an entry region the caller already holds (for example, both inside one
    /// `#[repr(C)]` struct). At most [`MAX_CAPACITY`] entries are used.
    #[inline]
    pub fn new(header: &'a RingHeader, entries: &'a [Entry]) -> RingView<'a> {
        let n = entries.len().min(MAX_CAPACITY as usize);
        RingView { header, entries: &entries[..n] }
    }

    /// A view over `len` bytes of shared memory at `ptr` laid out as a ring (header, then entries): the
    /// std crate's way in, over an `mmap`'d range. The entry region is `(len - 64) / 16` entries (at most
    /// [`MAX_CAPACITY`]).
    ///
    /// Fails with `InvalidArgument` when `ptr` is null or not 8-byte aligned, and with `InvalidCapacity`
    /// when `len` cannot hold the header and one entry.
    ///
    /// # Safety
    ///
    /// For all of `'a`:
    /// - `ptr..ptr + len` must be valid for reads and writes (mapped readable and writable, and not
    ///   deallocated or unmapped while the view or anything derived from it is alive);
    /// - every other access to those bytes — from this process or another one sharing the mapping — must
    ///   be atomic (through another `RingView`, or atomic instructions of the same sizes at the same
    ///   offsets); plain reads or writes through other pointers are data races.
    ///
    /// The values found there need not be valid: every bit pattern is a valid `RingHeader` and `Entry`,
    /// and the protocol validates what it reads.
    #[cfg(not(all(loom, test)))]
    #[inline]
    pub unsafe fn from_raw_parts(ptr: *mut u8, len: usize) -> Result<RingView<'a>, ReclaimError> {
        if ptr.is_null() || !(ptr as usize).is_multiple_of(core::mem::align_of::<RingHeader>()) {
            return Err(ReclaimError::InvalidArgument);
        }
        if len < HEADER_SIZE + ENTRY_SIZE {
            return Err(ReclaimError::InvalidCapacity);
        }
        let n = ((len - HEADER_SIZE) / ENTRY_SIZE).min(MAX_CAPACITY as usize);
        // SAFETY: `ptr` is non-null and 8-byte aligned (checked), and the caller guarantees `len` bytes
        // there are readable and writable for `'a` and only accessed atomically. `RingHeader` and `Entry`
        // are `repr(C)` structs of atomics (sizes and alignment asserted above), for which every bit
        // pattern is valid, and atomics may be shared (`&`) across threads. The header takes the first
        // 64 bytes and the `n` entries the next `16 * n <= len - 64` bytes, at offset 64 which keeps the
        // 8-byte alignment, so both references lie inside the caller's range and do not overlap.
        unsafe {
            let header = &*(ptr as *const RingHeader);
            let entries = core::slice::from_raw_parts(ptr.add(HEADER_SIZE) as *const Entry, n);
            Ok(RingView { header, entries })
        }
    }

    /// Prepare fresh memory as an empty ring of `capacity` entries: writes the magic, version, capacity,
    /// maximum capacity, zero indices and accounting, and clears every entry. What
    /// `mach_vm_reclaim_ring_allocate` does once the kernel has mapped the ring.
    ///
    /// Call it only while no producer or reclaimer uses the memory. `capacity` must be in
    /// `1..=max_capacity()`, else `InvalidCapacity`.
    pub fn initialize(&self, capacity: u32) -> Result<(), ReclaimError> {
        if capacity == 0 || capacity as usize > self.entries.len() {
            return Err(ReclaimError::InvalidCapacity);
        }
        let h = self.header;
        for e in self.entries {
            e.clear();
        }
        h.va_in_buffer.store(0, RELAXED);
        h.last_accounting.store(0, RELAXED);
        h.capacity.store(capacity, RELAXED);
        h.max_capacity.store(self.entries.len() as u32, RELAXED);
        h.head.store(0, RELAXED);
        h.tail.store(0, RELAXED);
        h.busy.store(0, RELAXED);
        h.version.store(RING_VERSION, RELAXED);
        h.reserved.store(0, RELAXED);
        h.magic.store(RING_MAGIC, RELAXED);
        Ok(())
    }

    /// The most entries this view's memory can hold (`max_len`).
    pub fn max_capacity(&self) -> u32 {
        self.entries.len() as u32
    }

    /// The capacity recorded in the shared header (`len`): informational; both sides keep their own copy.
    pub fn header_capacity(&self) -> u32 {
        self.header.capacity.load(RELAXED)
    }

    /// The shared indices as they read now.
    pub fn indices(&self) -> Indices {
        Indices {
            head: self.header.head.load(RELAXED),
            busy: self.header.busy.load(RELAXED),
            tail: self.header.tail.load(RELAXED),
        }
    }

    /// Whether the header carries this layout's magic and version.
    pub(crate) fn header_is_valid(&self) -> bool {
        self.header.magic.load(RELAXED) == RING_MAGIC && self.header.version.load(RELAXED) == RING_VERSION
    }

    #[inline]
    pub(crate) fn header(&self) -> &'a RingHeader {
        self.header
    }

    /// The slot of `id` under `capacity` (which the caller has checked is `1..=max_capacity()`).
    #[inline]
    pub(crate) fn slot(&self, id: u64, capacity: u64) -> &'a Entry {
        &self.entries[(id % capacity) as usize]
    }

    pub(crate) fn same_memory(&self, other: &RingView<'_>) -> bool {
        core::ptr::eq(self.header, other.header)
    }
}

/// Anything that can present a ring's memory: a [`RingView`], an [`OwnedRing`], or a reference, `Box` or
/// `Arc` of one. The producer and the reclaimer are generic over it, so the same code runs over an
/// `mmap`'d range, over the heap, and inside loom.
pub trait RingMemory {
    /// The view of the ring's memory.
    fn view(&self) -> RingView<'_>;
}

impl RingMemory for RingView<'_> {
    fn view(&self) -> RingView<'_> {
        *self
    }
}

impl<T: RingMemory + ?Sized> RingMemory for &T {
    fn view(&self) -> RingView<'_> {
        (**self).view()
    }
}

impl<T: RingMemory + ?Sized> RingMemory for Box<T> {
    fn view(&self) -> RingView<'_> {
        (**self).view()
    }
}

impl<T: RingMemory + ?Sized> RingMemory for Arc<T> {
    fn view(&self) -> RingView<'_> {
        (**self).view()
    }
}

/// A ring in heap memory: for tests, for Rust kernels that keep their rings in kernel memory, and for
/// rings shared between threads of one process (`Arc<OwnedRing>`).
#[derive(Debug)]
pub struct OwnedRing {
    header: RingHeader,
    entries: Box<[Entry]>,
}

impl OwnedRing {
    /// `mach_vm_reclaim_ring_allocate` over the heap: an initialized, empty ring of `capacity` entries
    /// whose memory can hold `max_capacity`.
    ///
    /// `capacity == 0`, `max_capacity == 0` or `max_capacity < capacity` → `InvalidArgument`;
    /// `max_capacity > MAX_CAPACITY` → `InvalidCapacity`; allocation failure → `ResourceShortage`.
    #[inline]
    pub fn new(capacity: u32, max_capacity: u32) -> Result<OwnedRing, ReclaimError> {
        if capacity == 0 || max_capacity == 0 || max_capacity < capacity {
            return Err(ReclaimError::InvalidArgument);
        }
        if max_capacity > MAX_CAPACITY {
            return Err(ReclaimError::InvalidCapacity);
        }
        let mut entries = Vec::new();
        entries.try_reserve_exact(max_capacity as usize).map_err(|_| ReclaimError::ResourceShortage)?;
        entries.extend((0..max_capacity).map(|_| Entry::new()));
        let ring = OwnedRing { header: RingHeader::new(), entries: entries.into_boxed_slice() };
        ring.view().initialize(capacity)?;
        Ok(ring)
    }
}

impl RingMemory for OwnedRing {
    fn view(&self) -> RingView<'_> {
        RingView { header: &self.header, entries: &self.entries }
    }
}
