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

const MAIN_HELP: &str = "Without a command, runs `vmspace top`.

Examples:
  vmspace
  vmspace map self
  vmspace replay trace.txt --against maps.txt

Exit status (every command): 0 ran and found no difference; 1 differences found (replay
--against); 2 error (bad input, an unreadable or vanished process or file, usage). A closed
output pipe (`| head`) ends the command quietly.";

const TOP_EXAMPLES: &str = "Examples:
  vmspace                      every process, largest Pss first
  vmspace top --sort entries   the most fragmented address spaces first
  vmspace top --sort pid       by process id, ascending (every other key sorts largest first)
  vmspace top --limit 10 --json
  vmspace top --user www-data --sort uss
  vmspace top --name python --pid 1,2
  vmspace top --interval 1     a sample a second: what grew, what appeared, what it cost

USS is Private_Clean + Private_Dirty, DIRTY Shared_Dirty + Private_Dirty (from smaps_rollup).
JSON: {\"processes\": [{\"pid\", \"name\", \"entries\", \"vmas\", \"mapped\", \"rss\", \"pss\", \"uss\", \"dirty\", \"swap\",
\"wired\", \"largest_gap\"}], \"skipped\": {...}, \"max_map_count\"}; sizes in bytes.

Exit status: 0 ran; 2 error (/proc unreadable, usage). Processes that cannot be read are counted
under skipped, not errors. A closed output pipe ends the command quietly.";

const MAP_EXAMPLES: &str = "Examples:
  vmspace map self             this process
  vmspace map 1 2 $$           several processes, one after another
  vmspace map self --summary   one row per kind of region, totals from smaps_rollup
  vmspace map self --kind file --file libc
  vmspace map self --addr 7f0000000000-7fffffffffff
  vmspace map 4242 --interval 1 --count 10   VMAs that appear or go, totals' deltas
  vmspace map 1 --svg init.svg a picture of pid 1's address space
  vmspace map $(pgrep -n python3) --json | jq '.summary'

One line per VMA, as /proc/PID/maps and pmap list them, with the free gaps between them; user
space ends at TASK_SIZE, and the kernel's part above it (where [vsyscall] lives) is marked as such.
Columns: PRT/MAX is protection / max protection (Linux's mr mw me), INH inheritance at fork
(copy = private, share = MAP_SHARED, none = MADV_DONTFORK 'dc', zero = MADV_WIPEONFORK 'wf'),
BH behaviour (sr sequential, rr random), FLAGS every other VmFlags mnemonic as the kernel prints
it (lo locked, gd stack, gu guard regions, hg huge pages, sl sealed, dd no core dump, ...),
NAME the kernel's name ([vvar_vclock], [anon:NAME], a path); control bytes are escaped (\\t, \\e).
Sizes are binary units, rounded.

--json writes one object: pid (a number), name, threads, task_size, regions (the VMAs: start,
end, size, prot, max_prot, shared, offset, dev, inode, name, kind, inherit, behavior, locked,
vm_flags, kernel_page_size, stats), entries (the merged map entries), holes, summary; every
address, size and counter in bytes (see the README for the schema).

Exit status: 0 ran; 2 error (no such process, not permitted, a kernel thread, usage). A closed
output pipe ends the command quietly.";

const REPLAY_EXAMPLES: &str = "Examples:
  strace -f -e trace=memory,process -o trace.txt python3 -c 'print(1)'
  vmspace replay trace.txt
  vmspace replay trace.txt --plot trace.svg --json
  vmspace replay trace.txt --against maps.txt --pid 4242

--against compares the final map of one address space (--pid, else the last one created by execve,
else the only one) with a /proc/PID/maps snapshot, page by page (protection, shared/private), over
the pages the trace touched (mmap, munmap, mremap, brk, shmat, shmdt ranges): mappings made before
the trace (the exec'd binary, the stack, the vDSO) are invisible to it. The snapshot may be a copy of
/proc/PID/maps or of /proc/PID/smaps.

Traces: strace -f output (with -o, a pid on every line), -ff output (TRACE is the -o PREFIX: every
PREFIX.PID file is read, one pid after another in pid order), -X verbose, -k, -t/-tt/-ttt, -T, -y.

Exit status: 0 replayed (and, with --against, no difference); 1 the maps differ; 2 error (an
unreadable file, input that is not an strace trace, an empty or malformed snapshot, a line longer
than 8 MiB, with --strict a line that does not parse). A closed output pipe ends quietly.";

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
    after_help = MAIN_HELP
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
    Map(MapArgs),
    /// Compare two address spaces VMA by VMA: snapshots (`vmspace map PID --json > snap.json`) or live
    /// processes.
    #[command(
        after_help = "Examples:\n  vmspace map 4242 --json > before.json; sleep 10; vmspace diff before.json 4242\n  vmspace diff a.json b.json --json\n\nVMAs are matched by start address: - removed (only in A), + added (only in B), ~ changed (end,\nprotection, sharing, offset, name, VmFlags, resident, dirty or swapped bytes differ).\n\nExit status: 0 no difference; 1 differences found; 2 error (unreadable snapshot, no such process)."
    )]
    Diff {
        /// A snapshot file, a pid, or `self`.
        a: String,
        /// A snapshot file, a pid, or `self`.
        b: String,
        /// Print the differences as JSON: {a, b, added, removed, changed, rss_delta, dirty_delta,
        /// swap_delta, mapped_delta}.
        #[arg(long)]
        json: bool,
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
        /// Replay a trace written by `vmspace record` through Linux's exact model (vmspace-linux's
        /// `Mm`): every result and every recorded snapshot compared with the kernel's.
        #[arg(long, conflicts_with_all = ["against", "pid", "plot", "strict"])]
        exact: bool,
    },
    /// Run the comparison benchmarks in one process: each workload against its alternative, with ratios.
    #[command(
        after_help = "Examples:\n  vmspace bench\n  vmspace bench map --json\n  vmspace bench all --plot ratios.svg\n  vmspace bench alloc --secs 1 --allocators glibc,mimalloc,vmspace\n\nExit status: 0 ran; 2 error (usage, a failed run)."
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
    #[command(
        after_help = "Examples:\n  vmspace tour\n  vmspace tour --json\n  vmspace tour | head -20\n\nExit status: 0 the map and the kernel agreed at every step; 2 they did not, or a call failed."
    )]
    Tour {
        /// One JSON object per step: {step, text, entries, mapped, agrees}.
        #[arg(long)]
        json: bool,
    },
    /// Run a command under ptrace and write every memory call of every process and thread it makes,
    /// with its result, and each process's maps at exec and at exit (JSON lines; no strace needed).
    #[command(
        after_help = "Exit status: 0 when the command was recorded (whatever its own status, which the trace's last line and the summary give), 2 on an error of the recorder.\n\nExamples:\n  vmspace record -- ls -l\n  vmspace record -o build.trace -- make -j2\n  vmspace replay build.trace --exact"
    )]
    Record {
        /// Where to write the trace (`-` for standard output).
        #[arg(short, long, value_name = "FILE", default_value = "vmspace.trace")]
        output: PathBuf,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
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

#[derive(clap::Args, Debug)]
struct MapArgs {
    /// Process ids, or `self`.
    #[arg(required = true, value_name = "PID")]
    pids: Vec<String>,
    /// Print JSON instead of the listing (one object per process, one per line).
    #[arg(long)]
    json: bool,
    /// One row per kind of region (each file, heap, stack, anon, shmem, vdso/vvar, guard, reserved)
    /// with virtual, resident, dirty, clean, swapped, Pss, USS and count; totals from smaps_rollup.
    #[arg(long)]
    summary: bool,
    /// Only the VMAs overlapping [A, B), or containing A (hexadecimal, 0x optional).
    #[arg(long, value_name = "A[-B]")]
    addr: Option<String>,
    /// Only the VMAs whose name contains PATTERN.
    #[arg(long, value_name = "PATTERN")]
    file: Option<String>,
    /// Only the VMAs of this kind: file, heap, stack, vdso, vvar, vsyscall, anon, shared-anon, shmem, special.
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Also draw the address space as an SVG picture into FILE (one process only).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Watch one process: a sample every SECS (VMAs by PROCMAP_QUERY, totals from smaps_rollup)
    /// showing the VMAs that appeared, went or changed and the totals' deltas.
    #[arg(long, value_name = "SECS")]
    interval: Option<f64>,
    /// With --interval: stop after N samples (default: until interrupted).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

#[derive(clap::Args, Debug, Default)]
struct TopArgs {
    /// Sort by this column: largest first, except `pid`, ascending.
    #[arg(long, value_enum, default_value = "pss")]
    sort: SortKeyArg,
    /// Show at most N rows.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Only processes of this user (a name or a uid).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Only processes whose command name contains NAME.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Only these process ids (comma-separated, or the option repeated).
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pid: Vec<u32>,
    /// Watch: a sample every SECS (smaps_rollup only) with the change since the last one.
    #[arg(long, value_name = "SECS")]
    interval: Option<f64>,
    /// With --interval: stop after N samples (default: until interrupted).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
enum SortKeyArg {
    Entries,
    Rss,
    #[default]
    Pss,
    Uss,
    Dirty,
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
            SortKeyArg::Uss => SortKey::Uss,
            SortKeyArg::Dirty => SortKey::Dirty,
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
    let filter = top::Filter {
        uid: a.user.as_deref().map(top::uid_of).transpose()?,
        name: a.name.clone(),
        pids: a.pid.clone(),
    };
    if let Some(secs) = a.interval {
        let interval = interval_of(secs)?;
        let start = std::time::Instant::now();
        let mut before = std::collections::HashMap::new();
        let mut k = 0u64;
        while a.count.is_none_or(|c| k < c) {
            if k > 0 {
                vmspace_cli::watch::sleep_until(start, k, interval);
            }
            let s = vmspace_cli::watch::top_sample(k + 1, &filter, &before)?;
            print(&if a.json {
                vmspace_cli::mapjson::to_line(&s)
            } else {
                vmspace_cli::watch::top_text(&s, a.limit.unwrap_or(20))
            })?;
            before = s.processes.into_iter().map(|p| (p.pid, p)).collect();
            k += 1;
        }
        return Ok(0);
    }
    let (mut rows, sk) = top::collect_filtered(&filter)?;
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

fn run_exact(trace: &std::path::Path, json: bool) -> Result<u8, String> {
    use vmspace_cli::replay::exact;
    let mut input: Box<dyn std::io::BufRead> = if trace.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(trace).map_err(|e| format!("{}: {e}", trace.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let r = exact::run(&mut input)?;
    let out =
        if json { serde_json::to_string(&r).map_err(|e| e.to_string())? + "\n" } else { exact::text(&r) };
    print(&out)?;
    Ok(if r.equal() { 0 } else { 1 })
}

fn run_record(output: &std::path::Path, command: &[String]) -> std::io::Result<()> {
    let mut w: Box<dyn Write> = if output.as_os_str() == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        let f = std::fs::File::create(output)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", output.display())))?;
        Box::new(std::io::BufWriter::new(f))
    };
    let s = vmspace_cli::record::record(command, &mut w)?;
    eprintln!(
        "vmspace record: {} calls in {} processes ({} threads, {} execs); {} exited with status {} → {}",
        s.calls,
        s.processes,
        s.threads,
        s.execs,
        command[0],
        s.status,
        output.display()
    );
    Ok(())
}

fn parse_pid(s: &str) -> Result<Pid, String> {
    if s == "self" {
        return Ok(Pid::This);
    }
    s.parse::<u32>().map(Pid::Id).map_err(|_| format!("'{s}' is not a process id (a number, or `self`)"))
}

/// `A` or `A-B` in hexadecimal (`0x` optional) as a half-open range.
fn parse_addr(s: &str) -> Result<std::ops::Range<u64>, String> {
    let hex = |t: &str| {
        let t = t.trim();
        u64::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16)
            .map_err(|_| format!("--addr: '{t}' is not a hexadecimal address"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (hex(a)?, hex(b)?);
            if b <= a {
                return Err(format!("--addr: {a:#x}-{b:#x} is empty"));
            }
            Ok(a..b)
        }
        None => {
            let a = hex(s)?;
            Ok(a..a.saturating_add(1))
        }
    }
}

/// `--interval SECS` as a duration: positive and finite.
fn interval_of(secs: f64) -> Result<std::time::Duration, String> {
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("--interval: {secs} is not a positive number of seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn watch_map(pid: Pid, secs: f64, count: Option<u64>, json: bool) -> Result<u8, String> {
    let interval = interval_of(secs)?;
    let pid = match pid {
        Pid::This => std::process::id(),
        Pid::Id(p) => p,
    };
    let start = std::time::Instant::now();
    let mut before = None;
    let mut k = 0u64;
    while count.is_none_or(|c| k < c) {
        if k > 0 {
            vmspace_cli::watch::sleep_until(start, k, interval);
        }
        let (vmas, s) = vmspace_cli::watch::map_sample(k + 1, pid, before.as_ref())?;
        print(&if json { vmspace_cli::mapjson::to_line(&s) } else { vmspace_cli::watch::map_text(&s) })?;
        before = Some((vmas, s));
        k += 1;
    }
    Ok(0)
}

fn run_map(a: MapArgs) -> Result<u8, String> {
    let pids = a.pids.iter().map(|p| parse_pid(p)).collect::<Result<Vec<_>, _>>()?;
    if let Some(secs) = a.interval {
        if pids.len() != 1 {
            return Err("--interval watches one process: give one PID".into());
        }
        return watch_map(pids[0], secs, a.count, a.json);
    }
    if a.svg.is_some() && pids.len() > 1 {
        return Err("--svg draws one process: give one PID".into());
    }
    let range = a.addr.as_deref().map(parse_addr).transpose()?;
    const KINDS: [&str; 10] =
        ["file", "heap", "stack", "vdso", "vvar", "vsyscall", "anon", "shared-anon", "shmem", "special"];
    if let Some(k) = &a.kind
        && !KINDS.contains(&k.as_str())
    {
        return Err(format!("--kind: '{k}' is none of {}", KINDS.join(", ")));
    }
    let filtered = range.is_some() || a.file.is_some() || a.kind.is_some();
    let mmc = procmaps::max_map_count();
    let mut failed = false;
    for (i, pid) in pids.into_iter().enumerate() {
        let mut p = match ProcMaps::load(pid) {
            Ok(p) if p.regions.is_empty() => {
                eprintln!(
                    "vmspace: error: pid {pid} ({}) has no address space (a kernel thread, or a zombie)",
                    vmspace_cli::out::esc(&p.status.name)
                );
                failed = true;
                continue;
            }
            Ok(p) => p,
            Err(e) => {
                eprintln!("vmspace: error: {e}");
                failed = true;
                continue;
            }
        };
        if filtered {
            p.regions.retain(|r| {
                range.as_ref().is_none_or(|a| r.range.start < a.end && a.start < r.range.end)
                    && a.file.as_ref().is_none_or(|f| r.path().contains(f.as_str()))
                    && a.kind.as_ref().is_none_or(|k| r.mapping.kind_name() == k)
            });
            p.map = procmaps::build_map(&p.regions)
                .map_err(|(r, e)| format!("{:#x}-{:#x}: {e}", r.start, r.end))?;
            // The rollup counts what the filter left out.
            p.rollup = None;
        }
        if let Some(f) = &a.svg {
            std::fs::write(f, vmspace_cli::mapsvg::svg(&p)).map_err(|e| format!("{}: {e}", f.display()))?;
        }
        let out = match (a.summary, a.json) {
            (true, true) => vmspace_cli::mapjson::to_line(&vmspace_cli::summary::summary(&p)),
            (true, false) => vmspace_cli::summary::text(&p, &vmspace_cli::summary::summary(&p)),
            (false, true) => vmspace_cli::mapjson::json(&p, mmc),
            (false, false) => mapview::text_with(&p, Style { on: colour_stdout() }, mmc, !filtered),
        };
        if i > 0 && !a.json {
            print("\n")?;
        }
        print(&out)?;
    }
    Ok(if failed { 2 } else { 0 })
}

fn run() -> Result<u8, String> {
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Top(TopArgs::default())) {
        Cmd::Top(a) => run_top(a),
        Cmd::Map(a) => run_map(a),
        Cmd::Diff { a, b, json } => {
            let d = vmspace_cli::diff::diff(&vmspace_cli::diff::load(&a)?, &vmspace_cli::diff::load(&b)?);
            print(&if json { vmspace_cli::mapjson::to_line(&d) } else { vmspace_cli::diff::text(&d) })?;
            Ok(u8::from(d.differs()))
        }
        Cmd::Replay { trace, json, exact: true, .. } => match run_exact(&trace, json) {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("vmspace: error: {e}");
                Ok(2)
            }
        },
        Cmd::Replay { trace, against, pid, plot, strict, json, .. } => {
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
        Cmd::Record { output, command } => match run_record(&output, &command) {
            Ok(()) => Ok(0),
            Err(e) => {
                eprintln!("vmspace: error: record: {e}");
                Ok(2)
            }
        },
        Cmd::Tour { json } => {
            vmspace_cli::tour::run_with(json)?;
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
    // A closed pipe (`vmspace tour | head -1`) ends the program the way it ends grep or cat: by
    // SIGPIPE's default action, quietly, in every thread and forked child, instead of a panic in the
    // next `println!`. Rust sets SIGPIPE to ignored before main; this puts the default back.
    // SAFETY: signal(2) with SIG_DFL, before any other thread exists; no handler is installed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("vmspace: error: {e}");
            // 1 means "differences found"; an error is 2, as clap's usage errors are.
            ExitCode::from(2)
        }
    }
}
