//! `vmspace replay TRACE --exact`: a trace written by `vmspace record` run through
//! `vmspace_linux::mm::Mm` from each process's recorded start, every result (address or errno)
//! compared with the kernel's and, at every recorded snapshot (each process's exit), the VMA list
//! compared with the kernel's line for line.
//!
//! Processes are followed as the kernel made them: `execve` starts a fresh `Mm` from the maps the
//! recorder read right after the exec; `fork`/`clone` without `CLONE_VM` gives the child `Mm::fork`;
//! with `CLONE_VM` (threads, `vfork`) the child shares its parent's `Mm`. Calls made before a process's
//! first exec or fork is known (the recorder's own child setting up) are not counted.
//!
//! Writes to memory are not recorded, but whether a VMA was written (has an `anon_vma`) decides
//! later merges (`Mm`'s module doc). Beyond `Mm`'s own inferences the replay takes one more: memory a
//! successful `brk` adds is written, as allocators write their top chunk's header into it. A fork
//! child's heap then has an inherited `anon_vma`, and its first break growth stays a VMA of its own,
//! as the kernel has it (`vma_had_uncowed_parents`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::rc::Rc;

use serde::Serialize;
use vmspace_linux::abi::{
    Errno, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MREMAP_FIXED, MREMAP_MAYMOVE,
};
use vmspace_linux::mm::{FileRef, Layout, Mm, PAGE, Params};
use vmspace_linux::proc::maps;

use crate::record::trace::{self, Event, FileInfo};

/// What an exact replay found (`--json` prints it; every field an integer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Calls compared.
    pub calls: u64,
    /// Calls whose result (address or errno) differs from the kernel's.
    pub results_differ: u64,
    /// Snapshots compared (each process's maps at exit).
    pub snapshots: u64,
    /// Snapshots whose VMA list differs from the kernel's.
    pub maps_differ: u64,
    /// Results the kernel chose: non-fixed `mmap`, `mremap` that may move, `brk`.
    pub placements: u64,
    /// Of those, how many `Mm` chose the same.
    pub placements_equal: u64,
    /// Calls `Mm` does not model (`process_madvise`, `remap_file_pages`), not compared.
    pub unmodelled: u64,
    /// Processes followed.
    pub processes: u64,
    /// Snapshot lines equal but for the kernel's ` (deleted)` after a file unlinked while mapped (no
    /// memory call shows the unlink).
    pub deleted_names: u64,
    /// Calls of threads of one process that ran at once with others and that the kernel served
    /// before calls that returned earlier (found by trying the places they could have had).
    pub reordered: u64,
    /// The first differences, as text (not in the JSON).
    #[serde(skip)]
    pub first: Vec<String>,
}

impl Report {
    /// Whether nothing differed.
    pub fn equal(&self) -> bool {
        self.results_differ == 0 && self.maps_differ == 0
    }
}

/// How many differences the text keeps.
const KEEP: usize = 10;
/// How many calls before a difference the text shows.
const CONTEXT: usize = 3;

struct Process {
    mm: Rc<RefCell<Mm>>,
    /// The last calls, for context.
    recent: std::collections::VecDeque<(String, [u64; 6], i64)>,
}

/// A recorded call waiting to be replayed.
struct Call {
    pid: i32,
    name: String,
    args: [u64; 6],
    ret: i64,
    file: Option<FileInfo>,
    line: usize,
    /// When it returned (the recorder's clock).
    exited: u64,
}

/// A replayed call of a threaded address space, still open to being moved earlier: a call that
/// returns later but entered before this one returned may have been served first.
struct Open {
    call: Call,
    /// The memory before this call.
    before: Mm,
    got: Option<(i64, bool)>,
}

/// The open calls of one threaded address space, in their chosen order.
#[derive(Default)]
struct Window {
    open: std::collections::VecDeque<Open>,
}

/// How many calls a window keeps open (then the oldest is settled and counted). A thread can sit in a
/// call, or stopped at its end, while the others make a hundred and more (seen: an `mmap` entered at
/// call 69 and reported at 411, which the kernel had served before calls reported earlier), so the
/// window is long; [`WINDOW_VMAS`] bounds the memory its copies take.
const WINDOW: usize = 256;
/// At most this many VMAs, summed over the open calls' copies of the memory, beyond the first 32 calls.
const WINDOW_VMAS: usize = 1 << 19;
/// Up to how many calls running at once every order is tried (6! = 720).
const MAX_PERMUTED: usize = 6;

