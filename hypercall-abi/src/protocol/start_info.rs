//! The PVH start info the guest finds in RBX: Xen's `struct hvm_start_info`
//! (`xen/include/public/arch-x86/hvm/start_info.h`), version 1, and its
//! memory-map entry `struct hvm_memmap_table_entry`.

use core::mem::{align_of, offset_of, size_of};

use nvirt_addr::GuestPhysAddr;
use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `XEN_HVM_START_MAGIC_VALUE`: the first field of a start info.
pub const PVH_MAGIC: u32 = 0x336e_c578;
/// The version that carries the memory map.
pub const START_INFO_VERSION: u32 = 1;

/// `struct hvm_start_info`, version 1. 56 bytes.
///
/// | offset | field |
/// |---|---|
/// | 0 | `magic` = [`PVH_MAGIC`] |
/// | 4 | `version` (1 adds the memory map) |
/// | 8 | `flags` |
/// | 12 | `nr_modules` |
/// | 16 | `modlist_paddr` |
/// | 24 | `cmdline_paddr` |
/// | 32 | `rsdp_paddr` |
/// | 40 | `memmap_paddr` |
/// | 48 | `memmap_entries` |
/// | 52 | reserved |
///
/// A guest reads one as hostile until [`StartInfo::check`] accepts it: its
/// addresses are whatever the bytes say.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct StartInfo {
    magic: U32,
    version: U32,
    flags: U32,
    nr_modules: U32,
    modlist_paddr: U64,
    cmdline_paddr: U64,
    rsdp_paddr: U64,
    memmap_paddr: U64,
    memmap_entries: U32,
    reserved: U32,
}

const_assert_eq!(size_of::<StartInfo>(), 56);
const_assert_eq!(align_of::<StartInfo>(), 1);
const_assert_eq!(offset_of!(StartInfo, magic), 0);
const_assert_eq!(offset_of!(StartInfo, version), 4);
const_assert_eq!(offset_of!(StartInfo, flags), 8);
const_assert_eq!(offset_of!(StartInfo, nr_modules), 12);
const_assert_eq!(offset_of!(StartInfo, modlist_paddr), 16);
const_assert_eq!(offset_of!(StartInfo, cmdline_paddr), 24);
const_assert_eq!(offset_of!(StartInfo, rsdp_paddr), 32);
const_assert_eq!(offset_of!(StartInfo, memmap_paddr), 40);
const_assert_eq!(offset_of!(StartInfo, memmap_entries), 48);
const_assert_eq!(offset_of!(StartInfo, reserved), 52);

impl StartInfo {
    /// A version-1 start info with a command line and a memory map of
    /// `entries` entries, no modules and no RSDP.
    #[must_use]
    pub const fn new(cmdline: GuestPhysAddr, memmap: GuestPhysAddr, entries: u32) -> Self {
        Self {
            magic: U32::new(PVH_MAGIC),
            version: U32::new(START_INFO_VERSION),
            flags: U32::new(0),
            nr_modules: U32::new(0),
            modlist_paddr: U64::new(0),
            cmdline_paddr: U64::new(cmdline.get()),
            rsdp_paddr: U64::new(0),
            memmap_paddr: U64::new(memmap.get()),
            memmap_entries: U32::new(entries),
            reserved: U32::new(0),
        }
    }

    /// `magic`.
    #[must_use]
    pub const fn magic(&self) -> u32 {
        self.magic.get()
    }

    /// `version`.
    #[must_use]
    pub const fn version(&self) -> u32 {
        self.version.get()
    }

    /// Whether the magic is [`PVH_MAGIC`] and the version carries a memory
    /// map; nothing else of a start info that fails this means anything.
    #[must_use]
    pub const fn check(&self) -> bool {
        self.magic() == PVH_MAGIC && self.version() >= START_INFO_VERSION
    }

    /// `cmdline_paddr` as written (0: none).
    #[must_use]
    pub const fn cmdline_paddr(&self) -> u64 {
        self.cmdline_paddr.get()
    }

    /// `memmap_paddr` as written.
    #[must_use]
    pub const fn memmap_paddr(&self) -> u64 {
        self.memmap_paddr.get()
    }

    /// `memmap_entries` as written.
    #[must_use]
    pub const fn memmap_entries(&self) -> u32 {
        self.memmap_entries.get()
    }
}

/// `struct hvm_memmap_table_entry`: 24 bytes.
///
/// | offset | field |
/// |---|---|
/// | 0 | `addr` |
/// | 8 | `size` |
/// | 16 | `type` (E820) |
/// | 20 | reserved |
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct MemmapEntry {
    addr: U64,
    size: U64,
    kind: U32,
    reserved: U32,
}

const_assert_eq!(size_of::<MemmapEntry>(), 24);
const_assert_eq!(offset_of!(MemmapEntry, addr), 0);
const_assert_eq!(offset_of!(MemmapEntry, size), 8);
const_assert_eq!(offset_of!(MemmapEntry, kind), 16);
const_assert_eq!(offset_of!(MemmapEntry, reserved), 20);

impl MemmapEntry {
    /// An entry of `size` bytes at `addr` of E820 type `kind`.
    #[must_use]
    pub const fn new(addr: u64, size: u64, kind: u32) -> Self {
        Self {
            addr: U64::new(addr),
            size: U64::new(size),
            kind: U32::new(kind),
            reserved: U32::new(0),
        }
    }

    /// `addr`.
    #[must_use]
    pub const fn addr(&self) -> u64 {
        self.addr.get()
    }

    /// `size`.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size.get()
    }

    /// `type`.
    #[must_use]
    pub const fn kind(&self) -> u32 {
        self.kind.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CMDLINE_GPA, MEMMAP_GPA};

    #[test]
    fn bytes_are_xens() {
        let info = StartInfo::new(CMDLINE_GPA, MEMMAP_GPA, 5);
        let b = info.as_bytes();
        assert_eq!(b[0..4], PVH_MAGIC.to_le_bytes());
        assert_eq!(b[4..8], 1u32.to_le_bytes());
        assert_eq!(b[24..32], 0x1800u64.to_le_bytes());
        assert_eq!(b[40..48], 0x1100u64.to_le_bytes());
        assert_eq!(b[48..52], 5u32.to_le_bytes());
        let back = StartInfo::read_from_bytes(b).unwrap();
        assert!(back.check());
        assert_eq!(
            (
                back.cmdline_paddr(),
                back.memmap_paddr(),
                back.memmap_entries()
            ),
            (0x1800, 0x1100, 5)
        );
        let mut bad = b.to_vec();
        bad[0] ^= 1;
        assert!(!StartInfo::read_from_bytes(&bad[..]).unwrap().check());
        let mut v0 = b.to_vec();
        v0[4] = 0;
        assert!(!StartInfo::read_from_bytes(&v0[..]).unwrap().check());

        let e = MemmapEntry::new(0x10_0000, 0x20_0000, 7);
        assert_eq!(e.as_bytes()[16..20], 7u32.to_le_bytes());
        assert_eq!((e.addr(), e.size(), e.kind()), (0x10_0000, 0x20_0000, 7));
    }
}
