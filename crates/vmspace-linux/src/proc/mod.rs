//! Pure parsers of what `/proc/PID/` shows about memory (`maps`, `smaps`, `smaps_rollup`) and the
//! VmFlags mnemonics: text in, values out.

pub mod counters;
pub mod maps;
pub mod rollup;
pub mod smaps;
pub mod vmflags;