/// Replays a recorded trace exactly.
pub fn run(input: &mut dyn BufRead) -> Result<Report, String> {
    let mut r = Report::default();
    let mut params = Params::default();
    let mut procs: HashMap<i32, Process> = HashMap::new();
    // Per threaded address space (the `Mm`'s address): the calls still open to reordering.
    let mut windows: HashMap<usize, Window> = HashMap::new();
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(|e| format!("reading the trace: {e}"))? == 0 {
            break;
        }
        n += 1;
        let text = line.trim_end_matches('\n');
        if text.is_empty() {
            continue;
        }
        if n == 1 && !trace::is_recorded(text) {
            return Err(
                "not a trace written by `vmspace record` (its first line is not a start event)".into()
            );
        }
        // Calls are nearly every line: read them straight into their fields (an internally tagged
        // enum buffers each line before it looks at the tag).
        let event = if text.starts_with("{\"event\":\"call\"") {
            let c: trace::CallLine =
                serde_json::from_str(text).map_err(|e| format!("trace line {n}: {e}"))?;
            Event::Call {
                pid: c.pid,
                tid: c.tid,
                name: c.name.into(),
                args: c.args,
                ret: c.ret,
                file: c.file,
                entered: c.entered,
                exited: c.exited,
            }
        } else {
            trace::parse_line(n, text).map_err(|e| e.to_string())?
        };
        match event {
            Event::Start { version, kernel, max_map_count, mmap_min_addr, overcommit_memory, .. } => {
                if version != trace::VERSION {
                    return Err(format!("trace version {version}; this vmspace reads {}", trace::VERSION));
                }
                params.version = kernel_version(&kernel).unwrap_or(params.version);
                params.max_map_count = max_map_count;
                params.mmap_min_addr = mmap_min_addr;
                params.overcommit_memory = overcommit_memory as u8;
            }
            Event::Exec(e) => {
                if let Some(mm) = procs.get(&e.pid).map(|p| p.mm.clone()) {
                    settle(&mut r, &mut procs, &mut windows, &mm);
                }
                let lines = maps::parse(&e.maps).map_err(|err| format!("line {n}: exec maps: {err}"))?;
                let mut p = params.clone();
                p.rlimit_memlock = e.rlimits.memlock.0;
                p.rlimit_as = e.rlimits.address_space.0;
                p.rlimit_data = e.rlimits.data.0;
                // Root (the recorder's usual user) may lock past RLIMIT_MEMLOCK.
                p.cap_ipc_lock = rustix::process::geteuid().is_root();
                let layout = Layout {
                    mmap_base: None,
                    start_brk: e.start_brk,
                    brk: e.start_brk,
                    start_stack: e.start_stack,
                    data: (0, 0),
                    forked: false,
                };
                let mm = Mm::from_maps(&lines, layout, p);
                r.processes += 1;
                procs.insert(e.pid, Process { mm: Rc::new(RefCell::new(mm)), recent: Default::default() });
            }
            Event::Fork { pid, child, flags, .. } => {
                const CLONE_VM: u64 = 0x100;
                let Some(parent_mm) = procs.get(&pid).map(|p| p.mm.clone()) else { continue };
                // A fork copies the memory as it is: the calls still open must be settled first. A new
                // thread shares it, and a call another thread made before the clone may still have
                // been served after calls that come later (its window stays open).
                if flags & CLONE_VM == 0 {
                    settle(&mut r, &mut procs, &mut windows, &parent_mm);
                }
                let parent = &procs[&pid];
                let mm = if flags & CLONE_VM != 0 {
                    windows.entry(Rc::as_ptr(&parent.mm) as usize).or_default();
                    parent.mm.clone()
                } else {
                    r.processes += 1;
                    Rc::new(RefCell::new(parent.mm.borrow().fork()))
                };
                procs.insert(child, Process { mm, recent: Default::default() });
            }
            Event::Call { pid, name, args, ret, file, entered, exited, .. } => {
                let Some(mm) = procs.get(&pid).map(|p| p.mm.clone()) else { continue };
                let c = Call { pid, name, args, ret, file, line: n, exited };
                match windows.get_mut(&(Rc::as_ptr(&mm) as usize)) {
                    Some(w) => place(&mut r, &mut procs, w, &mm, c, entered),
                    None => {
                        let got = apply(&mut mm.borrow_mut(), &c);
                        if let Some(p) = procs.get_mut(&pid) {
                            account(&mut r, p, &c, got);
                        }
                    }
                }
            }
            Event::Exit { pid, maps: want, .. } => {
                let Some(mm) = procs.get(&pid).map(|p| p.mm.clone()) else { continue };
                settle(&mut r, &mut procs, &mut windows, &mm);
                let p = &procs[&pid];
                r.snapshots += 1;
                let got: Vec<String> = p.mm.borrow().maps().iter().map(|l| l.to_string()).collect();
                // A file unlinked while mapped is named "… (deleted)": the unlink is no memory call,
                // so the model keeps the name; the line counts as equal and is counted apart.
                let want: Vec<&str> = want
                    .lines()
                    .zip(got.iter().map(String::as_str).chain(std::iter::repeat("")))
                    .map(|(w, g)| match w.strip_suffix(" (deleted)") {
                        Some(stripped) if stripped == g => {
                            r.deleted_names += 1;
                            g
                        }
                        _ => w,
                    })
                    .collect();
                if got.iter().map(String::as_str).ne(want.iter().copied()) {
                    r.maps_differ += 1;
                    if r.first.len() < KEEP {
                        r.first.push(format!(
                            "line {n}: pid {pid}'s maps at exit differ:\n{}",
                            maps_diff(&got, &want)
                        ));
                    }
                }
            }
            Event::End { .. } => {}
        }
    }
    if n == 0 {
        return Err("the trace is empty".into());
    }
    let threaded: Vec<Rc<RefCell<Mm>>> = procs.values().map(|p| p.mm.clone()).collect();
    for mm in threaded {
        settle(&mut r, &mut procs, &mut windows, &mm);
    }
    Ok(r)
}

