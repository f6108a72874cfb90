//! Editing a sanitized map: add a range, change the kind of a range, remove
//! a range, clip at a limit.
//!
//! Each edit rewrites the map in one pass into pieces cut at the edit's
//! boundaries, then merges neighbours exactly as sanitizing would. For a map
//! that is already sanitized this gives the same result as Linux's
//! `__e820__range_add/update/remove()` followed by `e820__update_table()`,
//! without re-sorting, and needs room only for the result.

use core::ops::Range;

use crate::entry::Entry;
use crate::error::CapacityError;
use crate::kind::Kind;
use crate::map::MemoryMap;

/// Collects the pieces of a rewritten map in address order, merging
/// neighbours that sanitizing would merge.
struct Rewrite<const N: usize> {
    out: [Entry; N],
    len: usize,
    needed: usize,
}

impl<const N: usize> Rewrite<N> {
    const fn new() -> Self {
        Self {
            out: [Entry::VOID; N],
            len: 0,
            needed: 0,
        }
    }

    fn push(&mut self, piece: Entry) {
        if piece.is_empty() || piece.kind().is_void() {
            return;
        }
        if let Some(last) = self.len.checked_sub(1).and_then(|i| self.out.get_mut(i)) {
            if last.end() == piece.start()
                && last.kind() == piece.kind()
                && !piece.kind().never_merges()
            {
                if let Ok(merged) = Entry::new(last.start(), piece.end(), piece.kind()) {
                    *last = merged;
                }
                return;
            }
        }
        self.needed += 1;
        if let Some(slot) = self.out.get_mut(self.len) {
            *slot = piece;
            self.len += 1;
        }
    }

    fn finish(self, map: &mut MemoryMap<N>) -> Result<(), CapacityError> {
        if self.needed > N {
            return Err(CapacityError {
                capacity: N,
                needed: self.needed,
            });
        }
        map.replace_sanitized(&self.out[..self.len]);
        Ok(())
    }
}

impl<const N: usize> MemoryMap<N> {
    /// Adds one range. Where it overlaps existing entries the larger type
    /// code wins, exactly as if firmware had reported both (Linux's
    /// `e820__range_add()` followed by `e820__update_table()`). An empty
    /// range changes nothing.
    pub fn add(&mut self, new: Entry) -> Result<(), CapacityError> {
        if new.is_empty() {
            return Ok(());
        }
        let (s, t) = (new.start(), new.end());
        let mut out = Rewrite::<N>::new();
        // Start of the part of `new` not yet emitted.
        let mut cursor = s;
        for &entry in self.entries() {
            if entry.end() <= s {
                out.push(entry);
                continue;
            }
            if entry.start() >= t {
                out.push(new.clamp(cursor, t));
                cursor = t;
                out.push(entry);
                continue;
            }
            out.push(entry.clamp(entry.start(), s));
            out.push(new.clamp(cursor, entry.start()));
            let overlap = entry.clamp(s, t);
            out.push(overlap.with_kind(entry.kind().max(new.kind())));
            cursor = overlap.end();
            out.push(entry.clamp(t, entry.end()));
        }
        out.push(new.clamp(cursor, t));
        out.finish(self)
    }

    /// Changes the parts of `range` that are of kind `from` to kind `to`, and
    /// returns how many bytes changed (Linux's `e820__range_update()`).
    pub fn update(
        &mut self,
        range: Range<u64>,
        from: Kind,
        to: Kind,
    ) -> Result<u64, CapacityError> {
        if from == to {
            return Ok(0);
        }
        self.rewrite_matching(range, Some(from), Some(to))
    }

    /// Removes the parts of `range` of kind `only` (any kind when `None`) and
    /// returns how many bytes were removed (Linux's `e820__range_remove()`).
    pub fn remove(&mut self, range: Range<u64>, only: Option<Kind>) -> Result<u64, CapacityError> {
        self.rewrite_matching(range, only, None)
    }

