//! The two-letter `VmFlags:` mnemonics of `/proc/PID/smaps` (`show_smap_vma_flags` in Linux 6.18's
//! `fs/proc/task_mmu.c`), as a bit set.
//!
//! Invariant: [`NAMES`] lists every mnemonic in the order the kernel prints them (by `VM_*` bit on
//! x86-64, arm64's `bt`/`mt` where arm64 has them), so `VmFlags::parse(s).to_string()` is `s` without
//! its trailing space for every line a 6.18 kernel writes; names of older kernels (`dw`, `nl`) and
//! names this table does not know are kept too, after the known ones.

use core::fmt;

use vmspace_core::Prot;

/// Every mnemonic, in the kernel's print order; bit `i` of a [`VmFlags`] is `NAMES[i]`. The last two
/// are gone from current kernels: `dw` (`VM_DENYWRITE`, until 5.15) and `nl` (`VM_NONLINEAR`, until
/// 4.0).
pub const NAMES: [&str; KNOWN] = [
    "rd", // VM_READ
    "wr", // VM_WRITE
    "ex", // VM_EXEC
    "sh", // VM_SHARED
    "mr", // VM_MAYREAD
    "mw", // VM_MAYWRITE
    "me", // VM_MAYEXEC
    "ms", // VM_MAYSHARE
    "gd", // VM_GROWSDOWN
    "um", // VM_UFFD_MISSING
    "pf", // VM_PFNMAP
    "gu", // VM_MAYBE_GUARD: MADV_GUARD_INSTALL markers may be present
    "uw", // VM_UFFD_WP
    "lo", // VM_LOCKED
    "io", // VM_IO
    "sr", // VM_SEQ_READ
    "rr", // VM_RAND_READ
    "dc", // VM_DONTCOPY
    "de", // VM_DONTEXPAND
    "lf", // VM_LOCKONFAULT
    "ac", // VM_ACCOUNT
    "nr", // VM_NORESERVE
    "ht", // VM_HUGETLB
    "sf", // VM_SYNC
    "ar", // VM_ARCH_1
    "wf", // VM_WIPEONFORK
    "dd", // VM_DONTDUMP
    "sd", // VM_SOFTDIRTY
    "mm", // VM_MIXEDMAP
    "hg", // VM_HUGEPAGE
    "nh", // VM_NOHUGEPAGE
    "mg", // VM_MERGEABLE
    "bt", // VM_ARM64_BTI
    "mt", // VM_MTE
    "ss", // VM_SHADOW_STACK
    "ui", // VM_UFFD_MINOR
    "dp", // VM_DROPPABLE
    "sl", // VM_SEALED
    "dw", // VM_DENYWRITE (before 5.15)
    "nl", // VM_NONLINEAR (before 4.0)
];

/// How many mnemonics there are.
pub const KNOWN: usize = 40;

/// What a mnemonic means, for legends and `--help`: `(name, meaning)`, in [`NAMES`] order.
pub const MEANINGS: [(&str, &str); KNOWN] = [
    ("rd", "readable"),
    ("wr", "writable"),
    ("ex", "executable"),
    ("sh", "shared"),
    ("mr", "may read"),
    ("mw", "may write"),
    ("me", "may execute"),
    ("ms", "may share"),
    ("gd", "stack segment grows down"),
    ("um", "userfaultfd missing tracking"),
    ("pf", "pure PFN range"),
    ("gu", "maybe contains guard regions (MADV_GUARD_INSTALL)"),
    ("uw", "userfaultfd wr-protect tracking"),
    ("lo", "pages are locked in memory"),
    ("io", "memory mapped I/O area"),
    ("sr", "sequential read advise provided"),
    ("rr", "random read advise provided"),
    ("dc", "do not copy area on fork"),
    ("de", "do not expand area on remapping"),
    ("lf", "lock on fault pages"),
    ("ac", "area is accountable"),
    ("nr", "swap space is not reserved for the area"),
    ("ht", "area uses huge tlb pages"),
    ("sf", "synchronous page fault"),
    ("ar", "architecture specific flag"),
    ("wf", "wipe on fork"),
    ("dd", "do not include area into core dump"),
    ("sd", "soft dirty flag"),
    ("mm", "mixed map area"),
    ("hg", "huge page advise flag"),
    ("nh", "no huge page advise flag"),
    ("mg", "mergeable advise flag"),
    ("bt", "arm64 BTI guarded page"),
    ("mt", "arm64 MTE allocation tags are enabled"),
    ("ss", "shadow/guarded control stack page"),
    ("ui", "userfaultfd minor fault"),
    ("dp", "droppable (may be freed under pressure)"),
    ("sl", "sealed (mseal)"),
    ("dw", "disabled write to the mapped file (before 5.15)"),
    ("nl", "non-linear mapping (before 4.0)"),
];

