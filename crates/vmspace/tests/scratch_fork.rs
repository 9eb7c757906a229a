//! The seed's `dtrace_ptss_fork`, fixed: a forked child has none of the parent's scratch pages (neither
//! view, nor the memfd behind them), its scratch space starts empty and works on pages of its own, and
//! the parent is unaffected. One test in this binary, so no other test thread is running when it forks.

mod scratch_support;

use scratch_support::{call, emit, exit_child, vma_at, wait};
use vmspace::fork::{Forked, fork};
use vmspace::scratch::{ScratchError, ScratchSlot, ScratchSpace};
use vmspace::{AddressSpace, Prot};

/// Descriptors of this process that are vmspace memfds.
fn memfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().contains("memfd:vmspace"))
        .count()
}

/// Runs in the child: a failure message, or None.
fn child_checks(
    s: &AddressSpace,
    scratch: &ScratchSpace<'_>,
    a: ScratchSlot,
    b: ScratchSlot,
) -> Option<String> {
    if scratch.pages() != 0 {
        return Some(format!("the child starts with {} pages", scratch.pages()));
    }
    for (name, at) in [("addr", a.addr()), ("write_addr", a.write_addr())] {
        if s.lookup_entry(at).is_some() {
            return Some(format!("the parent's {name} is still in the child's map"));
        }
        match vma_at(at) {
            Some(v) if v.prot == Prot::NONE => {}
            other => return Some(format!("the parent's {name} is reachable in the child: {other:?}")),
        }
    }
    if memfds() != 0 {
        return Some(format!("the child holds {} of the parent's memfds", memfds()));
    }
    if !s.kernel_differences().ok()?.is_empty() {
        return Some("child map and kernel disagree".into());
    }
    if !matches!(scratch.release(b), Err(ScratchError::Stale)) {
        return Some("releasing a parent's slot in the child was not refused as stale".into());
    }
    // The child's own scratch space works, on fresh pages.
    let c = scratch.claim().ok()?;
    if scratch.pages() != 1 {
        return Some(format!("{} pages after the child's first claim", scratch.pages()));
    }
    emit(&c.view(), 21);
    let cur = scratch.current().ok()?;
    emit(&cur, 22);
    if call(c.addr()) != 21 || call(cur.addr()) != 22 {
        return Some("the child's own slots do not run".into());
    }
    if !matches!(scratch.release(a), Err(ScratchError::Stale)) {
        return Some("a parent's slot became releasable after the child's reset".into());
    }
    scratch.release(c).ok()?;
    if !s.kernel_differences().ok()?.is_empty() {
        return Some("child map and kernel disagree after its claims".into());
    }
    None
}

#[test]
fn a_forked_child_starts_empty_and_cannot_reach_the_parents_pages() {
    let s = AddressSpace::reserve(1 << 22).unwrap();
    let scratch = ScratchSpace::enable(&s).unwrap();
    let a = scratch.claim().unwrap();
    let b = scratch.claim().unwrap();
    emit(&a.view(), 11);
    let cur = scratch.current().unwrap();
    emit(&cur, 12);
    assert_eq!(scratch.pages(), 1);
    assert!(memfds() >= 1);
    // SAFETY: this binary has a single test; the child checks, claims from its own scratch space and
    // leaves with _exit.
    match unsafe { fork() }.unwrap() {
        Forked::Child => {
            let code = match child_checks(&s, &scratch, a, b) {
                None => 0,
                Some(msg) => {
                    eprintln!("child: {msg}");
                    1
                }
            };
            exit_child(code)
        }
        Forked::Parent(pid) => {
            let status = wait(pid);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child failed: {status:#x}");
            // The parent's slots still run what it wrote, even where the child mapped its own page.
            assert_eq!(call(a.addr()), 11);
            assert_eq!(call(cur.addr()), 12);
            assert_eq!(scratch.current().unwrap(), cur);
            assert_eq!(scratch.pages(), 1);
            scratch.release(a).unwrap();
            scratch.release(b).unwrap();
            assert!(s.kernel_differences().unwrap().is_empty());
        }
    }
}
