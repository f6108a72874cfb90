//! Intel EPT entries (SDM Vol. 3C, chapter 29 "VMX Support for Address
//! Translation", 29.3.2 tables 29-1 to 29-6 and 29.3.3; EPTP: Vol. 3C,
//! 25.6.11 table 25-9).
//!
//! Entry bits, every form:
//!
//! | bits | leaf (PTE, 2 MiB PDE, 1 GiB PDPTE) | non-leaf |
//! |---|---|---|
//! | 0, 1, 2 | read, write, execute (supervisor-mode execute with MBEC) | same, for the region below |
//! | 5:3 | memory type (0 UC, 1 WC, 4 WT, 5 WP, 6 WB) | reserved (0) |
//! | 6 | ignore PAT | reserved (0) |
//! | 7 | large page (1 in 2 MiB / 1 GiB leaves; ignored in PTEs) | 0 (reserved in PML4Es) |
//! | 8 | accessed (if EPTP bit 6) | accessed (if EPTP bit 6) |
//! | 9 | dirty (if EPTP bit 6) | ignored |
//! | 10 | user-mode execute (if mode-based execute control) | same |
//! | 11 | ignored | ignored |
//! | 51:12 | page address (bits below the page size reserved) | table address |
//! | 63 | suppress #VE (if the "EPT-violation #VE" control) | ignored |
//!
//! An entry with bits 2:0 all clear is not present and the processor ignores
//! its other bits, except bit 63 under the #VE control (SDM 29.3.2).
//! Write-only entries (bit 1 without bit 0) are EPT misconfigurations;
//! execute-only entries need IA32_VMX_EPT_VPID_CAP bit 0 (SDM 29.3.3.1).

use crate::attrs::{Attrs, MemType, Perms};
use crate::error::AttrError;
use crate::format::{ADDRESS_MASK, Decoded, Format, entry_addr};
use crate::{HostPhysAddr, Level, PageSize};

bitflags::bitflags! {
    /// The single-bit fields of an EPT entry; the memory type is the 3-bit
    /// field at [`MEM_TYPE_SHIFT`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct EptFlags: u64 {
        /// Bit 0: reads allowed.
        const READ = 1 << 0;
        /// Bit 1: writes allowed.
        const WRITE = 1 << 1;
        /// Bit 2: instruction fetches allowed (supervisor-mode fetches
        /// when mode-based execute control is on).
        const EXECUTE = 1 << 2;
        /// Bit 6 of leaves: ignore the guest PAT memory type.
        const IGNORE_PAT = 1 << 6;
        /// Bit 7 of PDEs and PDPTEs: the entry maps a large page.
        const LARGE = 1 << 7;
        /// Bit 8: set by the processor when the entry is used (A/D enabled).
        const ACCESSED = 1 << 8;
        /// Bit 9 of leaves: set by the processor on a write (A/D enabled).
        const DIRTY = 1 << 9;
        /// Bit 10: user-mode instruction fetches allowed (mode-based
        /// execute control).
        const USER_EXECUTE = 1 << 10;
        /// Bit 63 of leaves and not-present entries: EPT violations do not
        /// become #VE.
        const SUPPRESS_VE = 1 << 63;
    }
}

/// Position of the 3-bit memory-type field of leaves.
pub const MEM_TYPE_SHIFT: u32 = 3;

/// EPTP bits 2:0: memory type used to access the paging structures (WB).
const EPTP_WB: u64 = 6;
/// EPTP bits 5:3: page-walk length minus one (4 levels).
const EPTP_WALK_4: u64 = 3 << 3;
/// EPTP bit 6: enable accessed and dirty flags.
const EPTP_AD: u64 = 1 << 6;

/// The Intel EPT format and the processor features it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ept {
    accessed_dirty: bool,
    execute_only: bool,
    ignore_pat: bool,
    suppress_ve: bool,
}

impl Default for Ept {
    fn default() -> Self {
        Self::new()
    }
}

