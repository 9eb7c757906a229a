//! Differential test against the kernel: random operation sequences on a real reservation; after every
//! step `/proc/self/smaps` agrees with the map page by page (protection, shared/private, lo, dc, wf,
//! dd, sr, rr, sl, reservation or memory, guard markers), and every page whose contents the semantics
//! keep still holds what was written. `VMSPACE_DIFF_STEPS` sets the total number of steps (10,000 by
//! default). A second run injects a failing system call into most steps — at a random call, with a
//! random errno and shape, sometimes in the recovery too — and checks the same after each
//! (`VMSPACE_FAIL_STEPS`, 80,000 by default, on two threads).

use std::cell::Cell;
use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use vmspace::space::FailureMode;
use vmspace::{AddressSpace, Advice, Backing, EntryFlags, Error, Inherit, MapSpec, Options, Prot};

const PS: u64 = 4096;
const PAGES: u64 = 48;
const STEPS_PER_CASE: usize = 40;

#[derive(Clone, Debug)]
enum Op {
    Map(u64, bool),
    MapAt(u64, u64, bool),
    Unmap(u64, u64),
    Protect(u64, u64, Prot),
    ProtectMax(u64, u64, Prot),
    Inherit(u64, u64, Inherit),
    Madvise(u64, u64, Advice),
    Wire(u64, u64),
    Unwire(u64, u64),
    Guard(u64, u64),
    Unguard(u64, u64),
    Seal(u64, u64),
    Stack(u64, u64, u64),
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    (0..PAGES, 1..10u64).prop_map(|(p, n)| (p, (p + n).min(PAGES)))
}

fn prot() -> impl Strategy<Value = Prot> {
    prop::sample::select(vec![Prot::NONE, Prot::READ, Prot::RW, Prot::RW, Prot::RX])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..6u64, prop::bool::weighted(0.2)).prop_map(|(n, s)| Op::Map(n, s)),
        4 => (range(), prop::bool::weighted(0.2)).prop_map(|((a, b), s)| Op::MapAt(a, b, s)),
        3 => range().prop_map(|(a, b)| Op::Unmap(a, b)),
        4 => (range(), prot()).prop_map(|((a, b), p)| Op::Protect(a, b, p)),
        1 => (range(), prot()).prop_map(|((a, b), p)| Op::ProtectMax(a, b, p)),
        2 => (range(), prop::sample::select(vec![Inherit::Copy, Inherit::None, Inherit::Zero, Inherit::Share]))
            .prop_map(|((a, b), i)| Op::Inherit(a, b, i)),
        3 => (range(), prop::sample::select(vec![
            Advice::Normal, Advice::Sequential, Advice::Random, Advice::NoCore, Advice::Core,
            Advice::WillNeed, Advice::DontNeed, Advice::Free, Advice::NoSync,
        ])).prop_map(|((a, b), v)| Op::Madvise(a, b, v)),
        2 => range().prop_map(|(a, b)| Op::Wire(a, b)),
        2 => range().prop_map(|(a, b)| Op::Unwire(a, b)),
        1 => range().prop_map(|(a, b)| Op::Guard(a, b)),
        1 => range().prop_map(|(a, b)| Op::Unguard(a, b)),
        1 => (0..PAGES).prop_map(|p| Op::Seal(p, p + 1)),
        1 => (0..PAGES - 8, 2..8u64, 1..3u64).prop_map(|(p, n, i)| Op::Stack(p, n, i.min(n))),
    ]
}

fn spec(shared: bool, len: u64) -> MapSpec<Backing> {
    let s = MapSpec::new(Prot::RW, Prot::ALL);
    if shared { s.with_object(Backing::shared_anonymous(len).unwrap(), 0) } else { s }
}

/// Page contents we know: page address → the value at its start.
struct Contents(HashMap<u64, u64>);

impl Contents {
    fn readable(s: &AddressSpace, page: u64) -> bool {
        s.lookup_entry(page)
            .is_some_and(|e| e.prot().contains(Prot::READ) && !e.flags().contains(EntryFlags::GUARD))
    }

