//! The attributes an entry carries: protection, inheritance, behaviour, advice, flags, kind, object.

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign, Not, Sub};

/// Protection bits (`vm_prot_t`: `VM_PROT_READ`, `VM_PROT_WRITE`, `VM_PROT_EXECUTE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Prot(u8);

impl Prot {
    /// `VM_PROT_NONE`.
    pub const NONE: Prot = Prot(0);
    /// `VM_PROT_READ`.
    pub const READ: Prot = Prot(1);
    /// `VM_PROT_WRITE`.
    pub const WRITE: Prot = Prot(2);
    /// `VM_PROT_EXECUTE`.
    pub const EXECUTE: Prot = Prot(4);
    /// `VM_PROT_ALL`: read, write and execute.
    pub const ALL: Prot = Prot(7);
    /// Read and write, the usual data protection.
    pub const RW: Prot = Prot(3);
    /// Read and execute, the usual text protection.
    pub const RX: Prot = Prot(5);

    /// The raw bits (1 read, 2 write, 4 execute), as `PROT_*` on Linux and `VM_PROT_*` in the seed.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The protection with these bits, or `None` if a bit outside read/write/execute is set.
    pub const fn from_bits(bits: u8) -> Option<Prot> {
        if bits & !7 == 0 { Some(Prot(bits)) } else { None }
    }

    /// Whether every bit of `other` is set in `self` (`other ⊆ self`).
    pub const fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Prot {
    type Output = Prot;
    fn bitor(self, rhs: Prot) -> Prot {
        Prot(self.0 | rhs.0)
    }
}

impl BitOrAssign for Prot {
    fn bitor_assign(&mut self, rhs: Prot) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Prot {
    type Output = Prot;
    fn bitand(self, rhs: Prot) -> Prot {
        Prot(self.0 & rhs.0)
    }
}

impl Sub for Prot {
    type Output = Prot;
    fn sub(self, rhs: Prot) -> Prot {
        Prot(self.0 & !rhs.0)
    }
}

impl Not for Prot {
    type Output = Prot;
    fn not(self) -> Prot {
        Prot(!self.0 & 7)
    }
}

impl fmt::Debug for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `rwx` with dashes, as `procstat -v` and `/proc/PID/maps` print it.
impl fmt::Display for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |p: Prot, ch: char| if self.contains(p) { ch } else { '-' };
        write!(f, "{}{}{}", c(Prot::READ, 'r'), c(Prot::WRITE, 'w'), c(Prot::EXECUTE, 'x'))
    }
}

/// What a child receives at fork (`vm_inherit_t`: `VM_INHERIT_SHARE`, `COPY`, `NONE`, and FreeBSD's and
/// OpenBSD's `ZERO`). On Linux: share is a shared mapping, copy a private one, none `MADV_DONTFORK`, zero
/// `MADV_WIPEONFORK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Inherit {
    /// The child shares the memory with the parent (`VM_INHERIT_SHARE`).
    Share,
    /// The child gets a copy-on-write copy (`VM_INHERIT_COPY`, the default).
    #[default]
    Copy,
    /// The child gets a hole (`VM_INHERIT_NONE`).
    None,
    /// The child gets fresh zero-filled memory of the same size and protection (`VM_INHERIT_ZERO`).
    Zero,
}

/// Expected access pattern (`MAP_ENTRY_BEHAV_NORMAL`, `_SEQUENTIAL`, `_RANDOM`), kept in the entry and
/// part of merge equality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Behavior {
    /// No expectation (`MAP_ENTRY_BEHAV_NORMAL`).
    #[default]
    Normal,
    /// Sequential access: read ahead aggressively (`MAP_ENTRY_BEHAV_SEQUENTIAL`, Linux `sr`).
    Sequential,
    /// Random access: no read-ahead (`MAP_ENTRY_BEHAV_RANDOM`, Linux `rr`).
    Random,
}

