//! The ported cases' vocabulary: where they map, call builders, expectations, and the runner that
//! plays each case in a child of its own (shared by `mm_live*.rs`).

use super::{Kernel, Op, TestFile};
use vmspace_linux::abi::*;

/// Where cases map: far from the program, the heap, the libraries and the stack.
pub const BASE: u64 = 0x2000_0000_0000;
pub const P: u64 = 4096;
pub const MB2: u64 = 2 << 20;
pub const RW: u64 = PROT_READ | PROT_WRITE;
pub const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;
pub const FIX: u64 = ANON | MAP_FIXED;

pub fn a(page: u64) -> u64 {
    BASE + page * P
}
pub fn mmap(addr: u64, len: u64, prot: u64, flags: u64) -> Op {
    Op::Mmap { addr, len, prot, flags, file: None, off: 0 }
}
pub fn mmapf(addr: u64, len: u64, prot: u64, flags: u64, file: u8, off: u64) -> Op {
    Op::Mmap { addr, len, prot, flags, file: Some(file), off }
}
pub fn fixed(page: u64, pages: u64, prot: u64) -> Op {
    mmap(a(page), pages * P, prot, FIX)
}
pub fn unmap(page: u64, pages: u64) -> Op {
    Op::Munmap { addr: a(page), len: pages * P }
}
pub fn prot(page: u64, pages: u64, prot: u64) -> Op {
    Op::Mprotect { addr: a(page), len: pages * P, prot }
}
pub fn adv(page: u64, pages: u64, advice: u64) -> Op {
    Op::Madvise { addr: a(page), len: pages * P, advice }
}
pub fn remap(page: u64, old: u64, new: u64, flags: u64, to: u64) -> Op {
    Op::Mremap { addr: a(page), old: old * P, new: new * P, flags, new_addr: if to == 0 { 0 } else { a(to) } }
}

/// One call of a case and the answer it expects (`None`: any, as long as the model agrees).
pub type Step = (Op, Option<Result<u64, Errno>>);

/// A case: a name, its calls, and what the kernel must answer (checked too, so a case that stopped
/// testing what it was written for fails).
pub struct Case {
    pub name: &'static str,
    pub ops: Vec<(Op, Option<Result<u64, Errno>>)>,
}

pub fn ok(op: Op) -> (Op, Option<Result<u64, Errno>>) {
    (op, Some(Ok(0)))
}
pub fn at(op: Op, addr: u64) -> (Op, Option<Result<u64, Errno>>) {
    (op, Some(Ok(addr)))
}
pub fn err(op: Op, e: Errno) -> (Op, Option<Result<u64, Errno>>) {
    (op, Some(Err(e)))
}
pub fn any(op: Op) -> (Op, Option<Result<u64, Errno>>) {
    (op, None)
}
pub fn case(name: &'static str, ops: Vec<(Op, Option<Result<u64, Errno>>)>) -> Case {
    Case { name, ops }
}

pub fn brk_case(k: &mut Kernel) -> Result<(), String> {
    let cur = k.mm.brk;
    for target in [cur + 3 * P, cur + 10 * P + 5, cur + P, cur, k.mm.start_brk - P] {
        let _ = k.step(Op::Brk { addr: target }).map_err(|d| d.to_string())?;
    }
    Ok(())
}

/// Runs every case in a fresh child; returns the failures (a divergence, or an answer the case did
/// not expect).
pub fn run_cases(files: &[TestFile], all: &[Case]) -> Vec<String> {
    run_cases_with(files, &[], all)
}

/// [`run_cases`] with System V segments the cases may attach.
pub fn run_cases_with(files: &[TestFile], shm: &[vmspace_linux::mm::FileRef], all: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in all {
        let mut k = Kernel::start(files);
        k.shm = shm.to_vec();
        let mut fail = None;
        for (op, want) in &c.ops {
            match k.step(*op) {
                Ok(got) => {
                    if let Some(w) = want
                        && got != *w
                    {
                        fail = Some(format!("{op:?}: kernel answered {got:?}, the case expects {w:?}"));
                        break;
                    }
                }
                Err(d) => {
                    fail = Some(d.to_string());
                    break;
                }
            }
        }
        if fail.is_none() && c.name.starts_with("brk") {
            fail = brk_case(&mut k).err();
        }
        if let Some(f) = fail {
            failures.push(format!("{}: {f}", c.name));
        }
    }
    failures
}
