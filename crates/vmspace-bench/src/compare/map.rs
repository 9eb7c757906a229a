//! The map's rows: lookup, find_space and protect against the record (a `BTreeMap` range map).

use std::hint::black_box;

use vmspace::{FindSpec, MapSpec, Prot, VmMap};

use super::Row;
use crate::record::{self, Record};
use crate::timing::{median_ns, xorshift};

const PS: u64 = 4096;

/// The map's rows.
pub(super) fn rows(rows: &mut Vec<Row>) -> Result<(), String> {
    const N: u64 = 100_000;
    let base = 0x1000_0000u64;
    let at = |i: u64| base + i * 4 * PS + (i / 8) * PS;
    let prot = |i: u64| if i.is_multiple_of(2) { Prot::RW } else { Prot::READ };
    let mut vm: VmMap = VmMap::new(base, base + (N + 64) * 8 * PS).map_err(|e| e.to_string())?;
    let mut bt = Record::new();
    for i in 0..N {
        vm.insert(at(i)..at(i) + 4 * PS, MapSpec::new(prot(i), Prot::ALL)).map_err(|e| e.to_string())?;
        bt.insert(at(i), (at(i) + 4 * PS, prot(i).bits()));
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let probes: Vec<u64> = (0..4096).map(|_| at(xorshift(&mut seed) % N) + PS).collect();
    let (mut i, mut j) = (0usize, 0usize);
    rows.push(Row {
        group: "map",
        workload: format!("random lookup, {N} entries"),
        alternative: "BTreeMap range map",
        vmspace_ns: median_ns(200_000, || {
            i = (i + 1) & 4095;
            black_box(vm.lookup_entry(probes[i]).map(|e| e.prot()));
        }),
        alternative_ns: median_ns(200_000, || {
            j = (j + 1) & 4095;
            black_box(record::lookup(&bt, probes[j]).map(|(_, _, p)| p));
        }),
    });
    let (min, max) = (vm.min(), vm.max());
    let spec = FindSpec { align: 16 * PS, ..FindSpec::new(16 * PS) };
    rows.push(Row {
        group: "map",
        workload: format!("64 KiB-aligned find_space, {N} fragmented entries"),
        alternative: "linear scan of BTreeMap gaps",
        vmspace_ns: median_ns(20_000, || {
            black_box(vm.find_space_with(&spec).ok());
        }),
        alternative_ns: median_ns(20, || {
            let mut prev = min;
            let mut found = None;
            for (s, (e, _)) in &bt {
                let a = prev.div_ceil(16 * PS) * 16 * PS;
                if a + 16 * PS <= *s {
                    found = Some(a);
                    break;
                }
                prev = *e;
            }
            black_box(found.or(Some(prev)).filter(|a| *a < max));
        }),
    });
    let p = at((N / 2) & !1) + PS;
    rows.push(Row {
        group: "map",
        workload: format!("protect a middle page and back, {N} entries"),
        alternative: "BTreeMap range map that knows the layout (split, rejoin)",
        vmspace_ns: median_ns(20_000, || {
            vm.protect(p..p + PS, Prot::READ).unwrap();
            vm.protect(p..p + PS, Prot::RW).unwrap();
        }),
        alternative_ns: median_ns(20_000, || {
            // Split the entry around the page, then put it back whole: what a plain range map does.
            let (start, (end, old)) = bt.range(..=p).next_back().map(|(k, v)| (*k, *v)).unwrap();
            bt.insert(start, (p, old));
            bt.insert(p, (p + PS, Prot::READ.bits()));
            bt.insert(p + PS, (end, old));
            bt.remove(&p);
            bt.remove(&(p + PS));
            bt.insert(start, (end, old));
        }),
    });
    Ok(())
}
