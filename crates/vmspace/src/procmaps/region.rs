//! One VMA with what smaps adds to its `maps` line (`Region`, `Stats`, `VmFlags`), and the map built
//! from them (`build_map`).
//!
//! Invariant: every Linux VMA becomes one `VmMap::insert` with the attributes Linux reports for it
//! (see the `procmaps` module), plus a user wiring for `lo`.

use std::ops::Range;

use vmspace_linux::proc::counters::Counters;
use vmspace_linux::proc::maps::MapsLine;

use crate::{Behavior, EntryFlags, Inherit, MapObject, MapSpec, Prot, VmError, VmMap};

use super::mapping::Mapping;

/// The lowest address a loaded map covers.
pub const MAP_MIN: u64 = 0;
/// One past the highest address a loaded map covers: `2^64 - 4096`, so that `[vsyscall]` at
/// `0xffffffffff600000` (above the 47-bit user limit) fits.
pub const MAP_MAX: u64 = 0u64.wrapping_sub(4096);

/// Linux's two-letter `VmFlags` of a VMA (`/proc/PID/smaps`), as a bit set: the one table, in
/// `vmspace-linux`.
pub use vmspace_linux::proc::vmflags::VmFlags;

/// Memory counters of a region or a whole process, in bytes (smaps reports kB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Resident bytes (`Rss`).
    pub rss: u64,
    /// Proportional resident bytes (`Pss`): each shared page divided among its mappers.
    pub pss: u64,
    /// Resident pages shared with another process (`Shared_Clean + Shared_Dirty`).
    pub shared: u64,
    /// Resident pages mapped only here (`Private_Clean + Private_Dirty`).
    pub private: u64,
    /// Shared pages written to (`Shared_Dirty`), part of `shared`.
    pub shared_dirty: u64,
    /// Private pages written to (`Private_Dirty`), part of `private`.
    pub private_dirty: u64,
    /// Anonymous resident bytes (`Anonymous`).
    pub anonymous: u64,
    /// Swapped-out bytes (`Swap`).
    pub swap: u64,
    /// Proportional swap (`SwapPss`).
    pub swap_pss: u64,
    /// Locked bytes (`Locked`).
    pub locked: u64,
}

impl Stats {
    /// Adds `other` to `self`, field by field (saturating).
    pub fn add(&mut self, other: &Stats) {
        self.rss = self.rss.saturating_add(other.rss);
        self.pss = self.pss.saturating_add(other.pss);
        self.shared = self.shared.saturating_add(other.shared);
        self.private = self.private.saturating_add(other.private);
        self.shared_dirty = self.shared_dirty.saturating_add(other.shared_dirty);
        self.private_dirty = self.private_dirty.saturating_add(other.private_dirty);
        self.anonymous = self.anonymous.saturating_add(other.anonymous);
        self.swap = self.swap.saturating_add(other.swap);
        self.swap_pss = self.swap_pss.saturating_add(other.swap_pss);
        self.locked = self.locked.saturating_add(other.locked);
    }
}

impl From<&Counters> for Stats {
    fn from(c: &Counters) -> Stats {
        Stats {
            rss: c.rss,
            pss: c.pss,
            shared: c.shared_clean.saturating_add(c.shared_dirty),
            private: c.private_clean.saturating_add(c.private_dirty),
            shared_dirty: c.shared_dirty,
            private_dirty: c.private_dirty,
            anonymous: c.anonymous,
            swap: c.swap,
            swap_pss: c.swap_pss,
            locked: c.locked,
        }
    }
}

