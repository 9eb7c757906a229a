//! `Mm`: a Linux process's memory (`struct mm_struct`) as data — the VMA list with Linux's attributes,
//! and the memory system calls taking their raw arguments and returning exactly what Linux 6.18 on
//! x86-64 returns (the address, or the errno), with Linux's partial effects, placement, merges and splits,
//! so that [`Mm::maps`] equals `/proc/PID/maps` line for line.
//!
//! # The store: an ordered map of VMAs, not `VmMap`
//!
//! `vmspace-core`'s `VmMap` coalesces neighbours by its own rule (equal attributes, contiguous object
//! offset) whenever it inserts or changes an entry. Linux merges only at particular moments, in
//! particular directions, and under conditions a `VmMap` entry cannot state: `munmap` never merges;
//! `mprotect`/`madvise`/`mlock` try the neighbour on the side the range touches (`vma_merge_existing_range`);
//! a new mapping tries both (`vma_merge_new_range`); `brk` only expands the previous VMA; whether two
//! `anon_vma`s are compatible depends on fork history (`vma_had_uncowed_parents`); `VM_ACCOUNT` survives
//! `mprotect` to read-only only when an `anon_vma` exists. Giving every entry an object identity to stop
//! `VmMap` from coalescing would leave it a sorted container with the merge logic beside it, and its
//! validation (max protection, wiring counts) would refuse states Linux allows. So `Mm` keeps its own
//! `BTreeMap` from start address to [`Vma`] and implements Linux's merge and split functions on it
//! (`merge.rs`), one-to-one with `mm/vma.c`.
//!
//! # What userspace cannot see, and how it is inferred
//!
//! A model started from `/proc/PID/maps` ([`Mm::from_maps`]) must guess what `maps` hides:
//! - `anon_vma`: every private VMA is given its own `anon_vma`, marked inherited when the process is a
//!   fork child ([`Layout::forked`]). New mappings start without one; writes that fault pages in (the
//!   populate of `MAP_POPULATE`/`MAP_LOCKED`/`mlock`, `MADV_POPULATE_WRITE`, `MADV_GUARD_INSTALL`) give
//!   them one exactly as `anon_vma_prepare` does, reusing a compatible neighbour's.
//! - `vm_pgoff` of anonymous memory (`maps` prints 0): taken as the VMA's start page.
//! - `VM_ACCOUNT`: on private writable VMAs; `VM_MAY*`: all three for private VMAs, `VM_MAYWRITE` for
//!   shared ones only when writable.
//! - `mmap_base`: the end of the highest VMA below the stack (the dynamic loader is mapped first,
//!   top-down from `mmap_base`), unless given.
//!
//! Pages' contents and residency are not modelled: the kernel's answers to the calls here depend on
//! the VMA list, the guard markers (kept as page ranges) and the counters, not on page contents.
//!
//! The kernel version and configuration are [`Params`]; the default is 6.18 on x86-64 with the running
//! machine's defaults.

mod fork;
mod merge;
mod mmap;
mod modify;
mod mremap;
mod place;
mod ranges;
mod vma;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use vmspace_core::Prot;

pub use ranges::Ranges;
pub use vma::*;

use crate::proc::maps::MapsLine;

/// Page size (x86-64 and aarch64 with 4 KiB pages).
pub const PAGE: u64 = 4096;
/// `PMD_SIZE`: the transparent huge page size.
pub const PMD: u64 = 2 << 20;