    /// Every known page that is readable must hold its value; then every writable page gets a new one.
    fn check_and_write(&mut self, s: &AddressSpace, step: usize, tag: u64) {
        let base = s.range().start;
        for p in 0..PAGES {
            let page = base + p * PS;
            if !Self::readable(s, page) {
                continue;
            }
            // SAFETY: the page is mapped readable in a space this test owns.
            let got = unsafe { std::ptr::read_volatile(page as *const u64) };
            if let Some(&want) = self.0.get(&page) {
                assert_eq!(got, want, "step {step}: page {p} lost its contents\n{s}");
            }
            let e = s.lookup_entry(page).unwrap();
            if e.prot().contains(Prot::WRITE) {
                let v = tag.wrapping_mul(1000).wrapping_add(p + 1);
                // SAFETY: the page is mapped writable in a space this test owns.
                unsafe { std::ptr::write_volatile(page as *mut u64, v) };
                // Shared pages may alias another page of the same memfd mapped elsewhere.
                if e.object().is_shared() {
                    self.0.retain(|_, _| false);
                } else {
                    self.0.insert(page, v);
                }
            }
        }
    }

    /// Forgets what an operation may legitimately have changed.
    fn forget(&mut self, s: &AddressSpace, r: std::ops::Range<u64>, zero: bool) {
        let base = s.range().start;
        for p in r {
            let page = base + p * PS;
            if zero
                && Self::readable(s, page)
                && s.lookup_entry(page).is_some_and(|e| !e.object().is_shared())
            {
                self.0.insert(page, 0);
            } else {
                self.0.remove(&page);
            }
        }
    }
}

/// A failing system call to inject before a step: call, errno, shape, and one in the recovery too.
#[derive(Clone, Copy, Debug)]
struct Failure {
    call: usize,
    errno: i32,
    mode: FailureMode,
    recovery: Option<usize>,
}

/// A few random bits per step (xorshift), so the failure plan is reproducible from the seed.
fn failure(seed: &mut u64) -> Option<Failure> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    if next() % 16 == 0 {
        return None;
    }
    let errnos = [libc::ENOMEM, libc::EAGAIN, libc::EPERM, libc::EINVAL, libc::EACCES];
    let modes = [FailureMode::Before, FailureMode::After, FailureMode::Half];
    Some(Failure {
        // Most operations make one or two calls: fail the first ones most often.
        call: [0, 0, 0, 0, 0, 0, 1, 2][(next() % 8) as usize],
        errno: errnos[(next() % 5) as usize],
        mode: modes[(next() % 3) as usize],
        recovery: (next() % 4 == 0).then(|| (next() % 4) as usize),
    })
}

/// `op` with its range moved into the run of mapped pages at or after its start (unchanged if there
/// is none, or for operations that want free space).
fn fit(s: &AddressSpace, op: &Op) -> Op {
    let base = s.range().start;
    let page = |a: u64| (a - base) / PS;
    let runs: Vec<(u64, u64)> = s.regions().iter().fold(Vec::new(), |mut v: Vec<(u64, u64)>, e| {
        match v.last_mut() {
            Some(r) if r.1 == page(e.start) => r.1 = page(e.end),
            _ => v.push((page(e.start), page(e.end))),
        }
        v
    });
    let moved = |a: u64, b: u64| {
        let Some(&(lo, hi)) = runs.iter().find(|r| r.1 > a).or(runs.first()) else { return (a, b) };
        let start = a.clamp(lo, hi - 1);
        (start, (start + (b - a)).min(hi))
    };
    match op.clone() {
        Op::Unmap(a, b) => with(moved(a, b), Op::Unmap),
        Op::Protect(a, b, p) => with(moved(a, b), |a, b| Op::Protect(a, b, p)),
        Op::ProtectMax(a, b, p) => with(moved(a, b), |a, b| Op::ProtectMax(a, b, p)),
        Op::Inherit(a, b, i) => with(moved(a, b), |a, b| Op::Inherit(a, b, i)),
        Op::Madvise(a, b, v) => with(moved(a, b), |a, b| Op::Madvise(a, b, v)),
        Op::Wire(a, b) => with(moved(a, b), Op::Wire),
        Op::Unwire(a, b) => with(moved(a, b), Op::Unwire),
        Op::Guard(a, b) => with(moved(a, b), Op::Guard),
        Op::Unguard(a, b) => with(moved(a, b), Op::Unguard),
        Op::Seal(a, b) => with(moved(a, b), |a, _| Op::Seal(a, a + 1)),
        other => other,
    }
}

