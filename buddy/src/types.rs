//! Zones and blocks: the buddy allocator's own units over the shared
//! vocabulary of machine frames ([`Mfn`]) and orders ([`Order`]).

use core::fmt;

use nvirt_addr::{HostPhysRange, Mfn, MfnRange, Order, PAGE_SHIFT};

/// A zone in Xen's sense: the bit width of a frame number. Zone `z` holds
/// the frames in `2^(z-1) .. 2^z` (zone 0 only frame 0), so "memory below
/// 4 GiB" is "zones up to 20".
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Zone(u8);

impl Zone {
    /// The highest zone: machine frame numbers have at most 40 bits
    /// (below [`Mfn::LIMIT`], 52-bit physical addresses).
    pub const MAX: Zone = Zone(Mfn::LIMIT.trailing_zeros() as u8);
    /// Number of zones (0 through [`Zone::MAX`]).
    pub const COUNT: usize = Self::MAX.0 as usize + 1;

    /// The zone of `mfn`: the bit width of its number.
    #[must_use]
    pub const fn of(mfn: Mfn) -> Self {
        Zone((u64::BITS - mfn.get().leading_zeros()) as u8)
    }

    /// Zone `bits`, if at most [`Zone::MAX`].
    #[must_use]
    pub const fn new(bits: u8) -> Option<Self> {
        if bits <= Self::MAX.0 {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// The highest zone whose frames all lie below byte address
    /// `2^address_bits`: zone `address_bits - 12`, or `None` below 13 bits.
    #[must_use]
    pub const fn below_address_bits(address_bits: u8) -> Option<Self> {
        match address_bits.checked_sub(PAGE_SHIFT as u8) {
            Some(bits) if bits >= 1 => Self::new(if bits > Self::MAX.0 {
                Self::MAX.0
            } else {
                bits
            }),
            _ => None,
        }
    }

    /// The zone as its bit width.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The first frame of the zone.
    #[must_use]
    pub const fn start(self) -> u64 {
        if self.0 == 0 { 0 } else { 1 << (self.0 - 1) }
    }

    /// One past the last frame of the zone: every frame of this zone and of
    /// the zones below it is below this number.
    #[must_use]
    pub const fn end(self) -> u64 {
        1 << self.0
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.0)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zone {}", self.0)
    }
}

/// A buddy block: 2^order frames starting at a frame aligned to 2^order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Block {
    start: Mfn,
    order: Order,
}

impl Block {
    /// The block of `order` starting at `start`, if `start` is aligned to it
    /// and the block ends within the frame-number space (below
    /// [`Mfn::LIMIT`], so that its end is a frame number too).
    #[must_use]
    pub const fn new(start: Mfn, order: Order) -> Option<Self> {
        if start.is_aligned(order) && start.checked_add(order.frames()).is_some() {
            Some(Self { start, order })
        } else {
            None
        }
    }

    /// A block the heap found: an aligned block of frames inside its span,
    /// so valid by construction.
    pub(crate) const fn from_heap(start: u64, order: u8) -> Self {
        match (Mfn::new(start), Order::new(order)) {
            (Some(start), Some(order)) => Self { start, order },
            // A heap's span lies below `Mfn::LIMIT` and its orders are at
            // most `Order::MAX`; this arm is never taken.
            _ => Self {
                start: Mfn::ZERO,
                order: Order::SIZE_4K,
            },
        }
    }

    /// The first frame.
    #[must_use]
    pub const fn start(self) -> Mfn {
        self.start
    }

    /// The block's order.
    #[must_use]
    pub const fn order(self) -> Order {
        self.order
    }

    /// Frames in the block.
    #[must_use]
    pub const fn frames(self) -> u64 {
        self.order.frames()
    }

    /// One past the block's last frame.
    #[must_use]
    pub const fn end(self) -> Mfn {
        match self.start.checked_add(self.order.frames()) {
            Some(end) => end,
            // `new` and `from_heap` keep the end below `Mfn::LIMIT`.
            None => Mfn::MAX,
        }
    }

    /// The block's frames.
    #[must_use]
    pub const fn range(self) -> MfnRange {
        match MfnRange::new(self.start, self.end()) {
            Some(r) => r,
            None => MfnRange::EMPTY,
        }
    }

    /// Whether frame `mfn` lies in the block.
    #[must_use]
    pub const fn contains(self, mfn: Mfn) -> bool {
        self.range().contains(mfn)
    }

    /// The host-physical bytes of the block.
    #[must_use]
    pub const fn phys(self) -> HostPhysRange {
        self.range().addrs()
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block({:#x}, {})", self.start.get(), self.order.get())
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frames {:#x}..{:#x} ({})",
            self.start.get(),
            self.end().get(),
            self.order
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_frame_number_widths() {
        assert_eq!(Zone::of(Mfn::new(0).unwrap()), Zone::new(0).unwrap());
        assert_eq!(Zone::of(Mfn::new(1).unwrap()), Zone::new(1).unwrap());
        assert_eq!(
            Zone::of(Mfn::new(0xf_ffff).unwrap()),
            Zone::new(20).unwrap()
        );
        assert_eq!(
            Zone::of(Mfn::new(0x10_0000).unwrap()),
            Zone::new(21).unwrap()
        );
        assert_eq!(Zone::of(Mfn::MAX), Zone::MAX);
        assert_eq!(Zone::MAX.end(), Mfn::LIMIT);
        let z = Zone::below_address_bits(32).unwrap();
        assert_eq!((z.start(), z.end()), (1 << 19, 1 << 20));
        assert_eq!(Zone::below_address_bits(12), None);
        assert_eq!(Zone::below_address_bits(64), Some(Zone::MAX));
    }

    #[test]
    fn blocks_must_be_aligned() {
        let p = Mfn::new(0x200).unwrap();
        assert!(Block::new(p, Order::SIZE_2M).is_some());
        assert!(Block::new(p, Order::new(10).unwrap()).is_none());
        let b = Block::new(p, Order::new(2).unwrap()).unwrap();
        assert_eq!(b.end().get(), 0x204);
        assert!(b.contains(Mfn::new(0x203).unwrap()) && !b.contains(Mfn::new(0x204).unwrap()));
        assert_eq!(b.to_string(), "frames 0x200..0x204 (order 2)");
        assert_eq!(b.phys().start().get(), 0x20_0000);
        assert_eq!(b.phys().len(), 0x4000);
        let top = Mfn::MAX.align_down(Order::SIZE_2M);
        assert!(
            Block::new(top, Order::SIZE_2M).is_none(),
            "its end is no frame number"
        );
    }
}
