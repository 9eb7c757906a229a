//! Map entries (`struct vm_map_entry`): a range and its attributes, and the rule for merging two.

use core::ops::Range;

use super::store::Item;
use super::types::{Behavior, EntryFlags, Inherit, MapKind, MapObject, MapSpec, Prot};

/// The attributes of an entry, everything but its range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attrs<O> {
    pub(crate) prot: Prot,
    pub(crate) max_prot: Prot,
    pub(crate) inherit: Inherit,
    pub(crate) behavior: Behavior,
    pub(crate) flags: EntryFlags,
    pub(crate) kind: MapKind,
    pub(crate) wired_count: u32,
    pub(crate) user_wired: bool,
    pub(crate) object: O,
    pub(crate) offset: u64,
}

impl<O: MapObject> Attrs<O> {
    pub(crate) fn from_spec(spec: MapSpec<O>) -> Self {
        Attrs {
            prot: spec.prot,
            max_prot: spec.max_prot,
            inherit: spec.inherit,
            behavior: spec.behavior,
            flags: spec.flags,
            kind: MapKind::Normal,
            wired_count: 0,
            user_wired: false,
            object: spec.object,
            offset: spec.offset,
        }
    }
}

/// An entry of the map (`struct vm_map_entry`): `[start, end)` with protection, max protection,
/// inheritance, behaviour, wiring, flags, kind, object and offset. The seed's `avail_ssize` is
/// [`Entry::avail_ssize`]: growth room reserved below a stack.
pub type Entry<O = ()> = Item<Attrs<O>>;

impl<O: MapObject> Item<Attrs<O>> {
    /// `[start, end)`.
    pub fn range(&self) -> Range<u64> {
        self.start..self.end
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Always false: the map never holds an empty entry.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Current protection (`protection`).
    pub fn prot(&self) -> Prot {
        self.value.prot
    }

    /// Maximum protection (`max_protection`).
    pub fn max_prot(&self) -> Prot {
        self.value.max_prot
    }

    /// Inheritance (`inheritance`).
    pub fn inherit(&self) -> Inherit {
        self.value.inherit
    }

    /// Behaviour (`vm_map_entry_behavior`).
    pub fn behavior(&self) -> Behavior {
        self.value.behavior
    }

    /// Wirings, kernel and user (`wired_count`); the memory is pageable only at 0.
    pub fn wired_count(&self) -> u32 {
        self.value.wired_count
    }

    /// Whether the user wired it (`MAP_ENTRY_USER_WIRED`): counted once in `wired_count`.
    pub fn user_wired(&self) -> bool {
        self.value.user_wired
    }

    /// Flags (`eflags`).
    pub fn flags(&self) -> EntryFlags {
        self.value.flags
    }

    /// Kind (`maptype`).
    pub fn kind(&self) -> MapKind {
        self.value.kind
    }

    /// Backing object (`object`).
    pub fn object(&self) -> &O {
        &self.value.object
    }

    /// Offset of `start` in the object (`offset`).
    pub fn offset(&self) -> u64 {
        self.value.offset
    }

    /// Growth room reserved below a stack entry (`aux.avail_ssize`); 0 for other entries.
    pub fn avail_ssize(&self) -> u64 {
        self.reserve_below
    }

    /// Whether `self` (lower) and `next` (directly above) can become one entry
    /// (`vm_map_simplify_entry`): every attribute equal, objects contiguous, neither a submap, and
    /// `next` carries no stack reservation (it has none when `self` touches it, by the map's invariant).
    pub(crate) fn mergeable_with(&self, next: &Self) -> bool {
        let (a, b) = (&self.value, &next.value);
        self.end == next.start
            && next.reserve_below == 0
            && a.kind == MapKind::Normal
            && b.kind == MapKind::Normal
            && a.prot == b.prot
            && a.max_prot == b.max_prot
            && a.inherit == b.inherit
            && a.behavior == b.behavior
            && a.flags == b.flags
            && a.wired_count == b.wired_count
            && a.user_wired == b.user_wired
            && a.object == b.object
            && (a.object.is_anonymous() || a.offset.checked_add(self.len()) == Some(b.offset))
    }
}
