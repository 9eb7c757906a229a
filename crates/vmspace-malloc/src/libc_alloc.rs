//! glibc's allocator reached without the interposed symbols: `__libc_malloc`, `__libc_free`,
//! `__libc_calloc`, `__libc_realloc`, `__libc_memalign` (exported by glibc since 2.2.5).
//!
//! Invariant: these names bind to glibc's implementation even when this library's `malloc` is first
//! in the symbol search order, so a call here never comes back into the shim.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

unsafe extern "C" {
    pub(crate) fn __libc_malloc(size: usize) -> *mut c_void;
    pub(crate) fn __libc_free(ptr: *mut c_void);
    pub(crate) fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    pub(crate) fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    pub(crate) fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
}

/// The alignment glibc's `malloc` guarantees on x86-64 and aarch64.
pub(crate) const MALLOC_ALIGN: usize = 16;

/// glibc's allocator as a Rust [`GlobalAlloc`]: this library's `#[global_allocator]` and the
/// allocator [`vmspace::alloc::LargeAlloc`] wraps for small requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct LibcAlloc;

// SAFETY: glibc returns blocks of at least `size` bytes aligned to MALLOC_ALIGN (malloc, calloc,
// realloc) or to `align` (memalign), or null; frees and reallocs take only pointers it returned.
unsafe impl GlobalAlloc for LibcAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain calls into glibc.
        unsafe {
            if layout.align() <= MALLOC_ALIGN {
                __libc_malloc(layout.size()) as *mut u8
            } else {
                __libc_memalign(layout.align(), layout.size()) as *mut u8
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: a plain call into glibc.
            return unsafe { __libc_calloc(1, layout.size()) as *mut u8 };
        }
        // SAFETY: forwarded; the block is `layout.size()` bytes when non-null.
        unsafe {
            let p = self.alloc(layout);
            if !p.is_null() {
                std::ptr::write_bytes(p, 0, layout.size());
            }
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from glibc through this allocator (the GlobalAlloc contract).
        unsafe { __libc_free(ptr as *mut c_void) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: `ptr` is glibc's (the GlobalAlloc contract).
            return unsafe { __libc_realloc(ptr as *mut c_void, new_size) as *mut u8 };
        }
        // SAFETY: the GlobalAlloc contract; glibc's realloc would not keep the alignment.
        unsafe {
            let new = Layout::from_size_align_unchecked(new_size, layout.align());
            let n = self.alloc(new);
            if !n.is_null() {
                std::ptr::copy_nonoverlapping(ptr, n, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            n
        }
    }
}

#[global_allocator]
static RUST_ALLOC: LibcAlloc = LibcAlloc;
