//! Random differential runs: random sequences of the memory calls with random and invalid arguments,
//! inside a region the run owns plus placement calls, each step compared with the kernel; a divergence
//! is shrunk (dropping steps while it persists) and printed as a runnable case.
//!
//! Safety of the child: every call that can destroy or change memory is aimed at the owned region, at
//! ranges earlier placement calls returned, or at the break above where the child started, so the
//! child's own code, stack, buffers and heap are never touched.

use super::{Divergence, Kernel, Op, ShmSegments, TestFile};
use vmspace_linux::abi::*;
use vmspace_linux::mm::FileRef;
use vmspace_linux::mm::{VM_SHARED, VM_WRITE};

/// The owned region: far from the program, its heap, libraries and stack.
pub const BASE: u64 = 0x2000_0000_0000;
const P: u64 = 4096;
/// Pages in the region where most calls aim (lengths may run past it, into more owned space).
const PAGES: u64 = 64;
/// The space the run owns from `BASE` (empty but for what the run maps).
const OWNED: u64 = 1 << 30;
/// Steps per child before a fresh one.
pub const SEQ: usize = 200;

/// A xorshift64* generator: reproducible from its seed.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// What the generator remembers between steps.
#[derive(Default)]
struct Gen {
    placed: Vec<(u64, u64)>,
    forks: u32,
    brk0: u64,
    /// The System V segments calls may attach: (shmid, size in bytes).
    shm: Vec<(u64, u64)>,
}

const PROTS: &[u64] = &[
    PROT_NONE,
    PROT_READ,
    PROT_READ | PROT_WRITE,
    PROT_READ | PROT_EXEC,
    PROT_WRITE,
    PROT_READ | PROT_WRITE | PROT_EXEC,
];
const ADVICE: &[u64] = &[
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MADV_DONTNEED,
    MADV_FREE,
    MADV_REMOVE,
    MADV_DONTFORK,
    MADV_DOFORK,
    MADV_MERGEABLE,
    MADV_UNMERGEABLE,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_DONTDUMP,
    MADV_DODUMP,
    MADV_WIPEONFORK,
    MADV_KEEPONFORK,
    MADV_COLD,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_DONTNEED_LOCKED,
    MADV_GUARD_INSTALL,
    MADV_GUARD_REMOVE,
    5,
    6,
    7,
    26,
    99,
    104,
    0xffff_ffff,
    1 << 32,
];

impl Gen {
    /// A target range: in the region (usually), or inside a placed range.
    fn range(&self, r: &mut Rng) -> (u64, u64) {
        if !self.placed.is_empty() && r.chance(25) {
            let (s, len) = r.pick(&self.placed);
            let pages = len / P;
            let off = r.below(pages.max(1));
            let n = 1 + r.below((pages - off).max(1));
            return (s + off * P, n * P);
        }
        let mut addr = BASE + r.below(PAGES) * P;
        let mut len = match r.below(10) {
            0 => 0,
            1..=6 => (1 + r.below(8)) * P,
            7 | 8 => (1 + r.below(PAGES + 16)) * P,
            _ => (1 + r.below(4)) * (2 << 20),
        };
        if r.chance(3) {
            addr += 1 + r.below(P - 1);
        }
        if r.chance(4) {
            len += 1 + r.below(P - 1);
        }
        if r.chance(1) {
            len = r.pick(&[u64::MAX, u64::MAX - P, 1 << 47, (1 << 63) + P]);
        }
        (addr, len)
    }

