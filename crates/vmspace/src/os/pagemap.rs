//! `/proc/self/pagemap`: the one place the kernel tells which pages carry guard markers
//! (`MADV_GUARD_INSTALL` leaves no VMA, so smaps cannot show them). Bit 58 of a page's entry is
//! `PM_GUARD_REGION` (Linux 6.15); [`shows_guards`] probes once whether this kernel sets it.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use vmspace_core::Prot;

use super::mm::{Advice, Fixed, advise, map_fixed, page_size, reserve, unmap};

/// `PM_GUARD_REGION`: the page is a guard region.
const PM_GUARD_REGION: u64 = 1 << 58;

/// The runs of guard pages inside `range` (page-aligned), in address order.
pub(crate) fn guard_runs(range: Range<u64>) -> io::Result<Vec<Range<u64>>> {
    let ps = page_size();
    let pages = ((range.end - range.start) / ps) as usize;
    let mut runs: Vec<Range<u64>> = Vec::new();
    let file = File::open("/proc/self/pagemap")?;
    // 512 entries (4 KiB) per read: bounded memory whatever the range.
    let mut buf = [0u8; 4096];
    let mut page = 0usize;
    while page < pages {
        let n = (pages - page).min(buf.len() / 8);
        let at = (range.start / ps + page as u64) * 8;
        file.read_exact_at(&mut buf[..n * 8], at)?;
        for i in 0..n {
            let word = u64::from_ne_bytes(buf[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            if word & PM_GUARD_REGION != 0 {
                let addr = range.start + (page + i) as u64 * ps;
                match runs.last_mut() {
                    Some(r) if r.end == addr => r.end = addr + ps,
                    _ => runs.push(addr..addr + ps),
                }
            }
        }
        page += n;
    }
    Ok(runs)
}

/// Whether this kernel reports guard markers in pagemap: probed once on a scratch page (until the
/// probe can run).
pub(crate) fn shows_guards() -> bool {
    static SHOWS: super::probed::Probed = super::probed::Probed::new();
    SHOWS
        .get(|| {
            let ps = page_size();
            let addr = reserve(ps).ok()?;
            // SAFETY: a page this probe just reserved and nobody else knows.
            let mapped = unsafe { map_fixed(addr, ps, Prot::RW, Fixed::Anonymous).is_ok() };
            // SAFETY: as above.
            let installed = mapped && unsafe { advise(addr, ps, Advice::GuardInstall).is_ok() };
            let runs = guard_runs(addr..addr + ps);
            // SAFETY: as above.
            let _ = unsafe { unmap(addr, ps) };
            // No mapping or no pagemap: the probe did not run. No markers: the kernel has none to show.
            let runs = runs.ok().filter(|_| mapped)?;
            Some(u32::from(installed && runs.len() == 1 && runs[0] == (addr..addr + ps)))
        })
        .is_some_and(|v| v != 0)
}
