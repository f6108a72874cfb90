//! Typed frame numbers, domain ids and extents: a guest frame can never be
//! mistaken for a machine frame, nor either for a count.

use core::fmt;

use nvirt_buddy::{FRAME_SHIFT, Order, Pfn, PhysAddr};

/// A guest-physical frame number: a guest-physical address divided by
/// 4096.
///
/// Every value is below [`Gpfn::LIMIT`] (52-bit guest-physical addresses,
/// the x86 architectural maximum), so a guest address never overflows.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpfn(u64);

impl Gpfn {
    /// One past the largest guest frame number.
    pub const LIMIT: u64 = 1 << (52 - FRAME_SHIFT);

    /// Guest frame `n`, if below [`Gpfn::LIMIT`].
    #[must_use]
    pub const fn new(n: u64) -> Option<Self> {
        if n < Self::LIMIT { Some(Self(n)) } else { None }
    }

    /// The frame number as a number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The guest-physical address of the frame's first byte.
    #[must_use]
    pub const fn addr(self) -> u64 {
        self.0 << FRAME_SHIFT
    }

    /// The guest frame `frames` further on, if it exists.
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

    /// The largest order this frame is aligned to, capped at the largest
    /// order (frame 0 is aligned to every order).
    #[must_use]
    pub const fn alignment(self) -> Order {
        let tz = if self.0 == 0 {
            Order::MAX.get() as u32
        } else {
            self.0.trailing_zeros()
        };
        if tz >= Order::MAX.get() as u32 {
            Order::MAX
        } else {
            match Order::new(tz as u8) {
                Some(o) => o,
                None => Order::MAX,
            }
        }
    }
}

impl fmt::Debug for Gpfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gpfn({:#x})", self.0)
    }
}

impl fmt::Display for Gpfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gpfn {:#x}", self.0)
    }
}

/// A machine frame of the pool.
///
/// The pool numbers the frames of its region from the *frame base* given
/// at format ([`Config::with_frame_base`](crate::Config::with_frame_base)):
/// the region's first 4 KiB is frame `frame_base`. A hypervisor formats
/// with the region's host-physical frame number, so that mfns are host
/// frame numbers and their alignment is the host's (what 2 MiB and 1 GiB
/// mappings need); [`NvPool::host_addr`](crate::NvPool::host_addr)
/// translates for any base.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mfn(u64);

impl Mfn {
    /// Machine frame `n`, if it is a frame number (below [`Pfn::LIMIT`]).
    #[must_use]
    pub const fn new(n: u64) -> Option<Self> {
        if n < Pfn::LIMIT { Some(Self(n)) } else { None }
    }

    /// The frame number as a number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The frame as the buddy allocator's frame number.
    #[must_use]
    pub const fn pfn(self) -> Pfn {
        match Pfn::new(self.0) {
            Some(p) => p,
            None => Pfn::MAX,
        }
    }

    /// The frame of a buddy frame number.
    #[must_use]
    pub const fn from_pfn(pfn: Pfn) -> Self {
        Self(pfn.get())
    }

    /// Whether a block of `order` may start at this frame.
    #[must_use]
    pub const fn is_aligned(self, order: Order) -> bool {
        self.0 & (order.frames() - 1) == 0
    }
}

impl fmt::Debug for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mfn({:#x})", self.0)
    }
}

impl fmt::Display for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mfn {:#x}", self.0)
    }
}

/// A domain's stable identity: 128 bits chosen by whoever creates it (a
/// VM's UUID, say). Domain *numbers* change across boots; this does not.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(u128);

impl DomainId {
    /// The id `value`.
    #[must_use]
    pub const fn new(value: u128) -> Self {
        Self(value)
    }

    /// The id as a number.
    #[must_use]
    pub const fn get(self) -> u128 {
        self.0
    }

    /// The id as 16 little-endian bytes, as stored.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// The id stored as 16 little-endian bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_le_bytes(bytes))
    }
}

impl fmt::Debug for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainId({self})")
    }
}

/// In UUID form: `8-4-4-4-12` lowercase hexadecimal digits of the number.
impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

