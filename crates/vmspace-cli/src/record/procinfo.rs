//! What the recorder reads of a stopped process from `/proc`: its maps, the fields of `stat` that
//! placement depends on, `auxv`, limits, personality, and what a file descriptor names.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use super::trace::{Exec, FileInfo, Rlimits};

/// The state of `tid`'s process right after an exec.
pub fn exec_state(pid: i32, tid: i32, former_tid: i32) -> io::Result<Exec> {
    let maps = fs::read_to_string(format!("/proc/{tid}/maps"))?;
    let stat = fs::read_to_string(format!("/proc/{tid}/stat"))?;
    let fields = stat_fields(&stat).ok_or_else(|| io::Error::other("unreadable /proc/PID/stat"))?;
    // Field n (1-based) of stat; fields after the command start at 3.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let auxv = fs::read(format!("/proc/{tid}/auxv"))?
        .chunks_exact(16)
        .map(|c| {
            (u64::from_ne_bytes(c[..8].try_into().unwrap()), u64::from_ne_bytes(c[8..].try_into().unwrap()))
        })
        .take_while(|(t, _)| *t != 0)
        .collect();
    let personality = fs::read_to_string(format!("/proc/{tid}/personality"))
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
        .unwrap_or(0);
    let path = fs::read_link(format!("/proc/{tid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Exec {
        pid,
        former_tid,
        path,
        maps,
        start_brk: field(47),
        start_stack: field(28),
        auxv,
        personality,
        rlimits: rlimits(tid).unwrap_or_default(),
    })
}

/// The fields of `/proc/PID/stat` after `(comm)` (which may hold spaces and parentheses).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_whitespace().collect())
}

/// `/proc/PID/limits` for the limits memory calls depend on.
fn rlimits(tid: i32) -> io::Result<Rlimits> {
    let text = fs::read_to_string(format!("/proc/{tid}/limits"))?;
    let mut r = Rlimits::default();
    for line in text.lines() {
        let slot = if line.starts_with("Max stack size") {
            &mut r.stack
        } else if line.starts_with("Max locked memory") {
            &mut r.memlock
        } else if line.starts_with("Max address space") {
            &mut r.address_space
        } else if line.starts_with("Max data size") {
            &mut r.data
        } else {
            continue;
        };
        // "Max stack size            8388608              unlimited            bytes"
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 3 {
            let v = |w: &str| if w == "unlimited" { u64::MAX } else { w.parse().unwrap_or(u64::MAX) };
            let n = words.len();
            *slot = (v(words[n - 3]), v(words[n - 2]));
        }
    }
    Ok(r)
}

/// What descriptor `fd` of `tid` names (for `mmap` of a file).
pub fn file_info(tid: i32, fd: i32) -> Option<FileInfo> {
    if fd < 0 {
        return None;
    }
    let link = format!("/proc/{tid}/fd/{fd}");
    let path = fs::read_link(&link).ok()?.to_string_lossy().into_owned();
    let meta = fs::metadata(&link).ok()?;
    let flags = fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0);
    let dev = meta.dev();
    let fs_type = rustix::fs::statfs(link.as_str()).map(|s| s.f_type as u64).unwrap_or(0);
    Some(FileInfo {
        path,
        dev: (libc::major(dev), libc::minor(dev)),
        inode: meta.ino(),
        size: meta.size(),
        flags,
        mode: meta.mode(),
        fs_type,
    })
}

/// The System V segment `shmid` (for `shmat`), from `/proc/sysvipc/shm`, as the file `maps` will name
/// it: `/SYSV%08x (deleted)` with its key, on the shm mount (`0:1`), its inode the shmid, its size and
/// permission bits; `flags` is O_RDWR (the kernel checks the caller's IPC permissions itself).
pub fn segment_info(shmid: i32) -> Option<FileInfo> {
    let table = fs::read_to_string("/proc/sysvipc/shm").ok()?;
    table.lines().skip(1).find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 4 || w[1].parse::<i32>().ok()? != shmid {
            return None;
        }
        let key = w[0].parse::<i32>().ok()? as u32;
        Some(FileInfo {
            path: format!("/SYSV{key:08x} (deleted)"),
            dev: (0, 1),
            inode: shmid as u64,
            size: w[3].parse().ok()?,
            flags: 2,
            mode: u32::from_str_radix(w[2], 8).ok()?,
            fs_type: 0,
        })
    })
}

/// The thread-group id of `tid` (`Tgid:` of `/proc/TID/status`).
pub fn tgid(tid: i32) -> Option<i32> {
    status_field(tid, "Tgid:")
}

/// The process that created `tid`'s process (`PPid` of `/proc/TID/status`: the real parent, not the
/// tracer).
pub fn ppid(tid: i32) -> Option<i32> {
    status_field(tid, "PPid:")
}

fn status_field(tid: i32, key: &str) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok())
}

/// The maps of `tid`'s process now.
pub fn maps(tid: i32) -> io::Result<String> {
    fs::read_to_string(format!("/proc/{tid}/maps"))
}

/// A sysctl's number (`/proc/sys/...`), 0 when unreadable.
pub fn sysctl(path: &str) -> u64 {
    fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// The THP mode in effect: the bracketed word of `transparent_hugepage/enabled`.
pub fn thp_mode() -> String {
    fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|s| {
            let a = s.find('[')?;
            let b = s[a..].find(']')?;
            Some(s[a + 1..a + b].to_string())
        })
        .unwrap_or_default()
}
