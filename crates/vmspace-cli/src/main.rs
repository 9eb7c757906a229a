//! `vmspace`: look at live processes' address spaces, replay traces, run the benchmarks.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vmspace::procmaps::{self, Pid, ProcMaps};
use vmspace_cli::out::{Style, colour_stdout};
use vmspace_cli::top::SortKey;
use vmspace_cli::{mapview, replay, top};

mod fuzz;

const TOP_EXAMPLES: &str = "Examples:
  vmspace                      every process, largest Pss first
  vmspace top --sort entries   the most fragmented address spaces first
  vmspace top --limit 10 --json";

const MAP_EXAMPLES: &str = "Examples:
  vmspace map self             this process
  vmspace map 1 --svg init.svg a picture of pid 1's address space
  vmspace map $(pgrep -n python3) --json | jq '.summary'

Columns: PRT/MAX is protection / max protection (Linux's mr mw me), INH inheritance at fork
(copy = private, share = MAP_SHARED, none = MADV_DONTFORK 'dc', zero = MADV_WIPEONFORK 'wf'),
LO mlocked ('lo'), BH behaviour (sr sequential, rr random), FLAGS gd stack, dd no core dump,
sl sealed.";

const REPLAY_EXAMPLES: &str = "Examples:
  strace -f -e trace=memory,process -o trace.txt python3 -c 'print(1)'
  vmspace replay trace.txt
  vmspace replay trace.txt --plot trace.svg --json
  vmspace replay trace.txt --against maps.txt --pid 4242

--against compares the final map of one address space (--pid, else the last one created by execve,
else the only one) with a /proc/PID/maps snapshot, page by page (protection, shared/private), over
the pages the trace touched (mmap, munmap, mremap, brk, shmat, shmdt ranges): mappings made before
the trace (the exec'd binary, the stack, the vDSO) are invisible to it. Exit status 1 when they differ,
2 on an error (an unreadable file, a line longer than 8 MiB, with --strict a line that does not parse).";

/// `vmspace bench alloc`'s options as clap leaves them when none is given on the command line.
fn alloc_defaults() -> vmspace_cli::allocbench::Options {
    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        options: vmspace_cli::allocbench::Options,
    }
    Only::parse_from(["vmspace"]).options
}

#[derive(Parser, Debug)]
#[command(
    name = "vmspace",
    version,
    about = "Look at real address spaces through a vm_map: live processes, strace replays, benchmarks",
    after_help = "Without a command, runs `vmspace top`.\n\nExamples:\n  vmspace\n  vmspace map self\n  vmspace replay trace.txt --against maps.txt"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Every readable process, one row each: entries, mapped, resident, Pss, swap, wired, gap.
    #[command(after_help = TOP_EXAMPLES)]
    Top(TopArgs),
    /// One process's address space, the way procstat -v and vmmap show it.
    #[command(after_help = MAP_EXAMPLES)]
    Map {
        /// A process id, or `self`.
        pid: String,
        /// Print JSON instead of the listing.
        #[arg(long)]
        json: bool,
        /// Also draw the address space as an SVG picture into FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Replay an `strace -f -e trace=memory,process` log into one map per address space.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay {
        /// The trace file (`-` for standard input).
        trace: PathBuf,
        /// A /proc/PID/maps snapshot to compare the final map with.
        #[arg(long, value_name = "MAPS_FILE")]
        against: Option<PathBuf>,
        /// The pid whose address space --against compares.
        #[arg(long)]
        pid: Option<u32>,
        /// Draw entries and mapped bytes over the trace into FILE.svg.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// Stop at the first line that does not parse.
        #[arg(long)]
        strict: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the comparison benchmarks in one process: each workload against its alternative, with ratios.
    #[command(
        after_help = "Examples:\n  vmspace bench\n  vmspace bench map --json\n  vmspace bench all --plot ratios.svg\n  vmspace bench alloc --secs 1 --allocators glibc,mimalloc,vmspace"
    )]
    Bench {
        /// Which benchmark: map, space, ring, scratch, all; or alloc, the allocator comparison (a child
        /// process per run, about two minutes, not part of all).
        which: Option<String>,
        /// Print the table as JSON.
        #[arg(long)]
        json: bool,
        /// Also draw the ratios as an SVG bar chart.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        #[command(flatten)]
        alloc: vmspace_cli::allocbench::Options,
    },
    /// One measured run of `vmspace bench alloc`, in a process of its own.
    #[command(hide = true)]
    AllocChild(vmspace_cli::allocbench::ChildArgs),
    /// A guided run on real memory: reserve, map, protect, guard, wire, fork, grow a stack, enter and
    /// cancel in a reclaim ring, run code from a scratch slot; the map after each step.
    #[command(after_help = "Examples:\n  vmspace tour")]
    Tour,
    /// Random memory calls against the live kernel and the Linux model, compared call by call.
    #[command(
        name = "fuzz-kernel",
        after_help = "Each call (mmap, munmap, mprotect, madvise, mlock*, mseal, msync, mremap, brk, fork) runs in a\nforked child and on vmspace-linux's Mm; results and the whole /proc/PID/maps must be equal.\nExit 0 when they always were, 1 when any call diverged (shrunk and printed), 2 on an error.\n\nExamples:\n  vmspace fuzz-kernel\n  vmspace fuzz-kernel --ops 1000000 --seed 7 --json"
    )]
    FuzzKernel {
        /// How many calls.
        #[arg(long, default_value_t = 20_000)]
        ops: u64,
        /// The random seed (the same seed makes the same calls).
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
        /// Print `ops` and `divergences` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a synthetic trace of N memory calls to standard output (for measuring replay speed).
    #[command(hide = true)]
    SynthTrace {
        /// Number of calls.
        calls: u64,
    },
}

