//! `vmspace replay TRACE`: an `strace -f -e trace=memory,process` log applied to one [`VmMap`] per
//! address space, a report, a comparison with a `/proc/PID/maps` snapshot, a plot.
//!
//! [`VmMap`]: vmspace_core::VmMap

pub mod exact;
pub mod model;
pub mod parse;
pub mod rangeset;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use vmspace::procmaps::{self, Region};
use vmspace_core::Prot;

use crate::out::{grouped, human, xml};
use model::{BadLine, Origin, Replayer, Space};

/// The longest trace line read (8 MiB). strace's longest lines are `execve`s with `-v -s` and a long
/// argument list (the kernel caps argv + envp at a quarter of the stack limit, 2 MiB by default);
/// past this the input is not a trace, and reading on would hold the whole line in memory.
pub const MAX_LINE: usize = 8 << 20;

/// Why `vmspace replay` could not run (exit code 2).
#[derive(Debug)]
pub enum Error {
    /// A file could not be read or written.
    Io {
        /// The file (`-` for standard input).
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line longer than [`MAX_LINE`]: refused before the rest of it is read.
    LineTooLong {
        /// 1-based line number.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// `--strict`: a line that did not parse.
    BadLine(BadLine),
    /// The `--against` snapshot did not parse.
    Snapshot {
        /// The snapshot.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// No address space to compare (see [`Replayer::target`]), or the one named was not kept.
    Target(String),
    /// The input is not an strace trace (binary bytes, or not one line of it a system call).
    NotATrace {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::LineTooLong { line, limit } => write!(
                f,
                "line {line} is longer than {} MiB, longer than any strace line: stopped without reading the rest of it",
                limit >> 20
            ),
            Error::BadLine(b) => write!(f, "line {}: {}: {}", b.line, b.reason, b.content),
            Error::Snapshot { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::Target(m) => f.write_str(m),
            Error::NotATrace { path, reason } => {
                write!(f, "{}: not an strace trace ({reason})", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Reads one line (with its `\n`, if any) into `buf`, at most `limit` bytes before the newline,
/// a buffer at a time. Returns the bytes read (0 at the end), or `Ok(None)` when the line is longer
/// than `limit`: the rest of it is left unread.
pub fn read_line_bounded(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<usize>> {
    buf.clear();
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(Some(buf.len()));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let content = if done { take - 1 } else { take };
        if buf.len() + content > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(take);
        if done {
            return Ok(Some(buf.len()));
        }
    }
}

/// What `vmspace replay` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The trace (`-` for standard input).
    pub trace: PathBuf,
    /// A `/proc/PID/maps` snapshot to compare the final map with.
    pub against: Option<PathBuf>,
    /// The pid whose address space is compared.
    pub pid: Option<u32>,
    /// Where to draw entries and mapped bytes over the trace.
    pub plot: Option<PathBuf>,
    /// Stop at the first line that does not parse.
    pub strict: bool,
    /// Print the report as JSON.
    pub json: bool,
    /// Show a progress bar (when standard error is a terminal).
    pub progress: bool,
}

/// The state of a page: its protection and whether it is shared, or unmapped.
pub type PageState = Option<(Prot, bool)>;

/// A run of pages whose state differs between the replayed map and the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    /// The pages.
    pub range: Range<u64>,
    /// What the replay says.
    pub trace: PageState,
    /// What the snapshot says.
    pub snapshot: PageState,
    /// The snapshot's path column there (context).
    pub name: String,
}

/// The result of a comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Bytes compared (the pages the trace touched).
    pub compared: u64,
    /// Every difference, in address order.
    pub diffs: Vec<Diff>,
}

fn state_str(s: PageState) -> String {
    match s {
        None => "unmapped".into(),
        Some((p, sh)) => format!("{p}{}", if sh { 's' } else { 'p' }),
    }
}

impl Diff {
    /// `0x…-0x… (N pages): trace rw-p, snapshot r--p NAME`.
    pub fn describe(&self) -> String {
        format!(
            "{:#x}-{:#x} ({} pages): trace {}, snapshot {}{}",
            self.range.start,
            self.range.end,
            (self.range.end - self.range.start) / 4096,
            state_str(self.trace),
            state_str(self.snapshot),
            if self.name.is_empty() { String::new() } else { format!(" {}", self.name) }
        )
    }
}

/// Compares the replayed `space` with `snapshot` page by page (protection, shared/private) over the
/// pages the trace touched.
pub fn compare(space: &Space, snapshot: &[Region]) -> Comparison {
    let trace: Vec<(Range<u64>, (Prot, bool))> =
        space.map.entries().map(|e| (e.range(), (e.prot(), e.object().shared))).collect();
    let snap: Vec<(Range<u64>, (Prot, bool))> =
        snapshot.iter().map(|r| (r.range.clone(), (r.prot, r.shared))).collect();
    let at = |v: &[(Range<u64>, (Prot, bool))], a: u64| -> Option<usize> {
        let i = v.partition_point(|(r, _)| r.end <= a);
        (i < v.len() && v[i].0.start <= a).then_some(i)
    };
    let mut cmp = Comparison::default();
    for k in space.known.iter() {
        cmp.compared += k.end - k.start;
        let mut points = vec![k.start, k.end];
        for v in [&trace, &snap] {
            let first = v.partition_point(|(r, _)| r.end <= k.start);
            for (r, _) in v[first..].iter().take_while(|(r, _)| r.start < k.end) {
                for p in [r.start, r.end] {
                    if p > k.start && p < k.end {
                        points.push(p);
                    }
                }
            }
        }
        points.sort_unstable();
        points.dedup();
        for w in points.windows(2) {
            let ti = at(&trace, w[0]);
            let si = at(&snap, w[0]);
            let t = ti.map(|i| trace[i].1);
            let s = si.map(|i| snap[i].1);
            if t == s {
                continue;
            }
            let name = si.map(|i| snapshot[i].path().to_string()).unwrap_or_default();
            match cmp.diffs.last_mut() {
                Some(d) if d.range.end == w[0] && d.trace == t && d.snapshot == s && d.name == name => {
                    d.range.end = w[1]
                }
                _ => cmp.diffs.push(Diff { range: w[0]..w[1], trace: t, snapshot: s, name }),
            }
        }
    }
    cmp
}

/// One input of a replay: a file (or standard input), and the pid its lines belong to when the file
/// is one of `strace -ff`'s `PREFIX.PID` files, whose lines carry no pid.
struct Source {
    path: PathBuf,
    pid: Option<u32>,
}

/// The inputs `trace` names: `-` (standard input), the file itself, or, when no such file exists,
/// every `TRACE.PID` file beside it (`strace -ff -o TRACE`), in pid order.
fn sources(trace: &Path) -> Result<Vec<Source>, Error> {
    if trace.as_os_str() == "-" || trace.exists() {
        return Ok(vec![Source { path: trace.to_path_buf(), pid: None }]);
    }
    let not_found = || Error::Io {
        path: trace.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file, and no strace -ff files TRACE.PID beside it",
        ),
    };
    let (Some(dir), Some(prefix)) = (trace.parent(), trace.file_name().and_then(|n| n.to_str())) else {
        return Err(not_found());
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Ok(list) = std::fs::read_dir(dir) else { return Err(not_found()) };
    let mut found: Vec<Source> = list
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let pid = name.strip_prefix(prefix)?.strip_prefix('.')?;
            if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(Source { path: e.path(), pid: Some(pid.parse().ok()?) })
        })
        .collect();
    if found.is_empty() {
        return Err(not_found());
    }
    found.sort_by_key(|s| s.pid);
    Ok(found)
}

/// Reads the trace and replays it. Returns the replayer and the seconds spent. The replayer keeps
/// the live spaces and the one `--against` compares ([`Replayer::for_target`] of `opts.pid`).
/// `strace -ff` files are replayed one after another in pid order (a parent's files before its
/// children's, unless pids wrapped), each line under its file's pid.
pub fn replay(opts: &Options) -> Result<(Replayer, f64), Error> {
    let mut rep = Replayer::for_target(opts.pid);
    let t0 = Instant::now();
    let mut line_no = 0u64;
    for src in sources(&opts.trace)? {
        replay_one(opts, &src, &mut rep, &mut line_no)?;
    }
    rep.finish();
    if rep.calls == 0 && rep.bad_total > 0 {
        return Err(Error::NotATrace {
            path: opts.trace.clone(),
            reason: format!("none of its {} lines is a system call", grouped(rep.lines)),
        });
    }
    Ok((rep, t0.elapsed().as_secs_f64()))
}

fn replay_one(opts: &Options, src: &Source, rep: &mut Replayer, line_no: &mut u64) -> Result<(), Error> {
    let (reader, size): (Box<dyn Read>, u64) = if src.path.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), 0)
    } else {
        let f = std::fs::File::open(&src.path).map_err(io_error(&src.path))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(f), size)
    };
    let bar = (opts.progress && size > 16 << 20 && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(size);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut r = BufReader::with_capacity(1 << 20, reader);
    let mut buf = Vec::with_capacity(4096);
    let mut prefixed = String::new();
    let mut read = 0u64;
    loop {
        let n = read_line_bounded(&mut r, &mut buf, MAX_LINE).map_err(io_error(&src.path))?;
        let Some(n) = n else {
            return Err(Error::LineTooLong { line: *line_no + 1, limit: MAX_LINE });
        };
        if n == 0 {
            break;
        }
        if buf.contains(&0) {
            // No strace line holds a NUL (strace escapes it as \0): this is binary data.
            return Err(Error::NotATrace {
                path: src.path.clone(),
                reason: format!("line {} holds a NUL byte: binary data", *line_no + 1),
            });
        }
        if buf.capacity() > 1 << 20 && n < 4096 {
            // One long line does not keep its buffer for the rest of the trace.
            buf.shrink_to(4096);
        }
        *line_no += 1;
        read += n as u64;
        if let Some(b) = &bar
            && *line_no % 65536 == 0
        {
            b.set_position(read);
        }
        let mut text = match std::str::from_utf8(&buf) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(&buf),
        };
        if let Some(pid) = src.pid {
            prefixed.clear();
            let _ = write!(prefixed, "{pid} {text}");
            text = std::borrow::Cow::Borrowed(prefixed.as_str());
        }
        if let Err(bad) = rep.feed(*line_no, &text)
            && opts.strict
        {
            return Err(Error::BadLine(bad));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

/// Parses an `--against` snapshot: a copy of `/proc/PID/maps` or of `/proc/PID/smaps` (told apart by
/// its `Key: value` lines). An empty snapshot is refused: it would make every page a difference.
pub fn parse_snapshot(path: &Path, text: &str) -> Result<Vec<Region>, Error> {
    let bad = |reason: String| Error::Snapshot { path: path.to_path_buf(), reason };
    if text.trim().is_empty() {
        return Err(bad("empty snapshot: no mapping to compare with (was the process gone?)".into()));
    }
    let smaps = text.lines().any(|l| l.starts_with("VmFlags:") || l.starts_with("Rss:"));
    let r = if smaps { procmaps::parse_smaps(text) } else { procmaps::parse_maps(text) };
    r.map_err(|e| bad(e.to_string()))
}

/// Runs the command: report on `out`; returns the exit code (1 when `--against` found differences).
pub fn run(opts: &Options, out: &mut String) -> Result<i32, Error> {
    let (rep, secs) = replay(opts)?;
    let mut cmp = None;
    let mut target = None;
    if let Some(path) = &opts.against {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        let snap = parse_snapshot(path, &text)?;
        let s = rep.target(opts.pid).map_err(Error::Target)?;
        if rep.spaces[s].freed {
            // Cannot happen through `replay`, which keeps the target; a guard against a silent
            // comparison of nothing.
            return Err(Error::Target(format!("address space #{s} ended and was not kept")));
        }
        cmp = Some(compare(&rep.spaces[s], &snap));
        target = Some(s);
    }
    if let Some(p) = &opts.plot {
        std::fs::write(p, plot_svg(&rep)).map_err(io_error(p))?;
    }
    if opts.json {
        json_report(&rep, secs, target.zip(cmp.as_ref()), out);
    } else {
        text_report(&rep, secs, &opts.trace.display().to_string(), target.zip(cmp.as_ref()), out);
    }
    Ok(match &cmp {
        Some(c) if !c.diffs.is_empty() => 1,
        _ => 0,
    })
}

fn origin_str(o: &Origin) -> String {
    match o {
        Origin::Initial => "initial".into(),
        Origin::Fork { from } => format!("fork of #{from}"),
        Origin::Exec { from: Some(f), .. } => format!("exec from #{f}"),
        Origin::Exec { from: None, .. } => "exec".into(),
    }
}

fn pids_str(p: &[u32], count: u64) -> String {
    let mut s: Vec<String> = p.iter().take(4).map(|x| x.to_string()).collect();
    if count > s.len() as u64 {
        s.push(format!("+{}", count - s.len() as u64));
    }
    s.join(",")
}

/// The human report.
pub fn text_report(rep: &Replayer, secs: f64, name: &str, cmp: Option<(usize, &Comparison)>, o: &mut String) {
    let rate = if secs > 0.0 { rep.calls as f64 / secs } else { 0.0 };
    let _ = writeln!(
        o,
        "{name}: {} lines, {} calls, {} address spaces, {} pids; replayed in {:.3} s ({} calls/s)",
        grouped(rep.lines),
        grouped(rep.calls),
        rep.spaces.len(),
        rep.spaces.iter().map(|s| s.pid_count).sum::<u64>(),
        secs,
        grouped(rate as u64)
    );
    let _ = writeln!(o, "\ncalls by kind:            ok   failed");
    for (i, (ok, failed)) in rep.counts.iter().enumerate() {
        if ok + failed > 0 {
            let _ = writeln!(o, "  {:<16} {:>10} {:>8}", model::KINDS[i], grouped(*ok), grouped(*failed));
        }
    }
    if !rep.other.is_empty() {
        let mut other: Vec<_> = rep.other.iter().collect();
        other.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let total: u64 = other.iter().map(|(_, n)| **n).sum();
        let names: Vec<String> = other.iter().take(6).map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(o, "  {:<16} {:>10}          ({})", "other", grouped(total), names.join(", "));
    }
    let _ = writeln!(o, "\naddress spaces:");
    let _ = writeln!(
        o,
        "  {:>3} {:<14} {:<16} {:<28} {:>8} {:>13} {:>15} {:>9}",
        "#", "PIDS", "ORIGIN", "PROGRAM", "CALLS", "ENTRIES/PEAK", "MAPPED/PEAK", "TOUCHED"
    );
    for (i, s) in rep.spaces.iter().enumerate() {
        let mut prog = s.program();
        if prog.chars().count() > 28 {
            prog = format!(
                "…{}",
                prog.chars().rev().take(27).collect::<Vec<_>>().into_iter().rev().collect::<String>()
            );
        }
        let _ = writeln!(
            o,
            "  {:>3} {:<14} {:<16} {:<28} {:>8} {:>13} {:>15} {:>9}",
            i,
            pids_str(&s.pids, s.pid_count),
            origin_str(&s.origin),
            prog,
            grouped(s.calls),
            format!("{}/{}", s.entries(), s.peak_entries),
            format!("{}/{}", human(s.mapped()), human(s.peak_mapped)),
            human(s.touched())
        );
    }
    let _ = writeln!(
        o,
        "\npeak over live address spaces: {} entries, {} mapped",
        grouped(rep.peak_entries),
        human(rep.peak_mapped)
    );
    if !rep.events.is_empty() {
        let _ = writeln!(o, "\ntimeline:");
        let show = 12usize;
        for e in rep.events.iter().take(show) {
            let _ = writeln!(o, "  line {:>8}  call {:>8}  {}", e.line, e.call, e.what);
        }
        if rep.events_total > show as u64 {
            let _ = writeln!(o, "  … {} more events", rep.events_total - show as u64);
        }
    }
    // Entries and mapped bytes at ten points of the trace.
    if rep.samples.len() > 2 {
        let _ = writeln!(o, "\n  {:>10} {:>10} {:>10}", "CALL", "ENTRIES", "MAPPED");
        let n = rep.samples.len();
        for k in 0..=9 {
            let s = rep.samples[(k * (n - 1)) / 9];
            let _ =
                writeln!(o, "  {:>10} {:>10} {:>10}", grouped(s.call), grouped(s.entries), human(s.mapped));
        }
    }
    if rep.bad_total > 0 {
        let _ = writeln!(o, "\nlines not understood: {} (skipped)", grouped(rep.bad_total));
        for b in rep.bad.iter().take(10) {
            let _ = writeln!(o, "  line {}: {}: {}", b.line, b.reason, b.content);
        }
    }
    if rep.warnings_total > 0 {
        let _ = writeln!(
            o,
            "\ninconsistencies (calls Linux accepted that the map refused): {}",
            rep.warnings_total
        );
        for (l, w) in rep.warnings.iter().take(10) {
            let _ = writeln!(o, "  line {l}: {w}");
        }
    }
    if let Some((s, c)) = cmp {
        let _ = writeln!(
            o,
            "\ncomparison of #{s} with the snapshot over the {} the trace touched: {}",
            human(c.compared),
            if c.diffs.is_empty() {
                "no difference".to_string()
            } else {
                format!("{} differences", c.diffs.len())
            }
        );
        for d in &c.diffs {
            let _ = writeln!(o, "  {}", d.describe());
        }
    }
}

#[derive(serde::Serialize)]
struct OkFailed {
    ok: u64,
    failed: u64,
}

#[derive(serde::Serialize)]
struct SpaceJson {
    id: usize,
    pids: Vec<u32>,
    pid_count: u64,
    origin: String,
    program: String,
    calls: u64,
    entries: usize,
    peak_entries: usize,
    mapped: u64,
    peak_mapped: u64,
    touched: u64,
    inconsistencies: u64,
}

#[derive(serde::Serialize)]
struct LineJson<'a> {
    line: u64,
    reason: &'a str,
    content: &'a str,
}

#[derive(serde::Serialize)]
struct EventJson<'a> {
    line: u64,
    call: u64,
    what: &'a str,
}