impl Ept {
    /// Plain EPT: no A/D flags, no execute-only pages, guest PAT honoured,
    /// #VE not suppressed (the bit is ignored unless the hypervisor enables
    /// the #VE control).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            accessed_dirty: false,
            execute_only: false,
            ignore_pat: false,
            suppress_ve: false,
        }
    }

    /// Sets EPTP bit 6 so the processor maintains accessed/dirty flags
    /// (needs IA32_VMX_EPT_VPID_CAP bit 21).
    #[must_use]
    pub const fn with_accessed_dirty(mut self, on: bool) -> Self {
        self.accessed_dirty = on;
        self
    }

    /// Allows execute-only leaves (needs IA32_VMX_EPT_VPID_CAP bit 0).
    #[must_use]
    pub const fn with_execute_only(mut self, on: bool) -> Self {
        self.execute_only = on;
        self
    }

    /// Sets the ignore-PAT bit in every leaf, making the EPT memory type
    /// final instead of combining it with the guest's PAT type.
    #[must_use]
    pub const fn with_ignore_pat(mut self, on: bool) -> Self {
        self.ignore_pat = on;
        self
    }

    /// Sets suppress-#VE in leaves and not-present entries.
    #[must_use]
    pub const fn with_suppress_ve(mut self, on: bool) -> Self {
        self.suppress_ve = on;
        self
    }

    /// Whether EPTP enables accessed/dirty flags.
    #[must_use]
    pub const fn accessed_dirty(&self) -> bool {
        self.accessed_dirty
    }

    /// The EPTP for tables rooted at `root`: WB paging-structure accesses,
    /// 4-level walk, A/D enable if configured.
    #[must_use]
    pub const fn eptp(&self, root: HostPhysAddr) -> u64 {
        let ad = if self.accessed_dirty { EPTP_AD } else { 0 };
        (root.get() & ADDRESS_MASK) | EPTP_WB | EPTP_WALK_4 | ad
    }
}

impl Format for Ept {
    const NAME: &'static str = "EPT";

    fn check(&self, attrs: Attrs) -> Result<(), AttrError> {
        let p = attrs.perms;
        if p.is_empty() {
            return Err(AttrError::NoAccess);
        }
        if p.contains(Perms::WRITE) && !p.contains(Perms::READ) {
            return Err(AttrError::WriteWithoutRead { perms: p });
        }
        if !p.contains(Perms::READ) && !self.execute_only {
            return Err(AttrError::ExecuteOnlyUnsupported { perms: p });
        }
        Ok(())
    }

    fn leaf(&self, size: PageSize, hpa: HostPhysAddr, attrs: Attrs) -> u64 {
        let p = attrs.perms;
        let mut flags = EptFlags::empty();
        flags.set(EptFlags::READ, p.contains(Perms::READ));
        flags.set(EptFlags::WRITE, p.contains(Perms::WRITE));
        flags.set(EptFlags::EXECUTE, p.contains(Perms::EXECUTE));
        flags.set(EptFlags::USER_EXECUTE, p.contains(Perms::USER_EXECUTE));
        flags.set(EptFlags::IGNORE_PAT, self.ignore_pat);
        flags.set(EptFlags::LARGE, size != PageSize::Size4K);
        flags.set(EptFlags::SUPPRESS_VE, self.suppress_ve);
        let mem = u64::from(attrs.mem.code()) << MEM_TYPE_SHIFT;
        (hpa.get() & ADDRESS_MASK) | mem | flags.bits()
    }

    fn table(&self, table: HostPhysAddr) -> u64 {
        let flags = EptFlags::READ | EptFlags::WRITE | EptFlags::EXECUTE | EptFlags::USER_EXECUTE;
        (table.get() & ADDRESS_MASK) | flags.bits()
    }

    fn empty(&self) -> u64 {
        if self.suppress_ve {
            EptFlags::SUPPRESS_VE.bits()
        } else {
            0
        }
    }

