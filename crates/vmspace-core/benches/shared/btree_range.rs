//! The straightforward `BTreeMap<start, (end, prot)>` range map the benches compare with, shared by the
//! map bench and `vmspace`'s space bench (included with `#[path]`).

use std::collections::BTreeMap;

/// The straightforward range map's protect: split the entry around the range, set, merge equal
/// neighbours.
pub fn bt_protect(m: &mut BTreeMap<u64, (u64, u8)>, s: u64, e: u64, p: u8) {
    let (&start, &(end, old)) = m.range(..=s).next_back().unwrap();
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
