//! Sets of physical address ranges: what is free, what is reserved, what is
//! NVRAM. Fixed capacity (the hypervisor has no heap), always sorted,
//! disjoint and with touching ranges merged.

use core::fmt;
use core::ops::Range;

/// A set of byte ranges `[start, end)` holding at most `N` disjoint ranges.
#[derive(Clone, PartialEq, Eq)]
pub struct RangeSet<const N: usize> {
    ranges: [Range<u64>; N],
    len: usize,
}

/// The set would need more than its capacity of disjoint ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeSetFull {
    /// The set's capacity.
    pub capacity: usize,
}

impl fmt::Display for RangeSetFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {} disjoint ranges", self.capacity)
    }
}

impl core::error::Error for RangeSetFull {}

impl<const N: usize> RangeSet<N> {
    /// The empty set.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            ranges: [const { 0..0 }; N],
            len: 0,
        }
    }

    /// The ranges in address order.
    #[must_use]
    pub fn ranges(&self) -> &[Range<u64>] {
        &self.ranges[..self.len]
    }

    /// Iterates over the ranges in address order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges().iter().cloned()
    }

    /// Whether the set is empty.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total bytes in the set.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.iter().map(|r| r.end - r.start).sum()
    }

    /// Whether `addr` lies in the set.
    #[cfg(any(test, feature = "std"))]
    #[must_use]
    pub fn contains(&self, addr: u64) -> bool {
        self.iter().any(|r| r.contains(&addr))
    }

    /// Whether any byte of `range` lies in the set.
    #[must_use]
    pub fn overlaps(&self, range: &Range<u64>) -> bool {
        range.start < range.end
            && self
                .iter()
                .any(|r| r.start < range.end && range.start < r.end)
    }

    /// Bytes of `range` that lie in the set.
    #[must_use]
    pub fn overlap(&self, range: &Range<u64>) -> u64 {
        self.iter()
            .map(|r| {
                range
                    .end
                    .min(r.end)
                    .saturating_sub(range.start.max(r.start))
            })
            .sum()
    }

    /// Adds `range`, merging with ranges it overlaps or touches. On error the
    /// set is unchanged.
    pub fn insert(&mut self, range: Range<u64>) -> Result<(), RangeSetFull> {
        if range.start >= range.end {
            return Ok(());
        }
        let (mut start, mut end) = (range.start, range.end);
        // Ranges entirely before `range` (not touching) stay; those that
        // overlap or touch are absorbed; the rest shift.
        let first = self.ranges().partition_point(|r| r.end < start);
        let mut last = first;
        while let Some(r) = self.ranges().get(last).filter(|r| r.start <= end) {
            start = start.min(r.start);
            end = end.max(r.end);
            last += 1;
        }
        let absorbed = last - first;
        if absorbed == 0 {
            if self.len == N {
                return Err(RangeSetFull { capacity: N });
            }
            self.ranges[first..=self.len].rotate_right(1);
            self.len += 1;
        } else {
            self.ranges[first + 1..self.len].rotate_left(absorbed - 1);
            self.len -= absorbed - 1;
        }
        self.ranges[first] = start..end;
        Ok(())
    }

    /// Removes every byte of `range`. Splitting a range in two needs one
    /// more slot; on error the set is unchanged.
    pub fn remove(&mut self, range: Range<u64>) -> Result<(), RangeSetFull> {
        if range.start >= range.end {
            return Ok(());
        }
        let mut out = Self::new();
        for r in self.iter() {
            for piece in [
                r.start..r.end.min(range.start),
                r.start.max(range.end)..r.end,
            ] {
                if piece.start < piece.end {
                    out.push_sorted(piece)?;
                }
            }
        }
        *self = out;
        Ok(())
    }

    /// Removes every byte of every range of `other`.
    pub fn remove_all<const M: usize>(&mut self, other: &RangeSet<M>) -> Result<(), RangeSetFull> {
        let mut out = self.clone();
        for r in other.iter() {
            out.remove(r)?;
        }
        *self = out;
        Ok(())
    }

    /// Appends a range known to lie after every range already present.
    fn push_sorted(&mut self, range: Range<u64>) -> Result<(), RangeSetFull> {
        if let Some(last) = self.ranges[..self.len].last_mut() {
            if last.end == range.start {
                last.end = range.end;
                return Ok(());
            }
        }
        let slot = self
            .ranges
            .get_mut(self.len)
            .ok_or(RangeSetFull { capacity: N })?;
        *slot = range;
        self.len += 1;
        Ok(())
    }
}

impl<const N: usize> Default for RangeSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for RangeSet<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(HexRange)).finish()
    }
}

/// A range printed as `[0x…-0x…)`.
pub struct HexRange(pub Range<u64>);

impl fmt::Debug for HexRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}-{:#x})", self.0.start, self.0.end)
    }
}

impl fmt::Display for HexRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Linux's inclusive form, like the memory-map lines.
        write!(
            f,
            "[mem {:#018x}-{:#018x}]",
            self.0.start,
            self.0.end.saturating_sub(1)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn insert_merges_and_remove_splits() {
        let mut set = RangeSet::<4>::new();
        set.insert(10..20).unwrap();
        set.insert(30..40).unwrap();
        set.insert(20..25).unwrap();
        assert_eq!(set.ranges(), [10..25, 30..40]);
        set.insert(0..100).unwrap();
        assert_eq!(set.ranges(), vec![0..100]);
        set.remove(40..60).unwrap();
        assert_eq!(set.ranges(), [0..40, 60..100]);
        assert_eq!(set.total(), 80);
        assert!(set.overlaps(&(39..41)));
        assert!(!set.overlaps(&(40..60)));
    }

    #[test]
    fn capacity_errors_leave_the_set_unchanged() {
        let mut set = RangeSet::<2>::new();
        set.insert(0..10).unwrap();
        set.insert(20..30).unwrap();
        let before = set.clone();
        assert_eq!(set.insert(40..50), Err(RangeSetFull { capacity: 2 }));
        assert_eq!(set.remove(2..4), Err(RangeSetFull { capacity: 2 }));
        assert_eq!(set, before);
    }

    /// Reference model: a bitmap over a small address space.
    fn model(ops: &[(bool, u8, u8)]) -> Vec<bool> {
        let mut bits = vec![false; 256];
        for &(add, a, b) in ops {
            let (s, e) = (a.min(b) as usize, a.max(b) as usize);
            bits[s..e].iter_mut().for_each(|x| *x = add);
        }
        bits
    }

    proptest! {
        #[test]
        fn matches_a_bitmap(ops in proptest::collection::vec((any::<bool>(), any::<u8>(), any::<u8>()), 0..40)) {
            let mut set = RangeSet::<256>::new();
            for &(add, a, b) in &ops {
                let r = u64::from(a.min(b))..u64::from(a.max(b));
                if add { set.insert(r).unwrap() } else { set.remove(r).unwrap() }
            }
            let bits = model(&ops);
            for (addr, &bit) in bits.iter().enumerate() {
                prop_assert_eq!(set.contains(addr as u64), bit);
            }
            for pair in set.ranges().windows(2) {
                prop_assert!(pair[0].end < pair[1].start, "sorted, disjoint, not touching");
            }
        }
    }
}
