//! Linux's memory system, as data: the ABI typed once, pure parsers of what `/proc` shows, and `Mm`,
//! a Linux process's memory with Linux's exact results (the layout of gVisor's `pkg/abi/linux` and
//! `pkg/sentry/mm`, in one crate, over `vmspace-core`'s map).
//!
//! `#![no_std]` + `alloc`, no system calls: everyone in the project who needs a Linux fact — the real
//! memory layer, the inspector, replay — takes it from here, and tests check it against the live kernel.

#![no_std]

extern crate alloc;

pub mod abi;
pub mod mm;
pub mod proc;