/// Replays call `c` of a threaded address space. Calls still open that returned after `c` entered
/// ran at once with it, and the kernel may have served `c` before them: from the memory before the
/// first of them, `c` is tried at the end (the order they returned in), then one place earlier at a
/// time; the first order that gives every recorded result is kept.
fn place(
    r: &mut Report,
    procs: &mut HashMap<i32, Process>,
    w: &mut Window,
    mm: &Rc<RefCell<Mm>>,
    c: Call,
    entered: u64,
) {
    let first = w.open.iter().position(|o| entered != 0 && o.call.exited > entered);
    let Some(j) = first else {
        let before = mm.borrow().clone();
        let got = apply(&mut mm.borrow_mut(), &c);
        w.open.push_back(Open { call: c, before, got });
        trim(r, procs, w);
        return;
    };
    let base = w.open[j].before.clone();
    let mut calls: Vec<Call> = w.open.drain(j..).map(|o| o.call).collect();
    let n = calls.len();
    calls.push(c);
    let fits = |order: &[usize]| {
        let mut m = base.clone();
        order.iter().all(|&i| apply(&mut m, &calls[i]).is_none_or(|(got, _)| got == calls[i].ret))
    };
    // The order they returned in, then `c` one place earlier at a time, then (for a few calls) every
    // order: two calls placed as returned may both have to move once a third shows the kernel's order.
    let returned: Vec<usize> = (0..=n).collect();
    let inserted = (0..n).rev().map(|pos| {
        let mut o: Vec<usize> = (0..n).collect();
        o.insert(pos, n);
        o
    });
    let mut order = std::iter::once(returned.clone()).chain(inserted).find(|o| fits(o));
    if order.is_none() && n < MAX_PERMUTED {
        order = permutations(n + 1).into_iter().find(|o| fits(o));
    }
    let order = order.unwrap_or(returned.clone());
    if order != returned {
        r.reordered += 1;
    }
    let mut slots: Vec<Option<Call>> = calls.into_iter().map(Some).collect();
    let mut m = base;
    for i in order {
        let call = slots[i].take().expect("each call once");
        let before = m.clone();
        let got = apply(&mut m, &call);
        w.open.push_back(Open { call, before, got });
    }
    *mm.borrow_mut() = m;
    trim(r, procs, w);
}

