//! AMD nested page tables: ordinary long-mode 4-level entries walked from
//! nCR3 (AMD APM Vol. 2, 15.25 "Nested Paging"; entry formats 5.3.3,
//! Figures 5-18 to 5-25; memory types 7.8 "Page-Attribute Table").
//!
//! | bit | meaning |
//! |---|---|
//! | 0 | P: present |
//! | 1 | R/W: writes allowed |
//! | 2 | U/S: user access allowed. Always set: every nested-table access is a user access (APM 15.25.5; Linux KVM `translate_nested_gpa`: "NPT walks are always user-walks") |
//! | 3, 4 | PWT, PCD: bits 0 and 1 of the host PAT index |
//! | 5 | A: accessed (set by the processor) |
//! | 6 | D: dirty, in leaves (set by the processor) |
//! | 7 | PS in PDEs/PDPEs (large page); PAT index bit 2 in PTEs |
//! | 12 | PAT index bit 2 in 2 MiB / 1 GiB leaves |
//! | 51:12 | address (in large leaves, bits below the page size other than 12 are reserved) |
//! | 63 | NX: no instruction fetch; reserved unless the host's EFER.NXE is 1 (QEMU's nested walker takes the host's paging mode, `nested_pg_mode`) |
//!
//! Everything else in a present entry stays clear: bits 8:7 of PML4Es are
//! reserved, bits 11:9 and 58:52 are available to software.

use crate::attrs::{Attrs, MemType, Perms};
use crate::error::AttrError;
use crate::format::{ADDRESS_MASK, Decoded, Format, entry_addr};
use crate::{HostPhysAddr, Level, PageSize};

bitflags::bitflags! {
    /// The bits of a long-mode entry as nested paging uses them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NptFlags: u64 {
        /// Bit 0: present.
        const PRESENT = 1 << 0;
        /// Bit 1: writes allowed.
        const WRITABLE = 1 << 1;
        /// Bit 2: user accesses allowed (always set for nested paging).
        const USER = 1 << 2;
        /// Bit 3: page-level write-through, PAT index bit 0.
        const WRITE_THROUGH = 1 << 3;
        /// Bit 4: page-level cache disable, PAT index bit 1.
        const CACHE_DISABLE = 1 << 4;
        /// Bit 5: accessed.
        const ACCESSED = 1 << 5;
        /// Bit 6 of leaves: dirty.
        const DIRTY = 1 << 6;
        /// Bit 7 of PDEs and PDPEs: the entry maps a large page.
        const LARGE = 1 << 7;
        /// Bit 7 of PTEs: PAT index bit 2.
        const PAT_4K = 1 << 7;
        /// Bit 12 of large leaves: PAT index bit 2.
        const PAT_LARGE = 1 << 12;
        /// Bit 63: no instruction fetches.
        const NO_EXECUTE = 1 << 63;
    }
}

/// The PAT MSR's value after reset: WB, WT, UC-, UC, WB, WT, UC-, UC
/// (AMD APM Vol. 2, 7.8.2; Intel SDM Vol. 3A, table 13-12).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

/// The AMD NPT format and the host state its encoding depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Npt {
    no_execute: bool,
    pat: u64,
}

impl Default for Npt {
    fn default() -> Self {
        Self::new()
    }
}

impl Npt {
    /// NPT for a host with EFER.NXE = 1 and the reset PAT.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            no_execute: true,
            pat: PAT_RESET,
        }
    }

    /// Whether the host runs with EFER.NXE = 1. Without it bit 63 is
    /// reserved, so every mapping must allow execution.
    #[must_use]
    pub const fn with_no_execute(mut self, nxe: bool) -> Self {
        self.no_execute = nxe;
        self
    }

    /// The host's PAT MSR, which PWT/PCD/PAT of a leaf index into. A memory
    /// type is available only if some PAT entry holds it; the lowest such
    /// index is used.
    #[must_use]
    pub const fn with_pat(mut self, pat: u64) -> Self {
        self.pat = pat;
        self
    }

    /// The nCR3 value for tables rooted at `root` (PWT = PCD = 0: the
    /// tables are accessed through host PAT entry 0).
    #[must_use]
    pub const fn ncr3(&self, root: HostPhysAddr) -> u64 {
        root.get() & ADDRESS_MASK
    }

    fn pat_index(&self, mem: MemType) -> Option<u64> {
        (0..8u64).find(|i| (self.pat >> (i * 8)) & 0xff == u64::from(mem.code()))
    }

    fn pat_type(&self, index: u64) -> MemType {
        let code = ((self.pat >> (index * 8)) & 0b111) as u8;
        MemType::from_code(code).unwrap_or(MemType::Uc)
    }
}

