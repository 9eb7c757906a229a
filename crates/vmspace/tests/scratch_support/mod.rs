//! Helpers shared by the scratch-space tests: machine code that returns a constant, calling it, the
//! kernel's view of an address, waiting for a child.
#![allow(dead_code)]

use vmspace::scratch::SlotView;

/// `mov eax, value; ret` (x86-64), or `movz w0, lo; movk w0, hi, lsl 16; ret` (aarch64).
pub fn code(value: u32) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut c = vec![0xB8];
        c.extend_from_slice(&value.to_le_bytes());
        c.push(0xC3);
        c
    }
    #[cfg(target_arch = "aarch64")]
    {
        let (lo, hi) = (value & 0xffff, value >> 16);
        [0x5280_0000 | (lo << 5), 0x72A0_0000 | (hi << 5), 0xD65F_03C0u32]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }
}

/// Writes a function returning `value` through the slot's writable alias and synchronises the
/// instruction cache.
pub fn emit(slot: &SlotView, value: u32) {
    let c = code(value);
    assert!(c.len() <= slot.len());
    // SAFETY: the slot is claimed by the caller; `write_addr` is its read+write alias of `len` bytes.
    unsafe { std::ptr::copy_nonoverlapping(c.as_ptr(), slot.write_addr() as *mut u8, c.len()) };
    slot.sync_icache();
}

/// Calls the function at `addr`.
pub fn call(addr: u64) -> u32 {
    // SAFETY: the caller wrote a complete function at `addr` (emit) in executable memory.
    let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(addr as usize) };
    f()
}

/// The kernel's VMA containing `addr`, from /proc/self/smaps.
pub fn vma_at(addr: u64) -> Option<vmspace::smaps::Vma> {
    vmspace::smaps::read_self().unwrap().into_iter().find(|v| v.range.contains(&addr))
}

/// Waits for `pid` and returns its raw status.
pub fn wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

/// Leaves a forked child at once, without the parent's destructors or test harness.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` ends the process immediately.
    unsafe { libc::_exit(code) }
}