    fn decode(&self, level: Level, raw: u64) -> Decoded {
        let flags = EptFlags::from_bits_truncate(raw);
        if raw & 0b111 == 0 {
            return Decoded::Empty;
        }
        let size = match level {
            Level::Pt => PageSize::Size4K,
            Level::Pd | Level::Pdpt if flags.contains(EptFlags::LARGE) => match level.page_size() {
                Some(size) => size,
                None => PageSize::Size4K,
            },
            _ => return Decoded::Table(entry_addr(raw, PageSize::Size4K)),
        };
        let mut perms = Perms::empty();
        perms.set(Perms::READ, flags.contains(EptFlags::READ));
        perms.set(Perms::WRITE, flags.contains(EptFlags::WRITE));
        perms.set(Perms::EXECUTE, flags.contains(EptFlags::EXECUTE));
        perms.set(Perms::USER_EXECUTE, flags.contains(EptFlags::USER_EXECUTE));
        // The tables only ever write the five valid codes; anything else
        // would already be an EPT misconfiguration, which `verify` reports.
        let code = ((raw >> MEM_TYPE_SHIFT) & 0b111) as u8;
        let mem = MemType::from_code(code).unwrap_or(MemType::Uc);
        Decoded::Leaf {
            hpa: entry_addr(raw, size),
            attrs: Attrs::new(perms, mem),
            hardware: raw & self.hardware_bits(),
        }
    }

    fn hardware_bits(&self) -> u64 {
        (EptFlags::ACCESSED | EptFlags::DIRTY).bits()
    }

    fn root_pointer(&self, root: HostPhysAddr) -> u64 {
        self.eptp(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::host_addr;

    #[test]
    fn leaf_encoding_matches_the_sdm_tables() {
        let ept = Ept::new();
        let rw_wb = Attrs::new(Perms::RW, MemType::Wb);
        assert_eq!(
            ept.leaf(PageSize::Size4K, host_addr(0x1234_5000), rw_wb),
            0x1234_5000 | 0b011 | (6 << 3)
        );
        let rx_uc = Attrs::new(Perms::RX, MemType::Uc);
        assert_eq!(
            ept.with_ignore_pat(true)
                .leaf(PageSize::Size2M, host_addr(0x4020_0000), rx_uc),
            0x4020_0000 | 0b101 | (1 << 6) | (1 << 7) | (1 << 10)
        );
        let sve = ept.with_suppress_ve(true);
        assert_eq!(sve.empty(), 1 << 63);
        assert_eq!(
            sve.leaf(PageSize::Size1G, host_addr(1 << 30), rw_wb) >> 63,
            1
        );
    }

    #[test]
    fn decode_round_trips() {
        let ept = Ept::new().with_execute_only(true);
        for size in PageSize::ALL {
            for perms in [Perms::READ, Perms::RW, Perms::RWX, Perms::EXECUTE] {
                for mem in MemType::ALL {
                    let attrs = Attrs::new(perms, mem);
                    ept.check(attrs).unwrap();
                    let hpa = host_addr(7 << 30);
                    let raw = ept.leaf(size, hpa, attrs) | (1 << 8) | (1 << 9);
                    assert_eq!(
                        ept.decode(Level::of(size), raw),
                        Decoded::Leaf {
                            hpa,
                            attrs,
                            hardware: (1 << 8) | (1 << 9)
                        }
                    );
                }
            }
        }
        let t = ept.table(host_addr(0x5000)) | (1 << 8);
        assert_eq!(ept.decode(Level::Pd, t), Decoded::Table(host_addr(0x5000)));
        assert_eq!(
            ept.decode(Level::Pml4, t),
            Decoded::Table(host_addr(0x5000))
        );
        assert_eq!(ept.decode(Level::Pt, 1 << 63), Decoded::Empty);
    }

    #[test]
    fn check_rejects_misconfigurations() {
        let ept = Ept::new();
        let wb = |p| Attrs::new(p, MemType::Wb);
        assert_eq!(ept.check(wb(Perms::empty())), Err(AttrError::NoAccess));
        assert!(matches!(
            ept.check(wb(Perms::WRITE)),
            Err(AttrError::WriteWithoutRead { .. })
        ));
        assert!(matches!(
            ept.check(wb(Perms::EXECUTE)),
            Err(AttrError::ExecuteOnlyUnsupported { .. })
        ));
        assert!(
            ept.with_execute_only(true)
                .check(wb(Perms::EXECUTE))
                .is_ok()
        );
    }

    #[test]
    fn eptp() {
        let root = host_addr(0xabc_d000);
        assert_eq!(Ept::new().eptp(root), 0xabc_d000 | 6 | (3 << 3));
        assert_eq!(
            Ept::new().with_accessed_dirty(true).eptp(root),
            0xabc_d000 | 0x5e
        );
    }
}
