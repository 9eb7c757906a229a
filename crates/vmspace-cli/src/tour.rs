//! `vmspace tour`: a guided run on real memory. Reserve, map, protect, guard, wire, fork, grow a stack,
//! enter and cancel in a reclaim ring, run code from a scratch slot, and print the map after each
//! step, checking each time that the map and the kernel agree.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vmspace::fault::spawn_on_stack;
use vmspace::fork::{Forked, fork};
use vmspace::reclaim::{Action, ReclaimRing};
use vmspace::scratch::ScratchSpace;
use vmspace::{AddressSpace, Advice, Inherit, MapSpec, Prot};

const PS: u64 = 4096;

/// `--json`: one object per line instead of the narrative.
static JSON: AtomicBool = AtomicBool::new(false);

/// One line of `vmspace tour --json`.
#[derive(serde::Serialize)]
struct Note<'a> {
    step: u32,
    text: &'a str,
    entries: Option<usize>,
    mapped: Option<u64>,
    agrees: Option<bool>,
}

/// Prints `text` (the narrative), or under `--json` one object with its first line, the space's
/// entries and mapped bytes, and whether the map and the kernel agreed.
fn note(step: u32, text: &str, space: Option<&AddressSpace>, agrees: Option<bool>) {
    if JSON.load(Ordering::Relaxed) {
        let st = space.and_then(|s| s.stats().ok());
        // The headline without the narrative's `== N. ` (the step is a field of its own).
        let head = text.lines().next().unwrap_or("").trim_start_matches("== ").trim();
        let head = head.split_once(". ").filter(|(n, _)| n.parse::<u32>().is_ok()).map_or(head, |(_, t)| t);
        let n = Note {
            step,
            text: head,
            entries: st.as_ref().map(|s| s.entries),
            mapped: st.as_ref().map(|s| s.mapped),
            agrees,
        };
        print!("{}", crate::mapjson::to_line(&n));
    } else {
        println!("{text}");
    }
}

fn step(n: u32, title: &str, space: &AddressSpace) -> Result<(), String> {
    let agree = space.kernel_differences().map_err(|e| e.to_string())?;
    if JSON.load(Ordering::Relaxed) {
        note(n, title, Some(space), Some(agree.is_empty()));
    } else {
        println!("== {n}. {title}\n{space}");
    }
    if agree.is_empty() {
        if !JSON.load(Ordering::Relaxed) {
            println!("   the map and /proc/self/smaps agree page by page\n");
        }
        Ok(())
    } else {
        Err(format!("the map and the kernel disagree after step {n}:\n{}", agree.join("\n")))
    }
}

/// Recurses with 1 KiB frames, `depth` deep.
#[inline(never)]
fn recurse(depth: u32) -> u64 {
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == 0 { u64::from(frame[0]) } else { recurse(depth - 1) + u64::from(frame[7]) }
}

/// Runs the tour, printing to standard output (one JSON object per step with `json`).
pub fn run_with(json: bool) -> Result<(), String> {
    JSON.store(json, Ordering::Relaxed);
    run()
}

