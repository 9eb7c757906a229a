//! The replay engine: one [`VmMap`] per address space, each traced call applied as Linux applies it.
//!
//! Invariants:
//! - Only successful calls change a map (the trace shows the real result). A successful call is applied
//!   the Linux way: mapping calls replace what was there (`MAP_FIXED`); attribute changes
//!   (`mprotect`, `madvise`, `mlock`, `mseal`) apply to the mapped pages of their range, since pages the
//!   kernel mapped before the trace started (the exec'd binary, the stack, the vDSO) are not in the map.
//! - `known` holds the pages whose state the trace determines: those covered by a call that creates or
//!   destroys mappings (mmap, munmap, mremap, brk, shmat, shmdt). Comparisons with a snapshot look only
//!   there.
//! - Threads (`CLONE_VM`, `vfork`) share one space; a fork gets [`VmMap::fork`] of its parent's map (a
//!   clone of it, so the parent's entries are not marked copy-on-write); a successful `execve` gives its
//!   process a new, empty space.
//! - Nothing here panics on input: every number is checked, every range is checked for overflow, and a
//!   call the map refuses is counted as an inconsistency, not an error.
//! - Memory follows the live address spaces, not the trace's history: a space whose last pid left (exit,
//!   exec) drops its map and touched pages at once, keeping only a fixed-size summary for the report —
//!   unless it is the one a comparison will ask for ([`Replayer::for_target`]). Everything else kept per
//!   pid, path or name is either removed when its owner goes or capped.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

use vmspace_core::{Advice, Behavior, EntryFlags, Inherit, MapObject, MapSpec, Prot, VmError, VmMap};

use super::parse::{self, Line, Ret};
use super::rangeset::RangeSet;

const PAGE: u64 = 4096;
/// Map bounds: the whole 64-bit space but the last page.
const MAX: u64 = 0u64.wrapping_sub(PAGE);

/// What backs an entry in a replayed map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Obj {
    /// The kind of backing.
    pub kind: ObjKind,
    /// `MAP_SHARED` (or a SysV segment) rather than private.
    pub shared: bool,
}

/// The kinds of backing a trace can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjKind {
    /// Anonymous memory (private: merges freely).
    Anon,
    /// One shared anonymous mapping (each `mmap` its own object).
    SharedAnon(u64),
    /// A file, by a hash of its path (`-y`) or descriptor number: a table of names would grow with
    /// every file the trace ever mapped.
    File(u64),
    /// A SysV shared memory segment, by id.
    Shm(u64),
}

impl MapObject for Obj {
    fn anonymous() -> Self {
        Obj { kind: ObjKind::Anon, shared: false }
    }
    fn is_anonymous(&self) -> bool {
        self.kind == ObjKind::Anon && !self.shared
    }
}

/// How an address space came to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The first process of the trace (or one seen without a parent).
    Initial,
    /// Forked from space `from`.
    Fork {
        /// The parent space.
        from: usize,
    },
    /// Created by a successful `execve` of `path` in a process of space `from`.
    Exec {
        /// The space the process left (`None` for the trace's first exec).
        from: Option<usize>,
        /// The program.
        path: String,
    },
}

/// One address space of the trace.
#[derive(Debug)]
pub struct Space {
    /// The map.
    pub map: VmMap<Obj>,
    /// Pages the trace determined (see the module invariants).
    pub known: RangeSet,
    /// The current program break, once a `brk` was seen.
    pub brk: Option<u64>,
    /// The first [`MAX_PIDS`] pids that used this space (a space whose threads come and go would
    /// otherwise keep every tid it ever had).
    pub pids: Vec<u32>,
    /// How many pids used this space (a tid reused in it counts again once `pids` is full).
    pub pid_count: u64,
    /// Pids still in it.
    pub members: usize,
    /// How it was created.
    pub origin: Origin,
    /// Line where it was created.
    pub born_line: u64,
    /// Memory calls applied to it.
    pub calls: u64,
    /// Most entries it had.
    pub peak_entries: usize,
    /// Most bytes it had mapped.
    pub peak_mapped: u64,
    /// Calls the map could not apply the way the trace says Linux did.
    pub inconsistencies: u64,
    /// The space ended and no comparison can ask for it, so its map and touched pages were dropped:
    /// `map` and `known` are empty, and [`Space::entries`], [`Space::mapped`] and [`Space::touched`]
    /// give what it ended with.
    pub freed: bool,
    /// Entries, mapped bytes and touched bytes when it was freed.
    ended_with: (usize, u64, u64),
}

impl Space {
    fn new(origin: Origin, line: u64) -> Space {
        Space {
            map: VmMap::new(0, MAX).expect("static bounds are valid"),
            known: RangeSet::new(),
            brk: None,
            pids: Vec::new(),
            pid_count: 0,
            members: 0,
            origin,
            born_line: line,
            calls: 0,
            peak_entries: 0,
            peak_mapped: 0,
            inconsistencies: 0,
            freed: false,
            ended_with: (0, 0, 0),
        }
    }

    /// Entries in its map (at its end, once freed).
    pub fn entries(&self) -> usize {
        if self.freed { self.ended_with.0 } else { self.map.len() }
    }

    /// Bytes mapped (at its end, once freed).
    pub fn mapped(&self) -> u64 {
        if self.freed { self.ended_with.1 } else { self.map.size() }
    }

    /// Bytes of the pages the trace determined (at its end, once freed).
    pub fn touched(&self) -> u64 {
        if self.freed { self.ended_with.2 } else { self.known.bytes() }
    }

