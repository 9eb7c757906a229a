//! The replay of an strace log: its processes and address spaces, one [`Mm`] per address space, each
//! successful memory call applied to it as Linux applies it (`apply.rs`).
//!
//! Invariants:
//! - Only successful calls change a memory (the trace shows the real result); `apply.rs` says how.
//! - `known` holds the pages whose state the trace determines: those covered by a call that creates or
//!   destroys mappings (mmap, munmap, mremap, brk, shmat, shmdt). Comparisons with a snapshot look only
//!   there.
//! - Threads (`CLONE_VM`, `vfork`) share one space; a fork gets [`Mm::fork`] of its parent's memory; a
//!   successful `execve` gives its process a new, empty space.
//! - Nothing here panics on input: every number is checked, every range is checked for overflow, and a
//!   call `Mm` answers otherwise than the kernel is counted as an inconsistency, not an error.
//! - Memory follows the live address spaces, not the trace's history: a space whose last pid left (exit,
//!   exec) drops its map and touched pages at once, keeping only a fixed-size summary for the report —
//!   unless it is the one a comparison will ask for ([`Replayer::for_target`]). Everything else kept per
//!   pid, path or name is either removed when its owner goes or capped.

use std::collections::HashMap;
use std::ops::Range;

use vmspace_linux::abi::{MADV_NAMES, MCL_NAMES, MLOCK_NAMES, MREMAP_NAMES, PROT_NAMES, SHM_NAMES};
use vmspace_linux::mm::{FileRef, Mm};

use super::apply::{self, Problem, page_range};
use super::parse::{self, Line, Ret};
use super::rangeset::RangeSet;