/// A VMA's `VmFlags`: the set of mnemonics the kernel printed (`vm_flags` seen through smaps).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VmFlags(u64);

impl VmFlags {
    /// No flag.
    pub const EMPTY: VmFlags = VmFlags(0);

    fn bit(name: &str) -> Option<u64> {
        NAMES.iter().position(|n| *n == name).map(|i| 1u64 << i)
    }

    /// Parses the value of a `VmFlags:` line (`rd wr mr mw me ac`); names this table does not know
    /// are skipped (see [`VmFlags::unknown`] to find them).
    pub fn parse(s: &str) -> VmFlags {
        VmFlags(s.split_ascii_whitespace().filter_map(Self::bit).fold(0, |a, b| a | b))
    }

    /// The words of a `VmFlags:` value that are not mnemonics this table knows.
    pub fn unknown(s: &str) -> impl Iterator<Item = &str> {
        s.split_ascii_whitespace().filter(|w| Self::bit(w).is_none())
    }

    /// Whether the mnemonic `name` is set (`false` for names the kernel does not print).
    pub fn has(self, name: &str) -> bool {
        Self::bit(name).is_some_and(|b| self.0 & b != 0)
    }

    /// Sets or clears the mnemonic `name`; returns `false` (and changes nothing) for an unknown name.
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        let Some(b) = Self::bit(name) else { return false };
        if on {
            self.0 |= b;
        } else {
            self.0 &= !b;
        }
        true
    }

    /// The set mnemonics in the kernel's order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        NAMES.iter().enumerate().filter(move |(i, _)| self.0 & (1 << i) != 0).map(|(_, n)| *n)
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Both sets together.
    pub fn union(self, other: VmFlags) -> VmFlags {
        VmFlags(self.0 | other.0)
    }

    /// Maximum protection: `mr` read, `mw` write, `me` execute.
    pub fn max_prot(self) -> Prot {
        let mut p = Prot::NONE;
        if self.has("mr") {
            p |= Prot::READ;
        }
        if self.has("mw") {
            p |= Prot::WRITE;
        }
        if self.has("me") {
            p |= Prot::EXECUTE;
        }
        p
    }
}

impl fmt::Debug for VmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The names separated by spaces, as the kernel prints them (without its trailing space).
impl fmt::Display for VmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.names().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn table_is_the_kernels() {
        assert!(MEANINGS.iter().map(|m| m.0).eq(NAMES.iter().copied()));
        let line = "rd wr mr mw me gu ac";
        assert_eq!(VmFlags::parse(line).to_string(), line);
        let f = VmFlags::parse("rd ex mr mw me lo dc hg sl dp zz");
        assert!(f.has("hg") && f.has("sl") && f.has("lo") && f.has("dp") && !f.has("zz"));
        assert_eq!(f.max_prot(), Prot::ALL);
        assert_eq!(VmFlags::unknown("rd zz ac").collect::<alloc::vec::Vec<_>>(), ["zz"]);
    }
}
