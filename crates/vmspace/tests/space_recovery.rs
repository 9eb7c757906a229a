//! Recovery after a system call fails half-way, case by case: a seal comes after every step that can
//! fail and one that took is in the map; an unmap the kernel refused keeps its memory in the map;
//! recovery orders its steps so each can succeed (locks after protection, guard markers on unlocked
//! memory), carries on past a step that fails, and where it cannot put the kernel back, the map says
//! what the kernel has; calls that change nothing make no system call and leave the map's timestamp.

use std::ops::Range;

use vmspace::space::FailureMode;
use vmspace::{AddressSpace, Advice, Backing, EntryFlags, Error, Inherit, MapSpec, Options, Prot};

const PS: u64 = 4096;

/// Held by every test here: one checks what a dropped space left in the address space, which another
/// test's mapping could land in meanwhile.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn rw() -> MapSpec<Backing> {
    MapSpec::new(Prot::RW, Prot::ALL)
}

fn agree(s: &AddressSpace, what: &str) {
    let d = s.kernel_differences().unwrap();
    assert!(d.is_empty(), "{what}: map and kernel disagree:\n{}\n{s}", d.join("\n"));
    s.with_map(|m| m.check_invariants()).unwrap();
}

fn write(addr: u64, v: u64) {
    // SAFETY: only pages mapped read-write in a space the test owns.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: only pages mapped readable in a space the test owns.
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

/// The pages of `r` the kernel marks as guards (pagemap bit 58, `PM_GUARD_REGION`).
fn kernel_guards(r: Range<u64>) -> Vec<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open("/proc/self/pagemap").unwrap();
    (r.start..r.end)
        .step_by(PS as usize)
        .filter(|p| {
            let mut b = [0u8; 8];
            f.read_exact_at(&mut b, p / PS * 8).unwrap();
            u64::from_ne_bytes(b) & (1 << 58) != 0
        })
        .collect()
}

/// The pages of `r` the map says are guards.
fn map_guards(s: &AddressSpace, r: Range<u64>) -> Vec<u64> {
    (r.start..r.end)
        .step_by(PS as usize)
        .filter(|p| s.lookup_entry(*p).is_some_and(|e| e.flags().contains(EntryFlags::GUARD)))
        .collect()
}

/// Whether the kernel shows any sealed page in `r` (smaps VmFlags `sl`).
fn kernel_sealed(r: &Range<u64>) -> bool {
    vmspace::smaps::read_self()
        .unwrap()
        .iter()
        .any(|v| v.range.start < r.end && v.range.end > r.start && v.has("sl"))
}

/// A sealed mapping under `wire_future` whose lock fails: every call of it fails in turn. The seal
/// is the last step, so a failure before it leaves nothing sealed, the range can be mapped again, and
/// dropping the space takes back all of it. (Before the fix the seal came with the mapping: the map
/// ended empty over sealed memory, the next map of the range got EPERM, and the drop leaked it.)
#[test]
fn a_seal_comes_after_every_step_that_can_fail() {
    let _serial = one_at_a_time();
    for k in 0..3 {
        let s = AddressSpace::reserve(64 * PS).unwrap();
        let a = s.range().start;
        s.set_wire_future(true).unwrap();
        s.inject_failure_after(Some(k));
        let got = s.map_at(a..a + 4 * PS, rw().with_flags(EntryFlags::SEALED));
        let reached = !s.injection_armed();
        s.inject_failure_after(None);
        agree(&s, &format!("sealed map_at failing call {k}"));
        if !reached {
            // The call makes fewer system calls than this: it succeeded, sealed.
            assert!(got.is_ok());
            break;
        }
        assert!(matches!(got, Err(Error::Os { .. })), "call {k}: {got:?}");
        assert!(s.regions().is_empty(), "call {k}: the failed map left {:?}", s.regions());
        assert!(!kernel_sealed(&(a..a + 4 * PS)), "call {k}: the kernel sealed a failed mapping");
        s.set_wire_future(false).unwrap();
        s.map_at(a..a + 4 * PS, rw()).unwrap();
        write(a, 7);
        agree(&s, "mapping the range again");
        let outer = a - PS..a + 65 * PS;
        drop(s);
        assert!(
            vmspace_vmas(&outer).is_empty(),
            "call {k}: the dropped space left {:#x?}",
            vmspace_vmas(&outer)
        );
    }
}