/// `vm_map_madvise` advice. The first group changes entries (and so clips and merges them); the second
/// acts on the memory and leaves the map as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Advice {
    /// `MADV_NORMAL`: behaviour back to normal.
    Normal,
    /// `MADV_SEQUENTIAL`.
    Sequential,
    /// `MADV_RANDOM`.
    Random,
    /// `MADV_NOSYNC`: sets `MAP_ENTRY_NOSYNC`.
    NoSync,
    /// `MADV_AUTOSYNC`: clears `MAP_ENTRY_NOSYNC`.
    AutoSync,
    /// `MADV_NOCORE` (Linux `MADV_DONTDUMP`): sets `MAP_ENTRY_NOCOREDUMP`.
    NoCore,
    /// `MADV_CORE` (Linux `MADV_DODUMP`): clears `MAP_ENTRY_NOCOREDUMP`.
    Core,
    /// `MADV_WILLNEED`: bring the pages in. Memory only.
    WillNeed,
    /// `MADV_DONTNEED`: drop the pages; private memory reads back as zeros. Memory only. Refused on wired
    /// memory (`InvalidArgument`), as Linux refuses it on locked memory.
    DontNeed,
    /// `MADV_FREE`: the pages may be dropped lazily. Memory only; anonymous, unwired memory only
    /// (`InvalidArgument` otherwise), as on Linux.
    Free,
}

impl Advice {
    /// Whether this advice changes entry attributes (and so the map) rather than only memory.
    pub const fn changes_entries(self) -> bool {
        !matches!(self, Advice::WillNeed | Advice::DontNeed | Advice::Free)
    }

    /// Whether this advice may destroy contents (refused on sealed memory).
    pub const fn is_destructive(self) -> bool {
        matches!(self, Advice::DontNeed | Advice::Free)
    }
}

/// Entry flags (`vm_eflags_t`, `MAP_ENTRY_*`), plus Linux's guard and seal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EntryFlags(u16);

impl EntryFlags {
    /// No flag.
    pub const EMPTY: EntryFlags = EntryFlags(0);
    /// `MAP_ENTRY_NOSYNC`: the syncer does not flush this memory.
    pub const NOSYNC: EntryFlags = EntryFlags(0x0001);
    /// `MAP_ENTRY_STACK`: part of a grow-down stack (`MAP_IS_STACK` at insert).
    pub const STACK: EntryFlags = EntryFlags(0x0002);
    /// `MAP_ENTRY_COW`: a private (copy-on-write) view of its object.
    pub const COW: EntryFlags = EntryFlags(0x0004);
    /// `MAP_ENTRY_NEEDS_COPY`: still shares its object; the first write makes a private copy.
    pub const NEEDS_COPY: EntryFlags = EntryFlags(0x0008);
    /// `MAP_ENTRY_NOFAULT`: faults here are errors (`MAP_NOFAULT` at insert).
    pub const NOFAULT: EntryFlags = EntryFlags(0x0010);
    /// `MAP_ENTRY_NOCOREDUMP`: left out of core dumps (Linux `dd`).
    pub const NOCOREDUMP: EntryFlags = EntryFlags(0x0400);
    /// `MAP_ENTRY_KSTACK`: a guarded kernel stack (`MAP_IS_KSTACK` at insert).
    pub const KSTACK: EntryFlags = EntryFlags(0x0800);
    /// Guard pages: any access faults, reported as a guard hit (Linux `MADV_GUARD_INSTALL`).
    pub const GUARD: EntryFlags = EntryFlags(0x1000);
    /// Sealed (Linux `mseal`, OpenBSD `mimmutable`): no unmap, protect or destructive advice, ever.
    pub const SEALED: EntryFlags = EntryFlags(0x2000);

    /// The raw bits (the seed's values for the seed's flags).
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: EntryFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub const fn intersects(self, other: EntryFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Sets or clears the flags of `other`.
    pub fn set(&mut self, other: EntryFlags, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

impl BitOr for EntryFlags {
    type Output = EntryFlags;
    fn bitor(self, rhs: EntryFlags) -> EntryFlags {
        EntryFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for EntryFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(EntryFlags, &str); 9] = [
            (EntryFlags::NOSYNC, "NOSYNC"),
            (EntryFlags::STACK, "STACK"),
            (EntryFlags::COW, "COW"),
            (EntryFlags::NEEDS_COPY, "NEEDS_COPY"),
            (EntryFlags::NOFAULT, "NOFAULT"),
            (EntryFlags::NOCOREDUMP, "NOCOREDUMP"),
            (EntryFlags::KSTACK, "KSTACK"),
            (EntryFlags::GUARD, "GUARD"),
            (EntryFlags::SEALED, "SEALED"),
        ];
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("EMPTY")?;
        }
        Ok(())
    }
}

/// A submap's identity, chosen by the caller (the seed's `union vm_map_object.sub_map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubmapId(pub u64);

/// The kind of mapping (`vm_maptype_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MapKind {
    /// Ordinary memory backed by an object (`VM_MAPTYPE_NORMAL`).
    #[default]
    Normal,
    /// A range delegated to another map (`VM_MAPTYPE_SUBMAP`). Never merged, never forked, never
    /// protected.
    Submap(SubmapId),
}

