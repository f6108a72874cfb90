//! Typed addresses and page sizes.
//!
//! Guest-physical and host-physical addresses are different spaces; mixing
//! them up is the classic bug of second-level paging code, so each has its
//! own type and neither converts into the other implicitly.

use core::fmt;

/// Bytes in a 4 KiB page: the granule of every address and length.
pub const PAGE_4K: u64 = 1 << 12;

/// Guest-physical address width of 4-level EPT and NPT tables: a walk uses
/// bits 47:0 of the guest-physical address (Intel SDM Vol. 3C, 29.3.2 "EPT
/// Translation Mechanism"; AMD APM Vol. 2, 15.25.5, nested walks use the
/// host's long-mode 4-level format).
pub const GUEST_BITS: u32 = 48;

macro_rules! address {
    ($(#[$doc:meta])* $name:ident, $short:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// The address `value`. Any value is representable; width and
            /// alignment are checked where the address is used.
            #[must_use]
            pub const fn new(value: u64) -> Self {
                Self(value)
            }

            /// The address as an integer.
            #[must_use]
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// `self + bytes`, or `None` past 2^64.
            #[must_use]
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// Bytes from `base` up to `self`, or `None` if `self < base`.
            #[must_use]
            pub const fn checked_offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
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
    };
}

address!(
    /// A guest-physical address: what the guest believes is physical memory,
    /// the input of a second-level walk.
    GuestPhys,
    "GPA"
);

address!(
    /// A host-physical (machine) address: the output of a second-level walk,
    /// and where the paging structures themselves live.
    HostPhys,
    "HPA"
);

/// The size of a page a leaf entry maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, mapped by a page-table entry.
    Size4K,
    /// 2 MiB, mapped by a page-directory entry with the large-page bit.
    Size2M,
    /// 1 GiB, mapped by a page-directory-pointer-table entry with the
    /// large-page bit (only where the processor supports it).
    Size1G,
}

impl PageSize {
    /// Every size, smallest first.
    pub const ALL: [Self; 3] = [Self::Size4K, Self::Size2M, Self::Size1G];

    /// log2 of the size in bytes.
    #[must_use]
    pub const fn shift(self) -> u32 {
        match self {
            Self::Size4K => 12,
            Self::Size2M => 21,
            Self::Size1G => 30,
        }
    }

    /// The size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// The paging level whose entries map pages of this size.
    #[must_use]
    pub const fn level(self) -> Level {
        match self {
            Self::Size4K => Level::Pt,
            Self::Size2M => Level::Pd,
            Self::Size1G => Level::Pdpt,
        }
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

/// A level of the 4-level hierarchy, named after its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Page table: entries map 4 KiB pages.
    Pt = 1,
    /// Page directory: entries map 2 MiB pages or reference page tables.
    Pd = 2,
    /// Page-directory-pointer table: entries map 1 GiB pages or reference
    /// page directories.
    Pdpt = 3,
    /// PML4, the root: entries reference page-directory-pointer tables.
    Pml4 = 4,
}

impl Level {
    /// Entries in a table of any level.
    pub const ENTRIES: usize = 512;

    /// log2 of the guest-physical span one entry of this level controls.
    #[must_use]
    pub const fn shift(self) -> u32 {
        12 + 9 * (self as u32 - 1)
    }

    /// Bytes of guest-physical space one entry of this level controls.
    #[must_use]
    pub const fn entry_span(self) -> u64 {
        1 << self.shift()
    }

    /// Bytes of guest-physical space a whole table of this level controls.
    #[must_use]
    pub const fn table_span(self) -> u64 {
        1 << (self.shift() + 9)
    }

    /// The index of the entry of this level that translates `gpa`.
    #[must_use]
    pub const fn index(self, gpa: u64) -> usize {
        ((gpa >> self.shift()) & 511) as usize
    }

    /// The level of the tables this level's entries reference.
    #[must_use]
    pub const fn below(self) -> Option<Self> {
        match self {
            Self::Pt => None,
            Self::Pd => Some(Self::Pt),
            Self::Pdpt => Some(Self::Pd),
            Self::Pml4 => Some(Self::Pdpt),
        }
    }

    /// The size of the page a leaf entry of this level maps, if any.
    #[must_use]
    pub const fn page_size(self) -> Option<PageSize> {
        match self {
            Self::Pt => Some(PageSize::Size4K),
            Self::Pd => Some(PageSize::Size2M),
            Self::Pdpt => Some(PageSize::Size1G),
            Self::Pml4 => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_sizes_agree() {
        for size in PageSize::ALL {
            assert_eq!(size.level().entry_span(), size.bytes());
            assert_eq!(size.level().page_size(), Some(size));
        }
        assert_eq!(Level::Pml4.entry_span(), 512 << 30);
        assert_eq!(Level::Pml4.table_span(), 1 << GUEST_BITS);
        assert_eq!(Level::Pd.index(0x3fe0_0000), 511);
        assert_eq!(Level::Pml4.below(), Some(Level::Pdpt));
    }

    #[test]
    fn address_arithmetic() {
        let a = GuestPhys::new(0x20_1000);
        assert!(a.is_aligned(PageSize::Size4K));
        assert!(!a.is_aligned(PageSize::Size2M));
        assert_eq!(a.align_down(PageSize::Size2M), GuestPhys::new(0x20_0000));
        assert_eq!(GuestPhys::new(u64::MAX).checked_add(1), None);
        assert_eq!(
            a.checked_offset_from(GuestPhys::new(0x20_0000)),
            Some(0x1000)
        );
        assert_eq!(HostPhys::new(0x1000).to_string(), "HPA 0x1000");
        assert_eq!(format!("{a:?}"), "GPA(0x201000)");
    }
}
