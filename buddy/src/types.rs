//! Typed frame numbers, physical addresses, block sizes, zones and memory
//! kinds: a frame number can never be mistaken for an address or a size.

use core::fmt;

/// Bytes in a frame: 4 KiB.
pub const FRAME_SIZE: u64 = 1 << FRAME_SHIFT;
/// Log2 of [`FRAME_SIZE`].
pub const FRAME_SHIFT: u32 = 12;

/// A physical (machine) byte address.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// The address `addr`.
    #[must_use]
    pub const fn new(addr: u64) -> Self {
        Self(addr)
    }

    /// The address as a number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Whether the address is the first byte of a frame.
    #[must_use]
    pub const fn is_frame_aligned(self) -> bool {
        self.0 % FRAME_SIZE == 0
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A physical frame number: the address of a 4 KiB frame divided by 4096.
///
/// Every value is below [`Pfn::LIMIT`], so its address fits in 64 bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pfn(u64);

impl Pfn {
    /// One past the largest frame number: frames cover the 64-bit physical
    /// address space, 2^52 frames of 4 KiB.
    pub const LIMIT: u64 = 1 << (64 - FRAME_SHIFT);
    /// The largest frame number, also the largest exclusive end of a range.
    pub const MAX: Pfn = Pfn(Self::LIMIT - 1);

    /// Frame number `n`, if below [`Pfn::LIMIT`].
    #[must_use]
    pub const fn new(n: u64) -> Option<Self> {
        if n < Self::LIMIT { Some(Self(n)) } else { None }
    }

    /// The frame that contains byte `addr`.
    #[must_use]
    pub const fn containing(addr: PhysAddr) -> Self {
        Self(addr.0 >> FRAME_SHIFT)
    }

    /// The frame that starts at `addr`, if `addr` is frame-aligned.
    #[must_use]
    pub const fn from_addr(addr: PhysAddr) -> Option<Self> {
        if addr.is_frame_aligned() {
            Some(Self::containing(addr))
        } else {
            None
        }
    }

    /// The frame number as a number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The address of the frame's first byte.
    #[must_use]
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 << FRAME_SHIFT)
    }

    /// The frame `frames` frames further on, if it exists.
    #[must_use]
    pub const fn checked_add(self, frames: u64) -> Option<Self> {
        match self.0.checked_add(frames) {
            Some(n) => Self::new(n),
            None => None,
        }
    }

    /// Whether a block of `order` may start at this frame.
    #[must_use]
    pub const fn is_aligned(self, order: Order) -> bool {
        self.0 & (order.frames() - 1) == 0
    }

    /// The zone of the frame: the bit width of its number.
    #[must_use]
    pub const fn zone(self) -> Zone {
        Zone((u64::BITS - self.0.leading_zeros()) as u8)
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frame {:#x}", self.0)
    }
}

/// The size of a buddy block: 2^order frames, from 0 (4 KiB) through 9
/// (2 MiB) to 18 (1 GiB), the largest x86 page.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Order(u8);

impl Order {
    /// 4 KiB, one frame.
    pub const SIZE_4K: Order = Order(0);
    /// 2 MiB, an x86 large page.
    pub const SIZE_2M: Order = Order(9);
    /// 1 GiB, an x86 huge page; also the largest order.
    pub const SIZE_1G: Order = Order(18);
    /// The largest order a heap can be configured with.
    pub const MAX: Order = Self::SIZE_1G;
    /// Number of distinct orders (0 through [`Order::MAX`]).
    pub const COUNT: usize = Self::MAX.0 as usize + 1;

    /// Order `n`, if at most [`Order::MAX`].
    #[must_use]
    pub const fn new(n: u8) -> Option<Self> {
        if n <= Self::MAX.0 {
            Some(Self(n))
        } else {
            None
        }
    }

    /// The smallest order whose blocks hold `frames` frames, if any does.
    #[must_use]
    pub const fn for_frames(frames: u64) -> Option<Self> {
        if frames == 0 {
            return Some(Self(0));
        }
        match frames.checked_next_power_of_two() {
            Some(p) => Self::new(p.trailing_zeros() as u8),
            None => None,
        }
    }

    /// The order as a number.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Frames in a block of this order.
    #[must_use]
    pub const fn frames(self) -> u64 {
        1 << self.0
    }

    /// Bytes in a block of this order.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        FRAME_SIZE << self.0
    }

    /// The next smaller order, unless this is order 0.
    #[must_use]
    pub const fn smaller(self) -> Option<Self> {
        match self.0.checked_sub(1) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// Every order from 0 through `self`, smallest first.
    pub fn up_to(self) -> impl DoubleEndedIterator<Item = Order> + Clone {
        (0..=self.0).map(Order)
    }
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Order({})", self.0)
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {}", self.0)
    }
}