impl Format for Npt {
    const NAME: &'static str = "NPT";

    fn check(&self, attrs: Attrs) -> Result<(), AttrError> {
        let p = attrs.perms;
        if p.is_empty() {
            return Err(AttrError::NoAccess);
        }
        if !p.contains(Perms::READ) {
            return Err(AttrError::ReadRequired { perms: p });
        }
        if p.contains(Perms::EXECUTE) != p.contains(Perms::USER_EXECUTE) {
            return Err(AttrError::SplitExecute { perms: p });
        }
        if !self.no_execute && !p.contains(Perms::EXECUTE) {
            return Err(AttrError::NoExecuteUnsupported { perms: p });
        }
        if self.pat_index(attrs.mem).is_none() {
            return Err(AttrError::MemTypeUnavailable { mem: attrs.mem });
        }
        Ok(())
    }

    fn leaf(&self, size: PageSize, hpa: HostPhysAddr, attrs: Attrs) -> u64 {
        let p = attrs.perms;
        let mut flags = NptFlags::PRESENT | NptFlags::USER;
        flags.set(NptFlags::WRITABLE, p.contains(Perms::WRITE));
        flags.set(
            NptFlags::NO_EXECUTE,
            self.no_execute && !p.contains(Perms::EXECUTE),
        );
        let index = self.pat_index(attrs.mem).unwrap_or(0);
        flags.set(NptFlags::WRITE_THROUGH, index & 1 != 0);
        flags.set(NptFlags::CACHE_DISABLE, index & 2 != 0);
        if size == PageSize::Size4K {
            flags.set(NptFlags::PAT_4K, index & 4 != 0);
        } else {
            flags.insert(NptFlags::LARGE);
            flags.set(NptFlags::PAT_LARGE, index & 4 != 0);
        }
        (hpa.get() & ADDRESS_MASK) | flags.bits()
    }

    fn table(&self, table: HostPhysAddr) -> u64 {
        let flags = NptFlags::PRESENT | NptFlags::WRITABLE | NptFlags::USER;
        (table.get() & ADDRESS_MASK) | flags.bits()
    }

    fn empty(&self) -> u64 {
        0
    }

    fn decode(&self, level: Level, raw: u64) -> Decoded {
        let flags = NptFlags::from_bits_truncate(raw);
        if !flags.contains(NptFlags::PRESENT) {
            return Decoded::Empty;
        }
        let (size, pat_bit) = match level {
            Level::Pt => (PageSize::Size4K, NptFlags::PAT_4K),
            Level::Pd if flags.contains(NptFlags::LARGE) => (PageSize::Size2M, NptFlags::PAT_LARGE),
            Level::Pdpt if flags.contains(NptFlags::LARGE) => {
                (PageSize::Size1G, NptFlags::PAT_LARGE)
            }
            _ => return Decoded::Table(entry_addr(raw, PageSize::Size4K)),
        };
        let mut perms = Perms::READ;
        perms.set(Perms::WRITE, flags.contains(NptFlags::WRITABLE));
        let exec = !(self.no_execute && flags.contains(NptFlags::NO_EXECUTE));
        perms.set(Perms::EXECUTE | Perms::USER_EXECUTE, exec);
        let index = u64::from(flags.contains(NptFlags::WRITE_THROUGH))
            | u64::from(flags.contains(NptFlags::CACHE_DISABLE)) << 1
            | u64::from(flags.contains(pat_bit)) << 2;
        Decoded::Leaf {
            hpa: entry_addr(raw, size),
            attrs: Attrs::new(perms, self.pat_type(index)),
            hardware: raw & self.hardware_bits(),
        }
    }

