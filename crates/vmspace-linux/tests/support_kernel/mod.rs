//! The live-kernel side of the differential tests: a forked child that runs memory system calls on
//! request and answers with the result and its `/proc/self/maps`, and a driver that runs the same
//! calls on an `Mm` started from the child's maps and compares every result and every maps line.
//!
//! The child allocates nothing after the fork (its buffers are made before), so its VMAs change only
//! by the calls it is asked to make. Every wait on it is bounded: a child that does not answer within
//! `TIMEOUT` is killed and the step fails.

#![allow(dead_code)]

pub mod cases;
pub mod fuzz;

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use vmspace_linux::abi::Errno;
use vmspace_linux::mm::{FileRef, Layout, Mm, Params};
use vmspace_linux::proc::maps::{self, MapsLine};

/// How long a child may take to answer one call.
const TIMEOUT_MS: i32 = 5_000;
/// The largest maps text a child sends.
const MAPS_MAX: usize = 4 << 20;

/// One system call with its raw arguments. Addresses are absolute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `mmap(addr, len, prot, flags, fd, off)`; `file` indexes [`Kernel::files`] (`None`: fd -1).
    Mmap {
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        file: Option<u8>,
        off: u64,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    Mprotect {
        addr: u64,
        len: u64,
        prot: u64,
    },
    Madvise {
        addr: u64,
        len: u64,
        advice: u64,
    },
    Mlock {
        addr: u64,
        len: u64,
    },
    Mlock2 {
        addr: u64,
        len: u64,
        flags: u64,
    },
    Munlock {
        addr: u64,
        len: u64,
    },
    Mlockall {
        flags: u64,
    },
    Munlockall,
    Mseal {
        addr: u64,
        len: u64,
        flags: u64,
    },
    Msync {
        addr: u64,
        len: u64,
        flags: u64,
    },
    Mremap {
        addr: u64,
        old: u64,
        new: u64,
        flags: u64,
        new_addr: u64,
    },
    Brk {
        addr: u64,
    },
    /// `fork()`: the child forks and its child carries on serving; the model becomes `Mm::fork`.
    Fork,
    /// `setrlimit(resource, {cur: min(bytes, hard)})` (`RLIMIT_AS`, `RLIMIT_DATA`, `RLIMIT_MEMLOCK`):
    /// not a call under test but a change of the model's `Params`, made in both.
    Setrlimit {
        resource: u64,
        bytes: u64,
    },
    /// A write fault on one byte (read and written back through `/proc/self/mem`, so no signal can
    /// come): aimed only at private anonymous writable memory, where it prepares the `anon_vma`.
    Touch {
        addr: u64,
    },
    /// `shmat(shmid, addr, flags)`; the model's segment is the [`Kernel::shm`] file whose inode is `shmid`.
    Shmat {
        shmid: u64,
        addr: u64,
        flags: u64,
    },
    /// `shmdt(addr)`.
    Shmdt {
        addr: u64,
    },
}

impl Op {
    /// The address range the call names (empty for calls without one).
    pub fn range(&self) -> (u64, u64) {
        match *self {
            Op::Mmap { addr, len, .. }
            | Op::Munmap { addr, len }
            | Op::Mprotect { addr, len, .. }
            | Op::Madvise { addr, len, .. }
            | Op::Mlock { addr, len }
            | Op::Mlock2 { addr, len, .. }
            | Op::Munlock { addr, len }
            | Op::Mseal { addr, len, .. }
            | Op::Msync { addr, len, .. } => (addr, addr.saturating_add(len)),
            Op::Mremap { addr, old, .. } => (addr, addr.saturating_add(old)),
            _ => (0, 0),
        }
    }