#[derive(clap::Args, Debug, Default)]
struct TopArgs {
    /// Sort by this column (largest first).
    #[arg(long, value_enum, default_value = "pss")]
    sort: SortKeyArg,
    /// Show at most N rows.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
enum SortKeyArg {
    Entries,
    Rss,
    #[default]
    Pss,
    Swap,
    Mapped,
    Wired,
    Gap,
    Pid,
}

impl From<SortKeyArg> for SortKey {
    fn from(k: SortKeyArg) -> SortKey {
        match k {
            SortKeyArg::Entries => SortKey::Entries,
            SortKeyArg::Rss => SortKey::Rss,
            SortKeyArg::Pss => SortKey::Pss,
            SortKeyArg::Swap => SortKey::Swap,
            SortKeyArg::Mapped => SortKey::Mapped,
            SortKeyArg::Wired => SortKey::Wired,
            SortKeyArg::Gap => SortKey::Gap,
            SortKeyArg::Pid => SortKey::Pid,
        }
    }
}

fn print(s: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("writing output: {e}")),
    }
}

fn run_top(a: TopArgs) -> Result<u8, String> {
    let (mut rows, sk) = top::collect()?;
    top::sort(&mut rows, a.sort.into());
    let mmc = procmaps::max_map_count();
    if a.json {
        let shown = a.limit.unwrap_or(usize::MAX).min(rows.len());
        print(&top::json(&rows[..shown], sk, mmc))?;
    } else {
        print(&top::text(&rows, sk, mmc, Style { on: colour_stdout() }, a.limit))?;
    }
    Ok(0)
}

fn parse_pid(s: &str) -> Result<Pid, String> {
    if s == "self" {
        return Ok(Pid::This);
    }
    s.parse::<u32>().map(Pid::Id).map_err(|_| format!("'{s}' is not a process id (a number, or `self`)"))
}

fn run() -> Result<u8, String> {
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Top(TopArgs::default())) {
        Cmd::Top(a) => run_top(a),
        Cmd::Map { pid, json, svg } => {
            let pid = match parse_pid(&pid) {
                Ok(p) => p,
                Err(e) => {
                    // A usage error: exit code 2 like clap's own.
                    eprintln!("vmspace: error: {e}");
                    return Ok(2);
                }
            };
            let p = ProcMaps::load(pid).map_err(|e| e.to_string())?;
            if p.regions.is_empty() {
                return Err(format!(
                    "pid {pid} ({}) has no address space (a kernel thread, or a zombie)",
                    p.status.name
                ));
            }
            let mmc = procmaps::max_map_count();
            if let Some(f) = &svg {
                std::fs::write(f, mapview::svg(&p)).map_err(|e| format!("{}: {e}", f.display()))?;
            }
            if json {
                print(&mapview::json(&p, mmc))?;
            } else {
                print(&mapview::text(&p, Style { on: colour_stdout() }, mmc))?;
            }
            Ok(0)
        }
        Cmd::Replay { trace, against, pid, plot, strict, json } => {
            let opts = replay::Options { trace, against, pid, plot, strict, json, progress: true };
            let mut out = String::new();
            let code = match replay::run(&opts, &mut out) {
                Ok(code) => code,
                Err(e) => {
                    // Bad input, not a difference: 2, so that 1 keeps meaning "the maps differ".
                    eprintln!("vmspace: error: {e}");
                    return Ok(2);
                }
            };
            print(&out)?;
            Ok(code as u8)
        }
        Cmd::Bench { which, json, plot, alloc } if which.as_deref() == Some("alloc") => {
            if plot.is_some() {
                return Err("bench alloc draws no plot (--json gives the RSS series)".into());
            }
            let r = vmspace_cli::allocbench::run(&alloc)?;
            print(&if json {
                vmspace_cli::allocbench::json(&r)
            } else {
                vmspace_cli::allocbench::table(&r, alloc.verbose)
            })?;
            Ok(0)
        }
        Cmd::AllocChild(a) => {
            print(&vmspace_cli::allocbench::child(&a)?)?;
            Ok(0)
        }
        Cmd::Bench { which, json, plot, alloc } => {
            if alloc != alloc_defaults() {
                return Err(
                    "--secs, --allocators, --workload and --verbose are options of `vmspace bench alloc`"
                        .into(),
                );
            }
            let rows = vmspace_cli::bench::run(which.as_deref().unwrap_or("all"))?;
            if let Some(f) = &plot {
                std::fs::write(f, vmspace_cli::bench::svg(&rows))
                    .map_err(|e| format!("{}: {e}", f.display()))?;
            }
            print(&if json { vmspace_cli::bench::json(&rows) } else { vmspace_cli::bench::table(&rows) })?;
            Ok(0)
        }
        Cmd::Tour => {
            vmspace_cli::tour::run()?;
            Ok(0)
        }
        Cmd::FuzzKernel { ops, seed, json } => Ok(fuzz::run(ops, seed, json, print)),
        Cmd::SynthTrace { calls } => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            replay::synthetic_trace(calls, &mut w).and_then(|()| w.flush()).map_err(|e| e.to_string())?;
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("vmspace: error: {e}");
            ExitCode::from(1)
        }
    }
}
