//! `/proc/self/smaps`: the kernel's own view of this process's mappings, for `stats` and for checking
//! that the map and the kernel agree.

use std::io;
use std::ops::Range;

use vmspace_core::{Behavior, EntryFlags, Inherit, Prot, VmMap};

use vmspace_linux::proc::smaps::{SmapsEntry, SmapsParser};

use crate::backing::Backing;

/// One VMA as smaps describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    /// Its range.
    pub range: Range<u64>,
    /// Protection from the permission column.
    pub prot: Prot,
    /// `s` (shared) rather than `p` (private).
    pub shared: bool,
    /// The two-letter VmFlags (`lo`, `dc`, `wf`, `dd`, `sr`, `rr`, `sl`, `mr`, …).
    pub flags: Vec<[u8; 2]>,
    /// `Rss` in bytes.
    pub rss: u64,
    /// `Pss` in bytes.
    pub pss: u64,
    /// `Anonymous` in bytes.
    pub anonymous: u64,
    /// `Swap` in bytes.
    pub swap: u64,
}

impl Vma {
    /// Whether VmFlags has `flag`.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag.as_bytes())
    }
}

/// Reads this process's smaps.
pub fn read_self() -> io::Result<Vec<Vma>> {
    again(|| parse(&std::fs::read_to_string("/proc/self/smaps")?))
}

/// How many times a read of smaps is made again when the VMA list changed under it.
const READS: u32 = 32;

/// Runs `read` again when what it read was cut by a change: the kernel formats smaps a chunk at a
/// time and resumes after the last VMA it printed, so a VMA another thread changed meanwhile can
/// come out overlapping the one before. Between reads it backs off (1 µs, doubling, at most 1 ms: a
/// thread changing its VMAs in a loop on a loaded machine cut eight reads in a row once), and it is
/// bounded: after [`READS`] cut reads (about 25 ms of waiting in all) the error stands.
fn again<T>(mut read: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        match read() {
            Err(e)
                if tries + 1 < READS
                    && e.to_string().contains(vmspace_linux::proc::smaps::CHANGED_WHILE_READ) =>
            {
                std::thread::sleep(std::time::Duration::from_micros(1 << tries.min(10)));
                tries += 1;
            }
            r => return r,
        }
    }
}

/// Reads the VMAs of this process's smaps that overlap `range`, and stops reading after them: the
/// kernel formats smaps as it is read, so the VMAs above the range (libraries, other spaces) cost
/// nothing. The part below is still read, but only its header lines are looked at.
pub(crate) fn read_self_over(range: &Range<u64>) -> io::Result<Vec<Vma>> {
    again(|| read_self_over_once(range))
}

fn read_self_over_once(range: &Range<u64>) -> io::Result<Vec<Vma>> {
    use std::io::BufRead;
    let mut file = io::BufReader::with_capacity(1 << 16, std::fs::File::open("/proc/self/smaps")?);
    let mut parser = SmapsParser::new();
    let mut line = String::new();
    let mut inside = false;
    loop {
        line.clear();
        if file.read_line(&mut line)? == 0 {
            break;
        }
        match header_range(&line) {
            Some(r) if r.start >= range.end => break,
            Some(r) => inside = r.end > range.start,
            None => {}
        }
        if inside {
            parser.line(&line).map_err(bad)?;
        }
    }
    Ok(parser.finish().into_iter().map(vma_of).collect())
}

fn bad(e: vmspace_linux::proc::smaps::SmapsError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("smaps: {e}"))
}

/// A VMA of [`vmspace_linux::proc::smaps`] as this module's [`Vma`].
fn vma_of(e: SmapsEntry) -> Vma {
    Vma {
        range: e.maps.range,
        prot: e.maps.prot,
        shared: e.maps.shared,
        flags: e
            .vm_flags
            .map(|f| f.names().filter_map(|n| n.as_bytes().try_into().ok()).collect())
            .unwrap_or_default(),
        rss: e.counters.rss,
        pss: e.counters.pss,
        anonymous: e.counters.anonymous,
        swap: e.counters.swap,
    }
}

