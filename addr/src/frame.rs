//! Guest and machine frame numbers: 4 KiB frames of the two physical
//! address spaces, never mistaken for addresses, counts or each other.

use core::fmt;

use crate::{Order, OutOfRange, PAGE_SHIFT, PHYS_ADDR_BITS};

macro_rules! frame_number {
    ($(#[$doc:meta])* $name:ident, $what:literal, $short:literal) => {
        $(#[$doc])*
        ///
        /// Every value is below [`Self::LIMIT`] (`2^40`: 52-bit physical
        /// addresses), so its address never overflows.
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub(crate) u64);

        impl $name {
            /// One past the largest frame number.
            pub const LIMIT: u64 = 1 << (PHYS_ADDR_BITS - PAGE_SHIFT);
            /// Frame zero.
            pub const ZERO: Self = Self(0);
            /// The largest frame number.
            pub const MAX: Self = Self(Self::LIMIT - 1);

            /// Frame `n`, if below [`Self::LIMIT`].
            #[must_use]
            pub const fn new(n: u64) -> Option<Self> {
                if n < Self::LIMIT { Some(Self(n)) } else { None }
            }

            /// The frame number as a number.
            #[must_use]
            pub const fn get(self) -> u64 {
                self.0
            }

            /// The frame `frames` further on, if it exists.
            #[must_use]
            pub const fn checked_add(self, frames: u64) -> Option<Self> {
                match self.0.checked_add(frames) {
                    Some(n) => Self::new(n),
                    None => None,
                }
            }

            /// The frame `frames` before this one, if it exists.
            #[must_use]
            pub const fn checked_sub(self, frames: u64) -> Option<Self> {
                match self.0.checked_sub(frames) {
                    Some(n) => Some(Self(n)),
                    None => None,
                }
            }

            /// Frames from `base` up to `self`, or `None` if `self < base`.
            #[must_use]
            pub const fn frames_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }

            /// Whether a block of `order` may start at this frame.
            #[must_use]
            pub const fn is_aligned(self, order: Order) -> bool {
                self.0 & (order.frames() - 1) == 0
            }

            /// The frame rounded down to a multiple of `order`'s block.
            #[must_use]
            pub const fn align_down(self, order: Order) -> Self {
                Self(self.0 & !(order.frames() - 1))
            }

            /// The largest order this frame is aligned to, capped at
            /// [`Order::MAX`] (frame 0 is aligned to every order).
            #[must_use]
            pub const fn alignment(self) -> Order {
                let zeros = self.0.trailing_zeros();
                if zeros >= Order::MAX.get() as u32 {
                    Order::MAX
                } else {
                    match Order::new(zeros as u8) {
                        Some(order) => order,
                        None => Order::MAX,
                    }
                }
            }
        }

        impl TryFrom<u64> for $name {
            type Error = OutOfRange;

            fn try_from(n: u64) -> Result<Self, OutOfRange> {
                Self::new(n).ok_or(OutOfRange { what: $what, value: n, limit: Self::LIMIT })
            }
        }

        impl From<$name> for u64 {
            fn from(frame: $name) -> u64 {
                frame.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($what, " {:#x}"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

frame_number!(
    /// A guest frame number: a guest-physical address divided by 4096
    /// (Xen's gfn / gpfn).
    Gfn,
    "gfn",
    "Gfn"
);

frame_number!(
    /// A machine frame number: a host-physical address divided by 4096
    /// (Xen's mfn; what a kernel without guests calls a pfn).
    Mfn,
    "mfn",
    "Mfn"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_stay_in_the_frame_space() {
        assert_eq!(Gfn::new(Gfn::LIMIT), None);
        assert_eq!(Gfn::MAX.checked_add(1), None);
        assert_eq!(Gfn::ZERO.checked_sub(1), None);
        assert!(Mfn::try_from(1u64 << 40).is_err());
        assert_eq!(Mfn::MAX.addr().get(), (1 << 52) - 4096);
        let m = Mfn::new(0x600).expect("frame");
        assert_eq!(m.alignment().get(), 9);
        assert!(m.is_aligned(Order::SIZE_2M));
        assert!(!m.is_aligned(Order::new(10).expect("order")));
        assert_eq!(Mfn::ZERO.alignment(), Order::MAX);
        assert_eq!(m.align_down(Order::new(10).expect("order")).get(), 0x400);
        assert_eq!(m.frames_from(Mfn::new(0x200).expect("frame")), Some(0x400));
        assert_eq!(Mfn::ZERO.frames_from(m), None);
    }
}