/// A zone in Xen's sense: the bit width of a frame number. Zone `z` holds
/// the frames in `2^(z-1) .. 2^z` (zone 0 only frame 0), so "memory below
/// 4 GiB" is "zones up to 20".
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Zone(u8);

impl Zone {
    /// The highest zone: frame numbers have at most 52 bits.
    pub const MAX: Zone = Zone(64 - FRAME_SHIFT as u8);
    /// Number of zones (0 through [`Zone::MAX`]).
    pub const COUNT: usize = Self::MAX.0 as usize + 1;

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
        match address_bits.checked_sub(FRAME_SHIFT as u8) {
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

/// Whether memory keeps its content without power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemKind {
    /// Ordinary RAM, lost at power-off.
    Volatile,
    /// NVRAM (NVDIMM, persistent memory): survives power loss.
    NonVolatile,
}

impl fmt::Display for MemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Volatile => "volatile",
            Self::NonVolatile => "non-volatile",
        })
    }
}

/// A buddy block: 2^order frames starting at a frame aligned to 2^order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Block {
    start: Pfn,
    order: Order,
}

impl Block {
    /// The block of `order` starting at `start`, if `start` is aligned to it
    /// and the block ends within the frame-number space.
    #[must_use]
    pub const fn new(start: Pfn, order: Order) -> Option<Self> {
        if start.is_aligned(order) && start.0 + order.frames() <= Pfn::LIMIT {
            Some(Self { start, order })
        } else {
            None
        }
    }

    /// A block the heap found: an aligned block of frames inside its span,
    /// so valid by construction.
    pub(crate) const fn from_heap(start: u64, order: u8) -> Self {
        Self {
            start: Pfn(start),
            order: Order(order),
        }
    }

    /// The first frame.
    #[must_use]
    pub const fn start(self) -> Pfn {
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

    /// One past the block's last frame, as a number (it may be
    /// [`Pfn::LIMIT`]).
    #[must_use]
    pub const fn end(self) -> u64 {
        self.start.0 + self.order.frames()
    }

    /// Whether frame `pfn` lies in the block.
    #[must_use]
    pub const fn contains(self, pfn: Pfn) -> bool {
        pfn.0 >= self.start.0 && pfn.0 < self.end()
    }

    /// The physical address range of the block, as `(first byte, bytes)`.
    #[must_use]
    pub const fn phys(self) -> (PhysAddr, u64) {
        (self.start.addr(), self.order.bytes())
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block({:#x}, {})", self.start.0, self.order.0)
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frames {:#x}..{:#x} ({})",
            self.start.0,
            self.end(),
            self.order
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_addresses_and_sizes_convert_explicitly() {
        let p = Pfn::new(0x12345).unwrap();
        assert_eq!(p.addr(), PhysAddr::new(0x1234_5000));
        assert_eq!(Pfn::containing(PhysAddr::new(0x1234_5fff)), p);
        assert_eq!(Pfn::from_addr(PhysAddr::new(0x1234_5001)), None);
        assert!(Pfn::new(Pfn::LIMIT).is_none());
        assert_eq!(Pfn::MAX.checked_add(1), None);
        assert_eq!(Order::SIZE_2M.bytes(), 2 << 20);
        assert_eq!(Order::SIZE_1G.frames(), 1 << 18);
        assert!(Order::new(19).is_none());
        assert_eq!(Order::for_frames(3), Order::new(2));
        assert_eq!(Order::for_frames(0), Some(Order::SIZE_4K));
        assert_eq!(Order::for_frames(1 << 19), None);
    }

    #[test]
    fn zones_are_frame_number_widths() {
        assert_eq!(Pfn::new(0).unwrap().zone(), Zone::new(0).unwrap());
        assert_eq!(Pfn::new(1).unwrap().zone(), Zone::new(1).unwrap());
        assert_eq!(Pfn::new(0xf_ffff).unwrap().zone(), Zone::new(20).unwrap());
        assert_eq!(Pfn::new(0x10_0000).unwrap().zone(), Zone::new(21).unwrap());
        let z = Zone::below_address_bits(32).unwrap();
        assert_eq!((z.start(), z.end()), (1 << 19, 1 << 20));
        assert_eq!(Zone::below_address_bits(12), None);
    }

    #[test]
    fn blocks_must_be_aligned() {
        let p = Pfn::new(0x200).unwrap();
        assert!(Block::new(p, Order::SIZE_2M).is_some());
        assert!(Block::new(p, Order::new(10).unwrap()).is_none());
        let b = Block::new(p, Order::new(2).unwrap()).unwrap();
        assert_eq!(b.end(), 0x204);
        assert!(b.contains(Pfn::new(0x203).unwrap()) && !b.contains(Pfn::new(0x204).unwrap()));
        assert_eq!(b.to_string(), "frames 0x200..0x204 (order 2)");
    }
}