/// Parses smaps text with [`vmspace_linux::proc::smaps`].
pub fn parse(text: &str) -> io::Result<Vec<Vma>> {
    Ok(vmspace_linux::proc::smaps::parse(text).map_err(bad)?.into_iter().map(vma_of).collect())
}

/// `start..end` of a VMA header line (`start-end perms ...`).
fn header_range(line: &str) -> Option<Range<u64>> {
    if !SmapsParser::is_header(line) {
        return None;
    }
    let first = line.split(' ').next()?;
    let (a, b) = first.split_once('-')?;
    Some(u64::from_str_radix(a, 16).ok()?..u64::from_str_radix(b, 16).ok()?)
}

/// What a range of pages is, as the kernel shows it or as the map says it should: reservation or
/// mapped, protection, shared or private, the VmFlags vmspace controls, and guard markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Look {
    /// Mapped memory rather than the space's own `PROT_NONE`, `MAP_NORESERVE` reservation.
    pub(crate) mapped: bool,
    pub(crate) prot: Prot,
    pub(crate) shared: bool,
    /// `lo`, `dc`, `wf`, `dd`, `sr`, `rr`, `sl`, in the order of [`FLAGS`].
    pub(crate) flags: [bool; 7],
    /// Guard markers, where the kernel can show them (`None`: not compared).
    pub(crate) guard: Option<bool>,
}

/// The VmFlags a [`Look`] carries.
pub(crate) const FLAGS: [&str; 7] = ["lo", "dc", "wf", "dd", "sr", "rr", "sl"];

/// What the map says `seg` (inside one entry or hole) should look like. `prot_guards`: guards are
/// `PROT_NONE` (the fallback); `guards_seen`: the kernel shows guard markers, so they are compared.
pub(crate) fn map_look(map: &VmMap<Backing>, at: u64, prot_guards: bool, guards_seen: bool) -> Look {
    let Some(e) = map.lookup_entry(at) else {
        return Look { mapped: false, prot: Prot::NONE, shared: false, flags: [false; 7], guard: None };
    };
    let f = e.flags();
    let guard = f.contains(EntryFlags::GUARD);
    Look {
        mapped: true,
        prot: if prot_guards && guard { Prot::NONE } else { e.prot() },
        shared: e.object().is_shared(),
        flags: [
            e.wired_count() > 0,
            e.inherit() == Inherit::None,
            e.inherit() == Inherit::Zero,
            f.contains(EntryFlags::NOCOREDUMP),
            e.behavior() == Behavior::Sequential,
            e.behavior() == Behavior::Random,
            f.contains(EntryFlags::SEALED),
        ],
        guard: (guards_seen && !prot_guards).then_some(guard),
    }
}

/// What the kernel shows for a segment inside `vma` (`None`: nothing mapped at all), with `guard`
/// markers over it where known. A reservation is private, `PROT_NONE` and `nr` (`MAP_NORESERVE`).
pub(crate) fn kernel_look(vma: Option<&Vma>, guard: Option<bool>) -> Option<Look> {
    let v = vma?;
    let reservation = !v.shared && v.prot.is_none() && v.has("nr");
    Some(Look {
        mapped: !reservation,
        prot: v.prot,
        shared: v.shared,
        flags: if reservation { [false; 7] } else { FLAGS.map(|f| v.has(f)) },
        guard: if reservation { None } else { guard },
    })
}

/// Whether this kernel marks `MAP_NORESERVE` mappings `nr` in smaps (not under
/// `vm.overcommit_memory = 2`), so a reservation can be told from mapped `PROT_NONE` memory; probed
/// once.
pub(crate) fn shows_reservations() -> bool {
    static SHOWS: crate::os::probed::Probed = crate::os::probed::Probed::new();
    SHOWS
        .get(|| {
            let ps = crate::os::page_size();
            let addr = crate::os::reserve(ps).ok()?;
            let vmas = read_self_over(&(addr..addr + ps));
            // SAFETY: the page this probe just reserved.
            let _ = unsafe { crate::os::unmap(addr, ps) };
            let shows = vmas.ok()?.iter().any(|v| v.range.start <= addr && addr < v.range.end && v.has("nr"));
            Some(u32::from(shows))
        })
        .is_some_and(|v| v != 0)
}

