//! The free list: a Treiber stack of slot indices whose head is a tagged word, `(tag << 32) | index`
//! in one `AtomicU64`, with the next-links kept outside the stack (one `AtomicU32` per slot, in storage
//! that never moves). The seed's `p_dtrace_ptss_free_list` with its `next` pointers, minus the ABA.
//!
//! ABA argument: every successful change of the head (pop, push, splice, clear) stores a tag one
//! higher than the tag it replaced. A pop reads head `(t, A)`, then `next[A] = B`, then CASes
//! `(t, A) → (t + 1, B)`. If anything happened to the head in between (A popped and pushed back, B
//! taken), the tag is no longer `t`, so the CAS fails and the pop retries with fresh values; it can only
//! succeed if the head was not modified at all since it was read, in which case `next[A]` read after
//! that load is still A's link (links are written only by a pusher that owns the slot, before its CAS
//! publishes it). A false success needs exactly 2³² head changes between one pop's load and its CAS.
//!
//! Invariant: an index is in the stack at most once. The owner of a slot (the claimer, or the
//! allocator for a new page) is the only one that pushes it, and only after taking it out of use.

use crate::primitive::{AtomicU32, AtomicU64, Ordering};

/// The index that marks the end of the list (and an empty head).
pub(crate) const EMPTY: u32 = u32::MAX;

/// Where a stack finds the next-link of a slot index.
pub(crate) trait Links {
    /// The link of slot `index`: the index below it in the stack, or `EMPTY`.
    fn link(&self, index: u32) -> &AtomicU32;
}

/// A lock-free LIFO of `u32` indices with a 32-bit ABA tag in the head word.
pub(crate) struct TaggedStack {
    head: AtomicU64,
}

fn pack(tag: u32, index: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index)
}

fn index(word: u64) -> u32 {
    word as u32
}

fn tag(word: u64) -> u32 {
    (word >> 32) as u32
}

impl TaggedStack {
    /// An empty stack.
    pub(crate) fn new() -> Self {
        TaggedStack { head: AtomicU64::new(pack(0, EMPTY)) }
    }

    /// Takes the top index off, or `None` when the stack is empty (`dtrace_ptss_claim_entry`'s CAS
    /// loop, with a tag).
    #[inline]
    pub(crate) fn pop(&self, links: &impl Links) -> Option<u32> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let top = index(head);
            if top == EMPTY {
                return None;
            }
            let next = links.link(top).load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(tag(head).wrapping_add(1), next),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(top),
                Err(now) => head = now,
            }
        }
    }

    /// Pushes a chain `first → … → last` already linked through `links` (`last`'s link is set here):
    /// one index when `first == last` (`dtrace_ptss_release_entry`), a whole page when splicing a new
    /// page in (`dtrace_ptss_claim_entry_locked`).
    #[inline]
    pub(crate) fn push_chain(&self, links: &impl Links, first: u32, last: u32) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            links.link(last).store(index(head), Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(tag(head).wrapping_add(1), first),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Pushes one index.
    #[inline]
    pub(crate) fn push(&self, links: &impl Links, index: u32) {
        self.push_chain(links, index, index)
    }

    /// Empties the stack (the seed's `p_dtrace_ptss_free_list = NULL` in `dtrace_ptss_exec_exit`),
    /// bumping the tag so that a pop that read the old head fails.
    pub(crate) fn clear(&self) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            match self.head.compare_exchange_weak(
                head,
                pack(tag(head).wrapping_add(1), EMPTY),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Whether the stack was empty when looked at.
    pub(crate) fn is_empty(&self) -> bool {
        index(self.head.load(Ordering::Relaxed)) == EMPTY
    }
}
