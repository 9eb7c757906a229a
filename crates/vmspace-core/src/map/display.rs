//! The map printed the way `procstat -v` and `vmmap` show an address space.

use core::fmt;

use super::VmMap;
use super::types::{Behavior, EntryFlags, Inherit, MapKind, MapObject};

/// One line per entry and per hole: range, size, prot/max prot, inheritance, wiring, behaviour, flags,
/// then a summary line.
impl<O: MapObject> fmt::Display for VmMap<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>18} {:>18} {:>10} {:<7} {:<5} {:>4} {:<4} FLAGS",
            "START", "END", "SIZE", "PRT/MAX", "INH", "WIRE", "BEH"
        )?;
        let mut at = self.min;
        for e in self.entries() {
            let hole_start = at;
            let hole_end = e.start - e.reserve_below;
            if hole_end > hole_start {
                writeln!(
                    f,
                    "{:#18x} {:#18x} {:>10} (free)",
                    hole_start,
                    hole_end,
                    human(hole_end - hole_start)
                )?;
            }
            if e.reserve_below > 0 {
                writeln!(
                    f,
                    "{:#18x} {:#18x} {:>10} (stack growth reservation)",
                    hole_end,
                    e.start,
                    human(e.reserve_below)
                )?;
            }
            let inh = match e.inherit() {
                Inherit::Share => "share",
                Inherit::Copy => "copy",
                Inherit::None => "none",
                Inherit::Zero => "zero",
            };
            let beh = match e.behavior() {
                Behavior::Normal => "-",
                Behavior::Sequential => "seq",
                Behavior::Random => "rand",
            };
            write!(
                f,
                "{:#18x} {:#18x} {:>10} {}/{} {:<5} {:>4} {:<4} ",
                e.start,
                e.end,
                human(e.len()),
                e.prot(),
                e.max_prot(),
                inh,
                e.wired_count(),
                beh
            )?;
            if e.user_wired() {
                f.write_str("USER_WIRED ")?;
            }
            if let MapKind::Submap(id) = e.kind() {
                write!(f, "SUBMAP({}) ", id.0)?;
            }
            if e.flags() != EntryFlags::EMPTY {
                write!(f, "{:?}", e.flags())?;
            }
            writeln!(f)?;
            at = e.end;
        }
        if self.max > at {
            writeln!(f, "{:#18x} {:#18x} {:>10} (free)", at, self.max, human(self.max - at))?;
        }
        write!(
            f,
            "{} entries, {} mapped, {} wired, largest gap {}, timestamp {}",
            self.len(),
            human(self.size),
            human(self.wired),
            human(self.largest_gap()),
            self.timestamp
        )
    }
}

fn human(bytes: u64) -> HumanSize {
    HumanSize(bytes)
}

/// Bytes printed in the largest unit (K, M, G, T) with one decimal when not whole: `128K`, `7.8M`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanSize(pub u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [("T", 40), ("G", 30), ("M", 20), ("K", 10)];
        for (name, shift) in units {
            if self.0 >= 1 << shift {
                let whole = self.0 >> shift;
                let tenths = ((self.0 & ((1 << shift) - 1)) * 10) >> shift;
                return if self.0.is_multiple_of(1 << shift) {
                    f.pad(&alloc::format!("{whole}{name}"))
                } else {
                    f.pad(&alloc::format!("{whole}.{tenths}{name}"))
                };
            }
        }
        f.pad(&alloc::format!("{}", self.0))
    }
}
