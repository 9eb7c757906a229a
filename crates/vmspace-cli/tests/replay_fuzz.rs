//! The replay never panics on input: random bytes, mutated and truncated real lines, and random but
//! well-formed call sequences (addresses anywhere, lengths of any size, any flags, out-of-order
//! pids). After each run every address space's map passes `check_invariants()`.

use proptest::prelude::*;
use vmspace_cli::replay::model::Replayer;

/// Lines of the kinds a real trace holds.
const TEMPLATES: &[&str] = &[
    "1234  execve(\"/usr/bin/ls\", [\"ls\"], 0x7ffd /* 20 vars */) = 0",
    "1234  brk(NULL)                         = 0x555555559000",
    "1234  brk(0x55555557a000)               = 0x55555557a000",
    "1234  mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7fc1000",
    "1234  mmap(0x7ffff7dd0000, 1396736, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, 3, 0x28000) = 0x7ffff7dd0000",
    "1234  mprotect(0x7ffff7f8d000, 16384, PROT_READ) = 0",
    "1234  munmap(0x7ffff7fc3000, 20000)     = 0",
    "1234  madvise(0x7ffff7fc1000, 8192, MADV_DONTFORK) = 0",
    "1234  madvise(0x7ffff7fc1000, 8192, MADV_WIPEONFORK) = 0",
    "1234  mremap(0x7ffff7fc1000, 8192, 16384, MREMAP_MAYMOVE) = 0x7ffff7e00000",
    "1234  mremap(0x7ffff7e00000, 16384, 4096, MREMAP_MAYMOVE|MREMAP_FIXED, 0x7ffff7a00000) = 0x7ffff7a00000",
    "1234  mlock(0x7ffff7a00000, 4096)       = 0",
    "1234  mlockall(MCL_CURRENT|MCL_FUTURE)  = 0",
    "1234  munlockall()                      = 0",
    "1234  mseal(0x7ffff7a00000, 4096, 0)    = 0",
    "1234  shmget(IPC_PRIVATE, 65536, IPC_CREAT|0600) = 7",
    "1234  shmat(7, NULL, 0)                 = 0x7ffff7900000",
    "1234  shmdt(0x7ffff7900000)             = 0",
    "1234  clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7ffff7d8ea10) = 1235",
    "1234  clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD, child_tid=0x7ffff75ff990, stack=0x7ffff6dff000, stack_size=0x7fff80}, 88 <unfinished ...>",
    "1236  mmap(NULL, 134217728, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, -1, 0) = 0x7fffe8000000",
    "1234  <... clone3 resumed> => {parent_tid=[1236]}, 88) = 1236",
    "1235  munmap(0x7ffff7fc1000, 8192 <unfinished ...>",
    "1234  mmap(NULL, 8192, PROT_READ, MAP_SHARED, 4</tmp/x>, 0) = 0x7ffff7fc1000",
    "1235  <... munmap resumed>)             = 0",
    "1234  vfork()                           = 1237",
    "1237  execve(\"/bin/true\", [\"true\"], 0x7ffd /* 20 vars */) = 0",
    "1234  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 ENOMEM (Cannot allocate memory)",
    "1235  --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=1237} ---",
    "1237  +++ exited with 0 +++",
    "1234  exit_group(0)                     = ?",
    "1234  +++ exited with 0 +++",
];

fn check(rep: &Replayer) {
    for s in &rep.spaces {
        s.map.check_invariants().unwrap();
        assert!(s.members == 0 || !s.freed, "a live space was freed");
    }
    // Live spaces, and at most the one kept for a comparison.
    let live = rep.spaces.iter().filter(|s| s.members > 0).count();
    assert!(rep.held() <= live + 1, "{} held, {live} live", rep.held());
}

