//! `vm.max_map_count` again: a few hundred random calls at the limit, in a child process of its own
//! (`limits_support`); map == kernel after each.

mod limits_support;

use limits_support::*;

#[test]
fn map_count_limit_random_calls_leave_map_and_kernel_equal() {
    expect_done("map_count_random", &this_exe(), |_| {});
}

/// The children's side of the tests above: does nothing unless run by `run_child`.
#[test]
fn child_entry() {
    limits_support::child_entry(&[("map_count_random", map_count_random)]);
}

/// A small xorshift generator: the sequence is the seed's, printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value: splitmix64 spreads it, and the state is never zero).
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[self.below(of.len() as u64) as usize]
    }
}

/// One random call of the sequence.
#[derive(Clone, Debug)]
enum Op {
    MapAt(Range<u64>, Prot, Inherit, Behavior, EntryFlags),
    Map(u64, Prot),
    Unmap(Range<u64>),
    Protect(Range<u64>, Prot),
    ProtectMax(Range<u64>, Prot),
    Inherit(Range<u64>, Inherit),
    Madvise(Range<u64>, Advice),
    Wire(Range<u64>),
    Unwire(Range<u64>),
    Guard(Range<u64>),
    Unguard(Range<u64>),
    Seal(Range<u64>),
}

/// Pages of each space the random calls act on.
const WINDOW: u64 = 96;

/// The runs of mapped pages (adjacent entries joined) and the holes of `window` in `s`.
fn runs_and_holes(s: &AddressSpace, window: &Range<u64>) -> (Vec<Range<u64>>, Vec<Range<u64>>) {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for e in s.regions().into_iter().filter(|e| e.start < window.end && e.end > window.start) {
        push_joined(&mut runs, e.start.max(window.start)..e.end.min(window.end));
    }
    let mut holes = Vec::new();
    let mut at = window.start;
    for r in &runs {
        if r.start > at {
            holes.push(at..r.start);
        }
        at = r.end;
    }
    if at < window.end {
        holes.push(at..window.end);
    }
    (runs, holes)
}

/// A random range of whole pages inside `r`, at most 16 pages.
fn inside(rng: &mut Rng, r: &Range<u64>) -> Range<u64> {
    let pages = (r.end - r.start) / PS;
    let a = rng.below(pages);
    let b = a + 1 + rng.below((pages - a).min(16));
    r.start + a * PS..r.start + b * PS
}

/// A random call on `window` of `s`: mostly over mapped pages (or, for a map, a hole), where the
/// map accepts it and the kernel may have to split a VMA; sometimes anywhere, which the map may
/// refuse.
fn random_op(rng: &mut Rng, s: &AddressSpace, window: &Range<u64>) -> Op {
    let (runs, holes) = runs_and_holes(s, window);
    let mut any = || {
        let start = rng.below(WINDOW);
        let len = (1 + rng.below(12)).min(WINDOW - start);
        window.start + start * PS..window.start + (start + len) * PS
    };
    let any = any();
    // Half the time strictly inside one entry, so the kernel must split its VMA (if the entry is
    // one VMA); else across the entries of a run, or anywhere.
    let entries: Vec<Entry<Backing>> = s
        .regions()
        .into_iter()
        .filter(|e| e.start >= window.start && e.end <= window.end && e.len() >= 3 * PS)
        .collect();
    let mapped = match rng.below(10) {
        0..=4 if !entries.is_empty() => {
            let e = &entries[rng.below(entries.len() as u64) as usize];
            inside(rng, &(e.start + PS..e.end - PS))
        }
        _ if runs.is_empty() || rng.below(8) == 0 => any.clone(),
        _ => {
            let r = runs[rng.below(runs.len() as u64) as usize].clone();
            inside(rng, &r)
        }
    };
    let hole = if holes.is_empty() || rng.below(10) == 0 {
        any
    } else {
        let h = holes[rng.below(holes.len() as u64) as usize].clone();
        inside(rng, &h)
    };
    // A protection other than the one there, so a protect has something to do.
    let now = s.lookup_entry(mapped.start).map_or(Prot::RW, |e| e.prot());
    let prot = loop {
        let p = rng.pick(&[Prot::NONE, Prot::READ, Prot::RW]);
        if p != now || rng.below(8) == 0 {
            break p;
        }
    };
    match rng.below(100) {
        0..=13 => {
            let inherit = rng.pick(&[Inherit::Copy, Inherit::Copy, Inherit::None, Inherit::Zero]);
            let behavior =
                rng.pick(&[Behavior::Normal, Behavior::Normal, Behavior::Sequential, Behavior::Random]);
            let mut flags = EntryFlags::EMPTY;
            if rng.below(4) == 0 {
                flags = flags | EntryFlags::NOCOREDUMP;
            }
            if rng.below(40) == 0 {
                flags = flags | EntryFlags::SEALED;
            }
            Op::MapAt(hole, prot, inherit, behavior, flags)
        }
        14..=16 => Op::Map((hole.end - hole.start).min(4 * PS), prot),
        17..=28 => Op::Unmap(mapped),
        29..=43 => Op::Protect(mapped, prot),
        44..=46 => Op::ProtectMax(mapped, rng.pick(&[Prot::READ, Prot::RW, Prot::ALL])),
        47..=54 => Op::Inherit(mapped, rng.pick(&[Inherit::None, Inherit::Zero, Inherit::Copy])),
        55..=67 => Op::Madvise(
            mapped,
            rng.pick(&[
                Advice::Sequential,
                Advice::Random,
                Advice::Normal,
                Advice::NoCore,
                Advice::Core,
                Advice::NoSync,
                Advice::WillNeed,
                Advice::DontNeed,
            ]),
        ),
        68..=76 => Op::Wire(mapped),
        77..=82 => Op::Unwire(mapped),
        83..=89 => Op::Guard(mapped),
        90..=98 => Op::Unguard(mapped),
        _ => Op::Seal(mapped),
    }
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::MapAt(..) => "map_at",
            Op::Map(..) => "map",
            Op::Unmap(..) => "unmap",
            Op::Protect(..) => "protect",
            Op::ProtectMax(..) => "protect_max",
            Op::Inherit(..) => "inherit",
            Op::Madvise(..) => "madvise",
            Op::Wire(..) => "wire",
            Op::Unwire(..) => "unwire",
            Op::Guard(..) => "guard",
            Op::Unguard(..) => "unguard",
            Op::Seal(..) => "seal",
        }
    }
}