    fn op(&mut self, r: &mut Rng, k: &Kernel) -> Op {
        let (addr, len) = self.range(r);
        let small = len <= (PAGES + 16) * P;
        match r.below(100) {
            0..=24 => {
                let mut prot = r.pick(PROTS);
                if r.chance(3) {
                    prot |= r.pick(&[PROT_SEM, PROT_GROWSDOWN, 0x100]);
                }
                let ty = if r.chance(85) {
                    MAP_PRIVATE
                } else {
                    r.pick(&[MAP_SHARED, MAP_SHARED_VALIDATE, MAP_DROPPABLE, 0, 0xf])
                };
                let mut flags = ty;
                let file = if r.chance(85) {
                    flags |= MAP_ANONYMOUS;
                    None
                } else {
                    Some(r.below(3) as u8)
                };
                let file =
                    file.filter(|f| *f < 2).or(if flags & MAP_ANONYMOUS == 0 { Some(9) } else { None });
                let mut a = addr;
                let mut len = len;
                let mut large = false;
                match r.below(10) {
                    0..=4 => flags |= MAP_FIXED,
                    5 => flags |= MAP_FIXED_NOREPLACE,
                    6 | 7 => {}
                    _ => {
                        a = if r.chance(50) { 0 } else { r.next() & 0x7fff_ffff_f000 };
                        if !small {
                            // Large placements are refused by overcommit (private, writable, reserved).
                            flags = MAP_PRIVATE | MAP_ANONYMOUS;
                            prot = PROT_READ | PROT_WRITE;
                            len = 1 << 46;
                            large = true;
                        }
                    }
                }
                for (p, f) in [
                    (8, MAP_NORESERVE),
                    (4, MAP_POPULATE),
                    (3, MAP_LOCKED),
                    (4, MAP_STACK),
                    (3, MAP_GROWSDOWN),
                    (1, MAP_SYNC),
                    (1, MAP_32BIT << 20),
                ] {
                    if r.chance(p) && !large && (small || (f != MAP_POPULATE && f != MAP_LOCKED)) {
                        flags |= f;
                    }
                }
                let off = if file.is_some() { r.below(20) * P + if r.chance(3) { 7 } else { 0 } } else { 0 };
                Op::Mmap { addr: a, len, prot, flags, file: file.map(|f| f.min(9)), off }
            }
            25..=36 => Op::Munmap { addr, len },
            37..=51 => {
                let mut prot = r.pick(PROTS);
                if r.chance(5) {
                    prot |= r.pick(&[
                        PROT_GROWSDOWN,
                        PROT_GROWSUP,
                        PROT_SEM,
                        0x40,
                        PROT_GROWSDOWN | PROT_GROWSUP,
                    ]);
                }
                Op::Mprotect { addr, len, prot }
            }
            52..=66 => {
                let advice = r.pick(ADVICE);
                // Advice that destroys or drops memory must stay in owned space (it skips holes).
                let harmless = matches!(
                    advice,
                    MADV_NORMAL
                        | MADV_RANDOM
                        | MADV_SEQUENTIAL
                        | MADV_WILLNEED
                        | MADV_DOFORK
                        | MADV_DODUMP
                        | MADV_DONTDUMP
                        | MADV_KEEPONFORK
                        | MADV_HUGEPAGE
                        | MADV_NOHUGEPAGE
                        | MADV_COLD
                ) || !self.advice_known(advice);
                let in_region = (BASE..BASE + OWNED).contains(&addr);
                let len = if harmless || !in_region || addr.saturating_add(len) <= BASE + OWNED {
                    len
                } else {
                    (PAGES + 16) * P
                };
                Op::Madvise { addr, len, advice }
            }
            67..=69 if small => Op::Mlock { addr, len },
            70..=71 if small => Op::Mlock2 { addr, len, flags: r.pick(&[0, MLOCK_ONFAULT, 2, 1 << 40]) },
            72..=74 => Op::Munlock { addr, len },
            75 => {
                let f = r.pick(&[
                    MCL_FUTURE,
                    MCL_FUTURE | MCL_ONFAULT,
                    0,
                    MCL_ONFAULT,
                    8,
                    MCL_CURRENT,
                    MCL_CURRENT | MCL_ONFAULT,
                ]);
                if f & MCL_CURRENT != 0 && r.chance(70) { Op::Munlockall } else { Op::Mlockall { flags: f } }
            }
            76 => {
                // A write fault, only where it cannot fault: private anonymous writable pages not guarded.
                let targets: Vec<u64> =
                    k.mm.vmas()
                        .filter(|v| v.is_anonymous() && v.flags & (VM_WRITE | VM_SHARED) == VM_WRITE)
                        .filter(|v| self.owns(&Op::Munmap { addr: v.start, len: 0 }))
                        .filter(|v| k.mm.guards().first_in(v.start, v.end).is_none())
                        .map(|v| v.start)
                        .collect();
                if targets.is_empty() { Op::Munlockall } else { Op::Touch { addr: r.pick(&targets) } }
            }
            77 if r.chance(30) => Op::Mseal { addr, len, flags: if r.chance(10) { 1 } else { 0 } },
            78..=81 => Op::Msync {
                addr,
                len,
                flags: r.pick(&[
                    MS_ASYNC,
                    MS_SYNC,
                    MS_INVALIDATE,
                    MS_ASYNC | MS_INVALIDATE,
                    MS_SYNC | MS_INVALIDATE,
                    MS_ASYNC | MS_SYNC,
                    8,
                    0,
                ]),
            },
            92..=94 if !self.shm.is_empty() => {
                if r.chance(35) {
                    return Op::Shmdt { addr: if r.chance(80) { addr & !(P - 1) } else { addr } };
                }
                let shmid = if r.chance(3) { 1 << 30 } else { r.pick(&self.shm).0 };
                let flags = r.pick(&[0, 0, SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC, SHM_RDONLY | SHM_REMAP]);
                // At an address only in the owned region (see `owns`), sometimes unaligned.
                let at = BASE + r.below(PAGES) * P + if r.chance(5) { 1 + r.below(P - 1) } else { 0 };
                Op::Shmat { shmid, addr: if r.chance(40) { 0 } else { at }, flags }
            }
            82..=94 => {
                let flags = r.pick(&[
                    0,
                    MREMAP_MAYMOVE,
                    MREMAP_MAYMOVE,
                    MREMAP_MAYMOVE | MREMAP_FIXED,
                    MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
                    MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
                    MREMAP_FIXED,
                    8,
                ]);
                let old = if r.chance(5) { 0 } else { len.min((PAGES + 16) * P) };
                let new = if r.chance(30) { old } else { (1 + r.below(24)) * P };
                let new_addr =
                    if flags & MREMAP_FIXED != 0 || r.chance(20) { BASE + r.below(PAGES * 2) * P } else { 0 };
                // Shrinking unmaps past the VMA: keep it inside ranges the run owns.
                let in_placed = self.placed.iter().any(|(s, l)| addr >= *s && addr < s + l);
                let old = if in_placed {
                    self.placed
                        .iter()
                        .find(|(s, l)| addr >= *s && addr < s + l)
                        .map_or(old, |(s, l)| old.min(s + l - addr))
                } else {
                    old
                };
                Op::Mremap { addr, old, new, flags, new_addr }
            }
            95..=97 => {
                let up = self.brk0 + r.below(64) * P + r.below(2) * 17;
                Op::Brk { addr: r.pick(&[0, up, up, k.mm.start_brk.saturating_sub(P), self.brk0]) }
            }
            99 if r.chance(50) => {
                let resource = r.pick(&[libc::RLIMIT_AS, libc::RLIMIT_DATA, libc::RLIMIT_MEMLOCK]);
                let used = if resource == libc::RLIMIT_DATA { k.mm.data_vm() } else { k.mm.total_vm() };
                let bytes = if r.chance(40) { u64::MAX } else { (used + r.below(2048)) * P };
                Op::Setrlimit { resource: u64::from(resource), bytes }
            }
            98 if self.forks < 3 && r.chance(30) => {
                self.forks += 1;
                Op::Fork
            }
            _ => Op::Madvise { addr, len, advice: MADV_NORMAL },
        }
    }

