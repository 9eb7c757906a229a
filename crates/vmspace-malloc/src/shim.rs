//! The interposed C allocation functions (glibc's replacement list: malloc, free, calloc, realloc,
//! posix_memalign, aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size).
//!
//! Invariant: a pointer is the large allocator's exactly when [`LargeAlloc::allocation_layout`] knows
//! it; everything else (small blocks, blocks glibc handed out before or beside us) goes back to glibc.
//! A block moves across the threshold only by allocate–copy–free, copying the bytes the old block
//! really has (its layout's size, or glibc's `malloc_usable_size`).

use std::alloc::Layout;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::null_mut;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use vmspace::alloc::LargeAlloc;

use crate::libc_alloc::{
    __libc_calloc, __libc_free, __libc_malloc, __libc_memalign, __libc_realloc, LibcAlloc, MALLOC_ALIGN,
};

/// The default threshold (glibc's default `M_MMAP_THRESHOLD`); `VMSPACE_ALLOC_THRESHOLD` changes it.
pub const THRESHOLD: usize = 128 << 10;

static LARGE: OnceLock<LargeAlloc<LibcAlloc>> = OnceLock::new();
/// The threshold in force, cached (0: not yet read).
static LIMIT: AtomicUsize = AtomicUsize::new(0);
/// glibc's `malloc_usable_size`, found by `dlsym(RTLD_NEXT)` at load (0: not found).
static LIBC_USABLE: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn large() -> &'static LargeAlloc<LibcAlloc> {
    // Building it allocates nothing; the space and ring are made at the first large request.
    LARGE.get_or_init(|| LargeAlloc::builder().inner(LibcAlloc).threshold(THRESHOLD).env(true).build())
}

/// The large allocator if any large block was ever requested (for frees: nothing can be ours before).
fn made() -> Option<&'static LargeAlloc<LibcAlloc>> {
    LARGE.get()
}

#[inline]
fn limit() -> usize {
    match LIMIT.load(Ordering::Relaxed) {
        0 => {
            let t = large().threshold().max(1);
            LIMIT.store(t, Ordering::Relaxed);
            t
        }
        t => t,
    }
}

/// The layout of `p` if it is a live large block.
#[inline]
fn ours(p: *const c_void) -> Option<Layout> {
    made()?.allocation_layout(p as *const u8)
}

fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

fn set_errno(e: i32) {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() = e };
}

/// A large block of `size` bytes aligned to `align` (zeroed if asked), or null.
fn large_alloc(size: usize, align: usize, zero: bool) -> *mut c_void {
    let Ok(layout) = Layout::from_size_align(size, align) else { return null_mut() };
    let l = large();
    // SAFETY: `layout` has a non-zero size (size >= the threshold >= 1).
    let p = unsafe {
        use std::alloc::GlobalAlloc;
        if zero { l.alloc_zeroed(layout) } else { l.alloc(layout) }
    };
    if !p.is_null() {
        crate::stats::served();
    }
    p as *mut c_void
}

/// glibc's usable size of one of its blocks.
fn libc_usable(p: *mut c_void) -> usize {
    let f = LIBC_USABLE.load(Ordering::Relaxed);
    if f == 0 {
        return 0;
    }
    // SAFETY: `f` is glibc's malloc_usable_size (set by `init`), and `p` is one of glibc's blocks.
    let f: unsafe extern "C" fn(*mut c_void) -> usize = unsafe { std::mem::transmute(f) };
    // SAFETY: see above.
    unsafe { f(p) }
}

/// `malloc(size)`.
///
/// # Safety
/// The C contract of `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    guard(null_mut(), || {
        if size >= limit() {
            let p = large_alloc(size, MALLOC_ALIGN, false);
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: a plain call into glibc.
        unsafe { __libc_malloc(size) }
    })
}

/// `free(ptr)`: a large block goes back to the ring's cache, anything else to glibc.
///
/// # Safety
/// The C contract of `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    guard((), || {
        if ptr.is_null() {
            return;
        }
        if let Some(layout) = ours(ptr) {
            use std::alloc::GlobalAlloc;
            // SAFETY: a live block of the large allocator with its own layout.
            unsafe { large().dealloc(ptr as *mut u8, layout) };
            return;
        }
        // SAFETY: not ours, so glibc's (the caller's contract).
        unsafe { __libc_free(ptr) }
    })
}

/// `calloc(n, size)`: zeroed; an overflowing product is `ENOMEM`.
///
/// # Safety
/// The C contract of `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    guard(null_mut(), || {
        let Some(total) = n.checked_mul(size) else {
            set_errno(libc::ENOMEM);
            return null_mut();
        };
        if total >= limit() {
            let p = large_alloc(total, MALLOC_ALIGN, true);
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: a plain call into glibc.
        unsafe { __libc_calloc(n, size) }
    })
}

