//! A set of disjoint page ranges (the guard markers a process has installed).

use alloc::collections::BTreeMap;

/// Disjoint, non-adjacent `[start, end)` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    /// Adds `[start, end)`.
    pub fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        if let Some((&s, &e)) = self.0.range(..=start).next_back()
            && e >= start
        {
            start = s;
            end = end.max(e);
        }
        let inside: alloc::vec::Vec<(u64, u64)> = self.0.range(start..=end).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in inside {
            self.0.remove(&s);
            end = end.max(e);
        }
        self.0.insert(start, end);
    }

    /// Removes `[start, end)`.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let hit: alloc::vec::Vec<(u64, u64)> =
            self.0.range(..end).rev().take_while(|(_, e)| **e > start).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in hit {
            self.0.remove(&s);
            if s < start {
                self.0.insert(s, start);
            }
            if e > end {
                self.0.insert(end, e);
            }
        }
    }

    /// The first range overlapping `[start, end)`, clipped to it.
    pub fn first_in(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        let before = self.0.range(..=start).next_back().filter(|(_, e)| **e > start);
        let after = || self.0.range(start..end).next();
        before.or_else(after).map(|(s, e)| ((*s).max(start), (*e).min(end))).filter(|(s, e)| s < e)
    }

    /// Moves what lies in `[from, from + len)` to `[to, to + len)` (page tables moved by `mremap`).
    pub fn relocate(&mut self, from: u64, len: u64, to: u64) {
        let mut moved = alloc::vec::Vec::new();
        let mut at = from;
        while let Some((s, e)) = self.first_in(at, from + len) {
            moved.push((s, e));
            at = e;
        }
        self.remove(from, from + len);
        for (s, e) in moved {
            self.insert(s - from + to, e - from + to);
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(s, e)| (*s, *e))
    }
}
