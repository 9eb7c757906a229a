//! A set of page ranges (the pages a trace touched), kept as disjoint, non-adjacent `[start, end)`
//! runs in a `BTreeMap` keyed by start.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-adjacent ranges. Invariant: for consecutive runs `a`, `b`: `a.end < b.start`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    runs: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `r`, merging with overlapping and adjacent runs.
    pub fn add(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let (mut s, mut e) = (r.start, r.end);
        if let Some((&ps, &pe)) = self.runs.range(..=s).next_back()
            && pe >= s
        {
            if pe >= e {
                return;
            }
            s = ps;
        }
        while let Some((&ns, &ne)) = self.runs.range(s..).next() {
            if ns > e {
                break;
            }
            e = e.max(ne);
            self.runs.remove(&ns);
        }
        self.runs.insert(s, e);
    }

    /// Removes `r`, splitting runs that straddle its ends.
    pub fn remove(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        if let Some((&ps, &pe)) = self.runs.range(..r.start).next_back()
            && pe > r.start
        {
            self.runs.insert(ps, r.start);
            if pe > r.end {
                self.runs.insert(r.end, pe);
                return;
            }
        }
        while let Some((&ns, &ne)) = self.runs.range(r.start..).next() {
            if ns >= r.end {
                break;
            }
            self.runs.remove(&ns);
            if ne > r.end {
                self.runs.insert(r.end, ne);
                break;
            }
        }
    }

    /// The runs in address order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.runs.iter().map(|(&s, &e)| s..e)
    }

    /// Total bytes covered.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|(s, e)| e - s).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove() {
        let mut s = RangeSet::new();
        s.add(10..20);
        s.add(30..40);
        s.add(20..30);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![10..40]);
        s.remove(15..25);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![10..15, 25..40]);
        s.add(0..100);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..100]);
        s.remove(0..10);
        s.remove(90..200);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![10..90]);
        s.remove(20..30);
        s.remove(40..50);
        s.add(25..45);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![10..20, 25..45, 50..90]);
        assert_eq!(s.bytes(), 10 + 20 + 40);
    }
}
