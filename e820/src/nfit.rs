//! The ACPI NVDIMM Firmware Interface Table (NFIT, ACPI 6.0 §5.2.25).
//!
//! Modern NVDIMMs need not appear in E820 at all (QEMU's `-device nvdimm`
//! does not): their system-physical-address (SPA) ranges are described only
//! here. [`Nfit::parse`] checks the header (signature, length, checksum) and
//! the bounds of every sub-structure before anything is returned;
//! [`Nfit::spa_ranges`] then decodes the SPA Range structures, and
//! [`Nfit::add_pmem_to`] adds the persistent-memory ones to a map as
//! [`Kind::Pmem`].
//!
//! Layout (little-endian):
//!
//! | offset | field |
//! |---|---|
//! | 0 | standard ACPI header: signature `NFIT`, length `u32` at 4, checksum at 9 |
//! | 36 | reserved `u32` |
//! | 40 | sub-structures: `type: u16`, `length: u16`, body |
//!
//! SPA Range structure (type 0, 56 bytes; 64 with the ACPI 6.4 location cookie):
//!
//! | offset | field |
//! |---|---|
//! | 4 | range index `u16` |
//! | 6 | flags `u16` |
//! | 12 | proximity domain `u32` |
//! | 16 | address range type GUID |
//! | 32 | base `u64` |
//! | 40 | length `u64` |
//! | 48 | memory mapping attributes `u64` (EFI memory attributes) |
//! | 56 | location cookie `u64` (if flag bit 2) |

use core::fmt;

use bitflags::bitflags;

use crate::entry::Entry;
use crate::error::{MapError, RangeError};
use crate::kind::Kind;
use crate::map::MemoryMap;

/// Bytes before the first sub-structure: the ACPI header and 4 reserved bytes.
pub const STRUCTURES_OFFSET: usize = 40;
/// Sub-structure type of an SPA Range structure.
pub const SPA_RANGE_TYPE: u16 = 0;
/// Minimum length of an SPA Range structure (ACPI 6.0).
pub const SPA_RANGE_MIN_LEN: usize = 56;

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
    const KNOWN: [(Guid, Self); 8] = [
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

/// Why an NFIT cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NfitError {
    /// Fewer bytes than the header needs, or than the header's length claims.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The signature is not `NFIT`.
    Signature([u8; 4]),
    /// The length field is below the header size.
    BadLength(u32),
    /// The bytes of the table do not sum to zero.
    Checksum {
        /// Their sum modulo 256.
        sum: u8,
    },
    /// A sub-structure is shorter than its header, overruns the table, or is
    /// too short for its type.
    BadStructure {
        /// Offset of the sub-structure from the start of the table.
        offset: usize,
        /// Its type.
        structure_type: u16,
        /// Its length field.
        length: u16,
    },
}

impl fmt::Display for NfitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(
                    f,
                    "NFIT truncated: {needed} bytes needed, {available} available"
                )
            }
            Self::Signature(sig) => write!(f, "not an NFIT: signature {:?}", sig.escape_ascii()),
            Self::BadLength(len) => write!(f, "NFIT length {len} is shorter than its header"),
            Self::Checksum { sum } => {
                write!(f, "NFIT checksum wrong: bytes sum to {sum:#04x}, not 0")
            }
            Self::BadStructure {
                offset,
                structure_type,
                length,
            } => write!(
                f,
                "NFIT sub-structure at offset {offset} (type {structure_type}, length {length}) is malformed"
            ),
        }
    }
}

impl core::error::Error for NfitError {}

/// A validated NFIT.
#[derive(Clone, Copy, Debug)]
pub struct Nfit<'a> {
    table: &'a [u8],
}

/// One sub-structure: its type and all its bytes (header included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Structure<'a> {
    /// Sub-structure type (0 SPA range, 1 memory device to SPA, 2 interleave,
    /// 3 SMBIOS, 4 control region, 5 block data window, 6 flush hint,
    /// 7 platform capabilities).
    pub structure_type: u16,
    /// The whole sub-structure.
    pub bytes: &'a [u8],
}