#[derive(serde::Serialize)]
struct DiffJson {
    start: u64,
    end: u64,
    trace: String,
    snapshot: String,
    name: String,
}

#[derive(serde::Serialize)]
struct ComparisonJson {
    space: usize,
    compared: u64,
    differences: Vec<DiffJson>,
}

#[derive(serde::Serialize)]
struct ReportJson<'a> {
    lines: u64,
    calls: u64,
    seconds: f64,
    calls_by_kind: std::collections::BTreeMap<&'static str, OkFailed>,
    other_calls: std::collections::BTreeMap<&'a str, u64>,
    peak_entries: usize,
    peak_mapped: u64,
    spaces: Vec<SpaceJson>,
    target: Option<usize>,
    bad_lines: u64,
    bad: Vec<LineJson<'a>>,
    inconsistencies: u64,
    events: Vec<EventJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comparison: Option<ComparisonJson>,
}

/// The report as one JSON object (serde: numbers are numbers, strings escaped).
pub fn json_report(rep: &Replayer, secs: f64, cmp: Option<(usize, &Comparison)>, o: &mut String) {
    let r = ReportJson {
        lines: rep.lines,
        calls: rep.calls,
        seconds: secs,
        calls_by_kind: rep
            .counts
            .iter()
            .enumerate()
            .filter(|(_, (ok, failed))| ok + failed > 0)
            .map(|(i, &(ok, failed))| (model::KINDS[i], OkFailed { ok, failed }))
            .collect(),
        other_calls: rep.other.iter().map(|(k, n)| (k.as_str(), *n)).collect(),
        peak_entries: rep.peak_entries as usize,
        peak_mapped: rep.peak_mapped,
        spaces: rep
            .spaces
            .iter()
            .enumerate()
            .map(|(i, s)| SpaceJson {
                id: i,
                pids: s.pids.clone(),
                pid_count: s.pid_count,
                origin: origin_str(&s.origin),
                program: s.program(),
                calls: s.calls,
                entries: s.entries(),
                peak_entries: s.peak_entries,
                mapped: s.mapped(),
                peak_mapped: s.peak_mapped,
                touched: s.touched(),
                inconsistencies: s.inconsistencies,
            })
            .collect(),
        target: rep.target(None).ok(),
        bad_lines: rep.bad_total,
        bad: rep
            .bad
            .iter()
            .map(|b| LineJson { line: b.line, reason: b.reason, content: &b.content })
            .collect(),
        inconsistencies: rep.warnings_total,
        events: rep.events.iter().map(|e| EventJson { line: e.line, call: e.call, what: &e.what }).collect(),
        comparison: cmp.map(|(s, c)| ComparisonJson {
            space: s,
            compared: c.compared,
            differences: c
                .diffs
                .iter()
                .map(|d| DiffJson {
                    start: d.range.start,
                    end: d.range.end,
                    trace: state_str(d.trace),
                    snapshot: state_str(d.snapshot),
                    name: d.name.clone(),
                })
                .collect(),
        }),
    };
    o.push_str(&crate::mapjson::to_line(&r));
}