    /// Drops the map and the touched pages, keeping their figures.
    fn free(&mut self) {
        if self.freed {
            return;
        }
        self.ended_with = (self.map.len(), self.map.size(), self.known.bytes());
        self.map = VmMap::new(0, MAX).expect("static bounds are valid");
        self.known = RangeSet::new();
        self.brk = None;
        self.freed = true;
    }

    /// The program the space runs, as far as the trace shows.
    pub fn program(&self) -> String {
        match &self.origin {
            Origin::Exec { path, .. } => path.clone(),
            Origin::Fork { from } => format!("(fork of #{from})"),
            Origin::Initial => "(initial)".into(),
        }
    }
}

/// The kinds of call the replay counts separately.
pub const KINDS: [&str; 27] = [
    "mmap",
    "munmap",
    "mprotect",
    "pkey_mprotect",
    "mremap",
    "brk",
    "madvise",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "mseal",
    "shmat",
    "shmdt",
    "shmget",
    "clone",
    "clone3",
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "msync",
    "mincore",
    "remap_file_pages",
];

fn kind_index(name: &str) -> Option<usize> {
    // The frequent ones first, without a scan.
    match name {
        "mmap" => Some(0),
        "munmap" => Some(1),
        "mprotect" => Some(2),
        "brk" => Some(5),
        "madvise" => Some(6),
        _ => KINDS.iter().position(|k| *k == name),
    }
}

/// A line that did not parse, or a call whose arguments did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// The line (cut to 300 characters).
    pub content: String,
    /// What was wrong.
    pub reason: &'static str,
}

/// A notable moment of the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Line number.
    pub line: u64,
    /// Calls applied before it.
    pub call: u64,
    /// What happened.
    pub what: String,
}

/// One timeline sample: totals over the live address spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Calls so far.
    pub call: u64,
    /// Line number.
    pub line: u64,
    /// Entries in all live spaces.
    pub entries: u64,
    /// Bytes mapped in all live spaces.
    pub mapped: u64,
}

const MAX_SAMPLES: usize = 2048;
const MAX_KEPT: usize = 200;
/// Pids a space lists ([`Space::pids`]).
pub const MAX_PIDS: usize = 64;
/// Distinct names [`Replayer::other`] counts separately (more than Linux has system calls); the rest
/// are counted under [`OTHER_NAMES`].
pub const MAX_OTHER: usize = 1024;
/// The [`Replayer::other`] key of the names past the first [`MAX_OTHER`].
pub const OTHER_NAMES: &str = "(other names)";
/// Bytes of a program path kept (`PATH_MAX`): an `execve` line may be as long as the line limit.
const MAX_PATH: usize = 4096;

/// The replay of one trace.
#[derive(Debug, Default)]
pub struct Replayer {
    /// Every address space, in creation order.
    pub spaces: Vec<Space>,
    pid_space: HashMap<u32, usize>,
    last_space_of_pid: HashMap<u32, usize>,
    /// Calls entered but not yet returned, per pid: name, arguments, line, and whether the call was
    /// already applied (a munmap that another thread's mmap shows must have completed).
    pending: HashMap<u32, (String, String, u64, bool)>,
    pending_clones: Vec<(u32, bool)>,
    shm_sizes: HashMap<u64, u64>,
    shared_seq: u64,
    /// The pid whose last space is kept for a comparison (`None`: the default target).
    keep: Option<u32>,
    /// Lines read.
    pub lines: u64,
    /// Completed calls (every syscall line, memory or not).
    pub calls: u64,
    /// Per kind in [`KINDS`]: (succeeded, failed).
    pub counts: [(u64, u64); KINDS.len()],
    /// Other syscalls by name (the first [`MAX_OTHER`] names; the rest under [`OTHER_NAMES`]).
    pub other: HashMap<String, u64>,
    /// The first lines that did not parse.
    pub bad: Vec<BadLine>,
    /// How many lines did not parse.
    pub bad_total: u64,
    /// The first inconsistencies (calls the map refused though Linux accepted them).
    pub warnings: Vec<(u64, String)>,
    /// How many inconsistencies.
    pub warnings_total: u64,
    /// Process events: forks, threads, execs, exits of address spaces.
    pub events: Vec<Event>,
    /// How many events.
    pub events_total: u64,
    /// Entries of all live spaces now.
    pub live_entries: u64,
    /// Bytes mapped in all live spaces now.
    pub live_mapped: u64,
    /// Most entries over all live spaces at once.
    pub peak_entries: u64,
    /// Most bytes over all live spaces at once.
    pub peak_mapped: u64,
    /// Timeline samples.
    pub samples: Vec<Sample>,
    stride: u64,
    /// The last space created by `execve`.
    pub last_exec: Option<usize>,
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn round_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE - 1)? & !(PAGE - 1))
}

/// `[addr, addr + round_up(len))`, or `None` when unaligned or overflowing.
fn page_range(addr: u64, len: u64) -> Option<Range<u64>> {
    if !addr.is_multiple_of(PAGE) {
        return None;
    }
    let end = addr.checked_add(round_up(len)?)?;
    (end <= MAX).then_some(addr..end)
}

fn prot_of(bits: u64) -> Prot {
    Prot::from_bits((bits & 7) as u8).unwrap_or(Prot::NONE)
}

impl Replayer {
    /// A replayer with no space yet. Besides the live spaces it keeps the one [`Replayer::target`]
    /// names without a pid.
    pub fn new() -> Self {
        Replayer { stride: 1, ..Default::default() }
    }

    /// A replayer that keeps, besides the live spaces, the one `target(pid)` will name at the end: with
    /// a pid, the last space that pid had (even after it exited); without, the default target.
    pub fn for_target(pid: Option<u32>) -> Self {
        Replayer { keep: pid, ..Replayer::new() }
    }