fn apply(s: &AddressSpace, op: &Op) -> Result<(), Error> {
    match op.clone() {
        Op::MapAt(r, prot, inherit, behavior, flags) => s.map_at(
            r,
            MapSpec::new(prot, Prot::ALL).with_inherit(inherit).with_behavior(behavior).with_flags(flags),
        ),
        Op::Map(len, prot) => s.map(len, MapSpec::new(prot, Prot::ALL)).map(|_| ()),
        Op::Unmap(r) => s.unmap(r),
        Op::Protect(r, p) => s.protect(r, p),
        Op::ProtectMax(r, p) => s.protect_max(r, p),
        Op::Inherit(r, i) => s.inherit(r, i),
        Op::Madvise(r, a) => s.madvise(r, a),
        Op::Wire(r) => s.wire(r),
        Op::Unwire(r) => s.unwire(r),
        Op::Guard(r) => s.guard(r),
        Op::Unguard(r) => s.unguard(r),
        Op::Seal(r) => s.seal(r),
    }
}

/// The range whose contents `op` may destroy (guard markers drop pages; DontNeed and Free too).
fn destroys(op: &Op) -> Option<Range<u64>> {
    match op {
        Op::Guard(r) | Op::Madvise(r, Advice::DontNeed | Advice::Free) => Some(r.clone()),
        _ => None,
    }
}

/// What the random sequence knows of each page's contents.
struct Contents {
    /// Expected value of mapped pages whose contents are known (readable or not).
    known: std::collections::HashMap<u64, u64>,
}

impl Contents {
    /// After `op` (step `step`) on `s`: pages that were mapped keep their value unless `op` may have
    /// destroyed them; pages that were holes read zero; then readable pages are read (and writable
    /// ones sometimes written) for the next step.
    fn check(
        &mut self,
        s: &AddressSpace,
        window: Range<u64>,
        was_mapped: &[bool],
        op: &Op,
        rng: &mut Rng,
        what: &str,
    ) {
        let destroyed = destroys(op);
        for (i, page) in window.step_by(PS as usize).enumerate() {
            let Some(e) = s.lookup_entry(page) else {
                self.known.remove(&page);
                continue;
            };
            let expect = if !was_mapped[i] {
                Some(0)
            } else if destroyed.as_ref().is_some_and(|d| d.contains(&page)) {
                None
            } else {
                self.known.get(&page).copied()
            };
            if readable(&e) {
                let v = read(page);
                if let Some(x) = expect {
                    assert_eq!(v, x, "{what}: page {page:#x} holds {v:#x}, not {x:#x}\n{s}");
                }
                self.known.insert(page, v);
                if e.prot().contains(Prot::WRITE) && rng.below(2) == 0 {
                    let t = tag(page) ^ rng.next() << 8;
                    write(page, t);
                    self.known.insert(page, t);
                }
            } else {
                match expect {
                    Some(x) => self.known.insert(page, x),
                    None => self.known.remove(&page),
                };
            }
        }
    }
}