    fn advice_known(&self, a: u64) -> bool {
        ADVICE[..24].contains(&a)
    }

    /// Whether `op` aims only at space this run owns (the region, or ranges placement gave it).
    fn owns(&self, op: &Op) -> bool {
        let ok = |a: u64| {
            (BASE..BASE + OWNED).contains(&a) || self.placed.iter().any(|(s, l)| a >= *s && a < s + l)
        };
        match *op {
            Op::Mmap { addr, flags, .. } => flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) == 0 || ok(addr),
            Op::Munmap { addr, .. }
            | Op::Mprotect { addr, .. }
            | Op::Madvise { addr, .. }
            | Op::Mlock { addr, .. }
            | Op::Mlock2 { addr, .. }
            | Op::Munlock { addr, .. }
            | Op::Mseal { addr, .. }
            | Op::Msync { addr, .. }
            | Op::Mremap { addr, .. } => ok(addr),
            Op::Mlockall { .. } | Op::Munlockall | Op::Brk { .. } | Op::Fork | Op::Setrlimit { .. } => true,
            Op::Touch { addr } | Op::Shmdt { addr } => ok(addr),
            Op::Shmat { shmid, addr, flags } => {
                // An attach at an address maps the whole segment there: all of it must be ours.
                let size =
                    self.shm.iter().find(|(id, _)| *id == shmid).map_or(P, |(_, size)| size.div_ceil(P) * P);
                let (a, end) = (addr & !(P - 1), (addr & !(P - 1)).saturating_add(size));
                let inside = |s: u64, l: u64| a >= s && end <= s + l;
                // Only in the owned region: placed ranges lie among the child's own mappings.
                (addr == 0 && flags & SHM_REMAP == 0) || inside(BASE, OWNED)
            }
        }
    }

    /// Remembers ranges placement returned, so later calls may aim at them.
    fn note(&mut self, op: &Op, got: &Result<u64, Errno>) {
        let owned = |a: u64| (BASE..BASE + OWNED).contains(&a);
        let add = match (op, got) {
            (Op::Mmap { len, flags, .. }, Ok(a)) if flags & MAP_FIXED == 0 && *len < 1 << 40 => {
                Some((*a, (*len).div_ceil(P) * P))
            }
            (Op::Mremap { new, .. }, Ok(a)) => Some((*a, (*new).div_ceil(P) * P)),
            // Placed: as much as the segment maps, no more (the vDSO may lie right above).
            (Op::Shmat { shmid, addr: 0, .. }, Ok(a)) => {
                self.shm.iter().find(|(id, _)| id == shmid).map(|(_, size)| (*a, size.div_ceil(P) * P))
            }
            _ => None,
        };
        if let Some((a, l)) = add.filter(|(a, l)| !owned(*a) && *l > 0) {
            if std::env::var("VMSPACE_FUZZ_DEBUG").is_ok() {
                eprintln!("placed {a:x}+{l:x} by {op:?}");
            }
            self.placed.push((a, l));
            if self.placed.len() > 24 {
                self.placed.remove(0);
            }
        }
    }
}

