//! The allocator's settings: the defaults, the `VMSPACE_ALLOC_*` environment read at first use, and
//! the byte-size parser it uses.
//!
//! Invariant: resolving reads the environment with `getenv` and a byte parser only (no allocation:
//! it runs inside the first allocation), and gives a threshold of at least 1.

use std::time::Duration;

use crate::reclaim::{Policy, WorkingSet};

/// The default threshold: requests of this size or more come from the space (libmalloc's large
/// threshold on 64-bit macOS is 128 KiB; glibc's `M_MMAP_THRESHOLD` starts at 128 KiB).
pub const DEFAULT_THRESHOLD: usize = 64 << 10;
/// The default reservation (`MAP_NORESERVE`: costs no memory).
pub const DEFAULT_RESERVE: u64 = 64 << 30;
/// The default maximum age of a freed block before the reclaimer unmaps it.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(1);

/// The allocator's settings (see the [`alloc` module docs](super) for the environment variables).
#[derive(Clone, Copy, Debug)]
pub(super) struct Config {
    pub(super) threshold: usize,
    pub(super) reserve: u64,
    pub(super) budget: Option<u64>,
    pub(super) max_age: Option<Duration>,
    pub(super) working_set: Option<WorkingSet>,
    pub(super) tick: Option<Duration>,
    pub(super) pressure: bool,
    pub(super) ring_capacity: u32,
    pub(super) env: bool,
}

impl Config {
    pub(super) const DEFAULT: Config = Config {
        threshold: DEFAULT_THRESHOLD,
        reserve: DEFAULT_RESERVE,
        budget: None,
        max_age: Some(DEFAULT_MAX_AGE),
        working_set: None,
        tick: None,
        pressure: true,
        ring_capacity: 4096,
        env: true,
    };

    /// The configuration with the environment applied (no allocation: `getenv` and a byte parser).
    pub(super) fn resolve(mut self) -> Config {
        if self.env {
            if let Some(v) = env_u64(c"VMSPACE_ALLOC_THRESHOLD") {
                self.threshold = v.clamp(1, usize::MAX as u64) as usize;
            }
            if let Some(v) = env_u64(c"VMSPACE_ALLOC_BUDGET") {
                self.budget = Some(v);
            }
            if let Some(v) = env_u64(c"VMSPACE_ALLOC_MAX_AGE_MS") {
                self.max_age = (v > 0).then(|| Duration::from_millis(v));
            }
            if let Some(v) = env_u64(c"VMSPACE_ALLOC_RESERVE") {
                self.reserve = v;
            }
        }
        self.threshold = self.threshold.max(1);
        self
    }

    pub(super) fn policy(&self) -> Policy {
        Policy { budget: self.budget, working_set: self.working_set, max_age: self.max_age }
    }
}

/// `getenv(name)` parsed as bytes with an optional `k`/`m`/`g` suffix (powers of 1024).
fn env_u64(name: &std::ffi::CStr) -> Option<u64> {
    // SAFETY: the bytes are parsed at once (setenv from another thread at the same time is the
    // caller's race, as for any getenv).
    parse_bytes(unsafe { crate::os::process::getenv(name) }?)
}

/// `"64k"` → 65536; digits with an optional `k`, `m` or `g` (any case); `None` if malformed.
fn parse_bytes(s: &[u8]) -> Option<u64> {
    let (digits, shift) = match s.last()?.to_ascii_lowercase() {
        b'k' => (&s[..s.len() - 1], 10),
        b'm' => (&s[..s.len() - 1], 20),
        b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    v.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes(b"64k"), Some(65536));
        assert_eq!(parse_bytes(b"2M"), Some(2 << 20));
        assert_eq!(parse_bytes(b"123"), Some(123));
        assert_eq!(parse_bytes(b"x"), None);
        assert_eq!(parse_bytes(b"k"), None);
        assert_eq!(parse_bytes(b""), None);
    }
}