/// The kernel being modelled: version, limits, capabilities and configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// `(major, minor)`; behaviour that changed is chosen by it (THP alignment 6.7 / 6.13, `mseal`
    /// 6.10, `MAP_DROPPABLE` 6.11, guard advice 6.13).
    pub version: (u32, u32),
    /// `TASK_SIZE` (47-bit: `0x7ffffffff000`).
    pub task_size: u64,
    /// `vm.mmap_min_addr`.
    pub mmap_min_addr: u64,
    /// `stack_guard_gap` (256 pages).
    pub stack_guard_gap: u64,
    /// `vm.max_map_count`.
    pub max_map_count: u64,
    /// `RLIMIT_MEMLOCK` in bytes (`u64::MAX`: unlimited).
    pub rlimit_memlock: u64,
    /// `RLIMIT_AS` in bytes.
    pub rlimit_as: u64,
    /// `RLIMIT_DATA` in bytes.
    pub rlimit_data: u64,
    /// `CAP_IPC_LOCK`: locking ignores `RLIMIT_MEMLOCK`.
    pub cap_ipc_lock: bool,
    /// `CAP_SYS_RAWIO`: may map below `mmap_min_addr`.
    pub cap_sys_rawio: bool,
    /// `CAP_SYS_ADMIN`: may `MADV_HWPOISON`.
    pub cap_sys_admin: bool,
    /// `vm.overcommit_memory` (0 guess, 1 always, 2 never).
    pub overcommit_memory: u8,
    /// `totalram_pages() + total_swap_pages`: the heuristic overcommit's ceiling for one request.
    pub commit_pages: u64,
    /// `CONFIG_TRANSPARENT_HUGEPAGE`.
    pub thp: bool,
    /// `CONFIG_KSM`.
    pub ksm: bool,
    /// `CONFIG_MEMORY_FAILURE` (`MADV_HWPOISON`, `MADV_SOFT_OFFLINE`).
    pub memory_failure: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            version: (6, 18),
            task_size: 0x7fff_ffff_f000,
            mmap_min_addr: 4096,
            stack_guard_gap: 256 * PAGE,
            max_map_count: 65530,
            rlimit_memlock: 8 << 20,
            rlimit_as: u64::MAX,
            rlimit_data: u64::MAX,
            cap_ipc_lock: false,
            cap_sys_rawio: false,
            cap_sys_admin: false,
            overcommit_memory: 0,
            commit_pages: 1 << 22,
            thp: true,
            ksm: true,
            memory_failure: true,
        }
    }
}

impl Params {
    /// Whether the modelled kernel is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version >= (major, minor)
    }
}

/// An open file description that `mmap` maps: its identity (two `mmap`s of one description may merge;
/// of two `open`s of one file may not), what `maps` prints, and what `do_mmap` checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    /// The description's identity (the caller's choice, e.g. a counter per `open`).
    pub id: u64,
    /// `s_dev` as `maps` prints it.
    pub dev: (u32, u32),
    /// `i_ino`.
    pub inode: u64,
    /// The name column as `maps` prints it (`/path`, `/memfd:x (deleted)`, `/dev/zero (deleted)`).
    pub name: String,
    /// `FMODE_READ`.
    pub readable: bool,
    /// `FMODE_WRITE`.
    pub writable: bool,
    /// `IS_APPEND(inode)`.
    pub append: bool,
    /// `path_noexec`: on a `noexec` mount.
    pub noexec: bool,
    /// shmem (memfd, tmpfs): `MADV_REMOVE` and `MADV_FREE` rules, shmem placement.
    pub shmem: bool,
    /// Whether the file has an `mmap` operation (`ENODEV` without).
    pub mappable: bool,
    /// The file's size in bytes (`u64::MAX` when unknown): faulting pages past it fails (`SIGBUS`), so
    /// populating them fails as a guard marker does.
    pub size: u64,
}

/// What `/proc/PID/maps` does not show but placement and naming need (`/proc/PID/stat` shows most).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Layout {
    /// `mm->mmap_base`; inferred when `None`.
    pub mmap_base: Option<u64>,
    /// `mm->start_brk` (stat field 47).
    pub start_brk: u64,
    /// `mm->brk` (`brk(0)`).
    pub brk: u64,
    /// `mm->start_stack` (stat field 28).
    pub start_stack: u64,
    /// `mm->start_data`, `mm->end_data` (stat fields 45, 46): `RLIMIT_DATA` counts them for `brk`.
    pub data: (u64, u64),
    /// The process is a fork child: its `anon_vma`s have parents.
    pub forked: bool,
}