impl<'a> Nfit<'a> {
    /// Validates an NFIT: signature, length, checksum, and the bounds of every
    /// sub-structure. Bytes after the header's length are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, NfitError> {
        let header = bytes.get(..STRUCTURES_OFFSET).ok_or(NfitError::Truncated {
            needed: STRUCTURES_OFFSET,
            available: bytes.len(),
        })?;
        let signature = [header[0], header[1], header[2], header[3]];
        if &signature != b"NFIT" {
            return Err(NfitError::Signature(signature));
        }
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let len = length as usize;
        if len < STRUCTURES_OFFSET {
            return Err(NfitError::BadLength(length));
        }
        let table = bytes.get(..len).ok_or(NfitError::Truncated {
            needed: len,
            available: bytes.len(),
        })?;
        let sum = table.iter().fold(0u8, |acc, &b| acc.wrapping_add(b));
        if sum != 0 {
            return Err(NfitError::Checksum { sum });
        }
        let nfit = Self { table };
        let mut offset = STRUCTURES_OFFSET;
        while offset < table.len() {
            let (structure, next) = nfit.structure_at(offset)?;
            if structure.structure_type == SPA_RANGE_TYPE
                && structure.bytes.len() < SPA_RANGE_MIN_LEN
            {
                return Err(nfit.bad_structure(offset));
            }
            offset = next;
        }
        Ok(nfit)
    }

    /// The table's bytes (its header's length).
    #[must_use]
    pub const fn bytes(&self) -> &'a [u8] {
        self.table
    }

    /// The ACPI revision field.
    #[must_use]
    pub fn revision(&self) -> u8 {
        self.table[8]
    }

    fn bad_structure(&self, offset: usize) -> NfitError {
        let field = |at: usize| {
            self.table
                .get(offset + at..offset + at + 2)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
        };
        NfitError::BadStructure {
            offset,
            structure_type: field(0),
            length: field(2),
        }
    }

    fn structure_at(&self, offset: usize) -> Result<(Structure<'a>, usize), NfitError> {
        let head = self
            .table
            .get(offset..offset + 4)
            .ok_or_else(|| self.bad_structure(offset))?;
        let structure_type = u16::from_le_bytes([head[0], head[1]]);
        let length = usize::from(u16::from_le_bytes([head[2], head[3]]));
        if length < 4 {
            return Err(self.bad_structure(offset));
        }
        let bytes = self
            .table
            .get(offset..offset + length)
            .ok_or_else(|| self.bad_structure(offset))?;
        Ok((
            Structure {
                structure_type,
                bytes,
            },
            offset + length,
        ))
    }

    /// All sub-structures, in table order.
    pub fn structures(&self) -> impl Iterator<Item = Structure<'a>> + '_ {
        let mut offset = STRUCTURES_OFFSET;
        core::iter::from_fn(move || {
            let (structure, next) = self.structure_at(offset).ok()?;
            offset = next;
            Some(structure)
        })
    }

    /// The SPA Range structures, decoded.
    pub fn spa_ranges(&self) -> impl Iterator<Item = SpaRange> + '_ {
        self.structures()
            .filter(|s| s.structure_type == SPA_RANGE_TYPE)
            .filter_map(|s| decode_spa(s.bytes))
    }

    /// The SPA ranges of byte-addressable persistent memory.
    pub fn pmem_ranges(&self) -> impl Iterator<Item = SpaRange> + '_ {
        self.spa_ranges()
            .filter(|r| r.range_type.is_persistent_memory())
    }

    /// Adds every persistent-memory range to `map` as [`Kind::Pmem`] (where
    /// it overlaps other entries the larger type code wins, as always) and
    /// returns how many ranges were added. On error the map is unchanged.
    pub fn add_pmem_to<const N: usize>(&self, map: &mut MemoryMap<N>) -> Result<usize, MapError> {
        let mut updated = map.clone();
        let mut count = 0;
        for (index, range) in self.pmem_ranges().enumerate() {
            let entry = range
                .to_entry(Kind::Pmem)
                .map_err(|error| MapError::Range { index, error })?;
            updated.add(entry)?;
            count += 1;
        }
        *map = updated;
        Ok(count)
    }
}