fn with((a, b): (u64, u64), f: impl FnOnce(u64, u64) -> Op) -> Op {
    f(a, b)
}

/// Runs `ops` on `s`; with `seed`, injects failures into most steps. Returns the steps where an
/// injected failure was reached.
fn run(s: &AddressSpace, ops: &[Op], tag: &mut u64, mut seed: Option<u64>) -> u64 {
    let base = s.range().start;
    let r = |a: u64, b: u64| base + a * PS..base + b * PS;
    let mut contents = Contents(HashMap::new());
    let mut reached = 0;
    for (step, op) in ops.iter().enumerate() {
        let before = s.regions();
        let plan = seed.as_mut().and_then(failure);
        if let Some(f) = plan {
            s.inject_failure(Some(f.call), f.errno, f.mode);
            s.inject_recovery_failure(f.recovery, libc::ENOMEM, f.mode);
        }
        // Under injection, aim range operations at mapped memory, so most of them reach the kernel.
        let fitted = if plan.is_some() { fit(s, op) } else { op.clone() };
        let op = &fitted;
        let result = match op {
            Op::Map(n, sh) => s.map(n * PS, spec(*sh, n * PS)).map(|a| {
                contents.forget(s, (a - base) / PS..(a - base) / PS + n, true);
            }),
            Op::MapAt(a, b, sh) => {
                s.map_at(r(*a, *b), spec(*sh, (b - a) * PS)).map(|_| contents.forget(s, *a..*b, true))
            }
            Op::Unmap(a, b) => s.unmap(r(*a, *b)).map(|_| contents.forget(s, *a..*b, false)),
            Op::Protect(a, b, p) => s.protect(r(*a, *b), *p),
            Op::ProtectMax(a, b, p) => s.protect_max(r(*a, *b), *p),
            Op::Inherit(a, b, i) => s.inherit(r(*a, *b), *i),
            Op::Madvise(a, b, v) => s.madvise(r(*a, *b), *v).map(|_| match v {
                Advice::DontNeed => contents.forget(s, *a..*b, true),
                Advice::Free => contents.forget(s, *a..*b, false),
                _ => {}
            }),
            Op::Wire(a, b) => s.wire(r(*a, *b)),
            Op::Unwire(a, b) => s.unwire(r(*a, *b)),
            Op::Guard(a, b) => s.guard(r(*a, *b)).map(|_| contents.forget(s, *a..*b, false)),
            Op::Unguard(a, b) => s.unguard(r(*a, *b)),
            Op::Seal(a, b) => s.seal(r(*a, *b)),
            Op::Stack(a, n, i) => s.stack_at(base + a * PS, n * PS, i * PS, spec(false, 0)).map(|m| {
                contents.forget(s, (m.start - base) / PS..(m.end - base) / PS, true);
            }),
        };
        let fired = plan.is_some() && !s.injection_armed();
        s.inject_failure(None, libc::ENOMEM, FailureMode::Before);
        s.inject_recovery_failure(None, libc::ENOMEM, FailureMode::Before);
        if fired {
            reached += 1;
            assert!(result.is_err(), "step {step}: {op:?} under {plan:?} succeeded");
        }
        match &result {
            Ok(_) => {}
            Err(Error::Incomplete { kept, .. }) => {
                // The kernel kept part of the call there: whatever was in those pages may be gone.
                for k in kept {
                    contents.forget(s, (k.start - base) / PS..(k.end - base) / PS, false);
                }
            }
            Err(e) => {
                assert_eq!(
                    s.regions(),
                    before,
                    "step {step}: {op:?} under {plan:?} failed ({e:?}) but changed the map"
                );
                // Advice that drops contents may have run before the failure was reported.
                if let (
                    Op::Madvise(a, b, Advice::DontNeed | Advice::Free) | Op::Guard(a, b),
                    Error::Os { .. },
                ) = (op, e)
                {
                    contents.forget(s, *a..*b, false);
                }
            }
        }
        let d = s.kernel_differences().unwrap();
        assert!(
            d.is_empty(),
            "step {step}: {op:?} under {plan:?} → {result:?}: map and kernel disagree:\n{}\n{s}",
            d.join("\n")
        );
        s.with_map(|m| m.check_invariants()).unwrap();
        *tag += 1;
        contents.check_and_write(s, step, *tag);
    }
    reached
}