/// A Linux process's memory: VMAs, placement state, counters and limits.
#[derive(Clone, Debug)]
pub struct Mm {
    vmas: BTreeMap<u64, Vma>,
    files: BTreeMap<u64, FileRef>,
    /// Guard markers (`MADV_GUARD_INSTALL`), page ranges.
    guards: Ranges,
    /// The gate VMA (`[vsyscall]`), outside the VMA tree: printed, never changed.
    gate: Option<MapsLine>,
    /// The kernel being modelled.
    pub params: Params,
    /// `mm->mmap_base`: top-down placement starts below it.
    pub mmap_base: u64,
    /// `mm->start_brk`.
    pub start_brk: u64,
    /// `mm->brk`.
    pub brk: u64,
    /// `mm->start_stack`.
    pub start_stack: u64,
    data: (u64, u64),
    /// `mm->def_flags` (`VM_LOCKED`/`VM_LOCKONFAULT` after `mlockall(MCL_FUTURE)`).
    pub def_flags: u64,
    /// `mm->locked_vm`, pages.
    pub locked_vm: u64,
    next_id: u64,
}

impl Mm {
    /// An empty memory (after `execve`, before the loader maps anything) with the given layout.
    pub fn new(params: Params, layout: Layout) -> Mm {
        Mm {
            vmas: BTreeMap::new(),
            files: BTreeMap::new(),
            guards: Ranges::default(),
            gate: None,
            mmap_base: layout.mmap_base.unwrap_or(params.task_size),
            start_brk: layout.start_brk,
            brk: layout.brk,
            start_stack: layout.start_stack,
            data: layout.data,
            params,
            def_flags: 0,
            locked_vm: 0,
            next_id: 1 << 40,
        }
    }

    /// The memory a `maps` text describes, with the inferences the module doc lists.
    pub fn from_maps(lines: &[MapsLine], layout: Layout, params: Params) -> Mm {
        let mut mm = Mm::new(params, layout);
        let mut file_ids: BTreeMap<(u32, u32, u64, String), u64> = BTreeMap::new();
        let stack = lines.iter().find(|l| l.name == "[stack]").map(|l| l.range.start);
        for l in lines {
            if l.range.start >= mm.params.task_size {
                mm.gate = Some(l.clone());
                continue;
            }
            let mut flags = 0;
            for (p, f) in [(Prot::READ, VM_READ), (Prot::WRITE, VM_WRITE), (Prot::EXECUTE, VM_EXEC)] {
                if l.prot.contains(p) {
                    flags |= f;
                }
            }
            let special = l.name.starts_with('[')
                && !l.name.starts_with("[anon:")
                && !matches!(l.name.as_str(), "[heap]" | "[stack]");
            let is_file = !special && (l.inode != 0 || l.name.starts_with('/'));
            flags |= VM_MAYREAD | VM_MAYEXEC;
            if l.shared {
                flags |= VM_MAYSHARE;
                if flags & VM_WRITE != 0 || !is_file {
                    flags |= VM_SHARED | VM_MAYWRITE;
                }
            } else {
                flags |= VM_MAYWRITE;
                if flags & VM_WRITE != 0 {
                    flags |= VM_ACCOUNT;
                }
            }
            if l.name == "[stack]" {
                flags |= VM_GROWSDOWN;
            }
            let mut label = Label::None;
            let mut file = None;
            if special {
                // install_special_mapping adds VM_DONTEXPAND; the vvar pages are raw frames.
                flags |= VM_DONTEXPAND;
                if l.name.starts_with("[vvar") {
                    flags = (flags | VM_IO | VM_PFNMAP | VM_DONTDUMP) & !(VM_MAYWRITE | VM_MAYEXEC);
                }
                label = Label::Special(l.name.clone());
            } else if let Some(n) = l.name.strip_prefix("[anon:").and_then(|n| n.strip_suffix(']')) {
                label = Label::AnonName(String::from(n));
            } else if is_file {
                let key = (l.dev.0, l.dev.1, l.inode, l.name.clone());
                let next = mm.next_id;
                let id = *file_ids.entry(key).or_insert(next);
                if id == next {
                    mm.next_id += 1;
                    mm.files.insert(
                        id,
                        FileRef {
                            id,
                            dev: l.dev,
                            inode: l.inode,
                            name: l.name.clone(),
                            readable: true,
                            writable: l.shared && l.prot.contains(Prot::WRITE),
                            append: false,
                            noexec: false,
                            shmem: l.dev.0 == 0,
                            mappable: true,
                            size: u64::MAX,
                        },
                    );
                }
                file = Some(id);
            }
            let anon = (!l.shared && !special).then(|| Anon { id: mm.fresh_id(), singular: !layout.forked });
            let pgoff = if is_file { l.offset >> 12 } else { l.range.start >> 12 };
            let vma = Vma { start: l.range.start, end: l.range.end, flags, pgoff, file, anon, label };
            mm.vmas.insert(vma.start, vma);
        }
        if layout.mmap_base.is_none() {
            let below = stack.unwrap_or(mm.params.task_size);
            if let Some(v) = mm.vmas.range(..below).next_back() {
                mm.mmap_base = v.1.end;
            }
        }
        mm
    }