/// Every order of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for at in 0..=p.len() {
            let mut q = p.clone();
            q.insert(at, n - 1);
            out.push(q);
        }
    }
    out
}

/// Settles and counts the oldest open calls past the window's length.
fn trim(r: &mut Report, procs: &mut HashMap<i32, Process>, w: &mut Window) {
    let vmas = w.open.back().map_or(0, |o| o.before.len().max(1));
    while w.open.len() > WINDOW || (w.open.len() > 32 && w.open.len() * vmas > WINDOW_VMAS) {
        let o = w.open.pop_front().unwrap();
        if let Some(p) = procs.get_mut(&o.call.pid) {
            account(r, p, &o.call, o.got);
        }
    }
}

/// Settles and counts every open call of `mm` (before a fork, an exec, a snapshot, or at the end).
fn settle(
    r: &mut Report,
    procs: &mut HashMap<i32, Process>,
    windows: &mut HashMap<usize, Window>,
    mm: &Rc<RefCell<Mm>>,
) {
    let Some(w) = windows.get_mut(&(Rc::as_ptr(mm) as usize)) else { return };
    while let Some(o) = w.open.pop_front() {
        if let Some(p) = procs.get_mut(&o.call.pid) {
            account(r, p, &o.call, o.got);
        }
    }
}

/// `(major, minor)` of a `uname -r` release.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// What `Mm` answers for one call: the raw result and whether the kernel chose it (a placement);
/// `None` for calls `Mm` does not model or that act through other events (process calls).
fn apply(mm: &mut Mm, c: &Call) -> Option<(i64, bool)> {
    let a = c.args;
    let fileref = c.file.as_ref().map(|f| file_ref(f, a[4]));
    let (got, placement) = match c.name.as_str() {
        "mmap" => {
            let fixed = a[3] & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
            let f = if a[3] & MAP_ANONYMOUS == 0 { fileref.as_ref() } else { None };
            (mm.mmap(a[0], a[1], a[2], a[3], f, a[5]), !fixed)
        }
        "munmap" => (mm.munmap(a[0], a[1]), false),
        "mprotect" => (mm.mprotect(a[0], a[1], a[2]), false),
        // pkey -1 is the default key: mprotect.
        "pkey_mprotect" if a[3] as i32 == -1 => (mm.mprotect(a[0], a[1], a[2]), false),
        "mremap" => {
            let moves = a[3] & MREMAP_MAYMOVE != 0 && a[3] & MREMAP_FIXED == 0;
            (mm.mremap(a[0], a[1], a[2], a[3], a[4]), moves)
        }
        "brk" => {
            let first_new = mm.brk.next_multiple_of(PAGE);
            let got = mm.brk(a[0]);
            // The allocator that grows the break writes the new memory (its top chunk's header), and
            // a write fault gives the VMA an anon_vma: which, in a fork child, keeps the next growth
            // from merging (see the module doc).
            if got.next_multiple_of(PAGE) > first_new {
                let _ = mm.touch(first_new);
            }
            (Ok(got), true)
        }
        "madvise" => (mm.madvise(a[0], a[1], a[2]), false),
        "mlock" => (mm.mlock(a[0], a[1]), false),
        "mlock2" => (mm.mlock2(a[0], a[1], a[2]), false),
        "munlock" => (mm.munlock(a[0], a[1]), false),
        "mlockall" => (mm.mlockall(a[0]), false),
        "munlockall" => (mm.munlockall(), false),
        "mseal" => (mm.mseal(a[0], a[1], a[2]), false),
        "msync" => (mm.msync(a[0], a[1], a[2]), false),
        // The segment as the recorder saw it at the call (an unknown shmid has none: EINVAL).
        "shmat" => match &fileref {
            Some(seg) => (mm.shmat(seg, a[1], a[2]), a[1] == 0),
            None => (Err(Errno::EINVAL), false),
        },
        "shmdt" => (mm.shmdt(a[0]), false),
        _ => return None,
    };
    Some((
        match got {
            Ok(v) => v as i64,
            Err(e) => -(e.0 as i64),
        },
        placement,
    ))
}

/// Whether `Mm` leaves call `name` out (it is counted, not compared).
fn unmodelled(name: &str, args: &[u64; 6]) -> bool {
    matches!(name, "process_madvise" | "remap_file_pages")
        || (name == "pkey_mprotect" && args[3] as i32 != -1)
}