/// Scenario 1c: a few hundred random calls on two spaces (guard markers and the `PROT_NONE`
/// fallback) with the process held at the limit (or one or two VMAs below it) before each; after
/// each call the map and the kernel agree and contents are what they should be. The filler lies above
/// the spaces, so a read of smaps over a space stops before it.
fn map_count_random() {
    let max = max_map_count();
    let seed = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = Rng::new(seed);
    warm_up();
    let mut maps = Maps::new(max);
    // The spaces go below the filler: smaps lists VMAs in address order, so a read of smaps over a
    // space stops before the filler.
    let mut filler = Filler::new(max, None);
    let spaces = [
        reserve_under(filler.base, 1 << 24, Options::default()),
        reserve_under(filler.base, 1 << 24, Options { guard_fallback: true, ..Options::default() }),
    ];
    // A patchwork to start from: the window mapped in runs of a few pages with varied attributes.
    for s in &spaces {
        let w = s.range().start;
        for run in 0..WINDOW / 16 {
            let r = w + run * 16 * PS..w + (run * 16 + 14) * PS;
            s.map_at(r.clone(), rw()).unwrap();
            s.protect(r.start + 5 * PS..r.start + 6 * PS, [Prot::READ, Prot::NONE][(run % 2) as usize])
                .unwrap();
            s.madvise(r.start + 9 * PS..r.end, [Advice::Random, Advice::NoSync][(run % 2) as usize]).unwrap();
        }
    }
    eprintln!(
        "limits child map_count_random: seed {seed}, max_map_count {max}, filler {:#x?}, spaces {:#x?} {:#x?}",
        filler.range(),
        spaces[0].range(),
        spaces[1].range()
    );
    calibrate(&mut filler, &mut maps, max);
    let mut contents = [Contents { known: Default::default() }, Contents { known: Default::default() }];
    for (s, c) in spaces.iter().zip(&mut contents) {
        let w = s.range().start..s.range().start + WINDOW * PS;
        c.check(s, w, &[false; WINDOW as usize], &Op::Unmap(0..0), &mut rng, "the patchwork");
    }
    // Per kind of call: succeeded, refused by the map, refused by the kernel and put back, kept in
    // part by the kernel.
    let mut tally: std::collections::BTreeMap<&str, [u64; 4]> = Default::default();
    for step in 0..RANDOM_STEPS {
        let which = rng.below(2) as usize;
        let s = &spaces[which];
        let base = s.range().start;
        let window = base..base + WINDOW * PS;
        let op = random_op(&mut rng, s, &window);
        let was_mapped: Vec<bool> =
            window.clone().step_by(PS as usize).map(|p| s.lookup_entry(p).is_some()).collect();
        let headroom = rng.pick(&[0, 0, 0, 0, 0, 1, 1, 1, 2, 2]);
        if step % 25 == 0 {
            // Now and then a full count, which also checks the fast one.
            let fast = maps.count_below(filler.base) + filler.vmas() + filler.above;
            assert_eq!(fast, maps.count(), "step {step}: counting only below the filler was off");
            filler.hold(&mut maps, max - headroom);
        } else {
            filler.hold_fast(&mut maps, max - headroom);
        }
        let got = apply(s, &op);
        let what =
            format!("seed {seed} step {step}: space {which}, {op:x?} at max_map_count - {headroom}: {got:?}");
        let outcome = match &got {
            Ok(()) => 0,
            Err(Error::Vm(_)) => 1,
            Err(e) => match kernel_error(e) {
                Some((_, k)) if k.is_empty() => 2,
                Some(_) => 3,
                None => panic!("{what}: unexpected error"),
            },
        };
        tally.entry(op.name()).or_default()[outcome] += 1;
        agree(s, &what);
        contents[which].check(s, window, &was_mapped, &op, &mut rng, &what);
    }
    eprintln!(
        "limits child map_count_random: calls: succeeded / refused by the map / refused by the kernel \
         and put back / kept in part by the kernel"
    );
    for (name, t) in &tally {
        eprintln!(
            "limits child map_count_random:   {name:<12} {:>4} {:>4} {:>4} {:>4}",
            t[0], t[1], t[2], t[3]
        );
    }
    let at_limit: u64 = tally.values().map(|t| t[2] + t[3]).sum();
    assert!(
        at_limit >= RANDOM_STEPS / 8,
        "only {at_limit} of {RANDOM_STEPS} calls met the kernel's limit: the sequence did not test it"
    );
    drop(filler);
    let [a, b] = spaces;
    drop_and_check(a, &mut maps, "the space with guard markers");
    drop_and_check(b, &mut maps, "the space with PROT_NONE guards");
}
