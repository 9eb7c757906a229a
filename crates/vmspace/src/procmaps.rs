//! A live process's address space, read from `/proc/PID/{smaps,maps,smaps_rollup,status}` and loaded
//! into a [`VmMap<Mapping>`](crate::VmMap): the counterpart of FreeBSD's `procstat -v`
//! (`kinfo_vmentry`) and macOS's `vmmap`, built on the same `vm_map` the rest of this crate drives.
//!
//! Invariant kept here: every Linux VMA becomes one [`VmMap::insert`](crate::VmMap::insert) with the
//! attributes Linux reports for it (protection from the permissions, max protection from the `mr mw me`
//! VmFlags, inheritance from `s`/`p` and `dc`/`wf`, behaviour from `sr`/`rr`, `dd` → NOCOREDUMP, `sl` →
//! SEALED, `gd` → STACK), plus a user wiring for `lo`. So the map's size is the sum of the VMAs' sizes,
//! even where the map merges neighbours that Linux keeps apart (different `anon_vma`), and every entry of
//! the map is a union of whole VMAs, whose per-VMA counters ([`Region::stats`]) add up per entry.
//!
//! The parsers are pure functions of the text ([`parse_smaps`], [`parse_maps`], [`parse_rollup`],
//! [`parse_status`]) so they can be tested on snapshots; [`ProcMaps::load`] reads a live process and
//! turns each way a process can vanish or refuse into one [`ProcError`] variant.

mod live;
mod mapping;
mod parse;
mod region;

pub use live::{Pid, ProcError, ProcMaps, all_pids, max_map_count};
pub use mapping::Mapping;
pub use parse::{ParseError, Status, parse_maps, parse_maps_line, parse_rollup, parse_smaps, parse_status};
pub use region::{MAP_MAX, MAP_MIN, Region, Stats, VmFlags, build_map};