    /// Spaces whose map is held (not [`Space::freed`]): the live ones and the one kept for a
    /// comparison. This, not the number of spaces the trace had, is what the replay's memory follows.
    pub fn held(&self) -> usize {
        self.spaces.iter().filter(|s| !s.freed).count()
    }

    /// Whether space `s` must keep its map: it is live, or `target` may name it.
    fn needed(&self, s: usize) -> bool {
        if self.spaces[s].members > 0 {
            return true;
        }
        match self.keep {
            Some(p) => self.last_space_of_pid.get(&p) == Some(&s),
            None => self.last_exec == Some(s) || (self.last_exec.is_none() && self.spaces.len() == 1),
        }
    }

    /// Frees space `s` unless it is still needed (called wherever a space may stop being needed).
    fn release(&mut self, s: usize) {
        if s < self.spaces.len() && !self.spaces[s].freed && !self.needed(s) {
            self.spaces[s].free();
        }
    }

    /// Feeds one line (1-based `line_no`). A line that does not parse is recorded in
    /// [`Replayer::bad`] and returned as an error; the replay goes on.
    pub fn feed(&mut self, line_no: u64, text: &str) -> Result<(), BadLine> {
        self.lines = line_no.max(self.lines);
        let parsed = parse::parse_line(text).map_err(|r| self.bad_line(line_no, text, r))?;
        match parsed {
            Line::Ignored => Ok(()),
            Line::Exit { pid } => {
                self.exit(pid, line_no);
                Ok(())
            }
            Line::Superseded { pid, by } => {
                self.superseded(pid, by, line_no);
                Ok(())
            }
            Line::Unfinished { pid, name, args } => {
                if matches!(name, "clone" | "clone3" | "fork" | "vfork") {
                    self.space_of(pid, line_no);
                    let vm = name == "vfork" || parse::keyed(args, "flags").is_some_and(parse::has_clone_vm);
                    self.pending_clones.push((pid, vm));
                }
                self.pending.insert(pid, (name.to_string(), args.to_string(), line_no, false));
                Ok(())
            }
            Line::Resumed { pid, name, args, ret } => {
                let Some((pname, pargs, _, early)) = self.pending.remove(&pid) else {
                    // The first half is missing (the trace starts mid-call): count the call only.
                    self.count(name, ret);
                    return Ok(());
                };
                if pname != name {
                    return Err(self.bad_line(
                        line_no,
                        text,
                        "resumed call does not match the unfinished one",
                    ));
                }
                if early {
                    // Applied when another thread's call showed it had completed.
                    self.count(name, ret);
                    return Ok(());
                }
                let mut all = pargs;
                all.push_str(args);
                self.call(pid, name, &all, ret, line_no).map_err(|r| self.bad_line(line_no, text, r))
            }
            Line::Call { pid, name, args, ret } => {
                self.call(pid, name, args, ret, line_no).map_err(|r| self.bad_line(line_no, text, r))
            }
        }
    }

    fn bad_line(&mut self, line: u64, text: &str, reason: &'static str) -> BadLine {
        let b = BadLine { line, content: text.trim_end().chars().take(300).collect(), reason };
        self.bad_total += 1;
        if self.bad.len() < MAX_KEPT {
            self.bad.push(b.clone());
        }
        b
    }

    /// Ends the replay: calls still unfinished are reported.
    pub fn finish(&mut self) {
        let mut left: Vec<_> = self.pending.drain().collect();
        left.sort_by_key(|(_, (_, _, l, _))| *l);
        for (pid, (name, _, line, _)) in left {
            if !matches!(name.as_str(), "exit" | "exit_group" | "execve" | "execveat") {
                self.warn(line, format!("pid {pid}: {name} never completed (trace truncated?)"));
            }
        }
        self.sample(true);
    }

    fn warn(&mut self, line: u64, msg: String) {
        self.warnings_total += 1;
        if self.warnings.len() < MAX_KEPT {
            self.warnings.push((line, msg));
        }
    }

    fn event(&mut self, line: u64, what: String) {
        self.events_total += 1;
        if self.events.len() < MAX_KEPT * 5 {
            self.events.push(Event { line, call: self.calls, what });
        }
    }

    fn count(&mut self, name: &str, ret: Ret) {
        self.calls += 1;
        match kind_index(name) {
            Some(i) => {
                // exit and exit_group never return: `= ?` is their success, not a failure.
                if ret.ok().is_some() || (ret == Ret::Unknown && matches!(name, "exit" | "exit_group")) {
                    self.counts[i].0 += 1;
                } else {
                    self.counts[i].1 += 1;
                }
            }
            None => {
                if let Some(n) = self.other.get_mut(name) {
                    *n += 1;
                } else if self.other.len() < MAX_OTHER {
                    self.other.insert(name.to_string(), 1);
                } else {
                    *self.other.entry(OTHER_NAMES.to_string()).or_insert(0) += 1;
                }
            }
        }
    }

    /// The space of `pid`, creating it (a clone's child seen before its parent's return, or a new
    /// initial process) when unknown.
    fn space_of(&mut self, pid: u32, line: u64) -> usize {
        if let Some(&s) = self.pid_space.get(&pid) {
            return s;
        }
        if let Some(&(parent, vm)) = self.pending_clones.last()
            && parent != pid
            && let Some(&ps) = self.pid_space.get(&parent)
        {
            self.pending_clones.pop();
            return self.adopt(parent, ps, pid, vm, line);
        }
        let s = self.new_space(Origin::Initial, line);
        self.join(pid, s);
        s
    }

