//! `find_space` against a linear-scan oracle on random fragmented maps, for every power-of-two
//! alignment from one page to 1 GiB, with bounds, hints and both directions.

use proptest::prelude::*;
use vmspace_core::{FindSpec, MapSpec, Prot, VmError, VmMap};

const PS: u64 = 4096;
const MIN: u64 = 0x1_0000_0000;
const MAX: u64 = MIN + (1 << 36);

/// The oracle: free gaps computed from the entries alone, then the first (or last) aligned fit.
fn oracle(m: &VmMap, len: u64, align: u64, lo: u64, hi: u64, top_down: bool) -> Option<u64> {
    let align = align.max(PS);
    let mut gaps = Vec::new();
    let mut prev_end = m.min();
    for e in m.entries() {
        let gap_end = (e.start - e.avail_ssize()).max(prev_end);
        gaps.push((prev_end, gap_end));
        prev_end = e.end;
    }
    gaps.push((prev_end, m.max()));
    let fit = |(s, e): (u64, u64)| {
        let (s, e) = (s.max(lo), e.min(hi));
        if e <= s || e - s < len {
            return None;
        }
        if top_down {
            let a = (e - len) / align * align;
            (a >= s).then_some(a)
        } else {
            let a = s.div_ceil(align) * align;
            (a + len <= e).then_some(a)
        }
    };
    if top_down { gaps.into_iter().rev().find_map(fit) } else { gaps.into_iter().find_map(fit) }
}

fn build(layout: &[(u64, u64, bool)]) -> VmMap {
    let mut m: VmMap = VmMap::new(MIN, MAX).unwrap();
    let mut at = MIN;
    for &(gap_pages, len_pages, stack) in layout {
        at += gap_pages * PS;
        let len = len_pages * PS;
        if at + len > MAX {
            break;
        }
        if stack && gap_pages > 1 {
            // A stack whose reservation covers part of the gap below it.
            m.stack(
                at - (gap_pages / 2) * PS,
                (gap_pages / 2) * PS + len,
                len,
                MapSpec::new(Prot::RW, Prot::ALL),
            )
            .unwrap();
        } else {
            // Alternate protections so neighbours do not merge.
            let p = if len_pages % 2 == 0 { Prot::READ } else { Prot::RW };
            m.insert(at..at + len, MapSpec::new(p, Prot::ALL)).unwrap();
        }
        at += len;
    }
    m.check_invariants().unwrap();
    m
}

fn layout() -> impl Strategy<Value = Vec<(u64, u64, bool)>> {
    let gap = prop_oneof![4 => 0..4u64, 2 => 4..64u64, 1 => 64..(1u64 << 18), 1 => Just(0u64)];
    prop::collection::vec((gap, 1..32u64, prop::bool::weighted(0.1)), 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn find_space_equals_linear_scan(
        layout in layout(),
        len_pages in prop_oneof![1..8u64, 8..4096u64, Just(1u64 << 18)],
        lo_off in prop_oneof![Just(0u64), 0..(1u64 << 24)],
        hi_cut in prop_oneof![Just(0u64), 0..(1u64 << 24)],
        hint_off in prop::option::of(0..(1u64 << 24)),
    ) {
        let m = build(&layout);
        let len = len_pages * PS;
        let lo = MIN + lo_off * PS;
        let hi = MAX - hi_cut * PS;
        if hi < lo {
            let spec = FindSpec { bounds: Some(lo..hi), ..FindSpec::new(len) };
            prop_assert_eq!(m.find_space_with(&spec), Err(VmError::InvalidArgument));
            return Ok(());
        }
        for shift in 12..=30 {
            let align = 1u64 << shift;
            for top_down in [false, true] {
                let spec = FindSpec { len, align, hint: None, bounds: Some(lo..hi), top_down };
                let got = m.find_space_with(&spec);
                let want = oracle(&m, len, align, lo, hi, top_down).ok_or(VmError::NoSpace);
                prop_assert_eq!(got, want, "align {:#x} top_down {}", align, top_down);
                if let Some(h) = hint_off.map(|h| MIN + h * PS) {
                    let spec = FindSpec { hint: Some(h), ..spec };
                    let first = if top_down { oracle(&m, len, align, lo, h.min(hi), true) } else { oracle(&m, len, align, h.max(lo), hi, false) };
                    let want = first.or_else(|| oracle(&m, len, align, lo, hi, top_down)).ok_or(VmError::NoSpace);
                    prop_assert_eq!(m.find_space_with(&spec), want, "hint {:#x} align {:#x} top_down {}", h, align, top_down);
                }
            }
        }
        prop_assert_eq!(m.find_space(len, PS), oracle(&m, len, PS, MIN, MAX, false).ok_or(VmError::NoSpace));
    }
}
