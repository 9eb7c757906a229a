//! Linux's memory ABI, typed once: `PROT_*`, `MAP_*`, `MREMAP_*`, `MADV_*`, `MLOCK_*`, `MCL_*`, `MS_*` and
//! errno values, with the names the kernel's uapi headers give them (`include/uapi/asm-generic/mman-common.h`,
//! `include/uapi/linux/mman.h`, `arch/x86/include/uapi/asm/mman.h`, `include/uapi/asm-generic/errno*.h`).
//!
//! The values are those of x86-64 and aarch64, which agree for everything here; where one architecture
//! has a value the other lacks, the constant's doc says so. A test compares every value with the `libc`
//! crate's (which is generated from the C headers); the few `libc` lacks (the 6.13 guard advice,
//! `MAP_ABOVE4G`, `MAP_UNINITIALIZED`) are checked by the live-kernel tests instead.

mod errno;
mod flags;

pub use errno::Errno;
pub use flags::*;

/// Looks up the name of `value` in a `(name, value)` table such as [`MADV_NAMES`].
pub fn name_of(table: &[(&'static str, u64)], value: u64) -> Option<&'static str> {
    table.iter().find(|(_, v)| *v == value).map(|(n, _)| *n)
}