    fn new_space(&mut self, origin: Origin, line: u64) -> usize {
        self.spaces.push(Space::new(origin, line));
        if self.spaces.len() == 2 {
            // The first space is no longer the only one, so no longer the default target.
            self.release(0);
        }
        self.spaces.len() - 1
    }

    fn join(&mut self, pid: u32, s: usize) {
        let before = self.last_space_of_pid.insert(pid, s);
        match self.pid_space.insert(pid, s) {
            Some(old) if old == s => return,
            Some(old) => self.leave(old),
            None => {}
        }
        let sp = &mut self.spaces[s];
        sp.members += 1;
        if !sp.pids.contains(&pid) {
            sp.pid_count += 1;
            if sp.pids.len() < MAX_PIDS {
                sp.pids.push(pid);
            }
        }
        if sp.members == 1 {
            self.live_entries = self.live_entries.saturating_add(sp.map.len() as u64);
            self.live_mapped = self.live_mapped.saturating_add(sp.map.size());
        }
        // A kept pid's previous space is no longer the one to compare.
        if let Some(b) = before
            && b != s
        {
            self.release(b);
        }
    }

    fn leave(&mut self, s: usize) {
        let sp = &mut self.spaces[s];
        sp.members = sp.members.saturating_sub(1);
        if sp.members == 0 {
            self.live_entries = self.live_entries.saturating_sub(sp.map.len() as u64);
            self.live_mapped = self.live_mapped.saturating_sub(sp.map.size());
            self.release(s);
        }
    }

    /// `child` of `parent` (in space `ps`) starts: sharing the space, or with a fork of it.
    fn adopt(&mut self, parent: u32, ps: usize, child: u32, vm: bool, line: u64) -> usize {
        if vm {
            self.join(child, ps);
            self.event(line, format!("pid {parent} → thread/vfork {child} sharing #{ps}"));
            return ps;
        }
        let child_map = {
            let mut tmp = self.spaces[ps].map.clone();
            tmp.fork()
        };
        let s = self.new_space(Origin::Fork { from: ps }, line);
        let known = self.spaces[ps].known.clone();
        let brk = self.spaces[ps].brk;
        {
            let sp = &mut self.spaces[s];
            match child_map {
                Ok(m) => sp.map = m,
                Err(_) => sp.inconsistencies += 1,
            }
            sp.known = known;
            sp.brk = brk;
            sp.peak_entries = sp.map.len();
            sp.peak_mapped = sp.map.size();
        }
        self.join(child, s);
        self.event(line, format!("pid {parent} → fork {child}: #{s} from #{ps}"));
        s
    }

    fn exit(&mut self, pid: u32, line: u64) {
        self.pending.remove(&pid);
        // A clone it never returned from: left, it would make a later pid that reuses this number
        // the parent of whoever appears next.
        self.pending_clones.retain(|(p, _)| *p != pid);
        if let Some(s) = self.pid_space.remove(&pid) {
            self.leave(s);
            if self.spaces[s].members == 0 {
                self.event(line, format!("pid {pid} exits: #{s} ends"));
            }
        }
    }

    /// `+++ superseded by execve in pid BY +++` on `pid`, a thread group's leader: thread `by` exec'd
    /// and now carries the leader's pid, so the rest of its `execve` comes as `pid`'s.
    fn superseded(&mut self, pid: u32, by: u32, line: u64) {
        if pid == by {
            return;
        }
        let moved = self.pending.remove(&by).filter(|(n, ..)| n == "execve" || n == "execveat");
        let by_space = self.pid_space.get(&by).copied();
        match moved {
            // The execve is still pending: it completes as `pid`'s and moves `pid` to the new space.
            Some(call) => {
                self.pending.insert(pid, call);
            }
            // The execve was printed whole, as `by`'s: `pid` is now that process.
            None => {
                self.pending.remove(&pid);
                if let Some(s) = by_space {
                    self.join(pid, s);
                }
            }
        }
        self.exit(by, line);
    }

    fn sample(&mut self, force: bool) {
        if !force && !self.calls.is_multiple_of(self.stride) {
            return;
        }
        if self.samples.len() >= MAX_SAMPLES {
            let kept: Vec<Sample> = self.samples.iter().step_by(2).copied().collect();
            self.samples = kept;
            self.stride *= 2;
        }
        self.samples.push(Sample {
            call: self.calls,
            line: self.lines,
            entries: self.live_entries,
            mapped: self.live_mapped,
        });
    }

