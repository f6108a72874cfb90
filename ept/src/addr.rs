//! Paging levels over the shared vocabulary of addresses and page sizes.
//!
//! Guest-physical and host-physical addresses are different spaces; mixing
//! them up is the classic bug of second-level paging code, so each has its
//! own type ([`GuestPhysAddr`], [`HostPhysAddr`], from `nvirt-addr`) and
//! neither converts into the other implicitly.

use nvirt_addr::{GuestPhysAddr, HostPhysAddr, PAGE_SHIFT, PageSize};

/// Bytes in a 4 KiB page: the granule of every address and length.
pub const PAGE_4K: u64 = nvirt_addr::PAGE_SIZE;

/// Guest-physical address width of 4-level EPT and NPT tables: a walk uses
/// bits 47:0 of the guest-physical address (Intel SDM Vol. 3C, 29.3.2 "EPT
/// Translation Mechanism"; AMD APM Vol. 2, 15.25.5, nested walks use the
/// host's long-mode 4-level format).
pub const GUEST_BITS: u32 = 48;

/// A guest address the tables computed from a checked request or from
/// their own entries: below `2^48` ([`GUEST_BITS`]), so always an address.
pub(crate) const fn guest_addr(value: u64) -> GuestPhysAddr {
    match GuestPhysAddr::new(value) {
        Some(addr) => addr,
        None => GuestPhysAddr::MAX,
    }
}

/// A host address the tables computed from a checked request or from their
/// own entries: below `2^physical_bits` (at most `2^52`), so always an
/// address.
pub(crate) const fn host_addr(value: u64) -> HostPhysAddr {
    match HostPhysAddr::new(value) {
        Some(addr) => addr,
        None => HostPhysAddr::MAX,
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

    /// The paging level whose entries map pages of `size`.
    #[must_use]
    pub const fn of(size: PageSize) -> Self {
        match size {
            PageSize::Size4K => Self::Pt,
            PageSize::Size2M => Self::Pd,
            PageSize::Size1G => Self::Pdpt,
        }
    }

    /// log2 of the guest-physical span one entry of this level controls.
    #[must_use]
    pub const fn shift(self) -> u32 {
        PAGE_SHIFT + 9 * (self as u32 - 1)
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
            assert_eq!(Level::of(size).entry_span(), size.bytes());
            assert_eq!(Level::of(size).page_size(), Some(size));
        }
        assert_eq!(Level::Pml4.entry_span(), 512 << 30);
        assert_eq!(Level::Pml4.table_span(), 1 << GUEST_BITS);
        assert_eq!(Level::Pd.index(0x3fe0_0000), 511);
        assert_eq!(Level::Pml4.below(), Some(Level::Pdpt));
    }
}