    fn encode(&self) -> [u64; 8] {
        match *self {
            Op::Mmap { addr, len, prot, flags, file, off } => {
                [1, addr, len, prot, flags, file.map_or(u64::MAX, u64::from), off, 0]
            }
            Op::Munmap { addr, len } => [2, addr, len, 0, 0, 0, 0, 0],
            Op::Mprotect { addr, len, prot } => [3, addr, len, prot, 0, 0, 0, 0],
            Op::Madvise { addr, len, advice } => [4, addr, len, advice, 0, 0, 0, 0],
            Op::Mlock { addr, len } => [5, addr, len, 0, 0, 0, 0, 0],
            Op::Mlock2 { addr, len, flags } => [6, addr, len, flags, 0, 0, 0, 0],
            Op::Munlock { addr, len } => [7, addr, len, 0, 0, 0, 0, 0],
            Op::Mlockall { flags } => [8, flags, 0, 0, 0, 0, 0, 0],
            Op::Munlockall => [9, 0, 0, 0, 0, 0, 0, 0],
            Op::Mseal { addr, len, flags } => [10, addr, len, flags, 0, 0, 0, 0],
            Op::Msync { addr, len, flags } => [11, addr, len, flags, 0, 0, 0, 0],
            Op::Mremap { addr, old, new, flags, new_addr } => [12, addr, old, new, flags, new_addr, 0, 0],
            Op::Brk { addr } => [13, addr, 0, 0, 0, 0, 0, 0],
            Op::Fork => [14, 0, 0, 0, 0, 0, 0, 0],
            Op::Setrlimit { resource, bytes } => [15, resource, bytes, 0, 0, 0, 0, 0],
            Op::Touch { addr } => [16, addr, 0, 0, 0, 0, 0, 0],
            Op::Shmat { shmid, addr, flags } => [17, shmid, addr, flags, 0, 0, 0, 0],
            Op::Shmdt { addr } => [18, addr, 0, 0, 0, 0, 0, 0],
        }
    }
}

/// A file the calls may map: the model's view and the fd the child uses.
pub struct TestFile {
    pub file: FileRef,
    pub fd: OwnedFd,
}

/// The machine's kernel as `Params` (limits from /proc and getrlimit, capabilities from CapEff).
pub fn live_params() -> Params {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let num = |p: &str| read(p).trim().parse::<u64>().unwrap_or_else(|e| panic!("{p}: {e}"));
    let rl = |r| {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(r, &mut l) }, 0);
        if l.rlim_cur == libc::RLIM_INFINITY { u64::MAX } else { l.rlim_cur }
    };
    let status = read("/proc/self/status");
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).expect("CapEff hex"))
        .expect("CapEff in /proc/self/status");
    let meminfo = read("/proc/meminfo");
    let kb = |k: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let release = read("/proc/sys/kernel/osrelease");
    let mut ver = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse::<u32>().ok());
    Params {
        version: (ver.next().expect("major"), ver.next().expect("minor")),
        mmap_min_addr: num("/proc/sys/vm/mmap_min_addr"),
        max_map_count: num("/proc/sys/vm/max_map_count"),
        overcommit_memory: num("/proc/sys/vm/overcommit_memory") as u8,
        commit_pages: (kb("MemTotal:") + kb("SwapTotal:")) / 4,
        rlimit_memlock: rl(libc::RLIMIT_MEMLOCK),
        rlimit_as: rl(libc::RLIMIT_AS),
        rlimit_data: rl(libc::RLIMIT_DATA),
        cap_ipc_lock: cap_eff & (1 << 14) != 0,
        cap_sys_rawio: cap_eff & (1 << 17) != 0,
        cap_sys_admin: cap_eff & (1 << 21) != 0,
        thp: std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists(),
        ksm: std::path::Path::new("/sys/kernel/mm/ksm").exists(),
        ..Params::default()
    }
}

/// The layout fields of /proc/self/stat a fork child shares with its parent.
fn live_layout() -> Layout {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<u64> = rest.split_whitespace().map(|s| s.parse().unwrap_or(0)).collect();
    let field = |n: usize| f[n - 3];
    Layout {
        mmap_base: None,
        start_brk: field(47),
        brk: 0,
        start_stack: field(28),
        data: (field(45), field(46)),
        forked: true,
    }
}

/// A memfd of `pages` pages opened read-write, and a second, read-only description of it.
pub fn memfds(pages: u64) -> Vec<TestFile> {
    let name = c"vmspace-mm";
    // SAFETY: memfd_create with a valid name; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd is ours, just created.
    let rw = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on our fd.
    assert_eq!(unsafe { libc::ftruncate(fd, (pages * 4096) as i64) }, 0);
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).expect("path");
    // SAFETY: open of a path we built; checked.
    let ro = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(ro >= 0);
    // SAFETY: ro is ours, just opened.
    let ro = unsafe { OwnedFd::from_raw_fd(ro) };
    // SAFETY: an all-zero stat is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes the struct we pass.
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
    let dev = (libc::major(st.st_dev), libc::minor(st.st_dev));
    let file = |id: u64, writable: bool| FileRef {
        id,
        dev,
        inode: st.st_ino,
        name: "/memfd:vmspace-mm (deleted)".into(),
        readable: true,
        writable,
        append: false,
        noexec: false,
        shmem: true,
        mappable: true,
        size: pages * 4096,
        // memfd is shmem: its own placement, not thp_get_unmapped_area.
        thp_placement: false,
    };
    vec![TestFile { file: file(1, true), fd: rw }, TestFile { file: file(2, false), fd: ro }]
}

