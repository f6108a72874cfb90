//! Typed values of the ABI: guest addresses, guest frame numbers, extent
//! orders and domain ids, as the guest passes them.
//!
//! These are wire values: a guest may put any number in them. The host
//! turns them into the shared vocabulary (`nvirt_addr::Gfn`, `Order`) with
//! `TryFrom` where it validates them.
//!
//! Each is its own type because mixing them up — a frame number used as an
//! address, an order used as a page count, a foreign domain id taken for the
//! caller's — is the classic bug of this interface. Arithmetic is checked;
//! nothing wraps silently.

use core::fmt;

use nvirt_addr::{Gfn, Order, OutOfRange};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// log2 of the page size the ABI's frame numbers count (4 KiB on x86):
/// the vocabulary's.
pub const PAGE_SHIFT: u32 = nvirt_addr::PAGE_SHIFT;

/// The page size the ABI's frame numbers count: the vocabulary's.
pub const PAGE_SIZE: u64 = nvirt_addr::PAGE_SIZE;

/// An address as the guest passes it, in a register or in a guest handle.
///
/// Until the host's [`GuestMemory`](crate::host::GuestMemory) accepts it,
/// it is only an allegation. nvirt's reference hypervisor reads it as a
/// guest-physical address (its test guest is identity mapped, so guest
/// virtual equals guest physical); Xen reads HVM guest handles as
/// guest-linear addresses. The `GuestMemory` implementation decides which.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestAddr(u64);

impl GuestAddr {
    /// The null handle. Xen gives it a meaning only for
    /// `XENMEM_increase_reservation`'s extent list (no output wanted).
    pub const NULL: Self = Self(0);

    /// The address `raw`.
    #[must_use]
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The address as a number.
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whether this is the null handle.
    #[must_use]
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }

    /// The address `bytes` further on, or `None` if that passes 2^64.
    #[must_use]
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(a) => Some(Self(a)),
            None => None,
        }
    }

    /// The address of element `index` of an array of `size`-byte elements
    /// starting here, or `None` if any step overflows.
    #[must_use]
    pub const fn element(self, index: u64, size: u64) -> Option<Self> {
        match index.checked_mul(size) {
            Some(offset) => self.checked_add(offset),
            None => None,
        }
    }
}

impl fmt::Display for GuestAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A guest frame number on the wire: Xen's `xen_pfn_t` (`unsigned long`, 8
/// bytes on x86_64, `xen/include/public/arch-x86/xen.h`), the index of a
/// 4 KiB page in the guest's physical address space, as the guest wrote it.
///
/// `repr(transparent)` over `u64` so that a guest's `&mut [XenPfn]` is exactly
/// the `xen_pfn_t` array the hypervisor reads and writes. Any value may
/// arrive; `Gfn::try_from` accepts the ones that name a guest frame.
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
)]
pub struct XenPfn(u64);

impl XenPfn {
    /// The frame `raw`.
    #[must_use]
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The frame number as a number.
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl TryFrom<XenPfn> for Gfn {
    type Error = OutOfRange;

    fn try_from(pfn: XenPfn) -> Result<Self, OutOfRange> {
        Gfn::try_from(pfn.0)
    }
}

impl From<Gfn> for XenPfn {
    fn from(gfn: Gfn) -> Self {
        Self(gfn.get())
    }
}

impl fmt::Display for XenPfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gpfn {:#x}", self.0)
    }
}

/// log2 of an extent's size in pages (`extent_order` in Xen's
/// `xen_memory_reservation`): 0 is 4 KiB, 9 is 2 MiB, 18 is 1 GiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtentOrder(u8);

impl ExtentOrder {
    /// One 4 KiB page.
    pub const PAGE_4K: Self = Self(0);
    /// A 2 MiB extent.
    pub const PAGE_2M: Self = Self(9);
    /// A 1 GiB extent.
    pub const PAGE_1G: Self = Self(18);
    /// The largest order that exists: frame numbers have 64 − 12 = 52 bits,
    /// so no extent of 2^53 pages fits in an address space.
    pub const MAX: Self = Self(64 - PAGE_SHIFT as u8);

    /// The order `order`, or `None` above [`ExtentOrder::MAX`].
    #[must_use]
    pub const fn new(order: u8) -> Option<Self> {
        if order <= Self::MAX.0 {
            Some(Self(order))
        } else {
            None
        }
    }

