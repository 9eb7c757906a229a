//! `/proc/PID/smaps`: each VMA's `maps` line followed by its counters (`Size`, `KernelPageSize`,
//! `MMUPageSize`, the [`Counters`]), `THPeligible`, `ProtectionKey` and `VmFlags` (`show_smap`).
//!
//! Invariant: a parsed entry's `maps` is exactly its header line ([`super::maps::parse_line`]), its
//! counters are every `kB` line that followed it, and entries are in address order and disjoint.

use alloc::vec::Vec;
use core::fmt;

use super::counters::{Counters, kb_line};
use super::maps::{self, MapsLine};
use super::vmflags::VmFlags;

/// One VMA of `smaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmapsEntry {
    /// The header line.
    pub maps: MapsLine,
    /// `Size` in bytes.
    pub size: u64,
    /// `KernelPageSize` in bytes (4096 unless hugetlb).
    pub kernel_page_size: u64,
    /// `MMUPageSize` in bytes.
    pub mmu_page_size: u64,
    /// The counters.
    pub counters: Counters,
    /// `THPeligible` (`None` when absent).
    pub thp_eligible: Option<bool>,
    /// `VmFlags` (`None` when the kernel printed none).
    pub vm_flags: Option<VmFlags>,
}

/// Why an `smaps` text could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmapsError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
}

impl fmt::Display for SmapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "smaps line {}: {}", self.line, self.reason)
    }
}

impl core::error::Error for SmapsError {}

/// Why a header that overlaps or precedes the one before is refused. In a live read it means the VMA
/// list changed while the kernel printed it (it resumes after the last VMA it printed): read again.
pub const CHANGED_WHILE_READ: &str =
    "overlaps or precedes the VMA before (the VMA list changed while it was read)";

/// `smaps` a line at a time, for readers that stream the file (and stop early).
#[derive(Debug, Default)]
pub struct SmapsParser {
    out: Vec<SmapsEntry>,
    line: usize,
}

impl SmapsParser {
    /// A parser with nothing read.
    pub fn new() -> SmapsParser {
        SmapsParser::default()
    }

    /// Whether `line` is a VMA header (`start-end perms ...`) rather than a `Key: value` line.
    pub fn is_header(line: &str) -> bool {
        line.split(' ').next().is_some_and(|w| w.contains('-') && !w.ends_with(':'))
    }

    /// Takes one line (with or without its newline).
    pub fn line(&mut self, line: &str) -> Result<(), SmapsError> {
        self.line += 1;
        let line = line.trim_end_matches(['\n', '\r']);
        let err = |reason| SmapsError { line: self.line, reason };
        if line.trim().is_empty() {
            return Ok(());
        }
        if Self::is_header(line) {
            let maps = maps::parse_line(line).map_err(err)?;
            if self.out.last().is_some_and(|p| p.maps.range.end > maps.range.start) {
                return Err(err(CHANGED_WHILE_READ));
            }
            self.out.push(SmapsEntry {
                size: maps.len(),
                maps,
                kernel_page_size: 4096,
                mmu_page_size: 4096,
                counters: Counters::default(),
                thp_eligible: None,
                vm_flags: None,
            });
            return Ok(());
        }
        let Some(e) = self.out.last_mut() else { return Err(err("a counter before any VMA")) };
        if let Some(v) = line.strip_prefix("VmFlags:") {
            e.vm_flags = Some(VmFlags::parse(v));
            return Ok(());
        }
        if let Some(v) = line.strip_prefix("THPeligible:") {
            e.thp_eligible = Some(v.trim() == "1");
            return Ok(());
        }
        match kb_line(line) {
            Some(Ok((k, b))) => match k {
                "Size" => e.size = b,
                "KernelPageSize" => e.kernel_page_size = b,
                "MMUPageSize" => e.mmu_page_size = b,
                _ => {
                    // A counter this kernel adds later is not an error.
                    e.counters.set(k, b);
                }
            },
            Some(Err(reason)) => return Err(err(reason)),
            // `ProtectionKey:` and lines of later kernels.
            None => {}
        }
        Ok(())
    }

    /// The entries read so far.
    pub fn entries(&self) -> &[SmapsEntry] {
        &self.out
    }

    /// The entries.
    pub fn finish(self) -> Vec<SmapsEntry> {
        self.out
    }
}

/// Parses a whole `smaps` text.
pub fn parse(text: &str) -> Result<Vec<SmapsEntry>, SmapsError> {
    let mut p = SmapsParser::new();
    for l in text.lines() {
        p.line(l)?;
    }
    Ok(p.finish())
}
