//! The simplest user-space record of a layout: a `BTreeMap<start, (end, prot)>` range map, with no
//! lock, no validation and no effects. The benches compare the map with it, and the real-memory rows
//! keep it beside the bare system calls (alternative "record").

use std::collections::BTreeMap;

/// The record: start → (end, protection bits).
pub type Record = BTreeMap<u64, (u64, u8)>;

/// The entry holding `addr`, as (start, end, protection bits).
pub fn lookup(m: &Record, addr: u64) -> Option<(u64, u64, u8)> {
    m.range(..=addr).next_back().filter(|(_, (e, _))| addr < *e).map(|(s, (e, p))| (*s, *e, *p))
}

/// The straightforward range map's protect of `[s, e)` (inside one entry): split the entry around the
/// range, set, merge equal neighbours.
pub fn protect(m: &mut Record, s: u64, e: u64, p: u8) {
    let (&start, &(end, old)) = m.range(..=s).next_back().expect("the range is inside an entry");
    m.remove(&start);
    if start < s {
        m.insert(start, (s, old));
    }
    m.insert(s, (e, p));
    if e < end {
        m.insert(e, (end, old));
    }
    // Merge with the previous and next when they touch and match.
    let mut cur = s;
    if let Some((&ps, &(pe, pp))) = m.range(..s).next_back()
        && pe == s
        && pp == p
    {
        m.remove(&s);
        m.insert(ps, (e, p));
        cur = ps;
    }
    let (ce, cp) = m[&cur];
    if let Some(&(ne, np)) = m.get(&ce)
        && np == cp
    {
        m.remove(&ce);
        m.insert(cur, (ne, cp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protect_splits_and_merges_back() {
        let mut m: Record = [(0, (4, 3)), (4, (8, 1))].into_iter().collect();
        protect(&mut m, 1, 2, 1);
        assert_eq!(m.len(), 4);
        assert_eq!(lookup(&m, 1), Some((1, 2, 1)));
        protect(&mut m, 1, 2, 3);
        assert_eq!(m, [(0, (4, 3)), (4, (8, 1))].into_iter().collect());
        assert_eq!(lookup(&m, 8), None);
    }
}