/// The VMAs of `/proc/self/maps` overlapping `r`.
fn vmspace_vmas(r: &Range<u64>) -> Vec<Range<u64>> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            let v = u64::from_str_radix(a, 16).ok()?..u64::from_str_radix(b, 16).ok()?;
            (v.start < r.end && v.end > r.start).then_some(v)
        })
        .collect()
}

/// A seal over two entries that takes over the first half only: the kernel cannot unseal, so the map
/// says the first half is sealed and the call reports what it kept.
#[test]
fn a_seal_that_took_half_way_is_in_the_map() {
    let _serial = one_at_a_time();
    let s = AddressSpace::reserve(64 * PS).unwrap();
    let a = s.range().start;
    s.map_at(a..a + 4 * PS, rw()).unwrap();
    s.protect(a + 2 * PS..a + 4 * PS, Prot::READ).unwrap();
    s.inject_failure(Some(0), libc::ENOMEM, FailureMode::Half);
    let got = s.seal(a..a + 4 * PS);
    s.inject_failure_after(None);
    agree(&s, "half a seal");
    match got {
        Err(Error::Incomplete { kept, .. }) => assert_eq!(kept, vec![a..a + 2 * PS]),
        other => panic!("a seal that took half-way is Incomplete, not {other:?}"),
    }
    assert!(s.lookup_entry(a).unwrap().flags().contains(EntryFlags::SEALED));
    assert!(!s.lookup_entry(a + 2 * PS).unwrap().flags().contains(EntryFlags::SEALED));
    // The unsealed half is still free to change.
    s.protect(a + 2 * PS..a + 4 * PS, Prot::RW).unwrap();
    agree(&s, "after the half seal");
}

/// An unmap the kernel refused (the `vm.max_map_count` case: it must split a VMA) keeps the memory,
/// so the map keeps it too, contents and all. (Before the fix the map forgot the page and unmapped it
/// again.)
#[test]
fn an_unmap_the_kernel_refused_keeps_its_memory_in_the_map() {
    let _serial = one_at_a_time();
    let s = AddressSpace::reserve(64 * PS).unwrap();
    let a = s.range().start;
    s.map_at(a..a + 8 * PS, rw()).unwrap();
    for p in 0..8 {
        write(a + p * PS, 100 + p);
    }
    s.inject_failure_after(Some(0));
    let got = s.unmap(a + 3 * PS..a + 4 * PS);
    s.inject_failure_after(None);
    assert!(matches!(got, Err(Error::Os { .. })), "{got:?}");
    agree(&s, "a refused unmap");
    assert_eq!(s.regions().len(), 1, "the map still has the whole entry");
    for p in 0..8 {
        assert_eq!(read(a + p * PS), 100 + p, "page {p}");
    }
    // Half of it done: the unmapped half is gone from both, the rest kept its contents.
    s.inject_failure(Some(0), libc::ENOMEM, FailureMode::Half);
    let got = s.unmap(a + 2 * PS..a + 6 * PS);
    s.inject_failure_after(None);
    agree(&s, "half an unmap");
    assert!(
        matches!(&got, Err(Error::Incomplete { kept, .. }) if kept.len() == 1 && kept[0] == (a + 2 * PS..a + 4 * PS)),
        "{got:?}"
    );
    assert!(s.lookup_entry(a + 2 * PS).is_none() && s.lookup_entry(a + 4 * PS).is_some());
    for p in [0, 1, 4, 5, 6, 7] {
        assert_eq!(read(a + p * PS), 100 + p, "page {p}");
    }
}

