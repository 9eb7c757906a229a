//! A tour of the address map: builds an address space the way a process gets one (text, data, heap,
//! a stack with growth room, a guard page, a shared region), changes it, forks it, and prints it after
//! each step the way `procstat -v` or `vmmap` would.
//!
//! `cargo run --release --example tour`

use vmspace_core::{Advice, Effect, FindSpec, Growth, Inherit, MapSpec, Prot, VmError, VmMap};

const PS: u64 = 4096;

fn show(title: &str, m: &VmMap) {
    println!("== {title}\n{m}\n");
    m.check_invariants().expect("invariants hold after every step");
}

fn effects(m: &VmMap) {
    for fx in m.effects() {
        let line = match fx {
            Effect::Map(e) => format!("map     {:#x}..{:#x} {}/{}", e.start, e.end, e.prot(), e.max_prot()),
            other => format!("{other:x?}"),
        };
        println!("   effect: {line}");
    }
}

fn main() -> Result<(), VmError> {
    // A 47-bit user address space, like x86-64 Linux's.
    let mut m: VmMap = VmMap::new(0x1_0000, 0x7fff_ffff_f000)?;

    m.insert(0x40_0000..0x40_0000 + 16 * PS, MapSpec::new(Prot::RX, Prot::RX))?; // text
    m.insert(0x40_0000 + 16 * PS..0x40_0000 + 20 * PS, MapSpec::new(Prot::READ, Prot::RW))?; // rodata
    m.insert(0x40_0000 + 20 * PS..0x40_0000 + 24 * PS, MapSpec::new(Prot::RW, Prot::ALL))?; // data
    // The heap goes after the data, as the seed's `vm_map_hint` places it.
    let hint = FindSpec { hint: Some(0x40_0000 + 24 * PS), ..FindSpec::new(64 * PS) };
    let heap = m.map_with(&hint, MapSpec::new(Prot::RW, Prot::ALL))?;
    let stack_top = 0x7fff_ffff_f000 - 16 * PS;
    let stack_base = stack_top - 8 * 1024 * 1024;
    m.stack(stack_base, 8 * 1024 * 1024, 32 * PS, MapSpec::new(Prot::RW, Prot::ALL))?;
    show("a fresh process: text, rodata, data, heap, an 8 MiB stack with 128 KiB mapped", &m);

    m.protect(heap + 8 * PS..heap + 9 * PS, Prot::NONE)?;
    effects(&m);
    m.guard(heap + 63 * PS..heap + 64 * PS)?;
    m.madvise(heap..heap + 8 * PS, Advice::Sequential)?;
    m.wire(heap..heap + 4 * PS)?;
    show("protect a heap page, guard the last one, advise sequential, wire four pages", &m);

    m.protect(heap + 8 * PS..heap + 9 * PS, Prot::RW)?;
    show("protect the page back: it merges into its neighbours again", &m);

    let fault = stack_top - 40 * PS;
    println!("lookup at {fault:#x}: {:?}", m.lookup(fault, Prot::WRITE).unwrap_err());
    if let Growth::Grew(r) = m.grow_stack(fault)? {
        println!("grew the stack by {} KiB: {:#x}..{:#x}", (r.end - r.start) / 1024, r.start, r.end);
    }
    show("a fault below the stack grows it in 64 KiB steps", &m);

    let shared =
        m.map_anywhere(4 * PS, 1 << 21, MapSpec::new(Prot::RW, Prot::RW).with_inherit(Inherit::Share))?;
    m.inherit(heap + 32 * PS..heap + 40 * PS, Inherit::None)?;
    println!("mapped a shared region at {shared:#x} (2 MiB aligned) and made 8 heap pages not inherited");
    let child = m.fork()?;
    show("the child after fork: no wiring, a hole where inheritance was none, copies marked COW", &child);

    match m.protect(0x40_0000..0x40_0000 + PS, Prot::RW) {
        Err(e) => println!("making text writable is refused: {e} (max protection is r-x)"),
        Ok(()) => unreachable!(),
    }
    Ok(())
}