/// `realloc(ptr, size)`, across the threshold both ways. `realloc(p, 0)` frees and answers null (as
/// glibc).
///
/// # Safety
/// The C contract of `realloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    guard(null_mut(), || {
        if ptr.is_null() {
            // SAFETY: forwarded.
            return unsafe { malloc(size) };
        }
        if size == 0 {
            // SAFETY: forwarded.
            unsafe { free(ptr) };
            return null_mut();
        }
        if let Some(layout) = ours(ptr) {
            use std::alloc::GlobalAlloc;
            // SAFETY: a live large block with its layout; `size` > 0. LargeAlloc moves it to glibc
            // (through its inner allocator) when `size` falls below the threshold.
            return unsafe { large().realloc(ptr as *mut u8, layout, size) as *mut c_void };
        }
        if size < limit() {
            // SAFETY: glibc's block (the caller's contract).
            return unsafe { __libc_realloc(ptr, size) };
        }
        let old = libc_usable(ptr);
        if old == 0 {
            // Without glibc's usable size the copy length is unknown: let glibc keep the block.
            // SAFETY: as above.
            return unsafe { __libc_realloc(ptr, size) };
        }
        let n = large_alloc(size, MALLOC_ALIGN, false);
        if n.is_null() {
            // SAFETY: as above.
            return unsafe { __libc_realloc(ptr, size) };
        }
        // SAFETY: `old` bytes are readable in glibc's block, `size` writable in ours; distinct blocks.
        unsafe {
            std::ptr::copy_nonoverlapping(ptr as *const u8, n as *mut u8, old.min(size));
            __libc_free(ptr);
        }
        n
    })
}

/// Aligned allocation for the memalign family: `align` a power of two.
fn aligned(align: usize, size: usize) -> *mut c_void {
    if size >= limit() {
        let p = large_alloc(size, align, false);
        if !p.is_null() {
            return p;
        }
    }
    // SAFETY: a plain call into glibc.
    unsafe { __libc_memalign(align, size) }
}

/// `posix_memalign(out, align, size)`: `EINVAL` unless `align` is a power of two and a multiple of
/// `sizeof(void *)`; `ENOMEM` if no memory.
///
/// # Safety
/// `out` is valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    guard(libc::ENOMEM, || {
        if out.is_null() || !align.is_power_of_two() || !align.is_multiple_of(size_of::<*mut c_void>()) {
            return libc::EINVAL;
        }
        let p = aligned(align, size);
        if p.is_null() && size != 0 {
            return libc::ENOMEM;
        }
        // SAFETY: non-null and valid by the caller's contract.
        unsafe { *out = p };
        0
    })
}

/// `aligned_alloc(align, size)`: `EINVAL` (null) unless `align` is a power of two.
///
/// # Safety
/// The C contract of `aligned_alloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    guard(null_mut(), || {
        if !align.is_power_of_two() {
            set_errno(libc::EINVAL);
            return null_mut();
        }
        aligned(align, size)
    })
}

/// `memalign(align, size)`: a non-power-of-two `align` is rounded up to one (as glibc does).
///
/// # Safety
/// The C contract of `memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    guard(null_mut(), || {
        let Some(align) = align.max(1).checked_next_power_of_two() else {
            set_errno(libc::EINVAL);
            return null_mut();
        };
        aligned(align, size)
    })
}

fn page() -> usize {
    vmspace::os::page_size() as usize
}

/// `valloc(size)`: page-aligned.
///
/// # Safety
/// The C contract of `valloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    guard(null_mut(), || aligned(page(), size))
}

/// `pvalloc(size)`: page-aligned, the size rounded up to whole pages (0 → one page).
///
/// # Safety
/// The C contract of `pvalloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    guard(null_mut(), || {
        let Some(rounded) = size.max(1).checked_next_multiple_of(page()) else {
            set_errno(libc::ENOMEM);
            return null_mut();
        };
        aligned(page(), rounded)
    })
}

/// `malloc_usable_size(ptr)`: a large block's requested size (bytes beyond it are never promised),
/// glibc's answer for its own blocks, 0 for null.
///
/// # Safety
/// The C contract of `malloc_usable_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    guard(0, || {
        if ptr.is_null() {
            return 0;
        }
        match ours(ptr) {
            Some(l) => l.size(),
            None => libc_usable(ptr),
        }
    })
}

/// The library's constructor: finds glibc's `malloc_usable_size` (before any thread can need it) and
/// arms the exit statistics if `VMSPACE_MALLOC_STATS=1`.
extern "C" fn init() {
    guard((), || {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT skips this library.
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr()) };
        LIBC_USABLE.store(f as usize, Ordering::Relaxed);
        crate::stats::arm();
    })
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;
