//! Guest-physical and host-physical byte addresses.
//!
//! The two spaces never mix implicitly: a guest-physical address becomes a
//! host-physical one only through a [`FrameOffset`](crate::FrameOffset) or
//! a translation the caller owns, never through `as u64` arithmetic.

use core::fmt;

use crate::{OutOfRange, PAGE_SHIFT, PAGE_SIZE, PHYS_ADDR_BITS, PageSize};

macro_rules! phys_addr {
    ($(#[$doc:meta])* $name:ident, $frame:ident, $what:literal, $short:literal) => {
        $(#[$doc])*
        ///
        /// Every value is below `2^52` ([`PHYS_ADDR_BITS`]); arithmetic is
        /// checked and returns `None` instead of leaving that space.
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// One past the largest address.
            pub const LIMIT: u64 = 1 << PHYS_ADDR_BITS;
            /// Address zero.
            pub const ZERO: Self = Self(0);
            /// The largest address.
            pub const MAX: Self = Self(Self::LIMIT - 1);

            /// The address `value`, if below [`Self::LIMIT`].
            #[must_use]
            pub const fn new(value: u64) -> Option<Self> {
                if value < Self::LIMIT { Some(Self(value)) } else { None }
            }

            /// The address as a number.
            #[must_use]
            pub const fn get(self) -> u64 {
                self.0
            }

            /// `self + bytes`, or `None` past the address space.
            #[must_use]
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Self::new(v),
                    None => None,
                }
            }

            /// `self - bytes`, or `None` below zero.
            #[must_use]
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// Bytes from `base` up to `self`, or `None` if `self < base`.
            #[must_use]
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }

            /// The byte's offset within its 4 KiB frame.
            #[must_use]
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }

            /// Whether the address is a multiple of `size`.
            #[must_use]
            pub const fn is_aligned(self, size: PageSize) -> bool {
                self.0 & (size.bytes() - 1) == 0
            }

            /// The address rounded down to a multiple of `size`.
            #[must_use]
            pub const fn align_down(self, size: PageSize) -> Self {
                Self(self.0 & !(size.bytes() - 1))
            }

            /// The address rounded up to a multiple of `size`, or `None`
            /// if that leaves the address space.
            #[must_use]
            pub const fn align_up(self, size: PageSize) -> Option<Self> {
                match self.0.checked_add(size.bytes() - 1) {
                    Some(v) => Self::new(v & !(size.bytes() - 1)),
                    None => None,
                }
            }

            /// The frame that holds this byte.
            #[must_use]
            pub const fn frame(self) -> $frame {
                $frame::containing(self)
            }
        }

        impl TryFrom<u64> for $name {
            type Error = OutOfRange;

            fn try_from(value: u64) -> Result<Self, OutOfRange> {
                Self::new(value).ok_or(OutOfRange { what: $what, value, limit: Self::LIMIT })
            }
        }

        impl From<$name> for u64 {
            fn from(addr: $name) -> u64 {
                addr.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, " {:#x}"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl $frame {
            /// The frame that holds byte `addr`.
            #[must_use]
            pub const fn containing(addr: $name) -> Self {
                Self(addr.0 >> PAGE_SHIFT)
            }

            /// The frame starting at `addr`, if `addr` is 4 KiB aligned.
            #[must_use]
            pub const fn from_addr(addr: $name) -> Option<Self> {
                if addr.page_offset() == 0 { Some(Self::containing(addr)) } else { None }
            }

            /// The address of the frame's first byte (always representable:
            /// frames and addresses cover the same space).
            #[must_use]
            pub const fn addr(self) -> $name {
                $name(self.0 << PAGE_SHIFT)
            }
        }
    };
}

use crate::{Gfn, Mfn};

phys_addr!(
    /// A guest-physical address: what a guest believes is physical
    /// memory, the input of a second-level (EPT/NPT) walk.
    GuestPhysAddr,
    Gfn,
    "guest-physical address",
    "GPA"
);

phys_addr!(
    /// A host-physical (machine) address: the output of a second-level
    /// walk, where RAM, NVRAM and the paging structures really are.
    HostPhysAddr,
    Mfn,
    "host-physical address",
    "HPA"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_in_the_physical_space() {
        assert_eq!(GuestPhysAddr::new(1 << 52), None);
        assert!(GuestPhysAddr::try_from(u64::MAX).is_err());
        assert_eq!(GuestPhysAddr::MAX.checked_add(1), None);
        assert_eq!(GuestPhysAddr::ZERO.checked_sub(1), None);
        let a = HostPhysAddr::new(0x20_1234).expect("address");
        assert_eq!(a.page_offset(), 0x234);
        assert_eq!(a.align_down(PageSize::Size2M).get(), 0x20_0000);
        assert_eq!(a.align_up(PageSize::Size2M).map(u64::from), Some(0x40_0000));
        assert_eq!(HostPhysAddr::MAX.align_up(PageSize::Size4K), None);
        assert!(!a.is_aligned(PageSize::Size4K));
        assert_eq!(a.frame(), Mfn::new(0x201).expect("frame"));
        assert_eq!(Mfn::from_addr(a), None);
        assert_eq!(a.offset_from(HostPhysAddr::ZERO), Some(0x20_1234));
        assert_eq!(HostPhysAddr::ZERO.offset_from(a), None);
    }

    #[test]
    fn display_names_the_space() {
        extern crate std;
        use std::format;
        let g = GuestPhysAddr::new(0x1000).expect("address");
        assert_eq!(format!("{g}"), "GPA 0x1000");
        assert_eq!(format!("{:?}", g.frame()), "Gfn(0x1)");
    }
}