/// Entries and mapped bytes (over all live address spaces) against calls, as an SVG line chart.
pub fn plot_svg(rep: &Replayer) -> String {
    let (w, h, m) = (900.0f64, 360.0f64, 60.0f64);
    let max_call = rep.samples.last().map_or(1, |s| s.call).max(1) as f64;
    let max_e = rep.samples.iter().map(|s| s.entries).max().unwrap_or(1).max(1) as f64;
    let max_m = rep.samples.iter().map(|s| s.mapped).max().unwrap_or(1).max(1) as f64;
    let x = |c: u64| m + (c as f64 / max_call) * (w - 2.0 * m);
    let y = |v: f64, max: f64| h - m - (v / max) * (h - 2.0 * m);
    let pts = |f: &dyn Fn(&model::Sample) -> f64, max: f64| -> String {
        rep.samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.call), y(f(s), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, "<title>{}</title>", xml("vmspace replay: entries and mapped bytes over the trace"));
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(s, r#"<line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, h - m, w - m, h - m);
    let _ = writeln!(s, r#"<line x1="{m}" y1="{m}" x2="{m}" y2="{}" stroke="black"/>"#, h - m);
    let _ = writeln!(s, r#"<line x1="{}" y1="{m}" x2="{}" y2="{}" stroke="black"/>"#, w - m, w - m, h - m);
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##,
        pts(&|p| p.entries as f64, max_e)
    );
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="{}"/>"##,
        pts(&|p| p.mapped as f64, max_m)
    );
    let _ = writeln!(
        s,
        r##"<text x="{m}" y="{}" fill="#1f77b4">entries (max {})</text>"##,
        m - 10.0,
        grouped(max_e as u64)
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#d62728">mapped (max {})</text>"##,
        w - m,
        m - 10.0,
        xml(&human(max_m as u64))
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">calls (0 to {})</text>"#,
        w / 2.0,
        h - 20.0,
        grouped(max_call as u64)
    );
    s.push_str("</svg>\n");
    s
}

/// Writes a synthetic trace of `calls` memory calls (mmap, mprotect, madvise, munmap, mremap, brk in a
/// steady pattern over a few thousand live mappings) to `out`, for measuring replay speed.
pub fn synthetic_trace(calls: u64, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let base = 0x7f00_0000_0000u64;
    let slots = 512u64;
    let mut live = vec![false; slots as usize];
    let mut brk = 0x5555_0000_0000u64;
    writeln!(out, "100  brk(NULL) = {brk:#x}")?;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut n = 1;
    while n < calls {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = x % slots;
        let a = base + slot * 16 * 4096;
        let op = (x >> 20) % 8;
        if !live[slot as usize] {
            writeln!(
                out,
                "100  mmap({a:#x}, 32768, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {a:#x}"
            )?;
            live[slot as usize] = true;
        } else {
            match op {
                0 => {
                    writeln!(out, "100  munmap({a:#x}, 32768) = 0")?;
                    live[slot as usize] = false;
                }
                1 | 2 => writeln!(out, "100  mprotect({:#x}, 4096, PROT_READ) = 0", a + 4096)?,
                3 => writeln!(out, "100  mprotect({:#x}, 4096, PROT_READ|PROT_WRITE) = 0", a + 4096)?,
                4 => writeln!(out, "100  madvise({a:#x}, 8192, MADV_DONTNEED) = 0")?,
                5 => writeln!(out, "100  mremap({a:#x}, 32768, 32768, MREMAP_MAYMOVE) = {a:#x}")?,
                6 => {
                    brk += 0x21000;
                    writeln!(out, "100  brk({brk:#x}) = {brk:#x}")?;
                }
                _ => writeln!(out, "100  madvise({a:#x}, 32768, MADV_RANDOM) = 0")?,
            }
        }
        n += 1;
    }
    writeln!(out, "100  exit_group(0) = ?")?;
    writeln!(out, "100  +++ exited with 0 +++")?;
    Ok(())
}

/// A one-line summary, for messages.
pub fn summary(rep: &Replayer) -> String {
    format!("{} calls, {} address spaces", rep.calls, rep.spaces.len())
}