/// Runs the tour, printing to standard output.
pub fn run() -> Result<(), String> {
    let e = |e: vmspace::Error| e.to_string();
    let space = Arc::new(AddressSpace::reserve(256 << 20).map_err(e)?);
    let r = space.range();
    note(
        0,
        &format!(
            "reserved {:#x}..{:#x} (256 MiB, PROT_NONE, MAP_NORESERVE), owned by a VmMap\n",
            r.start, r.end
        ),
        Some(&space),
        None,
    );

    let heap = space.map(256 * PS, MapSpec::new(Prot::RW, Prot::ALL)).map_err(e)?;
    step(1, "map 1 MiB read-write", &space)?;

    space.protect(heap + 16 * PS..heap + 17 * PS, Prot::READ).map_err(e)?;
    space.guard(heap + 255 * PS..heap + 256 * PS).map_err(e)?;
    space.wire(heap..heap + 4 * PS).map_err(e)?;
    space.madvise(heap + 32 * PS..heap + 64 * PS, Advice::Sequential).map_err(e)?;
    space.inherit(heap + 128 * PS..heap + 160 * PS, Inherit::None).map_err(e)?;
    step(
        2,
        "protect a page, guard the last one, wire 16 KiB, advise sequential, don't-fork 128 KiB",
        &space,
    )?;

    std::io::stdout().flush().map_err(|e| e.to_string())?;
    // SAFETY: the child only prints its map and leaves with _exit.
    match unsafe { fork() }.map_err(|e| e.to_string())? {
        Forked::Child => {
            let ok = space.kernel_differences().map(|d| d.is_empty()).unwrap_or(false);
            note(
                3,
                &format!(
                    "== 3. in the forked child: no wiring, a hole where inheritance was none\n{space}\n   the child's map and its kernel agree: {}\n",
                    if ok { "yes" } else { "NO" }
                ),
                Some(&space),
                Some(ok),
            );
            let _ = std::io::stdout().flush();
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        Forked::Parent(pid) => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGPIPE {
                // The child wrote to a closed pipe (`vmspace tour | head`): end the same quiet way.
                // SAFETY: raising a signal whose action is the default (termination).
                unsafe { libc::raise(libc::SIGPIPE) };
            }
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                return Err("the forked child's map disagreed with its kernel".into());
            }
        }
    }

    let s2 = Arc::clone(&space);
    let t = spawn_on_stack(&space, 8 << 20, 64 << 10, move || {
        let sum = recurse(1500);
        let stack: u64 = s2
            .regions()
            .iter()
            .filter(|e| e.flags().contains(vmspace::EntryFlags::STACK))
            .map(|e| e.len())
            .sum();
        note(
            4,
            &format!(
                "== 4. a thread on an 8 MiB vmspace stack with 64 KiB mapped recursed 1.5 MiB deep (sum {sum})\n   its stack grew on faults to {} KiB:\n{s2}",
                stack / 1024
            ),
            Some(&s2),
            None,
        );
    })
    .map_err(e)?;
    t.join().map_err(|_| "the stack thread panicked".to_string())?;
    step(5, "after the thread: its stack is unmapped", &space)?;

    let cap = ReclaimRing::round_capacity(64);
    let mut ring = ReclaimRing::bound(&space, cap, cap).map_err(|e| e.to_string())?;
    let a = space.map(16 * PS, MapSpec::new(Prot::RW, Prot::ALL)).map_err(e)?;
    let b = space.map(16 * PS, MapSpec::new(Prot::RW, Prot::ALL)).map_err(e)?;
    let ea = ring.try_enter(a, 16 * PS, Action::Deallocate, None).map_err(|e| e.to_string())?;
    let eb = ring.try_enter(b, 16 * PS, Action::Deallocate, None).map_err(|e| e.to_string())?;
    let ca = ring
        .try_cancel(ea.id.ok_or("ring full")?, a, 16 * PS, Action::Deallocate)
        .map_err(|e| e.to_string())?;
    note(
        6,
        &format!(
            "== 6. reclaim ring: entered two 64 KiB blocks, cancelled the first: {:?} (reusable: {})",
            ca.state,
            ca.state.is_reusable()
        ),
        Some(&space),
        None,
    );
    let flushed = ring.drain().map_err(|e| e.to_string())?;
    let cb = ring
        .try_cancel(eb.id.ok_or("ring full")?, b, 16 * PS, Action::Deallocate)
        .map_err(|e| e.to_string())?;
    note(
        6,
        &format!(
            "   drained the ring ({} region, {} KiB); cancelling the second now says {:?}: the reclaimer unmapped it",
            flushed.reclaimed,
            flushed.bytes / 1024,
            cb.state
        ),
        Some(&space),
        None,
    );
    step(7, "after the reclaim: the second block is gone from the map and the kernel", &space)?;
    drop(ring);

    let scratch = ScratchSpace::enable(&space).map_err(|e| e.to_string())?;
    let slot = scratch.claim().map_err(|e| e.to_string())?;
    #[cfg(target_arch = "x86_64")]
    {
        let code: [u8; 6] = [0xb8, 42, 0, 0, 0, 0xc3]; // mov eax, 42; ret
        // SAFETY: the slot's writable alias is ours for as long as we hold the slot.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), slot.write_addr() as *mut u8, code.len()) };
        slot.view().sync_icache();
        // SAFETY: the executable view holds the six bytes just written: a complete function.
        let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(slot.addr() as usize) };
        note(
            8,
            &format!(
                "== 8. scratch slot: wrote `mov eax, 42; ret` through {:#x} (rw-), ran it at {:#x} (r-x): {}",
                slot.write_addr(),
                slot.addr(),
                f()
            ),
            Some(&space),
            None,
        );
    }
    scratch.release(slot).map_err(|e| e.to_string())?;
    step(9, "with the scratch page mapped twice (never writable and executable at one address)", &space)?;
    Ok(())
}
