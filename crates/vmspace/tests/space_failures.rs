//! Systematic failure injection: every operation with its 1st, 2nd, … n-th system call failing in
//! turn, with each errno the kernel can return there and each shape a failure half-way takes (nothing
//! done, all of it done, half of it done), and then with a failing step inside the recovery as well.
//! After each step: the map equals the kernel (smaps and pagemap guard markers), the map's invariants
//! hold, every page the map still has kept its contents, an `Os` error left the map as it was, an
//! `Incomplete` error names the ranges the kernel kept, and dropping the space leaves nothing behind
//! but sealed pages.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use vmspace::space::FailureMode;
use vmspace::{AddressSpace, Advice, Backing, EntryFlags, Error, Inherit, MapSpec, Options, Prot};

const PS: u64 = 4096;
const PAGES: u64 = 96;

/// The errnos the calls vmspace makes can fail with (mmap, mprotect, madvise, mlock, munlock, mseal).
const ERRNOS: [i32; 5] = [libc::ENOMEM, libc::EAGAIN, libc::EPERM, libc::EINVAL, libc::EACCES];
const MODES: [FailureMode; 3] = [FailureMode::Before, FailureMode::After, FailureMode::Half];

fn rw() -> MapSpec<Backing> {
    MapSpec::new(Prot::RW, Prot::ALL)
}

