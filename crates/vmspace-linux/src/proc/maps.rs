//! `/proc/PID/maps`: one VMA per line, `start-end perms offset major:minor inode [name]`, parsed and
//! written back exactly as the kernel writes it (`show_map_vma` in `fs/proc/task_mmu.c`).
//!
//! Invariant: for every line the kernel prints, `parse_line(l)?.to_string() == l`.

use alloc::string::String;
use core::fmt;
use core::ops::Range;

use vmspace_core::Prot;

/// One line of `/proc/PID/maps`: a VMA as the kernel shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapsLine {
    /// `[start, end)`, page-aligned and non-empty.
    pub range: Range<u64>,
    /// The `rwx` letters.
    pub prot: Prot,
    /// `s` (`VM_MAYSHARE`) rather than `p`.
    pub shared: bool,
    /// The file offset in bytes (`vm_pgoff << PAGE_SHIFT`) of a file mapping; 0 for anonymous memory
    /// (the kernel prints the page offset only when there is a file).
    pub offset: u64,
    /// The device, `major:minor` (hexadecimal in the file).
    pub dev: (u32, u32),
    /// The inode number (0 for anonymous memory).
    pub inode: u64,
    /// The name column as printed (empty when there is none): a path (newlines escaped as `\012`,
    /// maybe ending ` (deleted)`), or a kernel name such as `[heap]`, `[stack]`, `[vdso]`,
    /// `[vvar_vclock]`, `[anon:NAME]`, `[anon_shmem:NAME]`.
    pub name: String,
}

impl MapsLine {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Never true for a line the kernel printed (its ranges are non-empty).
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// Why a `maps` text could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapsError {
    /// 1-based line number (1 for [`parse_line`]).
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
}

impl fmt::Display for MapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "maps line {}: {}", self.line, self.reason)
    }
}

impl core::error::Error for MapsError {}

/// Where the padding before a name ends: the kernel pads to `25 + 6 * sizeof(void *) - 1` columns
/// (`seq_setwidth`), then writes one space (`seq_pad`), even when the line is already longer.
const PAD_TO: usize = 25 + 6 * 8 - 1;

/// Parses one `maps` line.
pub fn parse_line(line: &str) -> Result<MapsLine, &'static str> {
    let mut rest = line;
    let mut field = || -> Option<&str> {
        let t = rest.trim_start_matches(' ');
        let end = t.find(' ').unwrap_or(t.len());
        let (f, r) = t.split_at(end);
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let range = field().ok_or("missing range")?;
    let perms = field().ok_or("missing permissions")?;
    let offset = field().ok_or("missing offset")?;
    let dev = field().ok_or("missing device")?;
    let inode = field().ok_or("missing inode")?;
    // The name starts where the kernel's padding ends, so a name that begins with spaces keeps them;
    // text padded otherwise (hand-written) is taken after any spaces.
    let prefix = line.len() - rest.len() + 1;
    let at = prefix.max(PAD_TO) + 1;
    let name = match (line.get(prefix.min(line.len())..at), line.get(at..)) {
        (Some(pad), Some(name)) if pad.bytes().all(|b| b == b' ') && !name.is_empty() => name,
        _ => rest.trim_start_matches(' '),
    };
    let (s, e) = range.split_once('-').ok_or("range without '-'")?;
    let start = hex(s).ok_or("bad start address")?;
    let end = hex(e).ok_or("bad end address")?;
    if end <= start || start % 4096 != 0 || end % 4096 != 0 {
        return Err("empty, inverted or unaligned range");
    }
    let p = perms.as_bytes();
    if p.len() != 4 {
        return Err("permissions are not 4 letters");
    }
    let mut prot = Prot::NONE;
    for (i, (ch, bit)) in
        [(b'r', Prot::READ), (b'w', Prot::WRITE), (b'x', Prot::EXECUTE)].into_iter().enumerate()
    {
        match p[i] {
            c if c == ch => prot |= bit,
            b'-' => {}
            _ => return Err("bad permission letter"),
        }
    }
    let shared = match p[3] {
        b's' => true,
        b'p' => false,
        _ => return Err("sharing is neither 's' nor 'p'"),
    };
    let offset = hex(offset).ok_or("bad offset")?;
    let (ma, mi) = dev.split_once(':').ok_or("device without ':'")?;
    let dev = (
        u32::try_from(hex(ma).ok_or("bad device major")?).map_err(|_| "bad device major")?,
        u32::try_from(hex(mi).ok_or("bad device minor")?).map_err(|_| "bad device minor")?,
    );
    if inode.is_empty() || !inode.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad inode");
    }
    let inode: u64 = inode.parse().map_err(|_| "bad inode")?;
    Ok(MapsLine { range: start..end, prot, shared, offset, dev, inode, name: String::from(name) })
}

fn hex(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Parses a whole `maps` text: one [`MapsLine`] per non-empty line; lines must be in address order and
/// must not overlap.
pub fn parse(text: &str) -> Result<alloc::vec::Vec<MapsLine>, MapsError> {
    let mut out: alloc::vec::Vec<MapsLine> = alloc::vec::Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let l = parse_line(line).map_err(|reason| MapsError { line: i + 1, reason })?;
        if out.last().is_some_and(|p| p.range.end > l.range.start) {
            return Err(MapsError { line: i + 1, reason: "overlaps or precedes the line before" });
        }
        out.push(l);
    }
    Ok(out)
}

impl fmt::Display for MapsLine {
    /// Writes the line as the kernel does (without the newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Counter<'a, 'b> {
            f: &'a mut fmt::Formatter<'b>,
            n: usize,
        }
        impl fmt::Write for Counter<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.n += s.len();
                self.f.write_str(s)
            }
        }
        let letter = |bit: Prot, c: char| if self.prot.contains(bit) { c } else { '-' };
        let mut w = Counter { f, n: 0 };
        fmt::Write::write_fmt(
            &mut w,
            format_args!(
                "{:08x}-{:08x} {}{}{}{} {:08x} {:02x}:{:02x} {} ",
                self.range.start,
                self.range.end,
                letter(Prot::READ, 'r'),
                letter(Prot::WRITE, 'w'),
                letter(Prot::EXECUTE, 'x'),
                if self.shared { 's' } else { 'p' },
                self.offset,
                self.dev.0,
                self.dev.1,
                self.inode,
            ),
        )?;
        if !self.name.is_empty() {
            for _ in w.n..PAD_TO {
                fmt::Write::write_str(&mut w, " ")?;
            }
            fmt::Write::write_str(&mut w, " ")?;
            fmt::Write::write_str(&mut w, &self.name)?;
        }
        Ok(())
    }
}