/// System V segments made for a test (`shmget(IPC_PRIVATE)`, mode 0600), as the model's [`FileRef`]s
/// (`/SYSV00000000 (deleted)` on the shm mount `0:1`, inode = shmid); removed on drop (attaches in
/// children keep theirs until they exit).
pub struct ShmSegments {
    pub files: Vec<FileRef>,
}

impl ShmSegments {
    /// One segment of each byte size in `sizes`.
    pub fn new(sizes: &[u64]) -> ShmSegments {
        let files = sizes
            .iter()
            .map(|&size| {
                // SAFETY: shmget with constant flags; the result is checked.
                let id = unsafe { libc::shmget(libc::IPC_PRIVATE, size as usize, libc::IPC_CREAT | 0o600) };
                assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
                FileRef::sysv_segment(id as u64, 0, size)
            })
            .collect();
        ShmSegments { files }
    }
}

impl Drop for ShmSegments {
    fn drop(&mut self) {
        for f in &self.files {
            // SAFETY: removing a segment we created.
            unsafe { libc::shmctl(f.inode as i32, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
}

/// A difference between the kernel and the model at one step.
#[derive(Debug)]
pub struct Divergence {
    pub step: usize,
    pub op: Op,
    pub kernel: Result<u64, Errno>,
    pub model: Result<u64, Errno>,
    /// `(kernel line, model line)` pairs that differ (`None` where one side has no line).
    pub lines: Vec<(Option<String>, Option<String>)>,
    /// The kernel's maps lines around the call's range, after it.
    pub context: Vec<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "step {}: {:?}: kernel {:?}, model {:?}", self.step, self.op, self.kernel, self.model)?;
        for (k, m) in self.lines.iter().take(12) {
            writeln!(f, "  kernel: {}", k.as_deref().unwrap_or("-"))?;
            writeln!(f, "  model:  {}", m.as_deref().unwrap_or("-"))?;
        }
        if self.lines.is_empty() || self.kernel == Err(Errno::EIO) {
            for l in &self.context {
                writeln!(f, "  maps:   {l}")?;
            }
        }
        Ok(())
    }
}

/// A forked child serving calls, and the model of it.
pub struct Kernel {
    pid: libc::pid_t,
    cmd: OwnedFd,
    resp: OwnedFd,
    pub mm: Mm,
    pub files: Vec<FileRef>,
    /// System V segments the calls may attach (see [`ShmSegments`]).
    pub shm: Vec<FileRef>,
    pub steps: usize,
    buf: Vec<u8>,
    /// The kernel's maps after the last answered call.
    pub last_maps: String,
    /// The child's own answer buffer (calls must never reach it).
    pub child_buf: (u64, u64),
}

fn raw(ret: i64) -> Result<u64, Errno> {
    Errno::from_raw(ret as u64).map_or(Ok(ret as u64), Err)
}

impl Kernel {
    /// Forks a child that serves calls; the model starts from its maps.
    pub fn start(files: &[TestFile]) -> Kernel {
        let params = live_params();
        let layout = live_layout();
        let mut c = [0; 2];
        let mut r = [0; 2];
        // SAFETY: pipe2 writes two fds into the arrays; checked.
        unsafe {
            assert_eq!(libc::pipe2(c.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(r.as_mut_ptr(), libc::O_CLOEXEC), 0);
        }
        let fds: Vec<i32> = files.iter().map(|f| f.fd.as_raw_fd()).collect();
        let mut child_buf = vec![0u8; MAPS_MAX + 16];
        // SAFETY: the child only makes system calls on memory allocated before the fork, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: in the child; serve never returns.
            unsafe { serve(c[0], r[1], &fds, &mut child_buf) }
        }
        // SAFETY: closing the child's ends in the parent; adopting ours.
        let (cmd, resp) = unsafe {
            libc::close(c[0]);
            libc::close(r[1]);
            (OwnedFd::from_raw_fd(c[1]), OwnedFd::from_raw_fd(r[0]))
        };
        let mut k = Kernel {
            pid,
            cmd,
            resp,
            mm: Mm::new(params.clone(), layout),
            files: files.iter().map(|f| f.file.clone()).collect(),
            shm: Vec::new(),
            steps: 0,
            buf: Vec::new(),
            last_maps: String::new(),
            child_buf: (child_buf.as_ptr() as u64, child_buf.as_ptr() as u64 + child_buf.len() as u64),
        };
        let (brk, text) = k.call_raw(Op::Brk { addr: 0 }).expect("child answers");
        let lines = maps::parse(&text).expect("kernel maps parse");
        k.mm = Mm::from_maps(&lines, Layout { brk: brk as u64, ..layout }, params);
        k.adopt_smaps();
        k
    }

    /// Reads the child's smaps once: exact `VmFlags`, and which VMAs have anonymous pages.
    fn adopt_smaps(&mut self) {
        let text = std::fs::read_to_string(format!("/proc/{}/smaps", self.pid)).expect("child smaps");
        let mut start = None;
        let mut anon = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("Anonymous:") {
                anon = rest.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).map(|kb| kb > 0);
            } else if let Some(rest) = line.strip_prefix("VmFlags:") {
                if let Some(s) = start.take() {
                    self.mm.adopt(s, Some(vm_flags(rest)), anon.take(), true);
                }
            } else if let Some((range, _)) = line.split_once(' ')
                && let Some((s, _)) = range.split_once('-')
                && let Ok(s) = u64::from_str_radix(s, 16)
                && (!line.contains(':') || line.split_whitespace().count() >= 5)
            {
                start = Some(s);
                anon = None;
            }
        }
    }

