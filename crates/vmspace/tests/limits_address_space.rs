//! `RLIMIT_AS` lowered, each scenario in a child process of its own (`limits_support`): reserving,
//! the reclaim ring and the scratch space fail with typed errors and leak nothing, while a space
//! reserved before keeps working (mapping over its own reservation does not grow the address
//! space); and a kernel-feature probe refused at the limit is not remembered.

mod limits_support;

use limits_support::*;

#[test]
fn address_space_limit() {
    expect_done("address_space", &this_exe(), |_| {});
}

/// The kernel's features probed first at a limit that refuses the probe's scratch mapping: the
/// failed probe is not remembered. (Before, `features()` said "no mseal, no guards" for the rest of
/// the process: `seal` was NotSupported on a 6.18 kernel.)

#[test]
fn a_probe_refused_at_a_limit_is_not_remembered() {
    expect_done("probe_at_limit", &this_exe(), |_| {});
}

/// The children's side of the tests above: does nothing unless run by `run_child`.
#[test]
fn child_entry() {
    limits_support::child_entry(&[("address_space", address_space), ("probe_at_limit", probe_at_limit)]);
}

/// Probes first asked with no address space left (RLIMIT_AS at what is in use), then with room again.
fn probe_at_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given; setrlimit changes only this process's limit.
    let saved = unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut lim), 0);
        let saved = lim;
        lim.rlim_cur = vm_size();
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &lim), 0, "{}", std::io::Error::last_os_error());
        saved
    };
    let refused = vmspace::os::features();
    assert!(
        !refused.mseal && !refused.guard_install,
        "with no room to probe, nothing is taken as there: {refused:?}"
    );
    // SAFETY: as above, back to the limit the process started with.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &saved), 0) };
    let f = vmspace::os::features();
    assert!(f.mseal && f.guard_install && f.wipe_on_fork, "probed again once there is room: {f:?}");
    let s = AddressSpace::reserve(1 << 20).unwrap();
    let a = s.map(2 * PS, rw()).unwrap();
    s.seal(a..a + PS).unwrap();
    agree(&s, "after the probe at the limit");
}

/// Scenario 3: RLIMIT_AS a little above what the process uses. Reserving more fails with a typed
/// error; the reclaim ring and the scratch space fail with theirs when they cannot get memory; none
/// leaks a byte. A space reserved before the limit keeps mapping, protecting and unmapping inside its
/// reservation, which does not grow the address space.
fn address_space() {
    let mut maps = Maps::new(1 << 16);
    let space = Arc::new(AddressSpace::reserve(256 << 20).unwrap());
    warm_up();
    let headroom = 16u64 << 20;
    let limit = vm_size() + headroom;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given; setrlimit only lowers this process's limit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut lim), 0);
        lim.rlim_cur = limit;
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &lim), 0, "{}", std::io::Error::last_os_error());
    }
    eprintln!("limits child address_space: RLIMIT_AS {} MiB, {} MiB in use", limit >> 20, vm_size() >> 20);
    let before = maps.coverage();
    let leaked = |maps: &mut Maps, what: &str| {
        let g = grown(&before, &maps.coverage());
        assert!(g.is_empty(), "{what}: the process maps {g:#x?} it did not map before");
    };

    for len in [1u64 << 30, 64 << 20] {
        let got = AddressSpace::reserve(len);
        eprintln!("limits child address_space: reserve({} MiB): {:?}", len >> 20, got.as_ref().err());
        match got {
            Err(Error::Os { call: "mmap", source }) if source.raw_os_error() == Some(libc::ENOMEM) => {}
            other => panic!("reserve of {len} bytes beyond RLIMIT_AS: {other:?}"),
        }
        leaked(&mut maps, "a failed reserve");
    }

    // Inside the space reserved before: mapping replaces reservation, so 200 MiB fit where 16 do not.
    let a = space.range().start;
    let big = 200u64 << 20;
    space.map_at(a..a + big, rw()).expect("mapping over the space's own reservation");
    for off in (0..big).step_by(1 << 20) {
        write(a + off, tag(a + off));
    }
    space.protect(a..a + (64 << 20), Prot::READ).unwrap();
    space.unmap(a + (64 << 20)..a + (128 << 20)).unwrap();
    space.map_at(a + (64 << 20)..a + (96 << 20), rw()).unwrap();
    space.guard(a + (160 << 20)..a + (160 << 20) + PS).unwrap();
    space.wire(a + (170 << 20)..a + (170 << 20) + 4 * PS).unwrap();
    agree(&space, "calls inside a space reserved before RLIMIT_AS was lowered");
    for off in (0..64u64 << 20).chain(128 << 20..160 << 20).step_by(1 << 20) {
        assert_eq!(read(a + off), tag(a + off), "page {:#x} lost its contents", a + off);
    }
    space.unmap(a..a + big).unwrap();
    agree(&space, "unmapping it all again");
    leaked(&mut maps, "calls inside the space");

    // The reclaim ring: the largest ring needs 128 MiB of address space it cannot get.
    for bound in [false, true] {
        let got = if bound {
            ReclaimRing::bound(&space, MAX_CAPACITY, MAX_CAPACITY)
        } else {
            ReclaimRing::allocate(MAX_CAPACITY, MAX_CAPACITY)
        };
        eprintln!(
            "limits child address_space: ring of MAX_CAPACITY (bound {bound}): {:?}",
            got.as_ref().err()
        );
        assert!(matches!(got, Err(ReclaimError::ResourceShortage)), "{got:?}");
        leaked(&mut maps, "a failed ring");
    }
    // A small ring fits, and the failed process-wide ring gave its slot back.
    let small = ReclaimRing::round_capacity(512);
    drop(ReclaimRing::allocate(small, small).expect("a small process-wide ring after the failed one"));

    // The scratch space: its own address space of 4096 pages of each view is 32 MiB.
    let got = ScratchSpace::new();
    eprintln!("limits child address_space: ScratchSpace::new(): {:?}", got.as_ref().err());
    match got {
        Err(ScratchError::Space(e)) if kernel_error(&e).is_some_and(|k| k.0 == libc::ENOMEM) => {}
        other => panic!("ScratchSpace::new beyond RLIMIT_AS: {other:?}"),
    }
    let got = ScratchSpace::builder().max_pages(1 << 20).build();
    match got {
        Err(ScratchError::Space(e)) if kernel_error(&e).is_some_and(|k| k.0 == libc::ENOMEM) => {}
        other => panic!("a scratch space of 2^20 pages beyond RLIMIT_AS: {other:?}"),
    }
    leaked(&mut maps, "a failed scratch space");
    // In the space reserved before, scratch pages are mapped over its reservation and fit.
    {
        let scratch = ScratchSpace::enable(&space).expect("a scratch space in the existing space");
        let slot = scratch.claim().expect("a scratch slot inside the existing space");
        write(slot.write_addr(), 42);
        assert_eq!(read(slot.addr()), 42, "the two views share the page");
        scratch.release(slot).unwrap();
        agree(&space, "a scratch page in the existing space");
    }
    agree(&space, "the scratch space dropped");
    leaked(&mut maps, "the whole scenario");
    let range = outer(&space);
    drop(Arc::into_inner(space).expect("the only reference"));
    let (n, bytes) = maps.over(&range);
    assert_eq!((n, bytes), (0, 0), "the dropped space left {n} VMAs, {bytes} bytes of {range:#x?}");
}