fn decode_spa(bytes: &[u8]) -> Option<SpaRange> {
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

/// Builds NFIT tables, for tests, fuzzing seeds and hypervisors that show a
/// guest an NVDIMM. Holds at most `N` SPA ranges.
#[derive(Clone, Debug)]
pub struct NfitBuilder<const N: usize> {
    ranges: [Option<SpaRange>; N],
}

impl<const N: usize> Default for NfitBuilder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> NfitBuilder<N> {
    /// No ranges yet.
    #[must_use]
    pub const fn new() -> Self {
        Self { ranges: [None; N] }
    }

    /// Adds an SPA range; `false` when the builder is full.
    pub fn spa_range(&mut self, range: SpaRange) -> bool {
        match self.ranges.iter_mut().find(|r| r.is_none()) {
            Some(slot) => {
                *slot = Some(range);
                true
            }
            None => false,
        }
    }

    /// Bytes the table will take.
    #[must_use]
    pub fn len(&self) -> usize {
        STRUCTURES_OFFSET + self.ranges.iter().flatten().map(spa_len).sum::<usize>()
    }

    /// Whether no range was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ranges.iter().all(Option::is_none)
    }

    /// Writes the table (header with OEM fields `NVIRT`, checksum set) and
    /// returns its length, or `None` if `out` is too small.
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.len();
        let table = out.get_mut(..len)?;
        table.fill(0);
        table[..4].copy_from_slice(b"NFIT");
        table[4..8].copy_from_slice(&u32::try_from(len).ok()?.to_le_bytes());
        table[8] = 1;
        table[10..16].copy_from_slice(b"NVIRT ");
        table[16..24].copy_from_slice(b"NVIRTNFT");
        table[24..28].copy_from_slice(&1u32.to_le_bytes());
        table[28..32].copy_from_slice(b"NVRT");
        table[32..36].copy_from_slice(&1u32.to_le_bytes());
        let mut offset = STRUCTURES_OFFSET;
        for range in self.ranges.iter().flatten() {
            let n = spa_len(range);
            let s = &mut table[offset..offset + n];
            s[0..2].copy_from_slice(&SPA_RANGE_TYPE.to_le_bytes());
            s[2..4].copy_from_slice(&u16::try_from(n).ok()?.to_le_bytes());
            s[4..6].copy_from_slice(&range.index.to_le_bytes());
            s[6..8].copy_from_slice(&range.flags.bits().to_le_bytes());
            s[12..16].copy_from_slice(&range.proximity_domain.unwrap_or(0).to_le_bytes());
            s[16..32].copy_from_slice(&range.range_type.guid().0);
            s[32..40].copy_from_slice(&range.base.to_le_bytes());
            s[40..48].copy_from_slice(&range.length.to_le_bytes());
            s[48..56].copy_from_slice(&range.mapping_attributes.to_le_bytes());
            if let Some(cookie) = range.location_cookie {
                s[56..64].copy_from_slice(&cookie.to_le_bytes());
            }
            offset += n;
        }
        let sum = table.iter().fold(0u8, |acc, &b| acc.wrapping_add(b));
        table[9] = 0u8.wrapping_sub(sum);
        Some(len)
    }
}