    /// Removes everything at and above `limit`. Never needs more entries.
    pub fn clip(&mut self, limit: u64) {
        let keep = self.entries().partition_point(|e| e.start() < limit);
        let mut kept = [Entry::VOID; N];
        let kept = &mut kept[..keep];
        kept.copy_from_slice(&self.entries()[..keep]);
        if let Some(last) = kept.last_mut() {
            *last = last.clamp(last.start(), limit);
        }
        self.replace_sanitized(kept);
    }

    /// Cuts the entries matching `only` at the boundaries of `range`, gives
    /// their inner parts kind `to` (or drops them when `to` is `None`).
    fn rewrite_matching(
        &mut self,
        range: Range<u64>,
        only: Option<Kind>,
        to: Option<Kind>,
    ) -> Result<u64, CapacityError> {
        let (s, t) = (range.start, range.end);
        if s >= t {
            return Ok(0);
        }
        let mut out = Rewrite::<N>::new();
        let mut changed = 0;
        for &entry in self.entries() {
            let matches = only.is_none_or(|k| k == entry.kind());
            if !matches || entry.end() <= s || entry.start() >= t {
                out.push(entry);
                continue;
            }
            let inner = entry.clamp(s, t);
            changed += inner.size();
            out.push(entry.clamp(entry.start(), s));
            if let Some(kind) = to {
                out.push(inner.with_kind(kind));
            }
            out.push(entry.clamp(t, entry.end()));
        }
        out.finish(self)?;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(start: u64, end: u64, code: u32) -> Entry {
        Entry::new(start, end, Kind::from_raw(code)).unwrap()
    }

    fn triples<const N: usize>(map: &MemoryMap<N>) -> Vec<(u64, u64, u32)> {
        map.iter()
            .map(|x| (x.start(), x.end(), x.kind().raw()))
            .collect()
    }

    #[test]
    fn add_overlays_with_the_larger_code() {
        let mut map = MemoryMap::<8>::from_entries([e(0, 100, 1), e(200, 300, 3)]).unwrap();
        map.add(e(50, 250, 2)).unwrap();
        // ACPI data (3) beats reserved (2) where they overlap.
        assert_eq!(triples(&map), [(0, 50, 1), (50, 200, 2), (200, 300, 3)]);
        map.add(e(0, 400, 1)).unwrap();
        assert_eq!(
            triples(&map),
            [(0, 50, 1), (50, 200, 2), (200, 300, 3), (300, 400, 1)]
        );
    }

    #[test]
    fn add_of_pram_is_cut_at_the_boundaries_beneath_it() {
        let mut map = MemoryMap::<8>::from_entries([e(40, 60, 1)]).unwrap();
        map.add(e(0, 100, 12)).unwrap();
        assert_eq!(triples(&map), [(0, 40, 12), (40, 60, 12), (60, 100, 12)]);
        // An empty range does not cut anything.
        map.add(e(20, 20, 1)).unwrap();
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn update_and_remove_split_only_matching_entries() {
        let mut map = MemoryMap::<8>::from_entries([e(0, 100, 1), e(100, 200, 2)]).unwrap();
        assert_eq!(map.update(50..150, Kind::Ram, Kind::Reserved).unwrap(), 50);
        assert_eq!(triples(&map), [(0, 50, 1), (50, 200, 2)]);
        assert_eq!(map.remove(60..70, Some(Kind::Ram)).unwrap(), 0);
        assert_eq!(map.remove(60..70, None).unwrap(), 10);
        assert_eq!(triples(&map), [(0, 50, 1), (50, 60, 2), (70, 200, 2)]);
        map.clip(150);
        assert_eq!(triples(&map), [(0, 50, 1), (50, 60, 2), (70, 150, 2)]);
        map.clip(0);
        assert!(map.is_empty());
    }

    #[test]
    fn a_split_that_does_not_fit_is_refused() {
        let mut map = MemoryMap::<2>::from_entries([e(0, 100, 1)]).unwrap();
        let before = map.clone();
        assert_eq!(
            map.update(40..60, Kind::Ram, Kind::Pmem),
            Err(CapacityError {
                capacity: 2,
                needed: 3
            })
        );
        assert_eq!(map, before);
    }
}
