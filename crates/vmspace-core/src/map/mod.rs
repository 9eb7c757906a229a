//! The address map (`vm_map`): entries, clipping, merging, find_space, protection, inheritance, wiring,
//! advice, lookup, stacks and fork.

pub mod store;