fn spa_len(range: &SpaRange) -> usize {
    if range.location_cookie.is_some() {
        SPA_RANGE_MIN_LEN + 8
    } else {
        SPA_RANGE_MIN_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pmem(index: u16, base: u64, length: u64) -> SpaRange {
        SpaRange {
            index,
            flags: SpaFlags::PROXIMITY_VALID,
            proximity_domain: Some(0),
            range_type: SpaType::Persistent,
            base,
            length,
            mapping_attributes: 0x8008,
            location_cookie: None,
        }
    }

    fn build(ranges: &[SpaRange]) -> Vec<u8> {
        let mut b = NfitBuilder::<4>::new();
        for r in ranges {
            assert!(b.spa_range(*r));
        }
        let mut out = vec![0; b.len()];
        assert_eq!(b.write(&mut out), Some(out.len()));
        out
    }

    #[test]
    fn guid_text_matches_the_specification() {
        assert_eq!(
            SpaType::Persistent.guid().to_string(),
            "66F0D379-B4F3-4074-AC43-0D3318B78CDB"
        );
        assert_eq!(
            SpaType::Persistent.guid().0[..4],
            [0x79, 0xd3, 0xf0, 0x66],
            "first field little-endian"
        );
        for (guid, kind) in SpaType::KNOWN {
            assert_eq!(SpaType::from_guid(guid), kind);
            assert_eq!(kind.guid(), guid);
        }
    }

    #[test]
    fn round_trips_and_adds_pmem_to_a_map() {
        let mut volatile = pmem(2, 0x2_0000_0000, 1 << 30);
        volatile.range_type = SpaType::Volatile;
        let mut cookie = pmem(3, 0x3_0000_0000, 1 << 30);
        cookie.flags |= SpaFlags::LOCATION_COOKIE_VALID;
        cookie.location_cookie = Some(0x1_0030_0001);
        let table = build(&[pmem(1, 0x1_0000_0000, 64 << 20), volatile, cookie]);
        let nfit = Nfit::parse(&table).unwrap();
        let ranges: Vec<_> = nfit.spa_ranges().collect();
        assert_eq!(ranges, [pmem(1, 0x1_0000_0000, 64 << 20), volatile, cookie]);
        assert_eq!(nfit.pmem_ranges().count(), 2);

        let mut map =
            MemoryMap::<8>::from_entries([Entry::new(0, 0x8000_0000, Kind::Ram).unwrap()]).unwrap();
        assert_eq!(nfit.add_pmem_to(&mut map).unwrap(), 2);
        assert_eq!(map.kind_at(0x1_0000_0000), Some(Kind::Pmem));
        assert_eq!(map.total_nonvolatile(), (64 << 20) + (1 << 30));
    }

    #[test]
    fn rejects_damaged_tables() {
        let good = build(&[pmem(1, 0x1_0000_0000, 64 << 20)]);
        assert!(Nfit::parse(&good).is_ok());

        let mut bad = good.clone();
        bad[50] ^= 1;
        assert!(matches!(Nfit::parse(&bad), Err(NfitError::Checksum { .. })));

        assert!(matches!(
            Nfit::parse(&good[..good.len() - 1]),
            Err(NfitError::Truncated { .. })
        ));
        assert!(matches!(
            Nfit::parse(&good[..10]),
            Err(NfitError::Truncated { .. })
        ));

        let mut sig = good.clone();
        sig[0] = b'X';
        assert!(matches!(Nfit::parse(&sig), Err(NfitError::Signature(_))));

        // A sub-structure length of 0 would loop forever if trusted.
        let mut zero = good.clone();
        zero[42] = 0;
        zero[43] = 0;
        zero[9] = zero[9].wrapping_add(56);
        assert!(matches!(
            Nfit::parse(&zero),
            Err(NfitError::BadStructure {
                offset: 40,
                length: 0,
                ..
            })
        ));

        // An SPA structure too short for its fields.
        let mut short = good[..STRUCTURES_OFFSET + 8].to_vec();
        short[4..8].copy_from_slice(&48u32.to_le_bytes());
        short[42..44].copy_from_slice(&8u16.to_le_bytes());
        let sum = short.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        short[9] = short[9].wrapping_sub(sum);
        assert!(matches!(
            Nfit::parse(&short),
            Err(NfitError::BadStructure { .. })
        ));

        // Trailing bytes beyond the header's length are ignored.
        let mut longer = good.clone();
        longer.extend_from_slice(&[0xff; 7]);
        assert_eq!(Nfit::parse(&longer).unwrap().pmem_ranges().count(), 1);
    }
}
