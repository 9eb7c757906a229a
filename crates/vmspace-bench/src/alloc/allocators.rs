//! The two allocators written for the comparison (an mmap per block, keep everything), and the
//! allocator a child measures, made from its name (glibc, a preloaded one, or `LargeAlloc`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Mutex;

use rustix::mm::{self, MapFlags, ProtFlags};
use vmspace::alloc::LargeAlloc;

use super::{ALLOCATORS, LIB_DIRS};

/// A fresh anonymous read-write mapping of `len` bytes, or null.
fn map_anon(len: usize) -> *mut u8 {
    // SAFETY: a new private anonymous mapping at an address the kernel chooses aliases nothing.
    let p = unsafe {
        mm::mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE)
    };
    p.map_or(std::ptr::null_mut(), |p| p.cast())
}

/// Unmaps `len` bytes at `p`.
///
/// # Safety
///
/// `[p, p + len)` is a mapping from [`map_anon`] that nothing refers to any more.
unsafe fn unmap_anon(p: *mut u8, len: usize) {
    // SAFETY: forwarded from our caller. A failure would only leak the mapping: nothing to do.
    let _ = unsafe { mm::munmap(p.cast(), len) };
}

/// `size` rounded up to whole pages.
fn page_round(size: usize) -> usize {
    size.next_multiple_of(vmspace::os::page_size() as usize)
}

/// One mmap per block, munmap on free: what large blocks cost with no user-space cache at all
/// (every block faults in every page, every free returns memory at once).
#[derive(Debug, Default)]
pub struct MmapAlloc;

// SAFETY: each block is its own fresh page-aligned mapping of at least `layout.size()` bytes (so any
// alignment up to a page holds), unmapped only by `dealloc` with the same layout.
unsafe impl GlobalAlloc for MmapAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > vmspace::os::page_size() as usize {
            return std::ptr::null_mut();
        }
        map_anon(page_round(layout.size()))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with `layout`, so it is a whole mapping of this length.
        unsafe { unmap_anon(ptr, page_round(layout.size())) }
    }
}

/// A mapped block: its address and the length it was mapped (or allocated) with.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) size: usize,
}

// SAFETY: a block is plain memory owned by exactly one holder at a time (a worker's live set, a free
// list, or the thread freeing it); moving that ownership between threads is sound.
unsafe impl Send for Block {}

/// Keeps every freed block on a per-size free list and reuses it; never returns memory. The
/// opposite bound to [`MmapAlloc`]: no faults after warm-up, and the resident set never shrinks.
#[derive(Debug)]
pub struct KeepAlloc {
    /// Free blocks by size class: index `k` holds blocks of `2^k` bytes.
    lists: [Mutex<Vec<Block>>; 64],
}

impl Default for KeepAlloc {
    fn default() -> Self {
        KeepAlloc { lists: std::array::from_fn(|_| Mutex::new(Vec::new())) }
    }
}

impl KeepAlloc {
    /// The class length of a request: a power of two of at least a page (the workload's sizes are
    /// powers of two, so nothing is wasted on them).
    fn class(size: usize) -> Option<usize> {
        size.max(vmspace::os::page_size() as usize).checked_next_power_of_two()
    }

    fn list(&self, len: usize) -> &Mutex<Vec<Block>> {
        &self.lists[len.trailing_zeros() as usize]
    }
}

// SAFETY: a block handed out is either fresh (a page-aligned mapping of the class length, at least
// `layout.size()`) or was freed with a layout of the same class and is no longer used by anyone.
unsafe impl GlobalAlloc for KeepAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(len) = Self::class(layout.size()) else { return std::ptr::null_mut() };
        if layout.align() > vmspace::os::page_size() as usize {
            return std::ptr::null_mut();
        }
        let reused = self.list(len).lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.map_or_else(|| map_anon(len), |b| b.ptr.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let (Some(len), Some(ptr)) = (Self::class(layout.size()), NonNull::new(ptr)) else { return };
        self.list(len).lock().unwrap_or_else(|e| e.into_inner()).push(Block { ptr, size: len });
    }
}

impl Drop for KeepAlloc {
    fn drop(&mut self) {
        for l in &mut self.lists {
            for b in l.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
                // SAFETY: a listed block is a whole mapping of `b.size` bytes that nobody uses.
                unsafe { unmap_anon(b.ptr.as_ptr(), b.size) };
            }
        }
    }
}

/// The allocator a child measures, made from its name.
#[allow(clippy::large_enum_variant, reason = "one per process, never moved after it is made")]
pub(crate) enum Local {
    /// `System` (malloc/free): glibc, or jemalloc/mimalloc when preloaded.
    System,
    Mmap(MmapAlloc),
    Keep(KeepAlloc),
    Vmspace(LargeAlloc),
}

impl Local {
    pub(crate) fn new(name: &str) -> Result<Local, String> {
        Ok(match name {
            "glibc" => Local::System,
            "jemalloc" | "mimalloc" => {
                check_preloaded(name)?;
                Local::System
            }
            "mmap" => Local::Mmap(MmapAlloc),
            "keep" => Local::Keep(KeepAlloc::default()),
            "vmspace" => Local::Vmspace(LargeAlloc::new()),
            _ => return Err(unknown_allocator(name)),
        })
    }

    pub(crate) fn get(&self) -> &(dyn GlobalAlloc + Sync) {
        match self {
            Local::System => &System,
            Local::Mmap(a) => a,
            Local::Keep(a) => a,
            Local::Vmspace(a) => a,
        }
    }

    /// The allocator's own counters, for `--verbose`.
    pub(crate) fn stats(&self) -> Option<String> {
        match self {
            Local::Vmspace(a) => Some(format!("{:?}", a.stats())),
            _ => None,
        }
    }
}

/// The error for an allocator name not in [`ALLOCATORS`].
pub(crate) fn unknown_allocator(name: &str) -> String {
    format!("unknown allocator {name:?}: {}", ALLOCATORS.join(", "))
}

/// The shared library and the Debian package of a preloaded allocator.
pub(crate) fn preload_lib(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "jemalloc" => Some(("libjemalloc.so.2", "libjemalloc2")),
        "mimalloc" => Some(("libmimalloc.so.2", "libmimalloc2.0")),
        _ => None,
    }
}

/// Where `file` is installed, if it is.
pub(crate) fn find_lib(file: &str) -> Option<PathBuf> {
    LIB_DIRS.iter().map(|d| PathBuf::from(d).join(file)).find(|p| p.exists())
}

/// A preloaded allocator must really be in this process: a wrong `LD_PRELOAD` is silently ignored by
/// the loader and would measure glibc under another name.
fn check_preloaded(name: &str) -> Result<(), String> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
    if maps.lines().any(|l| l.contains(&format!("lib{name}"))) {
        Ok(())
    } else {
        Err(format!(
            "{name} is not loaded in this process (LD_PRELOAD={:?})",
            std::env::var("LD_PRELOAD").unwrap_or_default()
        ))
    }
}
