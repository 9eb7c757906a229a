//! Size classes: a request is rounded up to a quarter of its power of two and to whole pages; each
//! class has an index into the per-class caches.
//!
//! Invariant: `class_size` is idempotent (a class size is its own class) and `class_index` is
//! injective over its results, below `CLASSES`.

/// Sub-classes per power of two.
pub(super) const SUBCLASSES: u32 = 4;
/// Class indices: `4 · log2 + sub-class`, below 64 · 4.
pub(super) const CLASSES: usize = 64 * SUBCLASSES as usize;

/// The size class of `size`: rounded up to a quarter of its power of two, and to whole pages.
pub fn class_size(size: u64, page: u64) -> Option<u64> {
    let size = size.max(1);
    let top = 63 - size.leading_zeros();
    let step = ((1u64 << top) >> 2).max(page);
    size.checked_next_multiple_of(step)
}

/// The cache index of a class size (injective over [`class_size`]'s results).
pub(super) fn class_index(cs: u64) -> usize {
    let top = 63 - cs.leading_zeros();
    let sub = if top >= 2 { (cs >> (top - 2)) & 3 } else { 0 };
    top as usize * SUBCLASSES as usize + sub as usize
}

/// The class size of cache index `i` (the inverse of [`class_index`] for indices of sizes of at least
/// four pages, where every sub-class exists).
pub(super) fn class_len(i: usize) -> u64 {
    let (top, sub) = (i / SUBCLASSES as usize, i % SUBCLASSES as usize);
    (4 + sub as u64) << top.saturating_sub(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_page_multiples_and_indices_distinct() {
        let page = 4096;
        let mut seen = std::collections::HashMap::new();
        let mut s = 1u64;
        while s < 1 << 34 {
            for d in [0, 1, s / 3, s / 2] {
                let cs = class_size(s + d, page).unwrap();
                assert!(cs >= s + d && cs.is_multiple_of(page));
                assert_eq!(class_size(cs, page), Some(cs));
                if let Some(&other) = seen.get(&class_index(cs)) {
                    assert_eq!(other, cs);
                }
                seen.insert(class_index(cs), cs);
                assert!(class_index(cs) < CLASSES);
            }
            s = s * 3 / 2 + 1;
        }
        assert_eq!(class_size(65536, page), Some(65536));
        assert_eq!(class_size(65537, page), Some(65536 + 16384));
    }
}