/// A run of guest frames backed by one aligned block of machine frames:
/// guest frames `gpfn .. gpfn + 2^order` map to `mfn .. mfn + 2^order`.
/// Both ends are aligned to the order, so the run can be mapped with pages
/// of that size.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent {
    gpfn: Gpfn,
    mfn: Mfn,
    order: Order,
}

impl Extent {
    /// The extent, if both frames are aligned to `order` and it ends
    /// inside both frame-number spaces.
    #[must_use]
    pub const fn new(gpfn: Gpfn, mfn: Mfn, order: Order) -> Option<Self> {
        let n = order.frames();
        if gpfn.is_aligned(order)
            && mfn.is_aligned(order)
            && gpfn.0 + n <= Gpfn::LIMIT
            && mfn.0 + n <= Pfn::LIMIT
        {
            Some(Self { gpfn, mfn, order })
        } else {
            None
        }
    }

    /// An extent whose fields the pool has checked.
    pub(crate) const fn trusted(gpfn: u64, mfn: u64, order: u8) -> Self {
        Self {
            gpfn: Gpfn(gpfn),
            mfn: Mfn(mfn),
            order: match Order::new(order) {
                Some(o) => o,
                None => Order::MAX,
            },
        }
    }

    /// The first guest frame.
    #[must_use]
    pub const fn gpfn(self) -> Gpfn {
        self.gpfn
    }

    /// The first machine frame.
    #[must_use]
    pub const fn mfn(self) -> Mfn {
        self.mfn
    }

    /// Its order: 2^order frames.
    #[must_use]
    pub const fn order(self) -> Order {
        self.order
    }

    /// Frames in the extent.
    #[must_use]
    pub const fn frames(self) -> u64 {
        self.order.frames()
    }

    /// Whether guest frame `gpfn` lies in the extent.
    #[must_use]
    pub const fn contains(self, gpfn: Gpfn) -> bool {
        gpfn.0 >= self.gpfn.0 && gpfn.0 - self.gpfn.0 < self.order.frames()
    }

    /// The machine frame that backs guest frame `gpfn`, if it lies in the
    /// extent.
    #[must_use]
    pub const fn translate(self, gpfn: Gpfn) -> Option<Mfn> {
        if self.contains(gpfn) {
            Some(Mfn(self.mfn.0 + (gpfn.0 - self.gpfn.0)))
        } else {
            None
        }
    }
}

impl fmt::Debug for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Extent({:#x} -> {:#x}, {})",
            self.gpfn.0,
            self.mfn.0,
            self.order.get()
        )
    }
}

impl fmt::Display for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gpfn {:#x} -> mfn {:#x} order {}",
            self.gpfn.0,
            self.mfn.0,
            self.order.get()
        )
    }
}

/// The host-physical address of byte `offset` of a region that starts at
/// `base`, if it exists.
pub(crate) fn offset_addr(base: PhysAddr, offset: u64) -> Option<PhysAddr> {
    base.get().checked_add(offset).map(PhysAddr::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked_and_aligned() {
        assert!(Gpfn::new(Gpfn::LIMIT).is_none());
        assert_eq!(Gpfn::new(0x200).unwrap().alignment(), Order::SIZE_2M);
        assert_eq!(Gpfn::new(0).unwrap().alignment(), Order::MAX);
        assert_eq!(Gpfn::new(1 << 30).unwrap().alignment(), Order::MAX);
        assert_eq!(Gpfn::new(3).unwrap().alignment(), Order::SIZE_4K);
        assert!(Mfn::new(Pfn::LIMIT).is_none());
        let o2 = Order::new(2).unwrap();
        let e = Extent::new(Gpfn::new(8).unwrap(), Mfn::new(0x104).unwrap(), o2).unwrap();
        assert_eq!(e.translate(Gpfn::new(11).unwrap()), Mfn::new(0x107));
        assert_eq!(e.translate(Gpfn::new(12).unwrap()), None);
        assert!(Extent::new(Gpfn::new(2).unwrap(), Mfn::new(0).unwrap(), o2).is_none());
        assert_eq!(e.to_string(), "gpfn 0x8 -> mfn 0x104 order 2");
    }

    #[test]
    fn ids_print_as_uuids() {
        let id = DomainId::new(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(DomainId::from_bytes(id.to_bytes()), id);
    }
}
