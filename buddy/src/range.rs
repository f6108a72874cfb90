//! Frame ranges, their split into maximal aligned blocks, and allocation
//! constraints.

use core::fmt;

use crate::types::{Block, FRAME_SHIFT, Order, Pfn, PhysAddr, Zone};

/// A half-open range of frames `start..end`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PfnRange {
    start: u64,
    end: u64,
}

impl PfnRange {
    /// The frames `start..end`, if `start <= end`.
    #[must_use]
    pub const fn new(start: Pfn, end: Pfn) -> Option<Self> {
        if start.get() <= end.get() {
            Some(Self {
                start: start.get(),
                end: end.get(),
            })
        } else {
            None
        }
    }

    /// The frames `start..end` given as numbers, if both are frame numbers
    /// and `start <= end`.
    #[must_use]
    pub const fn from_numbers(start: u64, end: u64) -> Option<Self> {
        match (Pfn::new(start), Pfn::new(end)) {
            (Some(s), Some(e)) => Self::new(s, e),
            _ => None,
        }
    }

    /// The whole frames inside the byte range `start..end` (a partial frame
    /// at either edge is left out), if `start <= end`.
    #[must_use]
    pub const fn within_bytes(start: PhysAddr, end: PhysAddr) -> Option<Self> {
        if start.get() > end.get() {
            return None;
        }
        let first = start.get().div_ceil(1 << FRAME_SHIFT);
        let last = end.get() >> FRAME_SHIFT;
        if first >= last {
            return Some(Self {
                start: first,
                end: first,
            });
        }
        Self::from_numbers(first, last)
    }

    /// The first frame.
    #[must_use]
    pub const fn start(self) -> Pfn {
        match Pfn::new(self.start) {
            Some(p) => p,
            None => Pfn::MAX,
        }
    }

    /// The frame after the last one.
    #[must_use]
    pub const fn end(self) -> Pfn {
        match Pfn::new(self.end) {
            Some(p) => p,
            None => Pfn::MAX,
        }
    }

    /// Frames in the range.
    #[must_use]
    pub const fn frames(self) -> u64 {
        self.end - self.start
    }

    /// Whether the range holds no frame.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// Whether frame `pfn` lies in the range.
    #[must_use]
    pub const fn contains(self, pfn: Pfn) -> bool {
        pfn.get() >= self.start && pfn.get() < self.end
    }

    /// Whether every frame of `other` lies in this range.
    #[must_use]
    pub const fn covers(self, other: PfnRange) -> bool {
        other.is_empty() || (other.start >= self.start && other.end <= self.end)
    }

    /// The range split into maximal aligned blocks of at most `max_order`,
    /// in address order: the blocks `add`, `reserve` and `claim_range` use.
    #[must_use]
    pub const fn blocks(self, max_order: Order) -> AlignedBlocks {
        AlignedBlocks {
            next: self.start,
            end: self.end,
            max_order,
        }
    }

    pub(crate) const fn raw(self) -> (u64, u64) {
        (self.start, self.end)
    }
}

impl fmt::Debug for PfnRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PfnRange({:#x}..{:#x})", self.start, self.end)
    }
}

impl fmt::Display for PfnRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frames {:#x}..{:#x}", self.start, self.end)
    }
}

/// The largest order of an aligned block that starts at `start` and ends by
/// `end`, capped at `max_order` (`start < end`).
pub(crate) const fn largest_fitting(start: u64, end: u64, max_order: u8) -> u8 {
    let align = if start == 0 {
        63
    } else {
        start.trailing_zeros()
    };
    let fits = 63 - (end - start).leading_zeros();
    let order = if align < fits { align } else { fits };
    if order < max_order as u32 {
        order as u8
    } else {
        max_order
    }
}

/// Iterator over the maximal aligned blocks of a range; see
/// [`PfnRange::blocks`].
#[derive(Clone, Debug)]
pub struct AlignedBlocks {
    next: u64,
    end: u64,
    max_order: Order,
}