    /// Applies one completed call.
    fn call(&mut self, pid: u32, name: &str, args: &str, ret: Ret, line: u64) -> Result<(), &'static str> {
        // strace before 6.10 prints mseal (462 on x86-64 and the generic table) by number.
        let name = if name == "syscall_0x1ce" { "mseal" } else { name };
        self.count(name, ret);
        let Some(k) = kind_index(name) else { return Ok(()) };
        match KINDS[k] {
            "clone" | "clone3" | "fork" | "vfork" => {
                // The matching pending entry (if this call was split) is done.
                if let Some(i) = self.pending_clones.iter().rposition(|(p, _)| *p == pid) {
                    self.pending_clones.remove(i);
                }
                let s = self.space_of(pid, line);
                if let Ret::Ok(child) = ret
                    && child > 0
                    && let Ok(child) = u32::try_from(child)
                    && !self.pid_space.contains_key(&child)
                {
                    let vm = name == "vfork" || parse::keyed(args, "flags").is_some_and(parse::has_clone_vm);
                    self.adopt(pid, s, child, vm, line);
                }
                return Ok(());
            }
            "execve" | "execveat" => {
                if ret.ok().is_none() {
                    return Ok(());
                }
                let old = if self.pid_space.contains_key(&pid) || !self.pending_clones.is_empty() {
                    Some(self.space_of(pid, line))
                } else {
                    None
                };
                let mut a = [""; 2];
                parse::split_args(args, &mut a);
                let p = if name == "execveat" { a[1] } else { a[0] };
                let path = cut(p.trim().trim_matches('"'), MAX_PATH).to_string();
                let s = self.new_space(Origin::Exec { from: old, path: path.clone() }, line);
                // The default target moves before `pid` leaves its old space, so that space is freed.
                let before = self.last_exec.replace(s);
                self.join(pid, s);
                if let Some(b) = before {
                    self.release(b);
                }
                self.event(line, format!("pid {pid} execs {path}: #{s}"));
                return Ok(());
            }
            "shmget" => {
                let mut a = [""; 3];
                if parse::split_args(args, &mut a) >= 2
                    && let (Some(id), Some(size)) = (ret.ok(), parse::num(a[1]))
                {
                    self.shm_sizes.insert(id, size);
                }
                return Ok(());
            }
            _ => {}
        }
        let s = self.space_of(pid, line);
        let Some(value) = ret.ok() else { return Ok(()) };
        let (before_len, before_size) = (self.spaces[s].map.len() as u64, self.spaces[s].map.size());
        let outcome = self.memory(s, KINDS[k], args, value);
        let sp = &mut self.spaces[s];
        sp.calls += 1;
        let (len, size) = (sp.map.len(), sp.map.size());
        sp.peak_entries = sp.peak_entries.max(len);
        sp.peak_mapped = sp.peak_mapped.max(size);
        if sp.members > 0 {
            self.live_entries = self.live_entries.saturating_add(len as u64).saturating_sub(before_len);
            self.live_mapped = self.live_mapped.saturating_add(size).saturating_sub(before_size);
        }
        self.peak_entries = self.peak_entries.max(self.live_entries);
        self.peak_mapped = self.peak_mapped.max(self.live_mapped);
        self.sample(false);
        match outcome {
            Ok(()) => Ok(()),
            Err(Problem::Args(r)) => Err(r),
            Err(Problem::Map(what, e)) => {
                self.spaces[s].inconsistencies += 1;
                self.warn(line, format!("pid {pid}: {name}: {what}: the map says {e}"));
                Ok(())
            }
        }
    }

    /// Applies now every munmap pending in another thread of space `s` that overlaps `range`, and marks
    /// it applied so its completion line does not apply it again.
    fn complete_pending_unmaps(&mut self, s: usize, range: &Range<u64>) {
        let mut todo = Vec::new();
        for (pid, (name, args, _, early)) in &self.pending {
            if *early || name != "munmap" || self.pid_space.get(pid) != Some(&s) {
                continue;
            }
            let mut a = [""; 2];
            if parse::split_args(args, &mut a) >= 2
                && let (Some(addr), Some(len)) = (parse::num(a[0]), parse::num(a[1]))
                && let Some(r) = page_range(addr, len)
                && r.start < range.end
                && range.start < r.end
            {
                todo.push((*pid, r));
            }
        }
        for (pid, r) in todo {
            if let Some(p) = self.pending.get_mut(&pid) {
                p.3 = true;
            }
            let sp = &mut self.spaces[s];
            sp.known.add(r.clone());
            let _ = sp.map.remove(r);
            sp.map.take_effects();
        }
    }

    fn file_key(fd: i64, path: Option<&str>) -> u64 {
        // A fixed-key hasher: the same file gets the same key throughout the replay.
        let mut h = DefaultHasher::new();
        match path {
            Some(p) => p.hash(&mut h),
            None => fd.hash(&mut h),
        }
        path.is_some().hash(&mut h);
        h.finish()
    }

    /// Applies a successful memory call to space `s`.
    fn memory(&mut self, s: usize, name: &str, args: &str, ret: u64) -> Result<(), Problem> {
        let mut a = [""; 6];
        let n = parse::split_args(args, &mut a);
        let need = |k: usize| if n >= k { Ok(()) } else { Err(Problem::Args("too few arguments")) };
        let number = |t: &str| parse::num(t).ok_or(Problem::Args("bad number"));
        match name {
            "mmap" => {
                need(6)?;
                let len = number(a[1])?;
                let prot = parse::flags(a[2], parse::PROT).ok_or(Problem::Args("bad protection"))?;
                let fl = parse::flags(a[3], parse::MAP).ok_or(Problem::Args("bad mmap flags"))?;
                let (fd, path) = parse::fd_arg(a[4]).ok_or(Problem::Args("bad descriptor"))?;
                let off = number(a[5])?;
                let range = page_range(ret, len).ok_or(Problem::Args("bad mmap range"))?;
                if range.is_empty() {
                    return Err(Problem::Args("zero-length mmap succeeded"));
                }
                let shared = fl & 3 == parse::MAP_SHARED || fl & 3 == 3;
                let kind = if fl & parse::MAP_ANONYMOUS != 0 {
                    if shared {
                        self.shared_seq += 1;
                        ObjKind::SharedAnon(self.shared_seq)
                    } else {
                        ObjKind::Anon
                    }
                } else {
                    ObjKind::File(Self::file_key(fd, path))
                };
                let obj = Obj { kind, shared };
                let offset = if obj.is_anonymous() { 0 } else { off & !(PAGE - 1) };
                let mut spec = MapSpec::new(prot_of(prot), Prot::ALL)
                    .with_inherit(if shared { Inherit::Share } else { Inherit::Copy })
                    .with_object(obj, offset);
                if fl & parse::MAP_GROWSDOWN != 0 {
                    spec = spec.with_flags(EntryFlags::STACK);
                }
                if fl & 0x10 == 0 {
                    // The kernel chose a free range: a munmap of it still pending in another thread
                    // had completed (strace printed the completions out of order).
                    self.complete_pending_unmaps(s, &range);
                }
                let sp = &mut self.spaces[s];
                sp.known.add(range.clone());
                sp.replace(range.clone(), spec, fl & parse::MAP_LOCKED != 0)
            }
            "munmap" => {
                need(2)?;
                let range = page_range(number(a[0])?, number(a[1])?).ok_or(Problem::Args("bad range"))?;
                let sp = &mut self.spaces[s];
                sp.known.add(range.clone());
                sp.map.remove(range).map_err(|e| Problem::Map("unmap", e))
            }
            "mprotect" | "pkey_mprotect" => {
                need(3)?;
                let mut range = page_range(number(a[0])?, number(a[1])?).ok_or(Problem::Args("bad range"))?;
                let prot = parse::flags(a[2], parse::PROT).ok_or(Problem::Args("bad protection"))?;
                let sp = &mut self.spaces[s];
                if prot & parse::PROT_GROWSDOWN != 0
                    && let Some(e) = sp.map.lookup_entry(range.start)
                {
                    range.start = e.start;
                }
                let p = prot_of(prot);
                // Already so (one entry, same protection): nothing to change.
                if let Some(e) = sp.map.lookup_entry(range.start)
                    && e.end >= range.end
                    && e.prot() == p
                {
                    return Ok(());
                }
                sp.on_mapped(range, |m, r| m.protect(r, p)).map_err(|e| Problem::Map("protect", e))
            }
            "madvise" => {
                need(3)?;
                let range = page_range(number(a[0])?, number(a[1])?).ok_or(Problem::Args("bad range"))?;
                let adv = parse::flags(a[2], parse::MADV).ok_or(Problem::Args("bad advice"))?;
                self.spaces[s].madvise(range, adv).map_err(|e| Problem::Map("madvise", e))
            }
            "mlock" | "mlock2" | "munlock" => {
                need(2)?;
                // mlock rounds the start down and the end up.
                let start = number(a[0])?;
                let len = number(a[1])?;
                let base = start & !(PAGE - 1);
                let range =
                    page_range(base, len.saturating_add(start - base)).ok_or(Problem::Args("bad range"))?;
                let sp = &mut self.spaces[s];
                if name == "munlock" {
                    sp.on_mapped(range, |m, r| m.unwire(r)).map_err(|e| Problem::Map("unwire", e))
                } else {
                    sp.on_mapped(range, |m, r| m.wire(r)).map_err(|e| Problem::Map("wire", e))
                }
            }
            "mlockall" => {
                need(1)?;
                let fl = parse::flags(a[0], parse::MCL).ok_or(Problem::Args("bad mlockall flags"))?;
                let sp = &mut self.spaces[s];
                sp.map.set_wire_future(fl & 2 != 0);
                if fl & 1 != 0 {
                    sp.map.wire_all().map_err(|e| Problem::Map("wire all", e))?;
                }
                Ok(())
            }
            "munlockall" => self.spaces[s].map.unwire_all().map_err(|e| Problem::Map("unwire all", e)),
            "mseal" => {
                need(2)?;
                let range = page_range(number(a[0])?, number(a[1])?).ok_or(Problem::Args("bad range"))?;
                self.spaces[s].on_mapped(range, |m, r| m.seal(r)).map_err(|e| Problem::Map("seal", e))
            }
            "brk" => {
                let sp = &mut self.spaces[s];
                let new = ret;
                let Some(old) = sp.brk else {
                    sp.brk = Some(new);
                    return Ok(());
                };
                sp.brk = Some(new);
                let (o, n) = (round_up(old).unwrap_or(old), round_up(new).unwrap_or(new));
                if n > o {
                    sp.known.add(o..n);
                    let spec = MapSpec::new(Prot::RW, Prot::ALL);
                    sp.replace(o..n, spec, false)
                } else if n < o {
                    sp.known.add(n..o);
                    sp.map.remove(n..o).map_err(|e| Problem::Map("shrink the heap", e))
                } else {
                    Ok(())
                }
            }
            "mremap" => {
                need(3)?;
                let old = number(a[0])?;
                let old_size = round_up(number(a[1])?).ok_or(Problem::Args("bad size"))?;
                let new_size = round_up(number(a[2])?).ok_or(Problem::Args("bad size"))?;
                let fl = if n >= 4 {
                    parse::flags(a[3], parse::MREMAP).ok_or(Problem::Args("bad mremap flags"))?
                } else {
                    0
                };
                if ret != old
                    && fl & 2 == 0
                    && let Some(r) = page_range(ret, new_size)
                {
                    self.complete_pending_unmaps(s, &r);
                }
                self.spaces[s].mremap(old, old_size, new_size, fl, ret)
            }
            "shmat" => {
                need(3)?;
                let id = number(a[0])?;
                let fl = parse::flags(a[2], parse::SHM).ok_or(Problem::Args("bad shmat flags"))?;
                let Some(&size) = self.shm_sizes.get(&id) else {
                    return Err(Problem::Map(
                        "shmat of a segment whose shmget is not in the trace",
                        VmError::InvalidArgument,
                    ));
                };
                let range = page_range(ret, size).ok_or(Problem::Args("bad range"))?;
                let mut p = Prot::READ;
                if fl & 0o10000 == 0 {
                    p |= Prot::WRITE;
                }
                if fl & 0o100000 != 0 {
                    p |= Prot::EXECUTE;
                }
                let spec = MapSpec::new(p, Prot::ALL)
                    .with_inherit(Inherit::Share)
                    .with_object(Obj { kind: ObjKind::Shm(id), shared: true }, 0);
                let sp = &mut self.spaces[s];
                sp.known.add(range.clone());
                sp.replace(range, spec, false)
            }
            "shmdt" => {
                need(1)?;
                let addr = number(a[0])?;
                let sp = &mut self.spaces[s];
                let Some(e) = sp.map.lookup_entry(addr) else { return Ok(()) };
                let obj = *e.object();
                let ObjKind::Shm(id) = obj.kind else { return Ok(()) };
                let mut end = e.end;
                if let Some(&size) = self.shm_sizes.get(&id) {
                    end = end.max(addr.saturating_add(round_up(size).unwrap_or(0)));
                }
                let mut at = addr;
                let mut pieces = Vec::new();
                while at < end {
                    match sp.map.lookup_entry(at) {
                        Some(e) if *e.object() == obj => {
                            pieces.push(at..e.end);
                            at = e.end;
                        }
                        _ => break,
                    }
                }
                for r in pieces {
                    sp.known.add(r.clone());
                    sp.map.remove(r).map_err(|e| Problem::Map("shmdt", e))?;
                }
                Ok(())
            }
            _ => Ok(()), // exit, msync, mincore, remap_file_pages: no change to the map
        }
    }

    /// The space to compare for `pid` (its current space, or the last one it had), else the last space
    /// created by `execve`, else the only space. A space that ended may have been [`Space::freed`],
    /// unless this replayer was made [`Replayer::for_target`] the same `pid`.
    pub fn target(&self, pid: Option<u32>) -> Result<usize, String> {
        if let Some(p) = pid {
            return self
                .pid_space
                .get(&p)
                .or_else(|| self.last_space_of_pid.get(&p))
                .copied()
                .ok_or_else(|| format!("pid {p} does not appear in the trace"));
        }
        if let Some(s) = self.last_exec {
            return Ok(s);
        }
        match self.spaces.len() {
            0 => Err("the trace has no address space (no memory or process call)".into()),
            1 => Ok(0),
            n => Err(format!("the trace has {n} address spaces and no execve: choose one with --pid")),
        }
    }
}