/// Guard markers removed from locked memory, then the call fails: putting them back needs the lock
/// off first (Linux refuses markers on locked memory) and on again after. Each call failing in turn.
/// (Before the fix recovery locked first, the install failed with EINVAL, and the map said guard
/// where the kernel had none.)
#[test]
fn guard_markers_go_back_on_locked_memory() {
    let _serial = one_at_a_time();
    if !vmspace::os::features().guard_install {
        panic!("this test needs MADV_GUARD_INSTALL (Linux 6.13)");
    }
    for k in 0..4 {
        let s = AddressSpace::reserve(64 * PS).unwrap();
        let a = s.range().start;
        s.map_at(a..a + 4 * PS, rw()).unwrap();
        s.guard(a + PS..a + 2 * PS).unwrap();
        s.wire(a..a + 4 * PS).unwrap();
        write(a, 1);
        s.inject_failure_after(Some(k));
        let got = s.unguard(a..a + 4 * PS);
        let reached = !s.injection_armed();
        s.inject_failure_after(None);
        agree(&s, &format!("unguard failing call {k}"));
        let r = a..a + 4 * PS;
        assert_eq!(kernel_guards(r.clone()), map_guards(&s, r.clone()), "call {k}: guard pages");
        assert_eq!(read(a), 1);
        if !reached {
            assert!(got.is_ok());
            break;
        }
        assert!(got.is_err());
        assert_eq!(map_guards(&s, r), vec![a + PS], "call {k}: the failed unguard left the guard");
    }
}

/// Protection taken to PROT_NONE on locked memory, then a later call fails: protection comes back
/// before any lock, so nothing asks Linux to populate inaccessible pages (plain mlock there fails).
#[test]
fn protection_comes_back_before_locks() {
    let _serial = one_at_a_time();
    let s = AddressSpace::reserve(64 * PS).unwrap();
    let a = s.range().start;
    s.map_at(a..a + 4 * PS, rw()).unwrap();
    s.wire(a..a + 2 * PS).unwrap();
    write(a, 3);
    for mode in [FailureMode::Before, FailureMode::After, FailureMode::Half] {
        for k in 0..3 {
            s.inject_failure(Some(k), libc::EAGAIN, mode);
            let got = s.protect(a..a + 4 * PS, Prot::NONE);
            let reached = !s.injection_armed();
            s.inject_failure_after(None);
            agree(&s, &format!("protect NONE failing call {k} {mode:?}"));
            if got.is_ok() {
                assert!(!reached);
                s.protect(a..a + 4 * PS, Prot::RW).unwrap();
            }
            assert_eq!(read(a), 3);
        }
    }
}

/// Recovery that itself fails at each of its steps: it carries on with the others, and the map ends
/// up saying what the kernel has.
#[test]
fn recovery_carries_on_past_a_failing_step() {
    let _serial = one_at_a_time();
    let mut incomplete = 0;
    for opts in [Options::default(), Options { guard_fallback: true, ..Options::default() }] {
        for j in 0..6 {
            for mode in [FailureMode::Before, FailureMode::After] {
                let s = AddressSpace::reserve_with(64 * PS, opts).unwrap();
                let a = s.range().start;
                s.map_at(a..a + 8 * PS, rw()).unwrap();
                s.protect(a + 2 * PS..a + 3 * PS, Prot::READ).unwrap();
                s.madvise(a + 4 * PS..a + 5 * PS, Advice::Sequential).unwrap();
                s.wire(a + 6 * PS..a + 7 * PS).unwrap();
                // The call's second system call (of MADV_DONTFORK, MADV_KEEPONFORK) fails after taking
                // effect, and recovery's j-th fails too.
                s.inject_failure(Some(1), libc::ENOMEM, FailureMode::After);
                s.inject_recovery_failure(Some(j), libc::ENOMEM, mode);
                let got = s.inherit(a..a + 8 * PS, Inherit::None);
                s.inject_failure_after(None);
                s.inject_recovery_failure(None, libc::ENOMEM, mode);
                agree(&s, &format!("inherit with recovery call {j} failing {mode:?} ({opts:?})"));
                assert!(got.is_err());
                incomplete += usize::from(matches!(got, Err(Error::Incomplete { .. })));
            }
        }
    }
    assert!(incomplete > 0, "some recovery failure left a trace the map had to adopt");
}