    /// Sends one op; returns the raw result and the child's maps.
    fn call_raw(&mut self, op: Op) -> Result<(i64, String), String> {
        let words = op.encode();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        write_all(self.cmd.as_raw_fd(), &bytes).map_err(|e| format!("send: {e}"))?;
        let mut head = [0u8; 16];
        self.read_exact(&mut head)?;
        let ret = i64::from_ne_bytes(head[..8].try_into().expect("8"));
        let n = u64::from_ne_bytes(head[8..].try_into().expect("8")) as usize;
        if n > MAPS_MAX {
            return Err(format!("child sent {n} bytes of maps"));
        }
        self.buf.resize(n, 0);
        let mut b = std::mem::take(&mut self.buf);
        self.read_exact(&mut b)?;
        let text = String::from_utf8_lossy(&b).into_owned();
        self.buf = b;
        Ok((ret, text))
    }

    fn read_exact(&mut self, mut out: &mut [u8]) -> Result<(), String> {
        while !out.is_empty() {
            let mut p = libc::pollfd { fd: self.resp.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: poll on one valid fd.
            let n = unsafe { libc::poll(&mut p, 1, TIMEOUT_MS) };
            if n == 0 {
                return Err("child did not answer in time".into());
            }
            // SAFETY: read into the slice we own.
            let got = unsafe { libc::read(self.resp.as_raw_fd(), out.as_mut_ptr().cast(), out.len()) };
            if got <= 0 {
                return Err(format!("child closed its pipe ({got})"));
            }
            out = &mut out[got as usize..];
        }
        Ok(())
    }

    /// Runs `op` natively and on the model; returns the kernel's result, or the divergence.
    pub fn step(&mut self, op: Op) -> Result<Result<u64, Errno>, Box<Divergence>> {
        let step = self.steps;
        self.steps += 1;
        let (ret, text) = match self.call_raw(op) {
            Ok(x) => x,
            Err(e) => {
                return Err(Box::new(Divergence {
                    step,
                    op,
                    kernel: Err(Errno::EIO),
                    model: Err(Errno::EIO),
                    lines: vec![(Some(e), None)],
                    context: self.last_maps.lines().map(String::from).collect(),
                }));
            }
        };
        let kernel = if matches!(op, Op::Brk { .. }) { Ok(ret as u64) } else { raw(ret) };
        self.last_maps.clone_from(&text);
        let model = self.apply(op);
        let klines: Vec<MapsLine> =
            maps::parse(&text).expect("kernel maps parse").into_iter().map(normalise).collect();
        let mlines: Vec<MapsLine> = self.mm.maps().into_iter().map(normalise).collect();
        let mut diff = Vec::new();
        if klines != mlines {
            let n = klines.len().max(mlines.len());
            let (mut i, mut j) = (0, 0);
            while (i < klines.len() || j < mlines.len()) && diff.len() < n {
                let (k, m) = (klines.get(i), mlines.get(j));
                if k == m {
                    i += 1;
                    j += 1;
                    continue;
                }
                match (k, m) {
                    (Some(k), Some(m)) if k.range.start < m.range.start => {
                        diff.push((Some(k.to_string()), None));
                        i += 1;
                    }
                    (Some(k), Some(m)) if m.range.start < k.range.start => {
                        diff.push((None, Some(m.to_string())));
                        j += 1;
                    }
                    _ => {
                        diff.push((k.map(|l| l.to_string()), m.map(|l| l.to_string())));
                        i += 1;
                        j += 1;
                    }
                }
            }
        }
        if kernel != model || !diff.is_empty() {
            let (lo, hi) = op.range();
            let context = klines
                .iter()
                .filter(|l| l.range.end + (64 << 12) > lo && l.range.start < hi.saturating_add(64 << 12))
                .take(40)
                .map(|l| l.to_string())
                .collect();
            return Err(Box::new(Divergence { step, op, kernel, model, lines: diff, context }));
        }
        Ok(kernel)
    }

    /// Runs `op` on the model only.
    pub fn apply(&mut self, op: Op) -> Result<u64, Errno> {
        let mm = &mut self.mm;
        match op {
            Op::Mmap { addr, len, prot, flags, file, off } => {
                let f = file.and_then(|i| self.files.get(usize::from(i)));
                mm.mmap(addr, len, prot, flags, f, off)
            }
            Op::Munmap { addr, len } => mm.munmap(addr, len),
            Op::Mprotect { addr, len, prot } => mm.mprotect(addr, len, prot),
            Op::Madvise { addr, len, advice } => mm.madvise(addr, len, advice),
            Op::Mlock { addr, len } => mm.mlock(addr, len),
            Op::Mlock2 { addr, len, flags } => mm.mlock2(addr, len, flags),
            Op::Munlock { addr, len } => mm.munlock(addr, len),
            Op::Mlockall { flags } => mm.mlockall(flags),
            Op::Munlockall => mm.munlockall(),
            Op::Mseal { addr, len, flags } => mm.mseal(addr, len, flags),
            Op::Msync { addr, len, flags } => mm.msync(addr, len, flags),
            Op::Mremap { addr, old, new, flags, new_addr } => mm.mremap(addr, old, new, flags, new_addr),
            Op::Brk { addr } => Ok(mm.brk(addr)),
            Op::Fork => {
                *mm = mm.fork();
                Ok(0)
            }
            Op::Touch { addr } => mm.touch(addr).map(|()| 0),
            Op::Shmat { shmid, addr, flags } => match self.shm.iter().find(|f| f.inode == shmid) {
                Some(seg) => mm.shmat(seg, addr, flags),
                None => Err(Errno::EINVAL),
            },
            Op::Shmdt { addr } => mm.shmdt(addr),
            Op::Setrlimit { resource, bytes } => {
                // The child lowers the soft limit to at most the hard one, which it shares with us.
                let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                // SAFETY: getrlimit writes the struct we pass.
                unsafe { libc::getrlimit(resource as u32, &mut l) };
                let bytes = bytes.min(l.rlim_max);
                match resource as u32 {
                    libc::RLIMIT_AS => mm.params.rlimit_as = bytes,
                    libc::RLIMIT_DATA => mm.params.rlimit_data = bytes,
                    libc::RLIMIT_MEMLOCK => mm.params.rlimit_memlock = bytes,
                    _ => return Err(Errno::EINVAL),
                }
                Ok(0)
            }
        }
    }
}

/// `VmFlags` mnemonics as the model's `VM_*` bits.
fn vm_flags(text: &str) -> u64 {
    vmspace_linux::mm::vm_flags_of(vmspace_linux::proc::vmflags::VmFlags::parse(text))
}

/// What the model cannot know: the inode shmem gives each shared anonymous mapping.
fn normalise(mut l: MapsLine) -> MapsLine {
    if l.name == "/dev/zero (deleted)" {
        l.inode = 0;
    }
    l
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping our own child; bounded (SIGKILL cannot be ignored).
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

fn write_all(fd: i32, mut b: &[u8]) -> std::io::Result<()> {
    while !b.is_empty() {
        // SAFETY: write from a slice we own.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return Err(std::io::Error::last_os_error());
        }
        b = &b[n as usize..];
    }
    Ok(())
}

/// The child's loop: no allocation, only system calls on memory made before the fork.
///
/// # Safety
/// Call only in a freshly forked child; never returns.
unsafe fn serve(cmd: i32, resp: i32, fds: &[i32], buf: &mut [u8]) -> ! {
    // Die with the parent, so no child outlives a failed test.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    loop {
        let mut w = [0u8; 64];
        let mut got = 0;
        while got < 64 {
            // SAFETY: read into our stack buffer.
            let n = unsafe { libc::read(cmd, w[got..].as_mut_ptr().cast(), 64 - got) };
            if n <= 0 {
                // SAFETY: leaving the child.
                unsafe { libc::_exit(0) };
            }
            got += n as usize;
        }
        let a: [u64; 8] =
            std::array::from_fn(|i| u64::from_ne_bytes(w[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8])));
        // SAFETY: raw memory system calls; the driver keeps destructive ones inside ranges it owns.
        let ret: i64 = unsafe {
            match a[0] {
                1 => {
                    let fd =
                        if a[5] == u64::MAX { -1 } else { fds.get(a[5] as usize).copied().unwrap_or(-1) };
                    libc::syscall(libc::SYS_mmap, a[1], a[2], a[3], a[4], fd as i64, a[6])
                }
                2 => libc::syscall(libc::SYS_munmap, a[1], a[2]),
                3 => libc::syscall(libc::SYS_mprotect, a[1], a[2], a[3]),
                4 => libc::syscall(libc::SYS_madvise, a[1], a[2], a[3]),
                5 => libc::syscall(libc::SYS_mlock, a[1], a[2]),
                6 => libc::syscall(libc::SYS_mlock2, a[1], a[2], a[3]),
                7 => libc::syscall(libc::SYS_munlock, a[1], a[2]),
                8 => libc::syscall(libc::SYS_mlockall, a[1]),
                9 => libc::syscall(libc::SYS_munlockall),
                10 => libc::syscall(462, a[1], a[2], a[3]),
                11 => libc::syscall(libc::SYS_msync, a[1], a[2], a[3]),
                12 => libc::syscall(libc::SYS_mremap, a[1], a[2], a[3], a[4], a[5]),
                13 => libc::syscall(libc::SYS_brk, a[1]),
                17 => libc::shmat(a[1] as i32, a[2] as *const libc::c_void, a[3] as i32) as i64,
                18 => libc::shmdt(a[1] as *const libc::c_void) as i64,
                16 => {
                    let fd = libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                    let mut b = [0u8; 1];
                    let r = libc::pread(fd, b.as_mut_ptr().cast(), 1, a[1] as i64);
                    let w =
                        if r == 1 { libc::pwrite(fd, b.as_ptr().cast(), 1, a[1] as i64) } else { r as isize };
                    libc::close(fd);
                    if w == 1 { 0 } else { -(libc::EIO as i64) }
                }
                15 => {
                    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                    libc::getrlimit(a[1] as u32, &mut l);
                    l.rlim_cur = a[2].min(l.rlim_max);
                    libc::setrlimit(a[1] as u32, &l) as i64
                }
                14 => {
                    let pid = libc::fork();
                    if pid > 0 {
                        // The grandchild serves from now on; wait for it, then go.
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                        libc::_exit(0);
                    }
                    if pid == 0 {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    }
                    if pid < 0 { -1 } else { 0 }
                }
                _ => -(libc::ENOSYS as i64),
            }
        };
        // SAFETY: errno of this thread.
        let ret = if ret == -1 && a[0] != 13 && a[0] != 14 && a[0] != 15 && a[0] != 16 {
            // SAFETY: errno of this thread.
            -(unsafe { *libc::__errno_location() } as i64)
        } else {
            ret
        };
        // SAFETY: read /proc/self/maps into the buffer made before the fork.
        let n = unsafe { read_maps(&mut buf[16..]) };
        buf[..8].copy_from_slice(&ret.to_ne_bytes());
        buf[8..16].copy_from_slice(&(n as u64).to_ne_bytes());
        let mut off = 0;
        while off < 16 + n {
            // SAFETY: write from our buffer.
            let w = unsafe { libc::write(resp, buf[off..16 + n].as_ptr().cast(), 16 + n - off) };
            if w <= 0 {
                // SAFETY: leaving the child.
                unsafe { libc::_exit(1) };
            }
            off += w as usize;
        }
    }
}

/// Reads /proc/self/maps with raw calls (no allocation).
///
/// # Safety
/// Only makes system calls on `out`.
unsafe fn read_maps(out: &mut [u8]) -> usize {
    // SAFETY: open a constant path.
    let fd = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return 0;
    }
    let mut n = 0;
    loop {
        // SAFETY: read into the slice.
        let r = unsafe { libc::read(fd, out[n..].as_mut_ptr().cast(), out.len() - n) };
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    n
}