    /// Corrects what [`Mm::from_maps`] inferred for the VMA starting at `start`, from what `smaps`
    /// shows: its `VmFlags` (as `VM_*` bits) and whether it has anonymous pages (`Anonymous:` above
    /// zero, which implies an `anon_vma`). Returns false when no VMA starts there.
    pub fn adopt(&mut self, start: u64, flags: Option<u64>, has_anon: Option<bool>, forked: bool) -> bool {
        let id = self.fresh_id();
        let Some(v) = self.vmas.get_mut(&start) else { return false };
        if let Some(f) = flags {
            v.flags = f;
            if f & VM_LOCKED != 0 {
                self.locked_vm += v.pages();
            }
        }
        match has_anon {
            Some(true) if v.anon.is_none() => v.anon = Some(Anon { id, singular: !forked }),
            Some(false) => v.anon = None,
            _ => {}
        }
        true
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The VMAs in address order.
    pub fn vmas(&self) -> impl Iterator<Item = &Vma> + '_ {
        self.vmas.values()
    }

    /// `mm->map_count`.
    pub fn map_count(&self) -> u64 {
        self.vmas.len() as u64
    }

    /// The guard-marker ranges (`MADV_GUARD_INSTALL`).
    pub fn guards(&self) -> &Ranges {
        &self.guards
    }

    /// The file a VMA maps.
    pub fn file(&self, id: u64) -> Option<&FileRef> {
        self.files.get(&id)
    }

    /// `/proc/PID/maps` as `show_map_vma` writes it.
    pub fn maps(&self) -> Vec<MapsLine> {
        let mut out: Vec<MapsLine> = self.vmas.values().map(|v| self.maps_line(v)).collect();
        out.extend(self.gate.clone());
        out
    }

    /// One VMA as its `maps` line.
    pub fn maps_line(&self, v: &Vma) -> MapsLine {
        let mut prot = Prot::NONE;
        for (f, p) in [(VM_READ, Prot::READ), (VM_WRITE, Prot::WRITE), (VM_EXEC, Prot::EXECUTE)] {
            if v.flags & f != 0 {
                prot |= p;
            }
        }
        let file = v.file.and_then(|f| self.files.get(&f));
        let name = match (file, &v.label) {
            (Some(f), _) => f.name.clone(),
            (None, Label::Special(n)) => n.clone(),
            _ if v.start <= self.brk && v.end >= self.start_brk => String::from("[heap]"),
            _ if v.start <= self.start_stack && v.end >= self.start_stack => String::from("[stack]"),
            (None, Label::AnonName(n)) => alloc::format!("[anon:{n}]"),
            (None, Label::None) => String::new(),
        };
        MapsLine {
            range: v.start..v.end,
            prot,
            shared: v.flags & VM_MAYSHARE != 0,
            offset: if file.is_some() { v.pgoff << 12 } else { 0 },
            dev: file.map_or((0, 0), |f| f.dev),
            inode: file.map_or(0, |f| f.inode),
            name,
        }
    }