fn arb_line() -> impl Strategy<Value = String> {
    let template = (0..TEMPLATES.len()).prop_map(|i| TEMPLATES[i].to_string());
    prop_oneof![
        // A template as is.
        3 => template.clone(),
        // Truncated anywhere (on a character boundary).
        2 => (template.clone(), any::<prop::sample::Index>()).prop_map(|(t, i)| {
            let cut = i.index(t.len() + 1);
            let cut = (0..=cut).rev().find(|&c| t.is_char_boundary(c)).unwrap_or(0);
            t[..cut].to_string()
        }),
        // A byte range replaced by random text.
        2 => (template.clone(), any::<prop::sample::Index>(), "[ -~]{0,12}").prop_map(|(t, i, ins)| {
            let at = i.index(t.len() + 1);
            let end = (at + 5).min(t.len());
            format!("{}{}{}", &t[..at], ins, &t[end..])
        }),
        // Numbers replaced by extreme ones.
        2 => (template, prop::sample::select(vec!["0", "0xffffffffffffffff", "18446744073709551615", "-1", "0x1", "4095", "0xfffffffffffff000", "99999999999999999999999"]))
            .prop_map(|(t, n)| t.replacen("0x7ffff7", n, 1).replacen("8192", n, 1)),
        // Random printable noise.
        1 => "[ -~]{0,80}",
    ]
}

/// A well-formed call with arbitrary arguments.
fn arb_call() -> impl Strategy<Value = String> {
    let addr = prop_oneof![
        (0u64..64).prop_map(|p| 0x7f00_0000_0000 + p * 4096),
        any::<u64>(),
        Just(0xffff_ffff_ffff_f000u64)
    ];
    let len = prop_oneof![(1u64..64).prop_map(|p| p * 4096), any::<u64>(), Just(0u64), 1u64..10000];
    let pid = 1u32..4;
    (0usize..9, addr.clone(), len, addr, pid, any::<bool>()).prop_map(|(op, a, l, b, pid, ok)| {
        let ret = |v: String| if ok { v } else { "-1 EINVAL (Invalid argument)".into() };
        match op {
            0 => format!("{pid}  mmap({a:#x}, {l}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {}", ret(format!("{a:#x}"))),
            1 => format!("{pid}  munmap({a:#x}, {l}) = {}", ret("0".into())),
            2 => format!("{pid}  mprotect({a:#x}, {l}, PROT_READ) = {}", ret("0".into())),
            3 => format!("{pid}  mremap({a:#x}, {l}, {}, MREMAP_MAYMOVE|MREMAP_FIXED, {b:#x}) = {}", l.wrapping_mul(2), ret(format!("{b:#x}"))),
            4 => format!("{pid}  madvise({a:#x}, {l}, MADV_DONTFORK) = {}", ret("0".into())),
            5 => format!("{pid}  fork() = {}", ret(format!("{}", pid + 1))),
            6 => format!("{pid}  mseal({a:#x}, {l}, 0) = {}", ret("0".into())),
            7 => format!("{pid}  brk({a:#x}) = {a:#x}"),
            _ => format!("{pid}  mlock({a:#x}, {l}) = {}", ret("0".into())),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_lines_never_panic(lines in prop::collection::vec(arb_line(), 0..60)) {
        let mut rep = Replayer::new();
        for (i, l) in lines.iter().enumerate() {
            let _ = rep.feed(i as u64 + 1, l);
        }
        rep.finish();
        check(&rep);
    }

    #[test]
    fn random_calls_keep_maps_valid(lines in prop::collection::vec(arb_call(), 0..80)) {
        let mut rep = Replayer::new();
        for (i, l) in lines.iter().enumerate() {
            let _ = rep.feed(i as u64 + 1, l);
        }
        rep.finish();
        check(&rep);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let mut rep = Replayer::new();
        for (i, l) in text.lines().enumerate() {
            let _ = rep.feed(i as u64 + 1, l);
        }
        rep.finish();
        check(&rep);
    }
}

#[test]
fn templates_parse_cleanly() {
    let mut rep = Replayer::new();
    for (i, l) in TEMPLATES.iter().enumerate() {
        rep.feed(i as u64 + 1, l).unwrap_or_else(|e| panic!("{l}: {e:?}"));
    }
    rep.finish();
    check(&rep);
    assert_eq!(rep.bad_total, 0);
    assert!(rep.spaces.len() >= 3, "fork, thread and exec spaces: {}", rep.spaces.len());
}
