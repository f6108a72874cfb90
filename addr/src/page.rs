//! Page sizes and block orders: how many frames a mapping or a block spans.
//!
//! A [`PageSize`] is what one leaf entry of an x86 page table maps; an
//! [`Order`] is the log2 of a block's frame count, the buddy allocator's and
//! Xen's `extent_order` unit. Every page size is an order; not every order
//! is a page size.

use core::fmt;

use crate::OutOfRange;

/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Bytes in a frame: the 4 KiB granule of every frame number.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// Width of every physical address, guest or host: x86's architectural
/// maximum `MAXPHYADDR` (Intel SDM Vol. 3A, 4.1.4; AMD APM Vol. 2, 5.3.1).
/// No processor translates to or from an address at or above `2^52`, so
/// no such value is ever a valid address or frame.
pub const PHYS_ADDR_BITS: u32 = 52;

/// The size of a page one leaf entry of an x86 page table maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, mapped by a page-table entry.
    Size4K,
    /// 2 MiB, mapped by a page-directory entry with the page-size bit.
    Size2M,
    /// 1 GiB, mapped by a page-directory-pointer-table entry with the
    /// page-size bit (where the processor supports it).
    Size1G,
}

impl PageSize {
    /// Every size, smallest first.
    pub const ALL: [Self; 3] = [Self::Size4K, Self::Size2M, Self::Size1G];

    /// log2 of the size in bytes.
    #[must_use]
    pub const fn shift(self) -> u32 {
        PAGE_SHIFT + self.order().get() as u32
    }

    /// The size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// 4 KiB frames in one page of this size.
    #[must_use]
    pub const fn frames(self) -> u64 {
        self.order().frames()
    }

    /// The order of a block exactly one page of this size.
    #[must_use]
    pub const fn order(self) -> Order {
        match self {
            Self::Size4K => Order::SIZE_4K,
            Self::Size2M => Order::SIZE_2M,
            Self::Size1G => Order::SIZE_1G,
        }
    }

    /// The page size of blocks of `order`, if it is one.
    #[must_use]
    pub const fn from_order(order: Order) -> Option<Self> {
        match order.get() {
            0 => Some(Self::Size4K),
            9 => Some(Self::Size2M),
            18 => Some(Self::Size1G),
            _ => None,
        }
    }
}

impl From<PageSize> for Order {
    fn from(size: PageSize) -> Self {
        size.order()
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Size4K => "4K",
            Self::Size2M => "2M",
            Self::Size1G => "1G",
        })
    }
}

/// The size of a block of `2^order` frames, from 0 (4 KiB) through 9
/// (2 MiB) to 18 (1 GiB, the largest x86 page and the largest order).
///
/// Orders stop at 1 GiB because nothing larger can be mapped by one entry
/// or must be allocated as one piece; larger amounts are several blocks.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Order(u8);

impl Order {
    /// 4 KiB, one frame.
    pub const SIZE_4K: Order = Order(0);
    /// 2 MiB, an x86 large page.
    pub const SIZE_2M: Order = Order(9);
    /// 1 GiB, an x86 huge page; also the largest order.
    pub const SIZE_1G: Order = Order(18);
    /// The largest order.
    pub const MAX: Order = Self::SIZE_1G;
    /// Number of distinct orders (0 through [`Order::MAX`]), for tables
    /// indexed by order.
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

    /// The smallest order whose blocks hold `frames` frames, if any does
    /// (order 0 for zero frames).
    #[must_use]
    pub const fn for_frames(frames: u64) -> Option<Self> {
        if frames == 0 {
            return Some(Self(0));
        }
        match frames.checked_next_power_of_two() {
            Some(p) if p.trailing_zeros() <= Self::MAX.0 as u32 => {
                Some(Self(p.trailing_zeros() as u8))
            }
            _ => None,
        }
    }

    /// The largest order whose blocks fit in `frames` frames (capped at
    /// [`Order::MAX`]), or `None` for zero frames.
    #[must_use]
    pub const fn fitting_in(frames: u64) -> Option<Self> {
        if frames == 0 {
            return None;
        }
        let log = u64::BITS - 1 - frames.leading_zeros();
        if log >= Self::MAX.0 as u32 {
            Some(Self::MAX)
        } else {
            Some(Self(log as u8))
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
        PAGE_SIZE << self.0
    }

    /// The next smaller order, unless this is order 0.
    #[must_use]
    pub const fn smaller(self) -> Option<Self> {
        match self.0.checked_sub(1) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The next larger order, unless this is [`Order::MAX`].
    #[must_use]
    pub const fn larger(self) -> Option<Self> {
        Self::new(self.0 + 1)
    }

    /// Every order from 0 through `self`, smallest first.
    pub fn up_to(self) -> impl DoubleEndedIterator<Item = Order> + Clone {
        (0..=self.0).map(Order)
    }
}

impl TryFrom<u64> for Order {
    type Error = OutOfRange;

    fn try_from(n: u64) -> Result<Self, OutOfRange> {
        match u8::try_from(n).ok().and_then(Self::new) {
            Some(order) => Ok(order),
            None => Err(OutOfRange {
                what: "order",
                value: n,
                limit: Self::COUNT as u64,
            }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_orders() {
        for size in PageSize::ALL {
            assert_eq!(PageSize::from_order(size.order()), Some(size));
            assert_eq!(size.bytes(), size.order().bytes());
            assert_eq!(size.frames() * PAGE_SIZE, size.bytes());
        }
        assert_eq!(PageSize::Size2M.bytes(), 2 << 20);
        assert_eq!(PageSize::Size1G.shift(), 30);
        assert_eq!(PageSize::from_order(Order::new(10).expect("order")), None);
    }

    #[test]
    fn orders_are_bounded() {
        assert_eq!(Order::new(18), Some(Order::MAX));
        assert_eq!(Order::new(19), None);
        assert!(Order::try_from(256u64).is_err());
        assert_eq!(Order::try_from(9u64), Ok(Order::SIZE_2M));
        assert_eq!(Order::MAX.larger(), None);
        assert_eq!(Order::SIZE_4K.smaller(), None);
        assert_eq!(Order::MAX.up_to().count(), Order::COUNT);
    }

    #[test]
    fn orders_for_frame_counts() {
        assert_eq!(Order::for_frames(0), Some(Order::SIZE_4K));
        assert_eq!(Order::for_frames(512), Some(Order::SIZE_2M));
        assert_eq!(Order::for_frames(513).map(Order::get), Some(10));
        assert_eq!(Order::for_frames((1 << 18) + 1), None);
        assert_eq!(Order::for_frames(u64::MAX), None);
        assert_eq!(Order::fitting_in(0), None);
        assert_eq!(Order::fitting_in(1), Some(Order::SIZE_4K));
        assert_eq!(Order::fitting_in(1023).map(Order::get), Some(9));
        assert_eq!(Order::fitting_in(u64::MAX), Some(Order::MAX));
    }
}