    /// The order in the ABI's 32-bit field, or `None` above
    /// [`ExtentOrder::MAX`].
    #[must_use]
    pub const fn from_raw(raw: u32) -> Option<Self> {
        if raw <= Self::MAX.0 as u32 {
            Some(Self(raw as u8))
        } else {
            None
        }
    }

    /// The order as a number.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Pages in one extent: 2^order (at most 2^52, so never overflows).
    #[must_use]
    pub const fn pages(self) -> u64 {
        1 << self.0
    }

    /// Bytes in one extent, or `None` for order 52 (2^64 bytes).
    #[must_use]
    pub const fn bytes(self) -> Option<u64> {
        self.pages().checked_mul(PAGE_SIZE)
    }
}

/// An extent order the host can serve: at most `Order::MAX` (1 GiB).
impl TryFrom<ExtentOrder> for Order {
    type Error = OutOfRange;

    fn try_from(order: ExtentOrder) -> Result<Self, OutOfRange> {
        Order::try_from(u64::from(order.0))
    }
}

impl From<Order> for ExtentOrder {
    fn from(order: Order) -> Self {
        Self(order.get())
    }
}

impl fmt::Display for ExtentOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {}", self.0)
    }
}

/// A Xen domain id, `domid_t` (`uint16_t`, `xen/include/public/xen.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomId(u16);

impl DomId {
    /// `DOMID_FIRST_RESERVED` (0x7FF0, `xen/include/public/xen.h`): ids from
    /// here on name no ordinary domain.
    pub const FIRST_RESERVED: Self = Self(0x7FF0);
    /// `DOMID_SELF` (0x7FF0, `xen/include/public/xen.h`): "the caller". The
    /// only id an unprivileged guest may name in a reservation.
    pub const SELF: Self = Self(0x7FF0);

    /// The id `raw`, as alleged.
    #[must_use]
    pub const fn new(raw: u16) -> Self {
        Self(raw)
    }

    /// An ordinary domain's id, or `None` for a reserved one (≥ 0x7FF0).
    #[must_use]
    pub const fn ordinary(raw: u16) -> Option<Self> {
        if raw < Self::FIRST_RESERVED.0 {
            Some(Self(raw))
        } else {
            None
        }
    }

    /// The id as a number.
    #[must_use]
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// Whether the id can name an ordinary domain (below 0x7FF0).
    #[must_use]
    pub const fn is_ordinary(self) -> bool {
        self.0 < Self::FIRST_RESERVED.0
    }
}

impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::SELF {
            f.write_str("DOMID_SELF")
        } else {
            write!(f, "d{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_addresses_do_not_wrap() {
        assert_eq!(GuestAddr::new(u64::MAX).checked_add(1), None);
        assert_eq!(GuestAddr::new(8).element(2, 8), Some(GuestAddr::new(24)));
        assert_eq!(GuestAddr::new(0).element(u64::MAX, 8), None);
        assert_eq!(
            Gfn::try_from(XenPfn::new(0x123)),
            Ok(Gfn::new(0x123).unwrap())
        );
        assert!(Gfn::try_from(XenPfn::new(Gfn::LIMIT)).is_err());
        assert_eq!(XenPfn::from(Gfn::MAX).raw(), Gfn::LIMIT - 1);
    }

    #[test]
    fn orders_are_bounded() {
        assert_eq!(ExtentOrder::new(52), Some(ExtentOrder::MAX));
        assert_eq!(ExtentOrder::new(53), None);
        assert_eq!(ExtentOrder::from_raw(u32::MAX), None);
        assert_eq!(ExtentOrder::from_raw(256 + 9), None, "no truncation to u8");
        assert_eq!(ExtentOrder::PAGE_2M.pages(), 512);
        assert_eq!(ExtentOrder::PAGE_1G.bytes(), Some(1 << 30));
        assert_eq!(ExtentOrder::MAX.bytes(), None);
        assert_eq!(Order::try_from(ExtentOrder::PAGE_1G), Ok(Order::SIZE_1G));
        assert!(Order::try_from(ExtentOrder::new(19).unwrap()).is_err());
        assert_eq!(ExtentOrder::from(Order::SIZE_2M), ExtentOrder::PAGE_2M);
    }

    #[test]
    fn domain_ids() {
        assert_eq!(DomId::ordinary(0x7FEF), Some(DomId::new(0x7FEF)));
        assert_eq!(DomId::ordinary(0x7FF0), None);
        assert!(!DomId::SELF.is_ordinary());
        assert_eq!(DomId::SELF.to_string(), "DOMID_SELF");
        assert_eq!(DomId::new(7).to_string(), "d7");
    }
}