#[test]
fn kernel_agrees_with_the_map_after_every_step() {
    let steps: usize =
        std::env::var("VMSPACE_DIFF_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let cases = steps.div_ceil(STEPS_PER_CASE) as u32;
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let tag = Cell::new(0u64);
    let n = Cell::new(0u32);
    runner
        .run(&prop::collection::vec(op(), STEPS_PER_CASE), |ops| {
            // Alternate the guard mode so both the markers and the PROT_NONE fallback are exercised.
            n.set(n.get() + 1);
            let opts = Options { guard_fallback: n.get().is_multiple_of(2), ..Options::default() };
            let s = AddressSpace::reserve_with(PAGES * PS, opts).unwrap();
            let mut t = tag.get();
            run(&s, &ops, &mut t, None);
            tag.set(t);
            Ok(())
        })
        .unwrap();
    assert!(tag.get() >= steps as u64, "ran {} steps", tag.get());
}

/// How many processes share the injected-failure steps: sealed pages outlive their spaces, and
/// every smaps read goes past those of the process, so each process keeps its share small (and the
/// processes run in parallel without sharing one mmap lock).
const FAIL_PROCESSES: usize = 4;

#[test]
fn injected_failures_at_random_keep_map_and_kernel_equal() {
    let steps: usize =
        std::env::var("VMSPACE_FAIL_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(240_000);
    let children: Vec<_> = (0..FAIL_PROCESSES)
        .map(|i| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "injected_failures_child", "--nocapture", "--test-threads=1"])
                .env("VMSPACE_FAIL_CHILD", i.to_string())
                .env("VMSPACE_FAIL_STEPS", (steps / FAIL_PROCESSES).to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reached = 0u64;
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "injected-failure process {i} failed:\n{err}");
        let n = err
            .lines()
            .find_map(|l| l.strip_prefix("reached "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("process {i} did not report its count:\n{err}"));
        reached += n;
    }
    eprintln!(
        "random failure injection: {steps} steps in {FAIL_PROCESSES} processes, {reached} with an injected failure reached, 0 divergences"
    );
    assert!(reached >= steps as u64 / 4, "only {reached} of {steps} steps reached their injected failure");
}

/// One process's share of the steps above: does nothing unless run by it.
#[test]
fn injected_failures_child() {
    let Ok(child) = std::env::var("VMSPACE_FAIL_CHILD") else { return };
    let child: u64 = child.parse().unwrap();
    let steps: usize = std::env::var("VMSPACE_FAIL_STEPS").unwrap().parse().unwrap();
    let cases = steps.div_ceil(STEPS_PER_CASE) as u32;
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let (n, reached) = (Cell::new(0u64), Cell::new(0u64));
    runner
        .run(&prop::collection::vec(op(), STEPS_PER_CASE), |ops| {
            n.set(n.get() + 1);
            let opts = Options { guard_fallback: n.get() % 2 == 0, ..Options::default() };
            let s = AddressSpace::reserve_with(PAGES * PS, opts).unwrap();
            let mut tag = n.get() << 20 | child << 60;
            let seed = 0x9e37_79b9_7f4a_7c15 ^ tag;
            reached.set(reached.get() + run(&s, &ops, &mut tag, Some(seed)));
            Ok(())
        })
        .unwrap();
    eprintln!("reached {}", reached.get());
}