/// The backing object of an entry, chosen by the map's user (the seed's `vm_object`).
///
/// Two adjacent entries merge when their objects are equal and their offsets contiguous, or when both
/// objects are anonymous (memory with no identity of its own, the seed's NULL object, which DragonFly
/// merges whatever the offsets).
pub trait MapObject: Clone + PartialEq + fmt::Debug {
    /// Fresh anonymous zero-fill memory: what `Inherit::Zero` gives a child and what stack growth maps.
    fn anonymous() -> Self;
    /// Whether this object is anonymous private memory (merges regardless of offset).
    fn is_anonymous(&self) -> bool;
}

/// The unit object: every entry is anonymous memory. The right choice for a map that only tracks
/// attributes.
impl MapObject for () {
    fn anonymous() -> Self {}
    fn is_anonymous(&self) -> bool {
        true
    }
}

/// The kind of access a fault makes, for [`VmMap::lookup`](super::VmMap::lookup) (`fault_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The access: read, write, execute.
    pub prot: Prot,
    /// A debugger's forced write (`VM_PROT_OVERRIDE_WRITE`): checked against max protection.
    pub override_write: bool,
}

impl From<Prot> for Access {
    fn from(prot: Prot) -> Access {
        Access { prot, override_write: false }
    }
}

/// What to map (`vm_map_insert`'s object, offset, protection, max protection and `cow` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec<O = ()> {
    /// Initial protection; must lie within `max_prot`.
    pub prot: Prot,
    /// Maximum protection (`max_protection`).
    pub max_prot: Prot,
    /// Inheritance at fork.
    pub inherit: Inherit,
    /// Expected access pattern.
    pub behavior: Behavior,
    /// Initial flags (`MAP_COPY_ON_WRITE` → COW|NEEDS_COPY, `MAP_NOFAULT`, `MAP_DISABLE_SYNCER` → NOSYNC,
    /// `MAP_DISABLE_COREDUMP` → NOCOREDUMP, `MAP_IS_STACK`, `MAP_IS_KSTACK`).
    pub flags: EntryFlags,
    /// The backing object.
    pub object: O,
    /// Offset of the first byte in the object.
    pub offset: u64,
}

impl<O: MapObject> MapSpec<O> {
    /// Anonymous memory with protection `prot` and maximum protection `max_prot`, inherited by copy.
    pub fn new(prot: Prot, max_prot: Prot) -> Self {
        MapSpec {
            prot,
            max_prot,
            inherit: Inherit::Copy,
            behavior: Behavior::Normal,
            flags: EntryFlags::EMPTY,
            object: O::anonymous(),
            offset: 0,
        }
    }

    /// The same spec backed by `object` at `offset`.
    pub fn with_object(mut self, object: O, offset: u64) -> Self {
        self.object = object;
        self.offset = offset;
        self
    }

    /// The same spec with inheritance `inherit`.
    pub fn with_inherit(mut self, inherit: Inherit) -> Self {
        self.inherit = inherit;
        self
    }

    /// The same spec with behaviour `behavior`.
    pub fn with_behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    /// The same spec with `flags` added.
    pub fn with_flags(mut self, flags: EntryFlags) -> Self {
        self.flags = self.flags | flags;
        self
    }

    /// Copy-on-write (`MAP_COPY_ON_WRITE`): sets COW and NEEDS_COPY.
    pub fn copy_on_write(self) -> Self {
        self.with_flags(EntryFlags::COW | EntryFlags::NEEDS_COPY)
    }
}
