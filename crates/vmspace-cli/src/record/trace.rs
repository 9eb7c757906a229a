//! The recorded trace: one JSON object per line, each an [`Event`]. Numbers are JSON numbers;
//! addresses and lengths are the raw 64-bit arguments; a result is the raw return value (negative
//! errno on failure, as the kernel returns it).
//!
//! A trace starts with one `start` line; then, per process, an `exec` line (its maps and the state
//! placement depends on), its calls, the `fork`s that make new processes, and an `exit` line with its
//! maps as the kernel had them before it exited.

use serde::{Deserialize, Serialize};

/// The trace format's version (the `start` line's `version`).
pub const VERSION: u32 = 1;

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first line: what was recorded, on which kernel.
    Start {
        /// [`VERSION`].
        version: u32,
        /// The command line recorded.
        command: Vec<String>,
        /// `uname -r` of the recording machine.
        kernel: String,
        /// The machine (`uname -m`).
        machine: String,
        /// The page size in bytes.
        page_size: u64,
        /// `vm.max_map_count`.
        max_map_count: u64,
        /// `vm.mmap_min_addr`.
        mmap_min_addr: u64,
        /// `vm.overcommit_memory`.
        overcommit_memory: u64,
        /// `/sys/kernel/mm/transparent_hugepage/enabled`'s chosen word (`always`, `madvise`, `never`).
        thp: String,
    },
    /// A process's new address space after `execve`.
    Exec(Box<Exec>),
    /// One memory or process call of thread `tid` of process `pid`, with its result.
    Call {
        /// Process (thread-group) id.
        pid: i32,
        /// Thread id.
        tid: i32,
        /// The call's name (`mmap`, `munmap`, …).
        name: String,
        /// The six raw arguments (unused ones as the registers held them).
        args: [u64; 6],
        /// The raw result: the value, or `-errno`.
        ret: i64,
        /// For `mmap` of a file: what the descriptor named when the call was made; for `shmat`: the
        /// segment, as the file it maps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<FileInfo>,
        /// When the call entered and when it returned, on one clock of the recorder's stops. Lines come
        /// in the order calls returned; calls of threads of one process whose `[entered, exited]`
        /// overlap ran at once, and the kernel may have served them in either order.
        #[serde(default)]
        entered: u64,
        /// See `entered`.
        #[serde(default)]
        exited: u64,
    },
    /// Thread `tid` of `pid` made a new thread or process `child` (`fork`, `vfork`, `clone`, `clone3`).
    Fork {
        /// Process id of the parent.
        pid: i32,
        /// The parent thread.
        tid: i32,
        /// The new thread's id.
        child: i32,
        /// The `clone` flags (`SIGCHLD` for `fork`, `CLONE_VM | CLONE_VFORK | SIGCHLD` for `vfork`).
        flags: u64,
    },
    /// Process `pid` is about to end (its last thread, or `exit_group`): its maps then.
    Exit {
        /// Process id.
        pid: i32,
        /// The thread that reported it.
        tid: i32,
        /// `/proc/PID/maps` just before the exit.
        maps: String,
    },
    /// The recorder's last line: how the command ended.
    End {
        /// The first process's exit status, or 128 + signal.
        status: i32,
        /// Calls recorded.
        calls: u64,
    },
}

/// A `call` line's fields, borrowed from the line: the fast way to read the most common line.
#[derive(Debug, Deserialize)]
pub struct CallLine<'a> {
    /// See [`Event::Call`].
    pub pid: i32,
    /// See [`Event::Call`].
    pub tid: i32,
    /// See [`Event::Call`].
    #[serde(borrow)]
    pub name: &'a str,
    /// See [`Event::Call`].
    pub args: [u64; 6],
    /// See [`Event::Call`].
    pub ret: i64,
    /// See [`Event::Call`].
    #[serde(default)]
    pub file: Option<FileInfo>,
    /// See [`Event::Call`].
    #[serde(default)]
    pub entered: u64,
    /// See [`Event::Call`].
    #[serde(default)]
    pub exited: u64,
}

/// A process's state right after `execve`: what placement and the VMA list start from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    /// Process id (after the exec, the thread-group id).
    pub pid: i32,
    /// The thread that exec'd, before the exec (a non-leader thread takes the leader's id).
    pub former_tid: i32,
    /// The program, as `/proc/PID/exe` names it.
    pub path: String,
    /// `/proc/PID/maps` right after the exec.
    pub maps: String,
    /// `start_brk` (`/proc/PID/stat` field 47): where `brk` starts.
    pub start_brk: u64,
    /// `start_stack` (field 28): the stack's top as the kernel set it up.
    pub start_stack: u64,
    /// `/proc/PID/auxv` as (type, value) pairs (`AT_BASE`, `AT_PHDR`, `AT_RANDOM`, …).
    pub auxv: Vec<(u64, u64)>,
    /// `/proc/PID/personality` (`ADDR_NO_RANDOMIZE` = 0x0040000, `ADDR_COMPAT_LAYOUT` = 0x0200000).
    pub personality: u64,
    /// Soft and hard limits in bytes (`u64::MAX` for unlimited): stack, memlock, as, data.
    pub rlimits: Rlimits,
}

/// The resource limits that memory calls depend on, `(soft, hard)` in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    /// `RLIMIT_STACK` (also sets the gap below the stack that top-down placement keeps).
    pub stack: (u64, u64),
    /// `RLIMIT_MEMLOCK`.
    pub memlock: (u64, u64),
    /// `RLIMIT_AS`.
    pub address_space: (u64, u64),
    /// `RLIMIT_DATA`.
    pub data: (u64, u64),
}

/// What an `mmap`'s descriptor named when the call was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// `readlink /proc/PID/fd/N` (empty when the descriptor was not open).
    pub path: String,
    /// The device, `(major, minor)`.
    pub dev: (u32, u32),
    /// The inode number.
    pub inode: u64,
    /// The file's size in bytes.
    pub size: u64,
    /// The open flags (`/proc/PID/fdinfo/N`'s `flags`, octal there): O_RDONLY / O_WRONLY / O_RDWR …
    pub flags: u32,
    /// The file's mode (`S_IFREG`, …, and permission bits).
    pub mode: u32,
    /// The file system's magic (`statfs`'s `f_type`: 0xef53 ext2/3/4, 0x58465342 xfs, 0x01021994
    /// tmpfs, …): placement rules differ by file system. 0 when unknown.
    #[serde(default)]
    pub fs_type: u64,
}

/// Why a trace line could not be read.
#[derive(Debug)]
pub struct TraceError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "trace line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for TraceError {}

/// Parses one trace line.
pub fn parse_line(n: usize, line: &str) -> Result<Event, TraceError> {
    serde_json::from_str(line).map_err(|e| TraceError { line: n, reason: e.to_string() })
}

/// Whether `text`'s first line looks like a recorded trace (a `start` event).
pub fn is_recorded(first_line: &str) -> bool {
    first_line.starts_with('{') && first_line.contains("\"event\":\"start\"")
}
