//! `vm.max_map_count` (read, never changed: it is machine-wide), each scenario in a child process of
//! its own (`limits_support`): the child fills its address space with VMAs until it holds exactly the
//! limit, where the kernel refuses every call that must split a VMA. Calls in the middle of an entry
//! (unmap, protect, protect_max, map_at, inherit, wire, guard, madvise, seal) must fail, leave map and
//! kernel equal and leave contents alone. (The random calls at the limit: `limits_random.rs`.)
//!
//! A regression test of a recovery defect (fails on aa91570, before the recovery work): a failed
//! unmap in the middle of an entry that the map then forgot while the kernel kept the page.

mod limits_support;

use limits_support::*;

#[test]
fn map_count_limit_refused_calls_leave_map_and_kernel_equal() {
    expect_done("map_count_calls", &this_exe(), |_| {});
}

/// The children's side of the tests above: does nothing unless run by `run_child`.
#[test]
fn child_entry() {
    limits_support::child_entry(&[("map_count_calls", map_count_calls)]);
}

/// Scenario 1a/1b: at exactly `vm.max_map_count` VMAs, calls that must split a VMA are refused by
/// the kernel; each must fail, leave the map unchanged and equal to the kernel, and leave every page
/// the map says is mapped with its contents. A seal that takes one entry whole and must split the
/// next seals the first for good: the map must say so. The filler lies below the spaces (see
/// [`FILLER_BELOW_UP_TO`]), so every read of smaps over a space goes through all of its VMAs.
fn map_count_calls() {
    let max = max_map_count();
    warm_up();
    let mut maps = Maps::new(max);
    // Where the filler goes: below the spaces (made after them, right under the lowest), or for a
    // large vm.max_map_count above them (made first, the spaces under it).
    let below = max <= FILLER_BELOW_UP_TO;
    let early = (!below).then(|| Filler::new(max, None));
    let under = early.as_ref().map_or(u64::MAX, |f| f.base);
    let s = reserve_under(under, 1 << 30, Options::default());
    let fallback = reserve_under(under, 1 << 26, Options { guard_fallback: true, ..Options::default() });
    let z = reserve_under(under, 1 << 26, Options::default());
    let markers = vmspace::os::features().guard_install;
    assert!(vmspace::os::features().mseal, "the kernel lacks mseal (6.10): the seal cases cannot run");
    // Regions: one entry of 16 read-write pages each, every page tagged.
    for sp in [&s, &fallback, &z] {
        for i in 0..REGIONS {
            let e = region(sp, i) + 16 * PS;
            sp.map_at(e..e + 16 * PS, rw()).unwrap();
            for p in 0..16 {
                write(e + p * PS, tag(e + p * PS));
            }
        }
    }
    // In z's region 1 the entry is two: read-write, then read-only.
    let z1 = region(&z, 1) + 16 * PS;
    z.protect(z1 + 8 * PS..z1 + 16 * PS, Prot::READ).unwrap();
    let lowest = [&s, &fallback, &z].iter().map(|sp| outer(sp).start).min().unwrap();
    let mut filler = early.unwrap_or_else(|| Filler::new(max, Some(lowest - (1 << 20))));
    eprintln!(
        "limits child map_count_calls: max_map_count {max}, filler {:#x?}, spaces {:#x?} {:#x?} {:#x?}",
        filler.range(),
        s.range(),
        fallback.range(),
        z.range()
    );
    calibrate(&mut filler, &mut maps, max);

    let mid = |base: u64, from: u64, to: u64| base + (16 + from) * PS..base + (16 + to) * PS;
    let mut cases: Vec<Case<'_>> = vec![
        ("unmap in the middle of an entry", &s, Box::new(move |s, b| s.unmap(mid(b, 4, 5)))),
        ("unmap of pages in the middle", &s, Box::new(move |s, b| s.unmap(mid(b, 3, 9)))),
        ("protect in the middle", &s, Box::new(move |s, b| s.protect(mid(b, 4, 6), Prot::READ))),
        ("protect_max in the middle", &s, Box::new(move |s, b| s.protect_max(mid(b, 4, 6), Prot::READ))),
        (
            "map_at in the middle of a hole",
            &s,
            Box::new(move |s, b| s.map_at(b + 40 * PS..b + 42 * PS, rw())),
        ),
        ("inherit none in the middle", &s, Box::new(move |s, b| s.inherit(mid(b, 4, 6), Inherit::None))),
        ("inherit zero in the middle", &s, Box::new(move |s, b| s.inherit(mid(b, 4, 6), Inherit::Zero))),
        ("wire in the middle", &s, Box::new(move |s, b| s.wire(mid(b, 4, 6)))),
        (
            "madvise sequential in the middle",
            &s,
            Box::new(move |s, b| s.madvise(mid(b, 4, 6), Advice::Sequential)),
        ),
        ("madvise nocore in the middle", &s, Box::new(move |s, b| s.madvise(mid(b, 4, 6), Advice::NoCore))),
        ("guard (PROT_NONE fallback) in the middle", &fallback, Box::new(move |s, b| s.guard(mid(b, 4, 6)))),
        ("seal in the middle", &z, Box::new(move |s, b| s.seal(mid(b, 4, 6)))),
    ];
    if !markers {
        cases.push(("guard in the middle", &s, Box::new(move |s, b| s.guard(mid(b, 4, 6)))));
    }
    for (i, (name, sp, call)) in cases.iter().enumerate() {
        let base = region(sp, i as u64 + 2);
        let before = sp.regions();
        filler.hold(&mut maps, max);
        let got = call(sp, base);
        eprintln!("limits child map_count_calls: {name}: {got:?}");
        let e = got
            .err()
            .unwrap_or_else(|| panic!("{name}: at the limit the call should fail, but it succeeded"));
        let Some((errno, kept)) = kernel_error(&e) else { panic!("{name}: not the kernel's error: {e:?}") };
        assert!(errno == libc::ENOMEM || errno == libc::EAGAIN, "{name}: {e}");
        agree(sp, name);
        intact(sp, sp.range().start..sp.range().start + REGIONS * 64 * PS, name);
        // The kernel refused before it changed anything: nothing is kept and the map is as it was.
        assert!(kept.is_empty(), "{name}: the kernel kept nothing, yet the error says {e}");
        assert_eq!(sp.regions(), before, "{name}: the map changed although the kernel did nothing");
        if std::ptr::eq(*sp, &z) {
            assert!(sealed_in_kernel(&outer(sp)).is_empty(), "{name}: the kernel sealed something");
        }
    }

    // Guard markers need no VMA of their own: at the limit they are installed all the same.
    if markers {
        let e = region(&s, 30) + 16 * PS;
        filler.hold(&mut maps, max);
        let got = s.guard(e + 4 * PS..e + 6 * PS);
        eprintln!("limits child map_count_calls: guard (markers) in the middle: {got:?}");
        got.expect("guard markers need no split: at the limit they still go in");
        agree(&s, "guard markers at the limit");
        intact(&s, e..e + 16 * PS, "guard markers at the limit");
    }

    // A seal over a whole entry and into the middle of the next: the kernel seals the first (no
    // split needed) and refuses the second. The seal stays; the map must say so.
    filler.hold(&mut maps, max);
    let got = z.seal(z1..z1 + 12 * PS);
    eprintln!("limits child map_count_calls: seal into the middle of the next entry: {got:?}");
    let e = got.expect_err("at the limit a seal that must split should fail");
    let (errno, kept) = kernel_error(&e).unwrap_or_else(|| panic!("not the kernel's error: {e:?}"));
    assert_eq!(errno, libc::ENOMEM, "{e}");
    agree(&z, "seal into the middle of the next entry");
    intact(
        &z,
        z.range().start..z.range().start + REGIONS * 64 * PS,
        "seal into the middle of the next entry",
    );
    let sealed = sealed_in_kernel(&outer(&z));
    assert_eq!(
        entries_with(&z, EntryFlags::SEALED),
        sealed,
        "the map's sealed entries should be what the kernel sealed"
    );
    assert_eq!(sealed, vec![z1..z1 + 8 * PS], "the kernel should have sealed the first entry only");
    assert_eq!(kept, sealed, "the error should name what the kernel kept: {e}");

    // A whole entry needs no split: its unmap goes through at the limit.
    filler.hold(&mut maps, max);
    let e = region(&s, 31) + 16 * PS;
    s.unmap(e..e + 16 * PS).expect("unmapping a whole entry needs no split");
    agree(&s, "unmap of a whole entry at the limit");

    drop(cases);
    drop(filler);
    for (sp, what) in [(s, "the space"), (fallback, "the fallback space"), (z, "the sealed space")] {
        drop_and_check(sp, &mut maps, what);
    }
}