    fn hardware_bits(&self) -> u64 {
        (NptFlags::ACCESSED | NptFlags::DIRTY).bits()
    }

    fn root_pointer(&self, root: HostPhysAddr) -> u64 {
        self.ncr3(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::host_addr;

    /// Linux's PAT: WB, WC, UC-, UC, WB, WP, UC-, WT.
    const PAT_LINUX: u64 = 0x0407_0506_0007_0106;

    #[test]
    fn leaves_are_user_and_carry_the_pat_index() {
        let npt = Npt::new().with_pat(PAT_LINUX);
        let hpa = host_addr(0x8000_0000);
        let wb = npt.leaf(PageSize::Size4K, hpa, Attrs::new(Perms::RW, MemType::Wb));
        assert_eq!(wb, 0x8000_0000 | 0b111 | (1 << 63));
        let wc = npt.leaf(PageSize::Size4K, hpa, Attrs::new(Perms::RWX, MemType::Wc));
        assert_eq!(wc, 0x8000_0000 | 0b111 | (1 << 3));
        let wt = npt.leaf(PageSize::Size2M, hpa, Attrs::new(Perms::RX, MemType::Wt));
        assert_eq!(
            wt,
            0x8000_0000 | 0b101 | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 12)
        );
        let wt4k = npt.leaf(PageSize::Size4K, hpa, Attrs::new(Perms::RX, MemType::Wt));
        assert_eq!(wt4k, 0x8000_0000 | 0b101 | (1 << 3) | (1 << 4) | (1 << 7));
        assert_eq!(npt.table(host_addr(0x3000)), 0x3007);
    }

    #[test]
    fn decode_round_trips() {
        let npt = Npt::new().with_pat(PAT_LINUX);
        for size in PageSize::ALL {
            for perms in [Perms::READ, Perms::RW, Perms::RX, Perms::RWX] {
                for mem in MemType::ALL {
                    let attrs = Attrs::new(perms, mem);
                    npt.check(attrs).unwrap();
                    let hpa = host_addr(3 << 30);
                    let raw = npt.leaf(size, hpa, attrs) | (1 << 5);
                    assert_eq!(
                        npt.decode(Level::of(size), raw),
                        Decoded::Leaf {
                            hpa,
                            attrs,
                            hardware: 1 << 5
                        }
                    );
                }
            }
        }
        assert_eq!(
            npt.decode(Level::Pd, 0x3027),
            Decoded::Table(host_addr(0x3000))
        );
        assert_eq!(npt.decode(Level::Pt, 0xffff_f000), Decoded::Empty);
    }

    #[test]
    fn check_follows_host_state() {
        let npt = Npt::new();
        let at = |p, m| Attrs::new(p, m);
        assert!(matches!(
            npt.check(at(Perms::EXECUTE, MemType::Wb)),
            Err(AttrError::ReadRequired { .. })
        ));
        assert!(matches!(
            npt.check(at(Perms::READ | Perms::EXECUTE, MemType::Wb)),
            Err(AttrError::SplitExecute { .. })
        ));
        assert_eq!(
            npt.check(at(Perms::RW, MemType::Wc)),
            Err(AttrError::MemTypeUnavailable { mem: MemType::Wc })
        );
        assert!(npt.check(at(Perms::RW, MemType::Uc)).is_ok());
        assert!(matches!(
            npt.with_no_execute(false).check(at(Perms::RW, MemType::Wb)),
            Err(AttrError::NoExecuteUnsupported { .. })
        ));
        assert!(
            npt.with_no_execute(false)
                .check(at(Perms::RWX, MemType::Wb))
                .is_ok()
        );
    }
}