/// What a run found.
pub struct Report {
    pub ops: u64,
    pub divergences: Vec<String>,
}

/// Runs one child's sequence of `n` steps from `seed`; returns the ops made and the divergence if any.
fn run_seq(files: &[TestFile], shm: &[FileRef], seed: u64, n: usize) -> (Vec<Op>, Option<Box<Divergence>>) {
    let mut r = Rng::new(seed);
    let mut k = Kernel::start(files);
    k.shm = shm.to_vec();
    let mut g =
        Gen { brk0: k.mm.brk, shm: shm.iter().map(|f| (f.inode, f.size)).collect(), ..Gen::default() };
    let mut ops = Vec::new();
    for _ in 0..n {
        let op = g.op(&mut r, &k);
        ops.push(op);
        match k.step(op) {
            Ok(got) => g.note(&op, &got),
            Err(d) => return (ops, Some(d)),
        }
        if std::env::var("VMSPACE_FUZZ_DEBUG").is_ok() {
            let (b0, b1) = k.child_buf;
            let lines: Vec<&str> = k
                .last_maps
                .lines()
                .filter(|l| {
                    let (s, e) = l.split_once(' ').unwrap().0.split_once('-').unwrap();
                    let (s, e) = (u64::from_str_radix(s, 16).unwrap(), u64::from_str_radix(e, 16).unwrap());
                    s < b1 && e > b0
                })
                .collect();
            eprintln!("step {} {:?} -> buf {:x}-{:x}: {:?}", ops.len() - 1, op, b0, b1, lines);
        }
    }
    (ops, None)
}