    /// Checks what every `Mm` must keep: VMAs sorted, disjoint, page-aligned, non-empty and below
    /// `TASK_SIZE`; each keyed by its start; files known; `locked_vm` no larger than the VMAs.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut prev_end = 0;
        for (k, v) in &self.vmas {
            if *k != v.start {
                return Err("a VMA is keyed by another address");
            }
            if v.start >= v.end || v.start % PAGE != 0 || v.end % PAGE != 0 {
                return Err("an empty or unaligned VMA");
            }
            if v.start < prev_end {
                return Err("overlapping VMAs");
            }
            if v.end > self.params.task_size {
                return Err("a VMA above TASK_SIZE");
            }
            if v.file.is_some_and(|f| !self.files.contains_key(&f)) {
                return Err("a VMA maps an unknown file");
            }
            prev_end = v.end;
        }
        if self.locked_vm > self.total_vm() {
            return Err("locked_vm exceeds the mapped pages");
        }
        Ok(())
    }

    /// `find_vma`: the first VMA ending above `addr`.
    fn find_vma(&self, addr: u64) -> Option<&Vma> {
        if let Some((_, v)) = self.vmas.range(..=addr).next_back() {
            if v.end > addr {
                return Some(v);
            }
        }
        self.vmas.range(addr.saturating_add(1)..).next().map(|(_, v)| v)
    }

    /// The VMA containing `addr`.
    fn vma_at(&self, addr: u64) -> Option<&Vma> {
        self.vmas.range(..=addr).next_back().map(|(_, v)| v).filter(|v| v.end > addr)
    }

    /// `find_vma_intersection`.
    fn intersects(&self, start: u64, end: u64) -> bool {
        self.find_vma(start).is_some_and(|v| v.start < end)
    }

    /// `mm->total_vm`, pages.
    pub fn total_vm(&self) -> u64 {
        self.vmas.values().map(Vma::pages).sum()
    }

    /// `mm->data_vm`, pages: private writable non-stack VMAs.
    pub fn data_vm(&self) -> u64 {
        self.vmas.values().filter(|v| is_data(v.flags)).map(Vma::pages).sum()
    }

    /// `may_expand_vm`: `RLIMIT_AS` and `RLIMIT_DATA` for `npages` more of `flags`.
    fn may_expand_vm(&self, flags: u64, npages: u64) -> bool {
        let p = &self.params;
        if p.rlimit_as != u64::MAX && self.total_vm() + npages > p.rlimit_as >> 12 {
            return false;
        }
        if is_data(flags) && p.rlimit_data != u64::MAX && self.data_vm() + npages > p.rlimit_data >> 12 {
            return false;
        }
        true
    }

    /// `security_vm_enough_memory_mm` under the heuristic policy: one request larger than RAM + swap fails.
    fn enough_memory(&self, pages: u64) -> bool {
        match self.params.overcommit_memory {
            1 => true,
            _ => pages <= self.params.commit_pages,
        }
    }

    /// `mlock_future_ok`.
    fn mlock_future_ok(&self, flags: u64, bytes: u64) -> bool {
        if flags & VM_LOCKED == 0 || self.params.cap_ipc_lock {
            return true;
        }
        (bytes >> 12) + self.locked_vm <= self.params.rlimit_memlock >> 12
    }

    /// `can_do_mlock`.
    fn can_do_mlock(&self) -> bool {
        self.params.rlimit_memlock != 0 || self.params.cap_ipc_lock
    }
}

/// `is_data_mapping`.
fn is_data(flags: u64) -> bool {
    flags & (VM_WRITE | VM_SHARED | VM_GROWSDOWN) == VM_WRITE
}

/// `PAGE_ALIGN`, wrapping as the kernel's does (a length near `u64::MAX` becomes 0).
fn page_align(len: u64) -> u64 {
    len.wrapping_add(PAGE - 1) & !(PAGE - 1)
}