/// Calls that change nothing make no system call and do not move the map's timestamp.
#[test]
fn calls_that_change_nothing_are_no_ops() {
    let _serial = one_at_a_time();
    let s = AddressSpace::reserve(64 * PS).unwrap();
    let a = s.range().start;
    s.map_at(a..a + 8 * PS, rw()).unwrap();
    s.wire(a..a + 2 * PS).unwrap();
    s.madvise(a..a + 8 * PS, Advice::Random).unwrap();
    s.seal(a + 7 * PS..a + 8 * PS).unwrap();
    type Call<'a> = Box<dyn Fn() -> Result<(), Error> + 'a>;
    let calls: Vec<(&str, Call)> = vec![
        ("protect to the same", Box::new(|| s.protect(a..a + 7 * PS, Prot::RW))),
        ("protect_max to the same", Box::new(|| s.protect_max(a..a + 7 * PS, Prot::ALL))),
        ("inherit to the same", Box::new(|| s.inherit(a..a + 7 * PS, Inherit::Copy))),
        ("madvise to the same", Box::new(|| s.madvise(a..a + 8 * PS, Advice::Random))),
        ("wire again", Box::new(|| s.wire(a..a + 2 * PS))),
        ("unwire unwired", Box::new(|| s.unwire(a + 2 * PS..a + 4 * PS))),
        ("unguard without guards", Box::new(|| s.unguard(a..a + 7 * PS))),
        ("seal sealed", Box::new(|| s.seal(a + 7 * PS..a + 8 * PS))),
        ("unmap a hole", Box::new(|| s.unmap(a + 16 * PS..a + 20 * PS))),
    ];
    for (name, call) in calls {
        let ts = s.with_map(|m| m.timestamp());
        s.inject_failure_after(Some(0));
        call().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.injection_armed(), "{name} made a system call");
        s.inject_failure_after(None);
        assert_eq!(s.with_map(|m| m.timestamp()), ts, "{name} moved the timestamp");
        agree(&s, name);
    }
}

/// Every change of inheritance between copy, none and zero, with each of its system calls failing in
/// turn (before or after taking effect) and each of recovery's too: the kernel never ends with both
/// `MADV_DONTFORK` and `MADV_WIPEONFORK` on a page (a state the map cannot say), and the map says what
/// the kernel has.
#[test]
fn inheritance_changes_fail_into_states_the_map_can_say() {
    let _serial = one_at_a_time();
    let states = [Inherit::Copy, Inherit::None, Inherit::Zero];
    let mut cases = 0;
    for from in states {
        for to in states {
            if from == to {
                continue;
            }
            for k in 0..2 {
                for j in [None, Some(0), Some(1), Some(2)] {
                    for mode in [FailureMode::Before, FailureMode::After] {
                        let s = AddressSpace::reserve_with(16 * PS, Options::default()).unwrap();
                        let a = s.range().start;
                        s.map_at(a..a + 4 * PS, rw()).unwrap();
                        s.inherit(a + PS..a + 2 * PS, from).unwrap();
                        s.inject_failure(Some(k), libc::EINVAL, mode);
                        s.inject_recovery_failure(j, libc::EINVAL, mode);
                        let got = s.inherit(a + PS..a + 2 * PS, to);
                        s.inject_failure_after(None);
                        s.inject_recovery_failure(None, libc::EINVAL, mode);
                        let what = format!(
                            "{from:?} → {to:?}, call {k} and recovery call {j:?} failing {mode:?}: {got:?}"
                        );
                        agree(&s, &what);
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 6 * 2 * 4 * 2);
}
