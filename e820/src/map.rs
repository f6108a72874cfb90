//! The fixed-capacity memory map and its queries.

use core::fmt;
use core::ops::Range;

use nvirt_addr::{HostPhysAddr, HostPhysRange, PageSize};

use crate::entry::Entry;
use crate::error::{AlignmentError, CapacityError, MapError};
use crate::firmware::FirmwareEntry;
use crate::kind::Kind;
use crate::sanitize::{Scratch, sanitize_in_place};

/// A physical memory map of at most `N` entries, always sanitized: sorted by
/// address, non-overlapping, no empty entries, and neighbours of the same
/// kind merged (except kinds that [never merge](Kind::never_merges)).
///
/// Every operation that fails leaves the map exactly as it was; nothing is
/// ever silently dropped. Operations that sanitize use about `48 * N` bytes
/// of stack, those that rewrite entries `24 * N`.
#[derive(Clone)]
pub struct MemoryMap<const N: usize> {
    entries: [Entry; N],
    len: usize,
}

impl<const N: usize> MemoryMap<N> {
    /// An empty map.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            entries: [Entry::VOID; N],
            len: 0,
        }
    }

    /// The map the given entries describe, sanitized with Linux's semantics.
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> Result<Self, CapacityError> {
        let mut map = Self::new();
        map.extend(entries)?;
        Ok(map)
    }

    /// The map firmware entries describe (e.g. from [`crate::bios`]), with
    /// each entry's end checked and the result sanitized.
    pub fn from_firmware(
        entries: impl IntoIterator<Item = FirmwareEntry>,
    ) -> Result<Self, MapError> {
        let mut map = Self::new();
        map.extend_firmware(entries)?;
        Ok(map)
    }

    /// Adds many entries at once, then sanitizes once: overlaps resolve to the
    /// larger type code, as if the entries had all come from firmware.
    ///
    /// Like Linux's table, the map must have room for the existing entries
    /// plus the new ones before sanitizing shrinks them. To add one range to a
    /// full map, use [`MemoryMap::add`], which needs room only for the result.
    pub fn extend(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<(), CapacityError> {
        let mut raw = self.clone();
        for entry in entries {
            raw.push_raw(entry)?;
        }
        raw.sanitize()?;
        *self = raw;
        Ok(())
    }

    /// Like [`MemoryMap::extend`] for raw firmware entries, which may claim
    /// ranges ending beyond 2^64.
    pub fn extend_firmware(
        &mut self,
        entries: impl IntoIterator<Item = FirmwareEntry>,
    ) -> Result<(), MapError> {
        let mut raw = self.clone();
        for (index, fw) in entries.into_iter().enumerate() {
            let entry = fw
                .to_entry()
                .map_err(|error| MapError::Range { index, error })?;
            raw.push_raw(entry)?;
        }
        raw.sanitize()?;
        *self = raw;
        Ok(())
    }

    /// Appends without sanitizing; only for building a map that is sanitized
    /// before anyone sees it (and for the raw-table edits of `memmap=`).
    pub(crate) fn push_raw(&mut self, entry: Entry) -> Result<(), CapacityError> {
        let slot = self.entries.get_mut(self.len).ok_or(CapacityError {
            capacity: N,
            needed: self.len + 1,
        })?;
        *slot = entry;
        self.len += 1;
        Ok(())
    }

    /// Linux's `__e820__range_update()` / `e820__range_remove()` on an
    /// unsanitized table: every entry matching `only` (any, if `None`) is cut
    /// at the range's boundaries and its inner part retyped to `to` or
    /// dropped; extra pieces are appended. Returns the bytes affected
    /// (saturating: raw entries may overlap, so the sum may pass 2^64).
    ///
    /// Like Linux, an empty range strictly inside a matching entry still cuts
    /// it in two (visible for kinds that never merge).
    pub(crate) fn raw_cut(
        &mut self,
        range: Range<u64>,
        only: Option<Kind>,
        to: Option<Kind>,
    ) -> Result<u64, CapacityError> {
        let (s, t) = (range.start, range.end);
        if s > t {
            return Ok(0);
        }
        let mut changed: u64 = 0;
        for i in 0..self.len {
            let entry = self.entries[i];
            let matches = only.is_none_or(|k| k == entry.kind());
            if !matches || entry.is_empty() || entry.end() <= s || entry.start() >= t {
                continue;
            }
            let inner = entry.clamp(s, t);
            changed = changed.saturating_add(inner.size());
            let pieces = [
                entry.clamp(entry.start(), s),
                to.map_or(Entry::VOID, |kind| inner.with_kind(kind)),
                entry.clamp(t, entry.end()),
            ];
            let mut pieces = pieces.into_iter().filter(|p| !p.is_empty());
            self.entries[i] = pieces.next().unwrap_or(Entry::VOID);
            for piece in pieces {
                self.push_raw(piece)?;
            }
        }
        Ok(changed)
    }

    pub(crate) fn sanitize(&mut self) -> Result<(), CapacityError> {
        let mut scratch = Scratch::<N>::new();
        self.len = sanitize_in_place(&mut self.entries, self.len, &mut scratch)?;
        Ok(())
    }

    /// Replaces the entries with `entries`, which must already be sorted,
    /// non-overlapping and normalised.
    pub(crate) fn replace_sanitized(&mut self, entries: &[Entry]) {
        let n = entries.len().min(N);
        self.entries[..n].copy_from_slice(&entries[..n]);
        self.len = n;
    }

    /// The entries, in address order.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries[..self.len]
    }

    /// Iterates over the entries in address order.
    pub fn iter(&self) -> core::slice::Iter<'_, Entry> {
        self.entries().iter()
    }

    /// Number of entries.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the map has no entry.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most entries this map can hold.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The entry containing `addr`, if any.
    #[must_use]
    pub fn entry_at(&self, addr: u64) -> Option<&Entry> {
        let entries = self.entries();
        let after = entries.partition_point(|e| e.start() <= addr);
        after
            .checked_sub(1)
            .and_then(|i| entries.get(i))
            .filter(|e| e.contains(addr))
    }

    /// The kind of memory at `addr`, or `None` in a hole.
    #[must_use]
    pub fn kind_at(&self, addr: u64) -> Option<Kind> {
        self.entry_at(addr).map(Entry::kind)
    }

    /// The entries of one kind.
    pub fn iter_kind(&self, kind: Kind) -> impl Iterator<Item = &Entry> + '_ {
        self.iter().filter(move |e| e.kind() == kind)
    }

    /// The entries whose kind is non-volatile (E820 7, 12 and 90).
    pub fn nonvolatile(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.iter().filter(|e| e.kind().is_nonvolatile())
    }

    /// Total bytes of one kind.
    #[must_use]
    pub fn total(&self, kind: Kind) -> u64 {
        self.iter_kind(kind).map(Entry::size).sum()
    }

    /// Total bytes of non-volatile memory.
    #[must_use]
    pub fn total_nonvolatile(&self) -> u64 {
        self.nonvolatile().map(Entry::size).sum()
    }

    /// The ranges of `kind`, each shrunk inward to `align` (a power of two);
    /// ranges with no aligned part are skipped. Adjacent entries of a kind
    /// that never merges are joined first, since their boundaries are not
    /// holes.
    pub fn aligned_ranges(
        &self,
        kind: Kind,
        align: u64,
    ) -> Result<impl Iterator<Item = Range<u64>> + '_, AlignmentError> {
        if !align.is_power_of_two() {
            return Err(AlignmentError { align });
        }
        let mask = align - 1;
        let mut entries = self.iter_kind(kind).peekable();
        Ok(core::iter::from_fn(move || {
            loop {
                let first = entries.next()?;
                let mut end = first.end();
                while let Some(next) = entries.next_if(|n| n.start() == end) {
                    end = next.end();
                }
                // `start` rounds up: it may pass `end`, never 2^64, since an
                // entry's end is at most `u64::MAX`.
                let start = first.start().checked_add(mask).map(|s| s & !mask);
                let end = end & !mask;
                if let Some(start) = start.filter(|&s| s < end) {
                    return Some(start..end);
                }
            }
        }))
    }

    /// [`aligned_ranges`](Self::aligned_ranges) of `kind` shrunk to pages of
    /// `size`, as host-physical ranges, cut to the physical address space.
    ///
    /// Firmware may describe memory at or beyond `2^52`, which no x86
    /// processor can address: that part is left out, like memory a kernel
    /// cannot map. A range's end is itself an address below `2^52`, so the
    /// space's last page of `size` is left out too.
    pub fn aligned_phys_ranges(
        &self,
        kind: Kind,
        size: PageSize,
    ) -> impl Iterator<Item = HostPhysRange> + '_ {
        // The highest end a range of whole `size` pages can have.
        let top = HostPhysAddr::MAX.align_down(size);
        // A page size is a power of two: `aligned_ranges` cannot refuse it.
        let ranges = self.aligned_ranges(kind, size.bytes()).ok().into_iter();
        ranges.flatten().filter_map(move |r| {
            let start = HostPhysAddr::new(r.start)?;
            let end = HostPhysAddr::new(r.end.min(top.get()))?;
            HostPhysRange::new(start, end).filter(|r| !r.is_empty())
        })
    }

    /// Usable RAM, page by page: RAM ranges shrunk inward to `align`.
    pub fn usable_ranges(
        &self,
        align: u64,
    ) -> Result<impl Iterator<Item = Range<u64>> + '_, AlignmentError> {
        self.aligned_ranges(Kind::Ram, align)
    }

    /// One past the highest byte described, or 0 for an empty map.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.entries().last().map_or(0, Entry::end)
    }
}

