//! Making freshly written instructions visible to instruction fetch (what xnu's `uwrite()` does with
//! `dtrace_flush_caches()` on arm64).
//!
//! * x86-64 (and x86): instruction fetch snoops stores by physical address, so writing through the
//!   alias and then jumping to `addr` on the same thread needs nothing; a compiler fence keeps the
//!   write before the call. (Another thread that executes the code must be ordered after the write
//!   with acquire/release, and Intel's cross-modifying-code rule asks it to run a serialising
//!   instruction first when the code might already have been fetched.)
//! * aarch64: clean the written lines to the point of unification by their writable address (data
//!   caches behave as physically indexed, so either alias cleans the same line), invalidate the
//!   instruction cache by the executable address, `dsb ish`, `isb`; the `IDC`/`DIC` bits of `CTR_EL0`
//!   skip the steps the CPU does not need. The `isb` covers the calling thread; another thread that
//!   will execute the code must execute a context-synchronising instruction (`isb`, an exception
//!   return) after this completes.
//! * anything else: libgcc's `__clear_cache` on the executable range.

/// Synchronises the instruction cache after `len` bytes were written at `write` for execution at
/// `exec` (the same memory).
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[inline]
pub(crate) fn sync(_exec: u64, _write: u64, _len: u64) {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// Synchronises the instruction cache after `len` bytes were written at `write` for execution at
/// `exec` (the same memory).
#[cfg(target_arch = "aarch64")]
pub(crate) fn sync(exec: u64, write: u64, len: u64) {
    use core::arch::asm;
    if len == 0 {
        return;
    }
    const IDC: u64 = 1 << 28;
    const DIC: u64 = 1 << 29;
    let ctr: u64;
    // SAFETY: reads CTR_EL0, which Linux lets EL0 read (SCTLR_EL1.UCT, or trapped and emulated).
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    if ctr & IDC == 0 {
        let line = 4u64 << ((ctr >> 16) & 0xf);
        let mut at = write & !(line - 1);
        while at < write + len {
            // SAFETY: `dc cvau` on a mapped, writable address of the caller's slot; Linux enables it
            // at EL0 (SCTLR_EL1.UCI). It only writes back cache contents.
            unsafe { asm!("dc cvau, {}", in(reg) at, options(nostack, preserves_flags)) };
            at += line;
        }
    }
    // SAFETY: a barrier; no memory is accessed.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    if ctr & DIC == 0 {
        let line = 4u64 << (ctr & 0xf);
        let mut at = exec & !(line - 1);
        while at < exec + len {
            // SAFETY: `ic ivau` on a mapped, readable address of the caller's slot (EL0 may, with
            // SCTLR_EL1.UCI); it only discards instruction cache lines.
            unsafe { asm!("ic ivau, {}", in(reg) at, options(nostack, preserves_flags)) };
            at += line;
        }
        // SAFETY: a barrier; no memory is accessed.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    }
    // SAFETY: a context synchronisation barrier; no memory is accessed.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// Synchronises the instruction cache after `len` bytes were written at `write` for execution at
/// `exec` (the same memory).
#[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
pub(crate) fn sync(exec: u64, _write: u64, len: u64) {
    unsafe extern "C" {
        fn __clear_cache(begin: *mut core::ffi::c_char, end: *mut core::ffi::c_char);
    }
    // SAFETY: libgcc's cache maintenance over a mapped range of the caller's slot.
    unsafe { __clear_cache(exec as usize as *mut _, (exec + len) as usize as *mut _) };
}
