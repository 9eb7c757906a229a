//! AddressSpace on real memory: the kernel agrees with the map after every call, bad input changes
//! nothing in either, an injected system-call failure leaves them equal, threads can share a space.

use std::ops::Range;
use std::sync::Arc;

use vmspace::{AddressSpace, Advice, Backing, Error, FindSpec, Inherit, MapSpec, Options, Prot, VmError};

const PS: u64 = 4096;

/// A call on a space, for tables of cases.
type Call = Box<dyn Fn(&AddressSpace) -> Result<(), Error>>;
/// A call on a space at a base address.
type CallAt = Box<dyn Fn(&AddressSpace, u64) -> Result<(), Error>>;

fn rw() -> MapSpec<Backing> {
    MapSpec::new(Prot::RW, Prot::ALL)
}

fn agree(s: &AddressSpace) {
    let d = s.kernel_differences().unwrap();
    assert!(d.is_empty(), "map and kernel disagree:\n{}\n{s}", d.join("\n"));
    s.with_map(|m| m.check_invariants().unwrap());
}

/// The kernel's VMAs over the space, to show that a refused call changed nothing there either.
fn kernel_view(s: &AddressSpace) -> Vec<vmspace::smaps::Vma> {
    let r = s.range();
    vmspace::smaps::read_self()
        .unwrap()
        .into_iter()
        .filter(|v| v.range.start < r.end && v.range.end > r.start)
        .map(|mut v| {
            // Residency may change under us (another test's memory pressure); attributes may not.
            (v.rss, v.pss, v.anonymous, v.swap) = (0, 0, 0, 0);
            // A neighbour's reservation may merge with ours at the edges: only our part counts.
            v.range = v.range.start.max(r.start)..v.range.end.min(r.end);
            v
        })
        .collect()
}