impl Iterator for AlignedBlocks {
    type Item = Block;

    fn next(&mut self) -> Option<Block> {
        if self.next >= self.end {
            return None;
        }
        let order = largest_fitting(self.next, self.end, self.max_order.get());
        let block = Block::new(Pfn::new(self.next)?, Order::new(order)?)?;
        self.next += 1 << order;
        Some(block)
    }
}

/// Where an allocation may be placed: frames below a zone limit, as Xen's
/// `MEMF_bits` limits the address width.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Constraints {
    /// Exclusive bound on every frame number of the block.
    limit: u64,
}

impl Constraints {
    /// Anywhere in the heap.
    pub const ANY: Constraints = Constraints { limit: Pfn::LIMIT };

    /// Only frames of `zone` and the zones below it (frame numbers below
    /// `2^zone`).
    #[must_use]
    pub const fn max_zone(zone: Zone) -> Self {
        Self { limit: zone.end() }
    }

    /// Only frames entirely below byte address `2^bits`, e.g. 32 for memory
    /// a 32-bit DMA engine reaches. Fewer than 13 bits leave no frame.
    #[must_use]
    pub const fn max_address_bits(bits: u8) -> Self {
        match Zone::below_address_bits(bits) {
            Some(zone) => Self::max_zone(zone),
            None => Self { limit: 0 },
        }
    }

    /// Exclusive bound on the frame numbers an allocation may use.
    #[must_use]
    pub const fn limit(self) -> u64 {
        self.limit
    }
}

impl Default for Constraints {
    fn default() -> Self {
        Self::ANY
    }
}

impl fmt::Debug for Constraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Constraints(below frame {:#x})", self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(start: u64, end: u64, max: u8) -> Vec<(u64, u8)> {
        PfnRange::from_numbers(start, end)
            .unwrap()
            .blocks(Order::new(max).unwrap())
            .map(|b| (b.start().get(), b.order().get()))
            .collect()
    }

    #[test]
    fn unaligned_edges_become_maximal_blocks() {
        assert_eq!(blocks(1, 8, 18), [(1, 0), (2, 1), (4, 2)]);
        assert_eq!(blocks(3, 13, 18), [(3, 0), (4, 2), (8, 2), (12, 0)]);
        assert_eq!(blocks(0, 0x300, 8), [(0, 8), (0x100, 8), (0x200, 8)]);
        assert_eq!(blocks(5, 5, 3), []);
    }

    #[test]
    fn decomposition_covers_the_range_exactly() {
        for start in 0..70u64 {
            for end in start..140 {
                for max in [0u8, 1, 3, 18] {
                    let mut next = start;
                    for (s, k) in blocks(start, end, max) {
                        assert_eq!(s, next);
                        assert!(k <= max && s % (1 << k) == 0);
                        next = s + (1 << k);
                    }
                    assert_eq!(next, end);
                }
            }
        }
    }

    #[test]
    fn byte_ranges_keep_whole_frames_only() {
        let r = PfnRange::within_bytes(PhysAddr::new(0x1001), PhysAddr::new(0x5fff)).unwrap();
        assert_eq!((r.start().get(), r.end().get()), (2, 5));
        let r = PfnRange::within_bytes(PhysAddr::new(0x1001), PhysAddr::new(0x1fff)).unwrap();
        assert!(r.is_empty());
        assert!(PfnRange::within_bytes(PhysAddr::new(2), PhysAddr::new(1)).is_none());
    }

    #[test]
    fn constraints_are_zone_limits() {
        assert_eq!(Constraints::max_address_bits(32).limit(), 1 << 20);
        assert_eq!(
            Constraints::max_zone(Zone::new(20).unwrap()).limit(),
            1 << 20
        );
        assert_eq!(Constraints::max_address_bits(12).limit(), 0);
        assert_eq!(Constraints::max_address_bits(200).limit(), Pfn::LIMIT);
        assert_eq!(Constraints::ANY.limit(), Pfn::LIMIT);
    }
}
