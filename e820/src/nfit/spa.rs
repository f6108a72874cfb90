//! The SPA Range structure (type 0): which system-physical range, of which
//! type (by GUID), with which flags.

use core::fmt;

use bitflags::bitflags;

use crate::entry::Entry;
use crate::error::RangeError;
use crate::kind::Kind;

/// A GUID in its on-media byte order (first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The GUID `a-b-c-d[0..2]-d[2..8]` as written in specifications.
    #[must_use]
    pub const fn from_fields(a: u32, b: u16, c: u16, d: [u8; 8]) -> Self {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Self([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ])
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9]
        )?;
        g[10..].iter().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What an SPA range is, from its address range type GUID (ACPI 6.x,
/// "SPA Range Structure" table; Linux `include/acpi/actbl1.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpaType {
    /// Volatile memory region.
    Volatile,
    /// Byte-addressable persistent memory.
    Persistent,
    /// NVDIMM control region.
    ControlRegion,
    /// NVDIMM block data window region.
    BlockDataWindow,
    /// RAM disk, virtual disk, volatile.
    VolatileVirtualDisk,
    /// RAM disk, virtual CD, volatile.
    VolatileVirtualCd,
    /// RAM disk, virtual disk, persistent.
    PersistentVirtualDisk,
    /// RAM disk, virtual CD, persistent.
    PersistentVirtualCd,
    /// Any other GUID.
    Other(Guid),
}

impl SpaType {
    pub(super) const KNOWN: [(Guid, Self); 8] = [
        (
            Guid::from_fields(
                0x7305_944f,
                0xfdda,
                0x44e3,
                [0xb1, 0x6c, 0x3f, 0x22, 0xd2, 0x52, 0xe5, 0xd0],
            ),
            Self::Volatile,
        ),
        (
            Guid::from_fields(
                0x66f0_d379,
                0xb4f3,
                0x4074,
                [0xac, 0x43, 0x0d, 0x33, 0x18, 0xb7, 0x8c, 0xdb],
            ),
            Self::Persistent,
        ),
        (
            Guid::from_fields(
                0x92f7_01f6,
                0x13b4,
                0x405d,
                [0x91, 0x0b, 0x29, 0x93, 0x67, 0xe8, 0x23, 0x4c],
            ),
            Self::ControlRegion,
        ),
        (
            Guid::from_fields(
                0x91af_0530,
                0x5d86,
                0x470e,
                [0xa6, 0xb0, 0x0a, 0x2d, 0xb9, 0x40, 0x82, 0x49],
            ),
            Self::BlockDataWindow,
        ),
        (
            Guid::from_fields(
                0x77ab_535a,
                0x45fc,
                0x624b,
                [0x55, 0x60, 0xf7, 0xb2, 0x81, 0xd1, 0xf9, 0x6e],
            ),
            Self::VolatileVirtualDisk,
        ),
        (
            Guid::from_fields(
                0x3d5a_bd30,
                0x4175,
                0x87ce,
                [0x6d, 0x64, 0xd2, 0xad, 0xe5, 0x23, 0xc4, 0xbb],
            ),
            Self::VolatileVirtualCd,
        ),
        (
            Guid::from_fields(
                0x5cea_02c9,
                0x4d07,
                0x69d3,
                [0x26, 0x9f, 0x44, 0x96, 0xfb, 0xe0, 0x96, 0xf9],
            ),
            Self::PersistentVirtualDisk,
        ),
        (
            Guid::from_fields(
                0x0801_8188,
                0x42cd,
                0xbb48,
                [0x10, 0x0f, 0x53, 0x87, 0xd5, 0x3d, 0xed, 0x3d],
            ),
            Self::PersistentVirtualCd,
        ),
    ];

    /// Classifies a GUID.
    #[must_use]
    pub fn from_guid(guid: Guid) -> Self {
        Self::KNOWN
            .iter()
            .find(|(known, _)| *known == guid)
            .map_or(Self::Other(guid), |&(_, kind)| kind)
    }

    /// The GUID of this type.
    #[must_use]
    pub fn guid(self) -> Guid {
        match self {
            Self::Other(guid) => guid,
            known => Self::KNOWN
                .iter()
                .find(|(_, kind)| *kind == known)
                .map_or(Guid([0; 16]), |&(guid, _)| guid),
        }
    }

    /// Whether the range holds byte-addressable persistent memory.
    #[must_use]
    pub const fn is_persistent_memory(self) -> bool {
        matches!(self, Self::Persistent)
    }
}

bitflags! {
    /// Flags of an SPA Range structure.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SpaFlags: u16 {
        /// The range is only for hot-add / online operations.
        const HOT_ADD_ONLY = 1 << 0;
        /// The proximity domain field is valid.
        const PROXIMITY_VALID = 1 << 1;
        /// The location cookie field is valid (ACPI 6.4).
        const LOCATION_COOKIE_VALID = 1 << 2;
        const _ = !0;
    }
}

/// A decoded SPA Range structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaRange {
    /// SPA range structure index (referenced by other structures; 0 = none).
    pub index: u16,
    /// Flags.
    pub flags: SpaFlags,
    /// Proximity domain, when the flags say it is valid.
    pub proximity_domain: Option<u32>,
    /// What the range is.
    pub range_type: SpaType,
    /// First byte address.
    pub base: u64,
    /// Length in bytes.
    pub length: u64,
    /// EFI memory attributes (e.g. `0x8008` = write-back | non-volatile).
    pub mapping_attributes: u64,
    /// Location cookie, when present and valid.
    pub location_cookie: Option<u64>,
}

impl SpaRange {
    /// The range as a map entry of `kind`.
    pub const fn to_entry(&self, kind: Kind) -> Result<Entry, RangeError> {
        Entry::from_base_size(self.base, self.length, kind)
    }
}

/// Decodes an SPA Range structure's bytes (header included); `None` if
/// it is shorter than its fields.
pub(super) fn decode_spa(bytes: &[u8]) -> Option<SpaRange> {
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let flags = SpaFlags::from_bits_retain(u16_at(6)?);
    let guid = Guid(bytes.get(16..32)?.try_into().ok()?);
    Some(SpaRange {
        index: u16_at(4)?,
        flags,
        proximity_domain: u32_at(12).filter(|_| flags.contains(SpaFlags::PROXIMITY_VALID)),
        range_type: SpaType::from_guid(guid),
        base: u64_at(32)?,
        length: u64_at(40)?,
        mapping_attributes: u64_at(48)?,
        location_cookie: u64_at(56).filter(|_| flags.contains(SpaFlags::LOCATION_COOKIE_VALID)),
    })
}