/// The cut points of `range`: its ends, and every VMA, entry and guard-run boundary inside it.
fn cuts(map: &VmMap<Backing>, vmas: &[&Vma], guards: &[Range<u64>], range: &Range<u64>) -> Vec<u64> {
    let inside = |x: u64| x.clamp(range.start, range.end);
    let mut cuts: Vec<u64> = vec![range.start, range.end];
    for v in vmas.iter().filter(|v| v.range.start < range.end && v.range.end > range.start) {
        cuts.extend([inside(v.range.start), inside(v.range.end)]);
    }
    for e in map.overlapping(range.clone()) {
        cuts.extend([inside(e.start), inside(e.end)]);
    }
    for g in guards {
        cuts.extend([inside(g.start), inside(g.end)]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Every segment of `range` where the kernel differs from the map: `(segment, map's look, kernel's
/// look or None when nothing is mapped)`. `guards` are the runs of guard-marked pages in `range`, or
/// `None` where the kernel cannot show them.
pub(crate) fn diverging(
    map: &VmMap<Backing>,
    vmas: &[Vma],
    guards: Option<&[Range<u64>]>,
    prot_guards: bool,
    range: Range<u64>,
) -> Vec<(Range<u64>, Look, Option<Look>)> {
    let nr = shows_reservations();
    let runs = guards.unwrap_or(&[]);
    // smaps lists VMAs in address order: only those over `range`, found by binary search.
    let vmas: Vec<&Vma> =
        vmas.iter().filter(|v| v.range.start < range.end && v.range.end > range.start).collect();
    let containing = |addr: u64| {
        let i = vmas.partition_point(|v| v.range.end <= addr);
        vmas.get(i).copied().filter(|v| v.range.start <= addr)
    };
    let mut out = Vec::new();
    for w in cuts(map, &vmas, runs, &range).windows(2) {
        let seg = w[0]..w[1];
        let mut want = map_look(map, seg.start, prot_guards, guards.is_some());
        let vma = containing(seg.start);
        let marked = guards.map(|g| {
            let i = g.partition_point(|g| g.end <= seg.start);
            g.get(i).is_some_and(|g| g.start <= seg.start)
        });
        let mut got = kernel_look(vma, marked);
        if !nr {
            // Without `nr`, a reservation and mapped PROT_NONE private memory look alike.
            want.mapped = true;
            if let Some(g) = got.as_mut() {
                g.mapped = true;
            }
        }
        if got != Some(want) {
            out.push((seg, want, got));
        }
    }
    out
}

/// Every difference between `map` and the kernel's `vmas` over the map's range, one line each.
/// `prot_guards`: guard regions are `PROT_NONE` (the fallback) rather than guard markers, which are
/// not compared here (see [`differences_with_guards`]).
pub fn differences(map: &VmMap<Backing>, vmas: &[Vma], prot_guards: bool) -> Vec<String> {
    describe(diverging(map, vmas, None, prot_guards, map.min()..map.max()))
}

/// [`differences`], also comparing guard markers: `guards` are the runs of guard-marked pages of the
/// map's range (from pagemap).
pub(crate) fn differences_with_guards(
    map: &VmMap<Backing>,
    vmas: &[Vma],
    guards: &[Range<u64>],
    prot_guards: bool,
) -> Vec<String> {
    describe(diverging(map, vmas, Some(guards), prot_guards, map.min()..map.max()))
}

fn describe(d: Vec<(Range<u64>, Look, Option<Look>)>) -> Vec<String> {
    d.into_iter()
        .map(|(seg, want, got)| match got {
            None => format!("{:#x}..{:#x}: not mapped in the kernel", seg.start, seg.end),
            Some(got) => format!(
                "{:#x}..{:#x}: map {:?}, kernel {:?} (flags {})",
                seg.start,
                seg.end,
                want,
                got,
                FLAGS.join(" ")
            ),
        })
        .collect()
}
