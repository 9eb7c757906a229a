//! Fork with a reclaim ring (xnu's fork tests, A9): the child inherits the ring and its entries as a
//! copy, cancels an inherited id with the data intact, appends after the parent's last id, flushes; it
//! cannot allocate a second process-wide ring; the parent's reclaimer thread does not act on the child's
//! memory, and the child can start a reclaimer of its own. One test in this binary (it forks).

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vmspace::fork::{Forked, fork};
use vmspace::reclaim::{
    Action, ReclaimError, ReclaimId, ReclaimRing, ReclaimState, Reclaimer, ReclaimerConfig,
};
use vmspace::{Prot, os};

const PS: u64 = 4096;

fn write(addr: u64, v: u64) {
    // SAFETY: only pages the test mapped read-write.
    unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: only pages the test mapped read-write (and still mapped where read).
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned by these files alone.
    unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) }
}

/// The child's checks; a failure message or None.
fn child(
    ring: &mut ReclaimRing,
    parent_reclaimer: &Reclaimer,
    a: u64,
    n: u64,
    go: &mut std::fs::File,
) -> Option<String> {
    if !parent_reclaimer.is_inherited() {
        return Some("the parent's reclaimer does not know it is inherited".into());
    }
    // Cannot allocate a second process-wide ring: the child inherited it.
    if ReclaimRing::allocate(1, 1).err() != Some(ReclaimError::ResourceShortage) {
        return Some("second ring allowed in the child".into());
    }
    // Wait until the parent's reclaimer has drained the parent's ring.
    let mut b = [0u8; 1];
    go.read_exact(&mut b).ok()?;
    // The parent's reclaim did not reach us: our inherited entries are intact and cancellable.
    let c = ring.try_cancel(ReclaimId(0), a, PS, Action::Deallocate).ok()?;
    if c.state != ReclaimState::Unreclaimed {
        return Some(format!("inherited id 0 is {:?} in the child", c.state));
    }
    if read(a) != 100 {
        return Some(format!("data of id 0 lost: {}", read(a)));
    }
    for i in 1..n {
        if ring.query_state(ReclaimId(i), Action::Deallocate).ok()? != ReclaimState::Unreclaimed {
            return Some(format!("inherited id {i} reclaimed in the child"));
        }
        if read(a + i * PS) != 100 + i {
            return Some(format!("data of id {i} changed"));
        }
    }
    // Appends continue after the parent's ids.
    let e = ring.try_enter(a, PS, Action::Deallocate, None).ok()?;
    if e.id != Some(ReclaimId(n)) {
        return Some(format!("child's next id {:?}, want {n}", e.id));
    }
    // The parent's reclaimer is inert here.
    if ring.attach(parent_reclaimer) != Err(ReclaimError::NotSupported) {
        return Some("attached to the parent's reclaimer".into());
    }
    // Flush works in the child, and so does a reclaimer of its own.
    let rep = ring.flush(2).ok()?;
    if rep.processed() != 2 {
        return Some(format!("child flush: {rep:?}"));
    }
    let mine = Reclaimer::spawn(ReclaimerConfig {
        tick: Duration::from_millis(2),
        pressure: Some(Box::new(|| Some(100.0))),
        ..Default::default()
    })
    .ok()?;
    ring.attach(&mine).ok()?;
    let end = Instant::now() + Duration::from_secs(5);
    while !ring.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
    if !ring.is_empty() {
        return Some("the child's own reclaimer did not drain".into());
    }
    if ring.try_cancel(ReclaimId(n - 1), a + (n - 1) * PS, PS, Action::Deallocate).ok()?.state
        != ReclaimState::Deallocated
    {
        return Some("last inherited id not deallocated by the child's reclaimer".into());
    }
    None
}

#[test]
fn fork_inherits_the_ring_and_not_the_reclaimer() {
    let level = Arc::new(AtomicU64::new(0f64.to_bits()));
    let l = Arc::clone(&level);
    let r = Reclaimer::spawn(ReclaimerConfig {
        tick: Duration::from_millis(2),
        pressure: Some(Box::new(move || Some(f64::from_bits(l.load(Ordering::Relaxed))))),
        pressure_threshold: 10.0,
        pressure_floor: 0,
    })
    .unwrap();
    let mut ring =
        ReclaimRing::allocate(ReclaimRing::round_capacity(1), ReclaimRing::round_capacity(1)).unwrap();
    ring.attach(&r).unwrap();
    let n = 8;
    let a = os::reserve(n * PS).unwrap();
    // SAFETY: the test's own memory; nothing holds a reference into it.
    unsafe { os::map_fixed(a, n * PS, Prot::RW, os::Fixed::Anonymous) }.unwrap();
    for i in 0..n {
        write(a + i * PS, 100 + i);
        assert_eq!(ring.try_enter(a + i * PS, PS, Action::Deallocate, None).unwrap().id, Some(ReclaimId(i)));
    }
    let (mut rd, mut wr) = pipe();
    let (mut res_rd, mut res_wr) = pipe();
    // SAFETY: the child runs only the checks above and `_exit`s; the reclaimer thread's lock is not
    // needed there (the child adopts the ring with a state of its own).
    match unsafe { fork() }.unwrap() {
        Forked::Child => {
            drop(wr);
            drop(res_rd);
            let msg = child(&mut ring, &r, a, n, &mut rd);
            let _ = res_wr.write_all(msg.unwrap_or_default().as_bytes());
            drop(res_wr);
            // SAFETY: ends the child without unwinding into the test harness.
            unsafe { libc::_exit(0) }
        }
        Forked::Parent(pid) => {
            drop(rd);
            drop(res_wr);
            // Pressure in the parent: its reclaimer drains the parent's ring.
            level.store(90f64.to_bits(), Ordering::Relaxed);
            let end = Instant::now() + Duration::from_secs(5);
            while !ring.is_empty() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(ring.is_empty(), "parent's reclaimer did not drain");
            assert_eq!(
                ring.query_state(ReclaimId(0), Action::Deallocate).unwrap(),
                ReclaimState::Deallocated
            );
            wr.write_all(b"g").unwrap();
            let mut msg = String::new();
            res_rd.read_to_string(&mut msg).unwrap();
            let mut status = 0;
            // SAFETY: waits for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(msg.is_empty(), "child: {msg}");
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
        }
    }
    drop(ring);
    drop(r);
    // The parent's reclaimer deallocated every page of `a` (asserted above): nothing is left to unmap.
}
