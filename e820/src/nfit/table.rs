//! The table itself: validation of the header and of every sub-structure's
//! bounds, then iteration over them.

use core::fmt;

use crate::error::MapError;
use crate::kind::Kind;
use crate::map::MemoryMap;

use super::spa::{SpaRange, decode_spa};
use super::{SPA_RANGE_MIN_LEN, SPA_RANGE_TYPE, STRUCTURES_OFFSET};

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
