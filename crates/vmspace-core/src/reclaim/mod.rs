//! The deferred reclamation ring (xnu `vm_reclaim.h`): an allocator hands freed regions to a reclaimer
//! through a ring in shared memory, and takes one back with a cancel that costs no system call.
//!
//! Invariant (the protocol's, kept by [`Producer`] and [`Consumer`] together): ids are monotonic `u64`s
//! and id `i` lives in slot `i % capacity`; `head <= busy <= tail` and `tail - head <= capacity` outside
//! the producer's short pull-back window; ids below `head` are reclaimed, ids in `[head, busy)` are held
//! by the reclaimer, ids in `[busy, tail)` belong to the producer. An id moves from the producer to the
//! reclaimer only through the store-buffering handshake (producer: `tail = id; fence(SeqCst); read busy`,
//! reclaimer: `busy = head + n; fence(SeqCst); read tail`), so a cancel and a reclaim never both win one
//! entry.
//!
//! The pieces, one job each:
//! - [`layout`](self#layout): the shared header and entries ([`RingHeader`], [`Entry`]), views over memory
//!   ([`RingView`], [`OwnedRing`], [`RingMemory`]) and [`round_capacity`];
//! - [`Producer`]: `try_enter`, `try_cancel`, `query_state` and the v2 accounting;
//! - [`Consumer`]: `reclaim_chunk`, `flush`, `drain`, validating and poisoning;
//! - [`resize`]: capacity changes that keep ids;
//! - the seed's types: [`Action`], [`ReclaimState`], [`ReclaimId`], [`ReclaimError`], [`Entered`],
//!   [`Cancelled`].
//!
//! Atomics come from a `primitive` module that swaps in loom's under the loom model, and every access is
//! `Relaxed`, ordered by explicit fences.
//!
//! ```
//! use vmspace_core::reclaim::{Action, Consumer, OwnedRing, Producer, ReclaimState};
//! let ring = OwnedRing::new(8, 8).unwrap();
//! let mut producer = Producer::attach(&ring, 4096).unwrap();
//! let mut reclaimer = Consumer::attach(&ring, 4096).unwrap();
//!
//! let a = producer.try_enter(0x10000, 0x4000, Action::Free, None).unwrap().id.unwrap();
//! let b = producer.try_enter(0x20000, 0x2000, Action::Deallocate, None).unwrap().id.unwrap();
//! // Take `a` back before the reclaimer gets to it: the memory is ours again, contents intact.
//! assert_eq!(producer.try_cancel(a, 0x10000, 0x4000, Action::Free).unwrap().state, ReclaimState::Unreclaimed);
//!
//! let mut unmapped = Vec::new();
//! let report = reclaimer.flush(16, |start, len, _action| { unmapped.push((start, len)); Ok::<(), ()>(()) }).unwrap();
//! assert_eq!((report.reclaimed, report.holes), (1, 1));
//! assert_eq!(unmapped, [(0x20000, 0x2000)]);
//! assert_eq!(producer.query_state(b, Action::Deallocate).unwrap(), ReclaimState::Deallocated);
//! ```

mod consumer;
mod layout;
mod primitive;
mod producer;
mod resize;
mod types;

#[cfg(all(test, not(loom)))]
mod tests;

pub use consumer::{CHUNK_SIZE, Consumer, ReclaimReport};
pub use layout::{
    ENTRY_SIZE, Entry, HEADER_SIZE, Indices, MAX_BUFFER_SIZE, MAX_CAPACITY, OwnedRing, REGION_SIZE_MAX,
    RING_MAGIC, RING_VERSION, RingHeader, RingMemory, RingView, entry_check, ring_bytes, round_capacity,
};
pub use producer::Producer;
pub use resize::{ResizeReport, resize};
pub use types::{Action, Cancelled, Entered, ReclaimError, ReclaimId, ReclaimState};