/// Counts one replayed call and keeps the first differences with their context.
fn account(r: &mut Report, p: &mut Process, c: &Call, got: Option<(i64, bool)>) {
    let Some((got, placement)) = got else {
        if unmodelled(&c.name, &c.args) {
            r.unmodelled += 1;
            remember(p, c);
        }
        return;
    };
    r.calls += 1;
    if placement && c.ret >= 0 {
        r.placements += 1;
        r.placements_equal += u64::from(got == c.ret);
    }
    if got != c.ret {
        r.results_differ += 1;
        if r.first.len() < KEEP {
            let mut s = format!("line {}: ", c.line);
            for (name, args, ret) in &p.recent {
                let _ = writeln!(s, "    {}", shown(name, args, *ret));
            }
            let _ = write!(s, "  → {}; Mm returned {}", shown(&c.name, &c.args, c.ret), show(got));
            r.first.push(s);
        }
    }
    remember(p, c);
}

/// A call as the text shows it: `name(args…) = result`.
fn shown(name: &str, a: &[u64; 6], ret: i64) -> String {
    format!(
        "{name}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}) = {}",
        a[0],
        a[1],
        a[2],
        a[3],
        a[4],
        a[5],
        show(ret)
    )
}

/// Keeps the last calls for a difference's context (formatted only when one is shown).
fn remember(p: &mut Process, c: &Call) {
    if p.recent.len() == CONTEXT {
        p.recent.pop_front();
    }
    p.recent.push_back((c.name.clone(), c.args, c.ret));
}

/// A raw result as a reader wants it: an address in hex, or the errno's name.
fn show(ret: i64) -> String {
    if (-4095..0).contains(&ret) {
        let e = Errno((-ret) as u16);
        format!("-{}", e.name().unwrap_or("E?"))
    } else {
        format!("{ret:#x}")
    }
}

/// The `FileRef` of a recorded descriptor: one open file description per (fd, inode).
fn file_ref(f: &FileInfo, fd: u64) -> FileRef {
    const O_ACCMODE: u32 = 3;
    const O_APPEND: u32 = 0o2000;
    let acc = f.flags & O_ACCMODE;
    FileRef {
        id: (fd << 48) ^ f.inode ^ ((f.dev.0 as u64) << 32 | f.dev.1 as u64),
        dev: f.dev,
        inode: f.inode,
        name: f.path.replace('\n', "\\012"),
        readable: acc == 0 || acc == 2,
        writable: acc == 1 || acc == 2,
        append: f.flags & O_APPEND != 0,
        noexec: false,
        shmem: f.path.starts_with("/memfd:")
            || f.path.starts_with("/dev/shm/")
            || f.path.starts_with("/SYSV"),
        mappable: true,
        size: f.size,
        // ext2/3/4 and xfs place mappings with thp_get_unmapped_area.
        thp_placement: matches!(f.fs_type, 0xef53 | 0x5846_5342),
    }
}

/// The first lines where two VMA lists differ, with a line of context.
fn maps_diff(got: &[String], want: &[&str]) -> String {
    let mut s = String::new();
    let first = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
    let from = first.saturating_sub(1);
    for i in from..(first + 3).min(got.len().max(want.len())) {
        let g = got.get(i).map(String::as_str).unwrap_or("(none)");
        let w = want.get(i).copied().unwrap_or("(none)");
        if g == w {
            let _ = writeln!(s, "      {g}");
        } else {
            let _ = writeln!(s, "    kernel {w}\n    Mm     {g}");
        }
    }
    s
}

/// The report as text: counts, then the first differences.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let pct = |a: u64, b: u64| if b == 0 { 100.0 } else { a as f64 * 100.0 / b as f64 };
    let _ = writeln!(
        s,
        "{} calls in {} processes: {} results differ; {} of {} snapshots differ; placements {}/{} ({:.2}%) predicted; {} calls not modelled; {} concurrent calls served earlier than they returned",
        r.calls,
        r.processes,
        r.results_differ,
        r.maps_differ,
        r.snapshots,
        r.placements_equal,
        r.placements,
        pct(r.placements_equal, r.placements),
        r.unmodelled,
        r.reordered
    );
    for d in &r.first {
        let _ = writeln!(s, "{d}");
    }
    s
}