const PAGE: u64 = 4096;

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
    /// Its memory, as far as the trace shows it.
    pub map: Mm,
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
            map: apply::empty(),
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
        self.map = apply::empty();
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
    /// Children adopted before their parent's clone returned (seen first by an event of their own):
    /// the clone's return must not adopt them again, even after they have exited or exec'd (on a
    /// loaded machine strace may print the parent's return after the whole of a short child). Child
    /// to parent; forgotten when the parent exits, so a reused pid is not taken for one of them.
    adopted_early: HashMap<u32, u32>,
    /// System V segments by id, from their `shmget`.
    shm: HashMap<u64, FileRef>,
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
            self.adopted_early.insert(pid, parent);
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
            self.live_entries = self.live_entries.saturating_add(sp.map.map_count());
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
            self.live_entries = self.live_entries.saturating_sub(sp.map.map_count());
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
        let child_map = self.spaces[ps].map.fork();
        let s = self.new_space(Origin::Fork { from: ps }, line);
        let known = self.spaces[ps].known.clone();
        let brk = self.spaces[ps].brk;
        {
            let sp = &mut self.spaces[s];
            sp.map = child_map;
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
        self.adopted_early.retain(|_, parent| *parent != pid);
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
                    && self.adopted_early.remove(&child).is_none()
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
                    let key = if a[0].trim() == "IPC_PRIVATE" { Some(0) } else { parse::num(a[0]) };
                    self.shm.insert(id, FileRef::sysv_segment(id, key.unwrap_or(0), size));
                }
                return Ok(());
            }
            _ => {}
        }
        let s = self.space_of(pid, line);
        let Some(value) = ret.ok() else { return Ok(()) };
        let (before_len, before_size) = (self.spaces[s].map.map_count(), self.spaces[s].map.size());
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
            Err(Problem::Model(what, e)) => {
                self.spaces[s].inconsistencies += 1;
                self.warn(line, format!("pid {pid}: {name}: {what}: {e}"));
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
            let _ = sp.map.munmap(r.start, r.end - r.start);
        }
    }

    /// Applies a successful memory call to space `s`: the arguments parsed, the step `apply.rs`.
    fn memory(&mut self, s: usize, name: &str, args: &str, ret: u64) -> Result<(), Problem> {
        let mut a = [""; 6];
        let n = parse::split_args(args, &mut a);
        let need = |k: usize| if n >= k { Ok(()) } else { Err(Problem::Args("too few arguments")) };
        let number = |t: &str| parse::num(t).ok_or(Problem::Args("bad number"));
        let range = |a: &[&str; 6]| -> Result<Range<u64>, Problem> {
            page_range(number(a[0])?, number(a[1])?).ok_or(Problem::Args("bad range"))
        };
        match name {
            "mmap" => {
                need(6)?;
                let flags = parse::flags(a[3], vmspace_linux::abi::MAP_NAMES).unwrap_or(0);
                if flags & vmspace_linux::abi::MAP_FIXED == 0 {
                    // The kernel chose a free range: a munmap of it still pending in another thread
                    // had completed (strace printed the completions out of order).
                    if let Some(r) = parse::num(a[1]).and_then(|len| page_range(ret, len)) {
                        self.complete_pending_unmaps(s, &r);
                    }
                }
                self.spaces[s].mmap(&a, ret)
            }
            "munmap" => {
                need(2)?;
                self.spaces[s].munmap(range(&a)?)
            }
            "mprotect" | "pkey_mprotect" => {
                need(3)?;
                let prot = parse::flags(a[2], PROT_NAMES).ok_or(Problem::Args("bad protection"))?;
                self.spaces[s].mprotect(range(&a)?, prot)
            }
            "madvise" => {
                need(3)?;
                let adv = parse::flags(a[2], MADV_NAMES).ok_or(Problem::Args("bad advice"))?;
                self.spaces[s].madvise(range(&a)?, adv)
            }
            "mlock" | "mlock2" | "munlock" => {
                need(2)?;
                // mlock rounds the start down and the end up.
                let start = number(a[0])?;
                let len = number(a[1])?;
                let base = start & !(PAGE - 1);
                let r =
                    page_range(base, len.saturating_add(start - base)).ok_or(Problem::Args("bad range"))?;
                let flags = if name == "mlock2" && n >= 3 {
                    parse::flags(a[2], MLOCK_NAMES).ok_or(Problem::Args("bad mlock2 flags"))?
                } else {
                    0
                };
                self.spaces[s].mlock(name, r, flags)
            }
            "mlockall" => {
                need(1)?;
                let fl = parse::flags(a[0], MCL_NAMES).ok_or(Problem::Args("bad mlockall flags"))?;
                let got = self.spaces[s].map.mlockall(fl);
                got.map(drop).map_err(|e| Problem::Model("lock all", e.to_string()))
            }
            "munlockall" => {
                let got = self.spaces[s].map.munlockall();
                got.map(drop).map_err(|e| Problem::Model("unlock all", e.to_string()))
            }
            "mseal" => {
                need(2)?;
                self.spaces[s].mseal(range(&a)?)
            }
            "brk" => self.spaces[s].brk(ret),
            "mremap" => {
                need(3)?;
                let old = number(a[0])?;
                let (old_size, new_size) = (number(a[1])?, number(a[2])?);
                let fl = if n >= 4 {
                    parse::flags(a[3], MREMAP_NAMES).ok_or(Problem::Args("bad mremap flags"))?
                } else {
                    0
                };
                if ret != old
                    && fl & vmspace_linux::abi::MREMAP_FIXED == 0
                    && let Some(r) = page_range(ret, new_size)
                {
                    self.complete_pending_unmaps(s, &r);
                }
                self.spaces[s].mremap(old, old_size, new_size, fl, ret)
            }
            "shmat" => {
                need(3)?;
                let id = number(a[0])?;
                let fl = parse::flags(a[2], SHM_NAMES).ok_or(Problem::Args("bad shmat flags"))?;
                let Some(seg) = self.shm.get(&id).cloned() else {
                    return Err(Problem::Model(
                        "attach",
                        "a segment whose shmget is not in the trace".into(),
                    ));
                };
                self.spaces[s].shmat(&seg, fl, ret)
            }
            "shmdt" => {
                need(1)?;
                self.spaces[s].shmdt(number(a[0])?)
            }
            _ => Ok(()), // exit, msync, mincore, remap_file_pages: no change to the memory
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