/// Why a call could not be applied.
#[derive(Debug)]
enum Problem {
    /// Its arguments did not parse: a bad line.
    Args(&'static str),
    /// The map refused what Linux accepted: an inconsistency.
    Map(&'static str, VmError),
}

/// A piece of an entry: its range (clipped) and the spec that recreates it.
struct Piece {
    range: Range<u64>,
    spec: MapSpec<Obj>,
    wired: bool,
}

impl Space {
    /// Maps `range` with `spec`, replacing what was there (`MAP_FIXED`).
    fn replace(&mut self, range: Range<u64>, spec: MapSpec<Obj>, wire: bool) -> Result<(), Problem> {
        self.map.remove(range.clone()).map_err(|e| Problem::Map("unmap before map", e))?;
        self.map.insert(range.clone(), spec).map_err(|e| Problem::Map("map", e))?;
        if wire {
            self.map.wire(range).map_err(|e| Problem::Map("wire", e))?;
        }
        self.map.take_effects();
        Ok(())
    }

    /// Runs `op` over `range`, or, when the range has holes (pages mapped before the trace), over each
    /// run of mapped pages in it.
    fn on_mapped(
        &mut self,
        range: Range<u64>,
        mut op: impl FnMut(&mut VmMap<Obj>, Range<u64>) -> Result<(), VmError>,
    ) -> Result<(), VmError> {
        if range.is_empty() {
            return Ok(());
        }
        let r = match op(&mut self.map, range.clone()) {
            Err(VmError::InvalidAddress) => {
                let mut runs: Vec<Range<u64>> = Vec::new();
                for e in self.map.entries() {
                    if e.end <= range.start {
                        continue;
                    }
                    if e.start >= range.end {
                        break;
                    }
                    let piece = e.start.max(range.start)..e.end.min(range.end);
                    match runs.last_mut() {
                        Some(last) if last.end == piece.start => last.end = piece.end,
                        _ => runs.push(piece),
                    }
                }
                runs.into_iter().try_for_each(|r| op(&mut self.map, r))
            }
            other => other,
        };
        self.map.take_effects();
        r
    }

    /// The entries over `range`, clipped, with the specs that recreate them.
    fn pieces(&self, range: Range<u64>) -> Vec<Piece> {
        let mut out = Vec::new();
        for e in self.map.entries() {
            if e.end <= range.start {
                continue;
            }
            if e.start >= range.end {
                break;
            }
            let start = e.start.max(range.start);
            let obj = *e.object();
            let offset = if obj.is_anonymous() { 0 } else { e.offset().wrapping_add(start - e.start) };
            let mut flags = e.flags();
            flags.set(EntryFlags::COW | EntryFlags::NEEDS_COPY, false);
            out.push(Piece {
                range: start..e.end.min(range.end),
                spec: MapSpec {
                    prot: e.prot(),
                    max_prot: e.max_prot(),
                    inherit: e.inherit(),
                    behavior: e.behavior(),
                    flags,
                    object: obj,
                    offset,
                },
                wired: e.user_wired(),
            });
        }
        out
    }

    fn madvise(&mut self, range: Range<u64>, adv: u64) -> Result<(), VmError> {
        let simple = match adv {
            0 => Some(Advice::Normal),
            1 => Some(Advice::Random),
            2 => Some(Advice::Sequential),
            16 => Some(Advice::NoCore),
            17 => Some(Advice::Core),
            _ => None,
        };
        if let Some(a) = simple {
            if let Some(e) = self.map.lookup_entry(range.start)
                && e.end >= range.end
            {
                let same = match a {
                    Advice::Normal => e.behavior() == Behavior::Normal,
                    Advice::Random => e.behavior() == Behavior::Random,
                    Advice::Sequential => e.behavior() == Behavior::Sequential,
                    Advice::NoCore => e.flags().contains(EntryFlags::NOCOREDUMP),
                    _ => !e.flags().contains(EntryFlags::NOCOREDUMP),
                };
                if same {
                    return Ok(());
                }
            }
            return self.on_mapped(range, |m, r| m.madvise(r, a));
        }
        match adv {
            10 => self.on_mapped(range, |m, r| m.inherit(r, Inherit::None)),
            11 | 19 => {
                // DOFORK clears "none", KEEPONFORK clears "zero": back to share or copy by object.
                let from = if adv == 11 { Inherit::None } else { Inherit::Zero };
                let targets: Vec<(Range<u64>, Inherit)> = self
                    .pieces(range)
                    .into_iter()
                    .filter(|p| p.spec.inherit == from)
                    .map(|p| (p.range, if p.spec.object.shared { Inherit::Share } else { Inherit::Copy }))
                    .collect();
                let r = targets.into_iter().try_for_each(|(r, i)| self.map.inherit(r, i));
                self.map.take_effects();
                r
            }
            18 => {
                // WIPEONFORK: "none" (DONTFORK) still wins at fork, as in Linux.
                let targets: Vec<Range<u64>> = self
                    .pieces(range)
                    .into_iter()
                    .filter(|p| p.spec.inherit != Inherit::None)
                    .map(|p| p.range)
                    .collect();
                let r = targets.into_iter().try_for_each(|r| self.map.inherit(r, Inherit::Zero));
                self.map.take_effects();
                r
            }
            102 => self.on_mapped(range, |m, r| m.guard(r)),
            103 => self.on_mapped(range, |m, r| m.unguard(r)),
            _ => Ok(()),
        }
    }

    fn mremap(&mut self, old: u64, old_size: u64, new_size: u64, fl: u64, ret: u64) -> Result<(), Problem> {
        let bad = Problem::Args("bad mremap range");
        let old_range = page_range(old, old_size).ok_or(Problem::Args("bad mremap range"))?;
        if old_size == 0 {
            // Duplicate a shared mapping at `ret`.
            let new_range = page_range(ret, new_size).ok_or(bad)?;
            let Some(e) = self.map.lookup_entry(old) else {
                self.known.remove(new_range.clone());
                return Ok(());
            };
            let mut p = self.pieces(old..e.end).into_iter().next().ok_or(Problem::Args("empty"))?;
            p.spec.flags.set(EntryFlags::SEALED, false);
            self.known.add(new_range.clone());
            return self.replace(new_range, p.spec, false);
        }
        if ret == old {
            self.known.add(old_range.clone());
            if new_size < old_size {
                self.known.add(old + new_size..old + old_size);
                return self
                    .map
                    .remove(old + new_size..old + old_size)
                    .map_err(|e| Problem::Map("shrink", e));
            }
            if new_size > old_size {
                let grow = page_range(old + old_size, new_size - old_size).ok_or(bad)?;
                self.known.add(grow.clone());
                return self.extend(old_range, grow);
            }
            return Ok(());
        }
        // Moved: the first min(old, new) bytes go to `ret`, the rest of the old range goes away.
        let new_range = page_range(ret, new_size).ok_or(bad)?;
        let keep = old_size.min(new_size);
        let pieces = self.pieces(old..old + keep);
        let covered: u64 = pieces.iter().map(|p| p.range.end - p.range.start).sum();
        if fl & 4 == 0 {
            self.known.add(old_range.clone());
            self.map.remove(old_range.clone()).map_err(|e| Problem::Map("unmap the old range", e))?;
        }
        self.map.remove(new_range.clone()).map_err(|e| Problem::Map("unmap the new range", e))?;
        self.known.add(new_range.clone());
        let delta = ret.wrapping_sub(old);
        for p in pieces {
            let r = p.range.start.wrapping_add(delta)..p.range.end.wrapping_add(delta);
            self.replace(r, p.spec, p.wired)?;
        }
        if covered < keep {
            // Part of the source was never seen (mapped before the trace): its copy is unknown too.
            let mut at = ret;
            let holes: Vec<Range<u64>> = {
                let mut v = Vec::new();
                for e in self.map.entries() {
                    if e.end <= ret {
                        continue;
                    }
                    if e.start >= ret + keep {
                        break;
                    }
                    if e.start > at {
                        v.push(at..e.start);
                    }
                    at = e.end;
                }
                if at < ret + keep {
                    v.push(at..ret + keep);
                }
                v
            };
            for h in holes {
                self.known.remove(h);
            }
        }
        if new_size > old_size {
            let grow = ret + old_size..ret + new_size;
            return self.extend(ret..ret + old_size, grow);
        }
        Ok(())
    }

    /// Grows the mapping that ends at `base.end` over `grow` with its own attributes.
    fn extend(&mut self, base: Range<u64>, grow: Range<u64>) -> Result<(), Problem> {
        let last = base.end.saturating_sub(PAGE);
        match self.pieces(last..base.end).into_iter().next() {
            Some(p) => {
                let mut spec = p.spec;
                if !spec.object.is_anonymous() {
                    spec.offset = spec.offset.wrapping_add(PAGE);
                }
                self.replace(grow, spec, p.wired)
            }
            None => {
                self.known.remove(grow);
                Ok(())
            }
        }
    }
}

/// Whether `b` is a behaviour other than normal (for reports).
pub fn behavior_name(b: Behavior) -> &'static str {
    match b {
        Behavior::Normal => "-",
        Behavior::Sequential => "sr",
        Behavior::Random => "rr",
    }
}