impl<const N: usize> Default for MemoryMap<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PartialEq for MemoryMap<N> {
    fn eq(&self, other: &Self) -> bool {
        self.entries() == other.entries()
    }
}

impl<const N: usize> Eq for MemoryMap<N> {}

impl<const N: usize> fmt::Debug for MemoryMap<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries()).finish()
    }
}

/// One entry per line in Linux's `[mem 0x…-0x…] kind` format.
impl<const N: usize> fmt::Display for MemoryMap<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in self.entries() {
            writeln!(f, "{entry}")?;
        }
        Ok(())
    }
}

impl<'a, const N: usize> IntoIterator for &'a MemoryMap<N> {
    type Item = &'a Entry;
    type IntoIter = core::slice::Iter<'a, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(start: u64, end: u64, kind: Kind) -> Entry {
        Entry::new(start, end, kind).unwrap()
    }

    #[test]
    fn queries_on_a_small_map() {
        let map = MemoryMap::<8>::from_entries([
            e(0x10_0000, 0x4000_0000, Kind::Ram),
            e(0, 0x9fc00, Kind::Ram),
            e(0x9fc00, 0xa0000, Kind::Reserved),
            e(0x1_0000_0000, 0x2_0000_0000, Kind::Pmem),
        ])
        .unwrap();
        assert_eq!(map.len(), 4);
        assert_eq!(map.kind_at(0), Some(Kind::Ram));
        assert_eq!(map.kind_at(0x9fc00), Some(Kind::Reserved));
        assert_eq!(map.kind_at(0xa0000), None);
        assert_eq!(map.kind_at(0x1_8000_0000), Some(Kind::Pmem));
        assert_eq!(map.kind_at(u64::MAX), None);
        assert_eq!(map.total(Kind::Ram), 0x9fc00 + 0x3ff0_0000);
        assert_eq!(map.total_nonvolatile(), 1 << 32);
        let usable: Vec<_> = map.usable_ranges(0x1000).unwrap().collect();
        assert_eq!(usable, [0..0x9f000, 0x10_0000..0x4000_0000]);
        let huge: Vec<_> = map.usable_ranges(1 << 30).unwrap().collect();
        assert!(huge.is_empty());
        assert!(map.usable_ranges(3).is_err());
        assert_eq!(map.end(), 0x2_0000_0000);
    }

    #[test]
    fn typed_ranges_stop_at_the_physical_address_space() {
        let map = MemoryMap::<4>::from_entries([
            e(0x1001, 0x5000, Kind::Ram),
            e(0x20_0000, 0x40_0000, Kind::Pmem),
            e(1 << 52, 1 << 53, Kind::Ram),
        ])
        .unwrap();
        let ram: Vec<_> = map
            .aligned_phys_ranges(Kind::Ram, PageSize::Size4K)
            .collect();
        assert_eq!(ram, [HostPhysRange::from_numbers(0x2000, 0x5000).unwrap()]);
        let pmem = map.aligned_phys_ranges(Kind::Pmem, PageSize::Size2M).next();
        assert_eq!(
            pmem,
            Some(HostPhysRange::from_numbers(0x20_0000, 0x40_0000).unwrap())
        );
        assert_eq!(
            map.entries()[1].phys_range().map(HostPhysRange::len),
            Some(0x20_0000)
        );
        assert_eq!(map.entries()[2].phys_range(), None);
    }

    #[test]
    fn typed_ranges_are_cut_at_the_top_of_the_physical_space() {
        let top = 1u64 << 52;
        let map =
            MemoryMap::<4>::from_entries([e(top - (8 << 20), top + 0x1000, Kind::Pmem)]).unwrap();
        let cut: Vec<_> = map
            .aligned_phys_ranges(Kind::Pmem, PageSize::Size2M)
            .collect();
        // Ends are addresses, so the last 2 MiB page of the space is left out.
        assert_eq!(
            cut,
            [HostPhysRange::from_numbers(top - (8 << 20), top - (2 << 20)).unwrap()]
        );
        let pages: Vec<_> = map
            .aligned_phys_ranges(Kind::Pmem, PageSize::Size4K)
            .collect();
        assert_eq!(pages[0].end().get(), top - 0x1000);
    }

    #[test]
    fn capacity_errors_leave_the_map_unchanged() {
        let mut map =
            MemoryMap::<2>::from_entries([e(0, 10, Kind::Ram), e(20, 30, Kind::Ram)]).unwrap();
        let before = map.clone();
        let err = map.add(e(40, 50, Kind::Ram)).unwrap_err();
        assert_eq!(err.capacity, 2);
        assert_eq!(map, before);
        // Overlapping additions that sanitize back into capacity succeed.
        map.add(e(5, 25, Kind::Ram)).unwrap();
        assert_eq!(map.entries(), [e(0, 30, Kind::Ram)]);
    }

    #[test]
    fn displays_one_linux_line_per_entry() {
        let map = MemoryMap::<4>::from_entries([e(0, 0x9fc00, Kind::Ram)]).unwrap();
        assert_eq!(
            map.to_string(),
            "[mem 0x0000000000000000-0x000000000009fbff] usable\n"
        );
    }
}
