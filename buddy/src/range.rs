//! The split of a frame range into maximal aligned blocks, and allocation
//! constraints.

use core::fmt;

use nvirt_addr::{Mfn, MfnRange, Order};

use crate::types::{Block, Zone};

/// Whether every frame of `range` lies in `span` (an empty range lies in
/// every span, wherever it starts).
pub(crate) const fn covers(span: MfnRange, range: MfnRange) -> bool {
    range.is_empty() || span.contains_range(range)
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

/// Iterator over the maximal aligned blocks of a range, in address order:
/// the blocks `add`, `reserve` and `claim_range` use.
#[derive(Clone, Debug)]
pub struct AlignedBlocks {
    next: u64,
    end: u64,
    max_order: Order,
}

impl AlignedBlocks {
    /// `range` split into maximal aligned blocks of at most `max_order`.
    #[must_use]
    pub const fn new(range: MfnRange, max_order: Order) -> Self {
        Self {
            next: range.start().get(),
            end: range.end().get(),
            max_order,
        }
    }
}

impl Iterator for AlignedBlocks {
    type Item = Block;

    fn next(&mut self) -> Option<Block> {
        if self.next >= self.end {
            return None;
        }
        let order = largest_fitting(self.next, self.end, self.max_order.get());
        let block = Block::new(Mfn::new(self.next)?, Order::new(order)?)?;
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
    pub const ANY: Constraints = Constraints { limit: Mfn::LIMIT };

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
        AlignedBlocks::new(
            MfnRange::from_numbers(start, end).unwrap(),
            Order::new(max).unwrap(),
        )
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
    fn constraints_are_zone_limits() {
        assert_eq!(Constraints::max_address_bits(32).limit(), 1 << 20);
        assert_eq!(
            Constraints::max_zone(Zone::new(20).unwrap()).limit(),
            1 << 20
        );
        assert_eq!(Constraints::max_address_bits(12).limit(), 0);
        assert_eq!(Constraints::max_address_bits(200).limit(), Mfn::LIMIT);
        assert_eq!(Constraints::ANY.limit(), Mfn::LIMIT);
    }
}