/// Replays `ops` in a fresh child; whether (and where) it diverges. A candidate whose calls would aim
/// outside what this replay owns (placement differs once steps are dropped) counts as not diverging.
fn replay(files: &[TestFile], shm: &[FileRef], ops: &[Op]) -> Option<Box<Divergence>> {
    let mut k = Kernel::start(files);
    k.shm = shm.to_vec();
    let mut g =
        Gen { brk0: k.mm.brk, shm: shm.iter().map(|f| (f.inode, f.size)).collect(), ..Gen::default() };
    for op in ops {
        if !g.owns(op) {
            return None;
        }
        match k.step(*op) {
            Ok(got) => g.note(op, &got),
            Err(d) => return Some(d),
        }
    }
    None
}

/// Drops steps while the divergence persists (at most `budget` replays).
pub fn shrink(
    files: &[TestFile],
    shm: &[FileRef],
    mut ops: Vec<Op>,
    budget: usize,
) -> (Vec<Op>, Box<Divergence>) {
    let mut last = replay(files, shm, &ops).expect("the sequence diverges");
    ops.truncate(last.step + 1);
    let mut tries = 0;
    let mut i = ops.len().saturating_sub(1);
    while i > 0 && tries < budget {
        i -= 1;
        let mut cand = ops.clone();
        cand.remove(i);
        tries += 1;
        if let Some(d) = replay(files, shm, &cand) {
            cand.truncate(d.step + 1);
            ops = cand;
            last = d;
            i = i.min(ops.len().saturating_sub(1));
        }
    }
    (ops, last)
}

/// The shrunk sequence as a case to paste into a test.
pub fn as_case(ops: &[Op], d: &Divergence) -> String {
    let mut s = String::from("// shortest sequence found that diverges:\nlet ops = [\n");
    for op in ops {
        s.push_str(&format!("    Op::{op:?},\n"));
    }
    s.push_str("];\n");
    s.push_str(&d.to_string());
    s
}

/// Runs `total` steps in sequences of [`SEQ`] from `seed`; shrinks and prints each divergence.
pub fn run(files: &[TestFile], seed: u64, total: u64, mut progress: impl FnMut(u64)) -> Report {
    // Segments of 3 pages and a bit, 2 and 16 pages, removed when the run ends.
    let segs = ShmSegments::new(&[3 * P + 100, 2 * P, 16 * P]);
    let mut done = 0;
    let mut divergences = Vec::new();
    let mut seq = 0u64;
    while done < total {
        let n = SEQ.min((total - done) as usize);
        let s = seed.wrapping_add(seq.wrapping_mul(0x1000_0001));
        seq += 1;
        let (ops, d) = run_seq(files, &segs.files, s, n);
        done += ops.len() as u64;
        if let Some(first) = d {
            // A child that died or hung is reported as found: replaying it costs a timeout each time.
            let lost = first.kernel == Err(Errno::EIO);
            let shrunk = if lost {
                None
            } else {
                replay(files, &segs.files, &ops).map(|_| shrink(files, &segs.files, ops.clone(), 200))
            };
            let text = match shrunk {
                Some((short, d)) => as_case(&short, &d),
                None if lost => String::from("(the child was lost: not shrunk)"),
                None => String::from("(did not diverge again when replayed)"),
            };
            let tail: Vec<String> =
                ops.iter().rev().take(12).rev().map(|o| format!("    Op::{o:?},")).collect();
            let report =
                format!("seed {s:#x}, as found (last calls:\n{}\n):\n{first}{text}", tail.join("\n"));
            eprintln!("{report}");
            divergences.push(report);
        }
        progress(done);
    }
    Report { ops: done, divergences }
}