/// One Linux VMA as `/proc/PID/maps` and `smaps` describe it. The `maps` columns are those of
/// `vmspace_linux::proc::maps::MapsLine` (the one parser; [`Region::from_line`]), named as this API
/// has always named them (`path` for the name column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// `[start, end)`.
    pub range: Range<u64>,
    /// Protection from the `rwx` permission letters.
    pub prot: Prot,
    /// `s` (shared) rather than `p` (private).
    pub shared: bool,
    /// Offset in the file (or the page offset of anonymous memory).
    pub offset: u64,
    /// Device, `major:minor` (hexadecimal in the file).
    pub dev: (u32, u32),
    /// Inode number (0 for anonymous memory).
    pub inode: u64,
    /// The path column, as printed (a path, `[heap]`, `[anon:NAME]`…; empty when there is none).
    pub path: String,
    /// What backs the region.
    pub mapping: Mapping,
    /// The counters (`None` when only `maps` could be read).
    pub stats: Option<Stats>,
    /// `VmFlags` (`None` when only `maps` could be read).
    pub vm_flags: Option<VmFlags>,
    /// `KernelPageSize` in bytes (4096 unless hugetlb).
    pub kernel_page_size: u64,
}

impl Region {
    /// The region of a parsed `maps` line (no counters, no VmFlags yet).
    pub fn from_line(line: MapsLine) -> Region {
        let mapping = Mapping::classify(&line.name, line.dev, line.inode, line.shared);
        let MapsLine { range, prot, shared, offset, dev, inode, name } = line;
        Region {
            range,
            prot,
            shared,
            offset,
            dev,
            inode,
            path: name,
            mapping,
            stats: None,
            vm_flags: None,
            kernel_page_size: 4096,
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Whether the region is empty (never, for a region the kernel printed).
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Maximum protection: the `mr mw me` VmFlags, or everything when they are unknown. Never less than
    /// the current protection: `[vsyscall]` reports `--x` with VmFlags `ex` only, and a map entry needs
    /// `prot ⊆ max_prot`.
    pub fn max_prot(&self) -> Prot {
        match self.vm_flags {
            Some(f) => f.max_prot() | self.prot,
            None => Prot::ALL,
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.vm_flags.is_some_and(|f| f.has(name))
    }

    /// Inheritance at fork: `dc` (MADV_DONTFORK) → none, `wf` (MADV_WIPEONFORK) → zero, shared →
    /// share, private → copy.
    pub fn inherit(&self) -> Inherit {
        if self.flag("dc") {
            Inherit::None
        } else if self.flag("wf") {
            Inherit::Zero
        } else if self.shared {
            Inherit::Share
        } else {
            Inherit::Copy
        }
    }

    /// Behaviour: `sr` sequential, `rr` random, else normal.
    pub fn behavior(&self) -> Behavior {
        if self.flag("sr") {
            Behavior::Sequential
        } else if self.flag("rr") {
            Behavior::Random
        } else {
            Behavior::Normal
        }
    }

    /// Entry flags: `dd` → NOCOREDUMP, `sl` → SEALED, `gd` → STACK.
    pub fn entry_flags(&self) -> EntryFlags {
        let mut f = EntryFlags::EMPTY;
        f.set(EntryFlags::NOCOREDUMP, self.flag("dd"));
        f.set(EntryFlags::SEALED, self.flag("sl"));
        f.set(EntryFlags::STACK, self.flag("gd"));
        f
    }

    /// Whether the region is locked (`lo`, mlock).
    pub fn locked(&self) -> bool {
        self.flag("lo")
    }

    /// The insert that reproduces this region in a [`VmMap`].
    pub fn spec(&self) -> MapSpec<Mapping> {
        let offset = if self.mapping.is_anonymous() { 0 } else { self.offset };
        MapSpec::new(self.prot, self.max_prot())
            .with_inherit(self.inherit())
            .with_behavior(self.behavior())
            .with_flags(self.entry_flags())
            .with_object(self.mapping.clone(), offset)
    }
}

/// Builds the map of `regions`: one insert per region (merging equal neighbours) and a wiring for
/// each locked one.
pub fn build_map(regions: &[Region]) -> Result<VmMap<Mapping>, (Range<u64>, VmError)> {
    let mut map = VmMap::new(MAP_MIN, MAP_MAX).map_err(|e| (0..0, e))?;
    for r in regions {
        map.insert(r.range.clone(), r.spec()).map_err(|e| (r.range.clone(), e))?;
        if r.locked() {
            map.wire(r.range.clone()).map_err(|e| (r.range.clone(), e))?;
        }
        map.take_effects();
    }
    Ok(map)
}
