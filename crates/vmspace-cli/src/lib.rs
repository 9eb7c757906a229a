//! The library behind the `vmspace` command: live address spaces (`top`, `map`), strace replay
//! (`replay`), and their output formats. The binary (`src/main.rs`) is only argument parsing.

pub mod allocbench;
pub mod bench;
pub mod diff;
pub mod mapjson;
pub mod mapsvg;
pub mod mapview;
pub mod out;
pub mod record;
pub mod replay;
pub mod summary;
pub mod top;
pub mod tour;
pub mod watch;