fn read(addr: u64) -> u64 {
    // SAFETY: only pages the map says are mapped readable, in a space this test owns.
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

fn write(addr: u64, v: u64) {
    // SAFETY: only pages the map says are mapped writable, in a space this test owns.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

/// A space with one of everything: protections, advice, wiring, guards (one of them wired), shared
/// memory, don't-fork and wipe-on-fork, no-core-dump, a stack, inaccessible memory; every writable page
/// holds a value of its own. Returns the space and the values.
fn patchwork(opts: Options, future: bool) -> (AddressSpace, HashMap<u64, u64>) {
    let s = AddressSpace::reserve_with(PAGES * PS, opts).unwrap();
    let a = s.range().start;
    let p = |n: u64| a + n * PS;
    s.map_at(p(0)..p(10), rw()).unwrap();
    s.protect(p(2)..p(3), Prot::READ).unwrap();
    s.madvise(p(5)..p(6), Advice::Sequential).unwrap();
    s.wire(p(8)..p(9)).unwrap();
    s.madvise(p(9)..p(10), Advice::NoCore).unwrap();
    s.map_at(p(12)..p(16), rw()).unwrap();
    s.guard(p(13)..p(14)).unwrap();
    let shm = Backing::shared_anonymous(4 * PS).unwrap();
    s.map_at(p(16)..p(20), rw().with_object(shm, 0)).unwrap();
    s.map_at(p(22)..p(26), rw()).unwrap();
    s.inherit(p(23)..p(24), Inherit::None).unwrap();
    s.inherit(p(24)..p(25), Inherit::Zero).unwrap();
    s.map_at(p(28)..p(32), rw()).unwrap();
    s.guard(p(29)..p(30)).unwrap();
    s.wire(p(28)..p(32)).unwrap();
    s.stack_at(p(40), 16 * PS, 4 * PS, rw()).unwrap();
    s.map_at(p(60)..p(64), MapSpec::new(Prot::NONE, Prot::ALL)).unwrap();
    let mut values = HashMap::new();
    for e in s.regions() {
        if !e.prot().contains(Prot::WRITE) || e.flags().contains(EntryFlags::GUARD) {
            continue;
        }
        for page in (e.start..e.end).step_by(PS as usize) {
            let v = page ^ 0x5eed;
            write(page, v);
            values.insert(page, v);
        }
    }
    if future {
        s.set_wire_future(true).unwrap();
    }
    (s, values)
}

/// One operation on the patchwork at base `a`, and the pages it may legitimately destroy.
struct Case {
    name: &'static str,
    op: fn(&AddressSpace, u64) -> Result<(), Error>,
    destroys: Range<u64>,
    /// Under `wire_future`.
    future: bool,
}

/// Page `n` of the space at `a`.
fn p(a: u64, n: u64) -> u64 {
    a + n * PS
}

fn cases() -> Vec<Case> {
    let none = 0..0;
    vec![
        Case {
            name: "map_at none",
            op: |s, a| s.map_at(p(a, 10)..p(a, 12), rw().with_inherit(Inherit::None)),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "map_at sealed",
            op: |s, a| s.map_at(p(a, 20)..p(a, 22), rw().with_flags(EntryFlags::SEALED)),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "map_at sealed, wire_future",
            op: |s, a| s.map_at(p(a, 64)..p(a, 66), rw().with_flags(EntryFlags::SEALED)),
            destroys: none.clone(),
            future: true,
        },
        Case {
            name: "map_at shared",
            op: |s, a| {
                s.map_at(p(a, 64)..p(a, 66), rw().with_object(Backing::shared_anonymous(2 * PS).unwrap(), 0))
            },
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "map_at nocore random",
            op: |s, a| {
                s.map_at(
                    p(a, 66)..p(a, 70),
                    rw().with_behavior(vmspace::Behavior::Random).with_flags(EntryFlags::NOCOREDUMP),
                )
            },
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "map, wire_future",
            op: |s, _| s.map(3 * PS, rw()).map(drop),
            destroys: none.clone(),
            future: true,
        },
        Case { name: "unmap across", op: |s, a| s.unmap(p(a, 1)..p(a, 7)), destroys: 1..7, future: false },
        Case { name: "unmap inside", op: |s, a| s.unmap(p(a, 3)..p(a, 4)), destroys: 3..4, future: false },
        Case {
            name: "unmap guard and shared",
            op: |s, a| s.unmap(p(a, 12)..p(a, 20)),
            destroys: 12..20,
            future: false,
        },
        Case {
            name: "unmap with holes",
            op: |s, a| s.unmap(p(a, 8)..p(a, 30)),
            destroys: 8..30,
            future: false,
        },
        Case {
            name: "protect across",
            op: |s, a| s.protect(p(a, 1)..p(a, 10), Prot::READ),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "protect none wired",
            op: |s, a| s.protect(p(a, 7)..p(a, 10), Prot::NONE),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "protect inaccessible",
            op: |s, a| s.protect(p(a, 60)..p(a, 64), Prot::RW),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "protect guarded",
            op: |s, a| s.protect(p(a, 12)..p(a, 16), Prot::READ),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "protect_max",
            op: |s, a| s.protect_max(p(a, 0)..p(a, 10), Prot::READ),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "inherit zero",
            op: |s, a| s.inherit(p(a, 0)..p(a, 10), Inherit::Zero),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "inherit none",
            op: |s, a| s.inherit(p(a, 12)..p(a, 16), Inherit::None),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "inherit copy",
            op: |s, a| s.inherit(p(a, 22)..p(a, 26), Inherit::Copy),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "madvise random",
            op: |s, a| s.madvise(p(a, 0)..p(a, 10), Advice::Random),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "madvise nocore",
            op: |s, a| s.madvise(p(a, 12)..p(a, 16), Advice::NoCore),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "madvise dontneed",
            op: |s, a| s.madvise(p(a, 0)..p(a, 5), Advice::DontNeed),
            destroys: 0..5,
            future: false,
        },
        Case {
            name: "madvise free",
            op: |s, a| s.madvise(p(a, 22)..p(a, 26), Advice::Free),
            destroys: 22..26,
            future: false,
        },
        Case {
            name: "wire over a guard",
            op: |s, a| s.wire(p(a, 12)..p(a, 16)),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "wire inaccessible",
            op: |s, a| s.wire(p(a, 60)..p(a, 64)),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "unwire a wired guard",
            op: |s, a| s.unwire(p(a, 28)..p(a, 32)),
            destroys: none.clone(),
            future: false,
        },
        Case { name: "guard", op: |s, a| s.guard(p(a, 1)..p(a, 4)), destroys: 1..4, future: false },
        Case {
            name: "guard shared",
            op: |s, a| s.guard(p(a, 16)..p(a, 18)),
            destroys: 16..18,
            future: false,
        },
        Case {
            name: "unguard wired",
            op: |s, a| s.unguard(p(a, 28)..p(a, 32)),
            destroys: 29..30,
            future: false,
        },
        Case { name: "unguard", op: |s, a| s.unguard(p(a, 12)..p(a, 16)), destroys: 13..14, future: false },
        Case {
            name: "seal two entries",
            op: |s, a| s.seal(p(a, 0)..p(a, 4)),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "stack",
            op: |s, _| s.stack(8 * PS, 2 * PS, rw()).map(drop),
            destroys: none.clone(),
            future: false,
        },
        Case {
            name: "populate",
            op: |s, a| s.populate(p(a, 0)..p(a, 2), true),
            destroys: none.clone(),
            future: false,
        },
    ]
}

/// The VMAs of `/proc/self/maps` inside `r` (read up to `r.end` only).
fn vmas_in(r: &Range<u64>) -> Vec<Range<u64>> {
    use std::io::BufRead;
    let maps = std::io::BufReader::new(std::fs::File::open("/proc/self/maps").unwrap());
    let mut out = Vec::new();
    for line in maps.lines() {
        let line = line.unwrap();
        let Some((a, b)) = line.split_whitespace().next().and_then(|w| w.split_once('-')) else { continue };
        let v = u64::from_str_radix(a, 16).unwrap()..u64::from_str_radix(b, 16).unwrap();
        if v.start >= r.end {
            break;
        }
        if v.end > r.start {
            out.push(v.start.max(r.start)..v.end.min(r.end));
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    steps: AtomicU64,
    incomplete: AtomicU64,
    recovery_failures: AtomicU64,
}

/// One step: a fresh patchwork, the case's operation with call `k` failing (`errno`, `mode`), and
/// recovery call `j` failing too when given. Returns whether the injected failure was reached (false:
/// the operation makes fewer than `k + 1` calls).
fn step(
    case: &Case,
    opts: Options,
    k: usize,
    errno: i32,
    mode: FailureMode,
    j: Option<usize>,
    t: &Tally,
) -> bool {
    let (s, values) = patchwork(opts, case.future);
    let a = s.range().start;
    let before = s.regions();
    s.inject_failure(Some(k), errno, mode);
    s.inject_recovery_failure(j, libc::ENOMEM, mode);
    let got = (case.op)(&s, a);
    let reached = !s.injection_armed();
    s.inject_failure(None, errno, mode);
    s.inject_recovery_failure(None, errno, mode);
    let what =
        format!("{} ({opts:?}) failing call {k} with errno {errno} {mode:?}, recovery call {j:?}", case.name);
    if reached {
        assert!(got.is_err(), "{what}: the failure was injected but the call says {got:?}");
    }
    let d = s.kernel_differences().unwrap();
    assert!(d.is_empty(), "{what} → {got:?}: map and kernel disagree:\n{}\n{s}", d.join("\n"));
    s.with_map(|m| m.check_invariants()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut kept: Vec<Range<u64>> = Vec::new();
    match &got {
        Ok(()) => {}
        Err(Error::Os { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(errno), "{what}: the error is the kernel's");
            assert_eq!(s.regions(), before, "{what}: an Os error must leave the map as it was");
        }
        Err(Error::Incomplete { kept: k, source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(errno), "{what}: the error is the kernel's");
            assert!(!k.is_empty(), "{what}: Incomplete names what the kernel kept");
            t.incomplete.fetch_add(1, Ordering::Relaxed);
            kept = k.clone();
        }
        Err(e) => panic!("{what}: unexpected {e:?}"),
    }
    if j.is_some() {
        t.recovery_failures.fetch_add(1, Ordering::Relaxed);
    }
    // Every page the map still has, that the call may not destroy and the kernel did not keep a change
    // of, holds its value.
    let destroyed = a + case.destroys.start * PS..a + case.destroys.end * PS;
    for (&page, &v) in &values {
        if destroyed.contains(&page) || kept.iter().any(|r| r.contains(&page)) {
            continue;
        }
        let Some(e) = s.lookup_entry(page) else { continue };
        if !e.prot().contains(Prot::READ) || e.flags().contains(EntryFlags::GUARD) {
            continue;
        }
        assert_eq!(read(page), v, "{what}: page {} lost its contents\n{s}", (page - a) / PS);
    }
    // Dropping the space leaves only its sealed pages.
    let outer = a - PS..a + (PAGES + 1) * PS;
    let sealed: Vec<Range<u64>> =
        s.regions().iter().filter(|e| e.flags().contains(EntryFlags::SEALED)).map(|e| e.range()).collect();
    drop(s);
    let left: u64 = vmas_in(&outer).iter().map(|r| r.end - r.start).sum();
    let sealed_len: u64 = sealed.iter().map(|r| r.end - r.start).sum();
    assert_eq!(
        left,
        sealed_len,
        "{what}: dropping the space left {:#x?} (sealed {sealed:#x?})",
        vmas_in(&outer)
    );
    t.steps.fetch_add(1, Ordering::Relaxed);
    reached
}

/// Every case, every failing call, errno and shape, both guard modes; and for each, recovery failing
/// at each of its first calls.
#[test]
fn every_call_of_every_operation_fails_in_turn() {
    let tally = Tally::default();
    // Sealed pages outlive their spaces: the cases that leave them run last, so the others do not
    // read past thousands of them in every smaps.
    let mut cases = cases();
    cases.sort_by_key(|c| c.name.contains("seal"));
    let work: Vec<(&Case, Options)> = cases
        .iter()
        .flat_map(|c| {
            [Options::default(), Options { guard_fallback: true, ..Options::default() }].map(|o| (c, o))
        })
        .collect();
    // One thread: between dropping a space and counting what it left, nothing else may map memory
    // (another thread's allocation could land in the freed range).
    for &(case, opts) in &work {
        for &errno in &ERRNOS {
            for &mode in &MODES {
                for k in 0.. {
                    if !step(case, opts, k, errno, mode, None, &tally) {
                        break;
                    }
                    // And the recovery failing at each of its first calls.
                    for j in 0..4 {
                        step(case, opts, k, errno, mode, Some(j), &tally);
                    }
                }
            }
        }
    }
    let steps = tally.steps.load(Ordering::Relaxed);
    eprintln!(
        "failure injection: {steps} steps ({} with a failing recovery step), {} Incomplete, 0 divergences",
        tally.recovery_failures.load(Ordering::Relaxed),
        tally.incomplete.load(Ordering::Relaxed)
    );
    assert!(steps > 1_000, "only {steps} steps ran");
}
