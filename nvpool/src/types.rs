//! Domain identities and extents over the shared vocabulary of guest and
//! machine frames: a guest frame can never be mistaken for a machine frame,
//! nor either for a count.

use core::fmt;

use nvirt_addr::{FrameMapping, Gfn, HostPhysAddr, Mfn, Order};

/// A domain's stable identity: 128 bits chosen by whoever creates it (a
/// VM's UUID, say). Domain *numbers* change across boots; this does not.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainUuid(u128);

impl DomainUuid {
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

impl fmt::Debug for DomainUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainUuid({self})")
    }
}

/// In UUID form: `8-4-4-4-12` lowercase hexadecimal digits of the number.
impl fmt::Display for DomainUuid {
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
/// guest frames `gfn .. gfn + 2^order` map to `mfn .. mfn + 2^order`.
/// Both ends are aligned to the order, so the run can be mapped with pages
/// of that size, and the block is one the pool's buddy heap can free.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    mapping: FrameMapping,
    order: Order,
}

/// Guest frame 0 backed by machine frame 0 (checked at compile time).
const FRAME_ZERO: FrameMapping = match FrameMapping::new(Gfn::ZERO, Mfn::ZERO, 1) {
    Some(m) => m,
    None => panic!("one frame at zero is a mapping"),
};

impl Extent {
    /// The extent, if both frames are aligned to `order` and it ends
    /// inside both frame-number spaces.
    #[must_use]
    pub const fn new(gfn: Gfn, mfn: Mfn, order: Order) -> Option<Self> {
        if !gfn.is_aligned(order) || !mfn.is_aligned(order) {
            return None;
        }
        match FrameMapping::new(gfn, mfn, order.frames()) {
            Some(mapping) => Some(Self { mapping, order }),
            None => None,
        }
    }

    /// An extent whose fields the pool has checked.
    pub(crate) const fn trusted(gfn: u64, mfn: u64, order: u8) -> Self {
        let order = match Order::new(order) {
            Some(o) => o,
            None => Order::MAX,
        };
        let (gfn, mfn) = match (Gfn::new(gfn), Mfn::new(mfn)) {
            (Some(g), Some(m)) => (g, m),
            _ => (Gfn::ZERO, Mfn::ZERO),
        };
        match FrameMapping::new(gfn, mfn, order.frames()) {
            Some(mapping) => Self { mapping, order },
            // The pool checked both runs when it recorded the extent.
            None => Self {
                mapping: FRAME_ZERO,
                order: Order::SIZE_4K,
            },
        }
    }

    /// The first guest frame.
    #[must_use]
    pub const fn gfn(self) -> Gfn {
        self.mapping.gfn()
    }

    /// The first machine frame.
    #[must_use]
    pub const fn mfn(self) -> Mfn {
        self.mapping.mfn()
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

    /// The guest-to-machine run the extent maps.
    #[must_use]
    pub const fn mapping(self) -> FrameMapping {
        self.mapping
    }

    /// Whether guest frame `gfn` lies in the extent.
    #[must_use]
    pub const fn contains(self, gfn: Gfn) -> bool {
        self.mapping.guest().contains(gfn)
    }

    /// The machine frame that backs guest frame `gfn`, if it lies in the
    /// extent.
    #[must_use]
    pub const fn translate(self, gfn: Gfn) -> Option<Mfn> {
        self.mapping.translate(gfn)
    }
}

impl PartialOrd for Extent {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Guest frame first, then machine frame, then order.
impl Ord for Extent {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.gfn(), self.mfn(), self.order).cmp(&(other.gfn(), other.mfn(), other.order))
    }
}

impl fmt::Debug for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Extent({:#x} -> {:#x}, {})",
            self.gfn().get(),
            self.mfn().get(),
            self.order.get()
        )
    }
}

impl fmt::Display for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gpfn {:#x} -> mfn {:#x} order {}",
            self.gfn().get(),
            self.mfn().get(),
            self.order.get()
        )
    }
}

/// The host-physical address of byte `offset` of a region that starts at
/// `base`, if it exists.
pub(crate) fn offset_addr(base: HostPhysAddr, offset: u64) -> Option<HostPhysAddr> {
    base.checked_add(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_are_aligned_runs() {
        let o2 = Order::new(2).unwrap();
        let e = Extent::new(Gfn::new(8).unwrap(), Mfn::new(0x104).unwrap(), o2).unwrap();
        assert_eq!(e.translate(Gfn::new(11).unwrap()), Mfn::new(0x107));
        assert_eq!(e.translate(Gfn::new(12).unwrap()), None);
        assert!(Extent::new(Gfn::new(2).unwrap(), Mfn::new(0).unwrap(), o2).is_none());
        assert!(Extent::new(Gfn::new(8).unwrap(), Mfn::new(2).unwrap(), o2).is_none());
        assert!(Extent::new(Gfn::MAX.align_down(o2), Mfn::ZERO, o2).is_none());
        assert_eq!(e.mapping().host().len(), 4);
        assert_eq!(e.to_string(), "gpfn 0x8 -> mfn 0x104 order 2");
    }

    #[test]
    fn ids_print_as_uuids() {
        let id = DomainUuid::new(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(DomainUuid::from_bytes(id.to_bytes()), id);
    }
}
