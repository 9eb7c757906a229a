//! `libvmspace_malloc.so`: an `LD_PRELOAD` malloc. Blocks of at least the threshold (default 128 KiB,
//! glibc's default `M_MMAP_THRESHOLD`) come from vmspace's [`LargeAlloc`] on the reclaim ring; the
//! rest, and every pointer it did not hand out, go to glibc (`__libc_malloc` and friends).
//!
//! Why 128 KiB: below it glibc serves from its arenas, which it does well; at and above it glibc
//! `mmap`s each block and `munmap`s it on free (until its dynamic threshold rises and large blocks
//! then stay in the heap, resident, after they are freed). That is the path a deferred-reclaim cache
//! improves: reuse without a system call or a page fault while the program is busy, and the memory
//! given back (by the reclaimer thread, after `VMSPACE_ALLOC_MAX_AGE_MS`, default 1 s) once it idles.
//!
//! Invariant: nothing here allocates through the interposed symbols. Rust's own allocations (the
//! allocator's maps, its reclaimer thread) use [`LibcAlloc`] as `#[global_allocator]`, which calls
//! glibc's `__libc_*` entry points directly, so start-up and the large path never recurse; glibc's
//! `malloc_usable_size` for its own blocks is looked up once, by `dlsym(RTLD_NEXT)` in the library's
//! constructor. Ownership is decided by address ([`LargeAlloc::allocation_layout`]): a pointer
//! that is not a live large block is glibc's. Every export runs inside `catch_unwind`; a panic there
//! answers "no memory" (null / `ENOMEM`) and never unwinds into C.

mod libc_alloc;
mod shim;
mod stats;

pub use libc_alloc::LibcAlloc;
pub use shim::*;