fn write(addr: u64, v: u64) {
    // SAFETY: the tests only write to pages they mapped read-write in a space they own.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: the tests only read pages they mapped readable in a space they own.
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

#[test]
fn map_write_protect_unmap() {
    let s = AddressSpace::reserve(1 << 24).unwrap();
    let a = s.map(16 * PS, rw()).unwrap();
    assert_eq!(a, s.range().start);
    for i in 0..16 {
        write(a + i * PS, i);
    }
    s.protect(a + 4 * PS..a + 5 * PS, Prot::READ).unwrap();
    assert_eq!(read(a + 4 * PS), 4);
    agree(&s);
    s.protect(a + 4 * PS..a + 5 * PS, Prot::RW).unwrap();
    assert_eq!(s.regions().len(), 1);
    s.madvise(a..a + 2 * PS, Advice::DontNeed).unwrap();
    assert_eq!(read(a), 0, "DONTNEED drops private anonymous pages");
    assert_eq!(read(a + 2 * PS), 2);
    s.inherit(a..a + PS, Inherit::None).unwrap();
    s.inherit(a + PS..a + 2 * PS, Inherit::Zero).unwrap();
    s.madvise(a + 2 * PS..a + 3 * PS, Advice::NoCore).unwrap();
    s.madvise(a + 3 * PS..a + 4 * PS, Advice::Random).unwrap();
    s.madvise(a + 4 * PS..a + 5 * PS, Advice::Sequential).unwrap();
    s.wire(a + 5 * PS..a + 7 * PS).unwrap();
    agree(&s);
    let st = s.stats().unwrap();
    assert_eq!(st.mapped, 16 * PS);
    assert_eq!(st.wired, 2 * PS);
    assert!(st.resident >= 12 * PS && st.rss >= 12 * PS, "{st:?}");
    assert!(st.pss <= st.rss && st.anonymous >= 12 * PS, "{st:?}");
    s.unwire(a..a + 16 * PS).unwrap();
    s.unmap(a + 8 * PS..a + 16 * PS).unwrap();
    agree(&s);
    let b = s.map_with(&FindSpec { align: 1 << 21, ..FindSpec::new(4 * PS) }, rw()).unwrap();
    assert_eq!(b % (1 << 21), 0);
    agree(&s);
}

#[test]
fn shared_memory_and_files() {
    let s = AddressSpace::reserve(1 << 22).unwrap();
    let shm = Backing::shared_anonymous(4 * PS).unwrap();
    let a = s.map(4 * PS, rw().with_object(shm.clone(), 0)).unwrap();
    let b = s.map(4 * PS, rw().with_object(shm, 0)).unwrap();
    write(a + 8, 77);
    assert_eq!(read(b + 8), 77, "two mappings of one memfd share pages");
    assert_eq!(s.lookup_entry(a).unwrap().inherit(), Inherit::Share, "shared backings are inherited shared");
    agree(&s);
    assert!(matches!(s.inherit(a..a + PS, Inherit::Copy), Err(Error::NotSupported(_))));
    assert!(matches!(s.map(PS, rw().with_inherit(Inherit::Share)), Err(Error::NotSupported(_))));
    let path = std::env::temp_dir().join(format!("vmspace-file-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; 2 * PS as usize]).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let c = s
        .map(2 * PS, MapSpec::new(Prot::READ, Prot::READ).with_object(Backing::file(f.into(), false), 0))
        .unwrap();
    assert_eq!(read(c) & 0xff, 7);
    agree(&s);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn bad_input_changes_nothing() {
    let s = AddressSpace::reserve(1 << 22).unwrap();
    let r = s.range();
    let a = s.map(8 * PS, rw()).unwrap();
    s.seal(a + 6 * PS..a + 8 * PS).unwrap();
    let before = (s.regions(), kernel_view(&s));
    let cases: Vec<(VmError, Call)> = vec![
        (VmError::InvalidArgument, Box::new(move |s| s.protect(a + 1..a + PS, Prot::READ))),
        (VmError::InvalidArgument, Box::new(move |s| s.map_at(a + 9 * PS..a + 9 * PS, rw()))),
        (VmError::InvalidArgument, Box::new(move |s| s.map(0, rw()).map(|_| ()))),
        (VmError::InvalidArgument, Box::new(move |s| s.map(PS + 1, rw()).map(|_| ()))),
        (VmError::InvalidArgument, Box::new(move |s| s.unmap(a + PS..a))),
        (VmError::InvalidArgument, Box::new(move |s| s.protect(u64::MAX - PS + 1..u64::MAX, Prot::READ))),
        (VmError::InvalidAddress, Box::new(move |s| s.protect(r.start - PS..r.start + PS, Prot::READ))),
        (VmError::InvalidAddress, Box::new(move |s| s.map_at(r.end - PS..r.end + PS, rw()))),
        (VmError::InvalidAddress, Box::new(move |s| s.protect(a + 8 * PS..a + 9 * PS, Prot::READ))),
        (VmError::InvalidAddress, Box::new(move |s| s.wire(a + 7 * PS..a + 10 * PS))),
        (VmError::NoSpace, Box::new(move |s| s.map_at(a..a + PS, rw()))),
        (VmError::NoSpace, Box::new(move |s| s.map(1 << 23, rw()).map(|_| ()))),
        (
            VmError::ProtectionFailure,
            Box::new(move |s| s.map_at(a + 9 * PS..a + 10 * PS, MapSpec::new(Prot::RW, Prot::READ))),
        ),
        (VmError::Sealed, Box::new(move |s| s.unmap(a..a + 8 * PS))),
        (VmError::Sealed, Box::new(move |s| s.protect(a + 7 * PS..a + 8 * PS, Prot::READ))),
        (VmError::Sealed, Box::new(move |s| s.madvise(a + 6 * PS..a + 7 * PS, Advice::DontNeed))),
        (VmError::Sealed, Box::new(move |s| s.guard(a + 6 * PS..a + 7 * PS))),
    ];
    s.protect_max(a..a + PS, Prot::READ).unwrap();
    let before = (s.regions(), kernel_view(&s), before.0.len());
    assert!(matches!(s.protect(a..a + PS, Prot::RW), Err(Error::Vm(VmError::ProtectionFailure))));
    for (i, (want, op)) in cases.iter().enumerate() {
        let got = op(&s);
        assert_eq!(got.as_ref().err().and_then(Error::vm), Some(*want), "case {i}: {got:?}");
        assert_eq!(s.regions(), before.0, "case {i}: the map changed");
        assert_eq!(kernel_view(&s), before.1, "case {i}: the kernel changed");
    }
    agree(&s);
}

#[test]
fn injected_failures_leave_map_and_kernel_equal() {
    let ops: Vec<(&str, CallAt)> = vec![
        ("map_at", Box::new(|s, a| s.map_at(a + 20 * PS..a + 22 * PS, rw().with_inherit(Inherit::None)))),
        ("protect", Box::new(|s, a| s.protect(a + PS..a + 9 * PS, Prot::READ))),
        ("unmap", Box::new(|s, a| s.unmap(a + 2 * PS..a + 7 * PS))),
        ("inherit", Box::new(|s, a| s.inherit(a..a + 8 * PS, Inherit::Zero))),
        ("madvise", Box::new(|s, a| s.madvise(a..a + 8 * PS, Advice::Random))),
        ("wire", Box::new(|s, a| s.wire(a..a + 10 * PS))),
        ("guard", Box::new(|s, a| s.guard(a + 3 * PS..a + 5 * PS))),
    ];
    for (name, op) in &ops {
        for opts in [Options::default(), Options { guard_fallback: true, ..Options::default() }] {
            for k in 0..6 {
                let s = AddressSpace::reserve_with(1 << 22, opts).unwrap();
                let a = s.range().start;
                s.map_at(a..a + 10 * PS, rw()).unwrap();
                // A patchwork, so one call touches several entries and makes several system calls.
                s.protect(a + 2 * PS..a + 3 * PS, Prot::READ).unwrap();
                s.madvise(a + 5 * PS..a + 6 * PS, Advice::Sequential).unwrap();
                s.wire(a + 8 * PS..a + 9 * PS).unwrap();
                for p in 0..10 {
                    if p != 2 {
                        write(a + p * PS, 100 + p);
                    }
                }
                s.inject_failure_after(Some(k));
                let got = op(&s, a);
                s.inject_failure_after(None);
                if let Err(e) = &got {
                    assert!(matches!(e, Error::Os { .. }), "{name} after {k} calls: {e}");
                }
                agree(&s);
                // Whatever survived kept its contents.
                for p in 0..10 {
                    if let Some(e) = s.lookup_entry(a + p * PS)
                        && e.prot().contains(Prot::READ)
                        && !e.flags().contains(vmspace::EntryFlags::GUARD)
                        && p != 2
                    {
                        assert_eq!(
                            read(a + p * PS),
                            100 + p,
                            "{name} after {k} calls: page {p} lost its contents"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn guard_fallback_is_prot_none() {
    let s =
        AddressSpace::reserve_with(1 << 20, Options { guard_fallback: true, ..Options::default() }).unwrap();
    let a = s.map(4 * PS, rw()).unwrap();
    write(a + PS, 5);
    s.guard(a + PS..a + 2 * PS).unwrap();
    agree(&s);
    s.protect(a..a + 4 * PS, Prot::READ).unwrap();
    agree(&s);
    s.unguard(a + PS..a + 2 * PS).unwrap();
    assert_eq!(read(a + PS), 5, "the PROT_NONE fallback keeps contents");
    agree(&s);
}

#[test]
fn threads_share_a_space() {
    let s = Arc::new(AddressSpace::reserve(1 << 26).unwrap());
    // A region every thread re-protects, overlapping the others' calls; nobody writes to it.
    let common = s.map(64 * PS, rw()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..200u64 {
                    let a = s.map((1 + (i % 4)) * PS, rw()).unwrap();
                    write(a, t * 1000 + i);
                    s.protect(a..a + PS, Prot::READ).unwrap();
                    mine.push(a);
                    if i % 3 == 0 {
                        let old = mine.remove(0);
                        s.unmap(old..old + PS).unwrap();
                    }
                    // Overlapping calls across threads on the common region.
                    let off = (i * 7 + t * 13) % 48;
                    let p = if i % 2 == 0 { Prot::READ } else { Prot::RW };
                    s.protect(common + off * PS..common + (off + 16) * PS, p).unwrap();
                }
                for a in mine {
                    assert_eq!(s.lookup_entry(a).map(|e| e.prot()), Some(Prot::READ));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    agree(&s);
}

#[test]
fn populate_and_wire_future() {
    let s = AddressSpace::reserve(1 << 22).unwrap();
    let a = s.map(16 * PS, rw()).unwrap();
    s.populate(a..a + 16 * PS, true).unwrap();
    assert_eq!(s.stats().unwrap().resident, 16 * PS, "populate faults every page in");
    let r = s.map(4 * PS, MapSpec::new(Prot::READ, Prot::ALL)).unwrap();
    assert!(s.populate(r..r + 4 * PS, true).is_err(), "write-populating read-only memory is refused");
    s.populate(r..r + 4 * PS, false).unwrap();
    s.set_wire_future(true).unwrap();
    let w = s.map(8 * PS, rw()).unwrap();
    assert!(s.lookup_entry(w).unwrap().user_wired(), "wire_future wires new mappings");
    let before = s.stats().unwrap().resident;
    write(w, 1);
    assert_eq!(s.stats().unwrap().resident, before + PS, "locked on fault: only the touched page came in");
    agree(&s);
    s.set_wire_future(false).unwrap();
    let plain = s.map(PS, rw()).unwrap();
    assert!(!s.lookup_entry(plain).unwrap().user_wired());
    agree(&s);
}

/// `populate` validates its range like every other call: shape, bounds, holes, then access.
#[test]
fn populate_refuses_what_every_call_refuses() {
    let s = AddressSpace::reserve(1 << 20).unwrap();
    let a = s.map(8 * PS, rw()).unwrap();
    let ro = s.map(2 * PS, MapSpec::new(Prot::READ, Prot::ALL)).unwrap();
    let g = s.map(2 * PS, rw()).unwrap();
    s.guard(g..g + PS).unwrap();
    let end = s.range().end;
    let cases: Vec<(VmError, Range<u64>, bool)> = vec![
        (VmError::InvalidArgument, a + 1..a + PS, true),
        (VmError::InvalidArgument, a..a + PS + 1, true),
        (VmError::InvalidArgument, a + PS..a, true),
        (VmError::InvalidAddress, end - PS..end + PS, true),
        (VmError::InvalidAddress, a - PS..a + PS, false),
        (VmError::InvalidAddress, g + 2 * PS..g + 4 * PS, false),
        (VmError::ProtectionFailure, ro..ro + PS, true),
        (VmError::ProtectionFailure, g..g + 2 * PS, false),
    ];
    let before = (s.regions(), s.stats().unwrap().resident);
    for (want, r, write) in cases {
        let got = s.populate(r.clone(), write);
        assert_eq!(got.as_ref().err().and_then(Error::vm), Some(want), "{r:#x?} write {write}: {got:?}");
        assert_eq!((s.regions(), s.stats().unwrap().resident), before, "{r:#x?}: something changed");
    }
    s.populate(a..a, true).unwrap();
    assert_eq!(s.stats().unwrap().resident, before.1, "an empty range populates nothing");
    s.populate(ro..ro + PS, false).unwrap();
    s.populate(a..a + 8 * PS, true).unwrap();
    agree(&s);
}
