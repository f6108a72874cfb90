//! Where everything lives in the region, in address order:
//!
//! | offset | size | what |
//! |---|---|---|
//! | `0x0000` | 128 | superblock 0: static line (magic, version, geometry, CRC), then the switch word |
//! | `0x1000` | 128 | superblock 1: an identical copy, a page away (NVDIMM media errors are reported per 256 B–4 KiB block) |
//! | `0x2000` | slot | checkpoint slot 0: 64-byte header, then the snapshot |
//! | `0x2000 + slot` | slot | checkpoint slot 1 |
//! | `0x2000 + 2 × slot` | rest | the record area, up to the region's end (a multiple of 64 bytes) |
//!
//! Slots and the record area start on 4 KiB boundaries.
//!
//! The static line never changes after format. The switch word (its own
//! cache line) is the only thing a checkpoint changes in a superblock: one
//! failure-atomic 8-byte store that names the active checkpoint by its
//! generation (even generations live in slot 0, odd ones in slot 1).

use core::fmt;
use core::mem::{offset_of, size_of};
use core::ops::Range;

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::checksum::crc32c;
use crate::pmem::CACHE_LINE;
use crate::superblock::{BODY_LEN, Body, DualSuperblock, Fault};

/// First bytes of a superblock.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"NVIRTLOG";
/// The on-media format this crate writes and reads. Version 3 stores one
/// header and one CRC per commit group, its records packed behind it (see
/// the `record` module); version 2 had a header and a CRC per record, and
/// version 1 lacked the records' index in their group. Both are refused
/// ([`ImageError::UnsupportedVersion`](crate::ImageError)) with a message
/// naming what wrote them.
pub const FORMAT_VERSION: u32 = 3;
/// The format with a header and a CRC per record.
pub const FORMAT_VERSION_2: u32 = 2;
/// The format before records carried their group index.
pub const FORMAT_VERSION_1: u32 = 1;
/// Offsets of the two superblocks.
pub const SUPERBLOCK_OFFSETS: [u64; 2] = [0, 0x1000];
/// Offset of the switch word inside a superblock.
pub const SWITCH_WORD: u64 = CACHE_LINE;
/// Offset of checkpoint slot 0.
pub const CHECKPOINT_OFFSET: u64 = 0x2000;
/// Bytes of a checkpoint slot's header.
pub const CHECKPOINT_HEADER: u64 = CACHE_LINE;
/// Alignment of slots and of the record area.
pub const PAGE: u64 = 4096;
/// The smallest record area: room for a few records.
pub const MIN_RECORD_AREA: u64 = 512;
/// Bits of the switch word that hold the generation; the rest check it.
pub const GENERATION_BITS: u32 = 40;
/// The largest checkpoint generation a switch word holds.
pub const MAX_GENERATION: u64 = (1 << GENERATION_BITS) - 1;

/// The geometry of a log region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    region_len: u64,
    slot_len: u64,
    record_offset: u64,
    record_len: u64,
}

/// A geometry that cannot be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The region cannot hold the superblocks, two slots and the smallest
    /// record area.
    RegionTooSmall {
        /// Bytes available.
        size: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// A stored field has a value no format would write.
    Field {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The layout claims more bytes than the region has.
    BeyondRegion {
        /// Bytes the layout covers.
        region_len: u64,
        /// Bytes the region has.
        size: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::RegionTooSmall { size, needed } => write!(
                f,
                "region of {size:#x} bytes is too small: this layout needs {needed:#x}"
            ),
            Self::Field { field, value } => write!(f, "impossible {field} {value:#x}"),
            Self::BeyondRegion { region_len, size } => write!(
                f,
                "layout covers {region_len:#x} bytes but the region has {size:#x}"
            ),
        }
    }
}

impl core::error::Error for LayoutError {}

fn round_up(value: u64, to: u64) -> Option<u64> {
    Some(value.checked_add(to - 1)? / to * to)
}

impl Layout {
    /// The layout of a `region_len`-byte region whose checkpoint slots hold
    /// snapshots of up to `checkpoint_capacity` bytes.
    pub fn new(region_len: u64, checkpoint_capacity: u64) -> Result<Self, LayoutError> {
        let too_small = |needed| LayoutError::RegionTooSmall {
            size: region_len,
            needed,
        };
        let slot_len = checkpoint_capacity
            .checked_add(CHECKPOINT_HEADER)
            .and_then(|n| round_up(n, PAGE))
            .ok_or(too_small(u64::MAX))?;
        let record_offset = slot_len
            .checked_mul(2)
            .and_then(|n| n.checked_add(CHECKPOINT_OFFSET))
            .ok_or(too_small(u64::MAX))?;
        let needed = record_offset
            .checked_add(MIN_RECORD_AREA)
            .ok_or(too_small(u64::MAX))?;
        if region_len < needed {
            return Err(too_small(needed));
        }
        let record_len = (region_len - record_offset) / CACHE_LINE * CACHE_LINE;
        Ok(Self {
            region_len,
            slot_len,
            record_offset,
            record_len,
        })
    }

    /// Bytes of the region the log uses (the superblock's region length).
    pub fn region_len(&self) -> u64 {
        self.region_len
    }

    /// Bytes of one checkpoint slot, header included.
    pub fn slot_len(&self) -> u64 {
        self.slot_len
    }

    /// The largest snapshot a checkpoint can hold.
    pub fn checkpoint_capacity(&self) -> u64 {
        self.slot_len - CHECKPOINT_HEADER
    }

    /// Offset of the slot that holds checkpoint `generation`.
    pub fn slot_offset(&self, generation: u64) -> u64 {
        // Both slots lie below `record_offset`, checked at construction.
        CHECKPOINT_OFFSET + (generation & 1) * self.slot_len
    }

    /// The record area.
    pub fn record_area(&self) -> Range<u64> {
        self.record_offset..self.record_offset + self.record_len
    }

    /// Bytes of the record area.
    pub fn record_len(&self) -> u64 {
        self.record_len
    }

    /// Checks a layout read from media against itself and the region.
    fn validate(self, size: u64) -> Result<Self, LayoutError> {
        let field = |field, value| LayoutError::Field { field, value };
        if self.slot_len < PAGE || self.slot_len % PAGE != 0 {
            return Err(field("checkpoint slot length", self.slot_len));
        }
        let slots_end = self
            .slot_len
            .checked_mul(2)
            .and_then(|n| n.checked_add(CHECKPOINT_OFFSET))
            .ok_or(field("checkpoint slot length", self.slot_len))?;
        if self.record_offset != slots_end {
            return Err(field("record area offset", self.record_offset));
        }
        if self.record_len < MIN_RECORD_AREA || self.record_len % CACHE_LINE != 0 {
            return Err(field("record area length", self.record_len));
        }
        let end = self
            .record_offset
            .checked_add(self.record_len)
            .ok_or(field("record area length", self.record_len))?;
        if end > self.region_len {
            return Err(field("record area length", self.record_len));
        }
        if self.region_len > size {
            return Err(LayoutError::BeyondRegion {
                region_len: self.region_len,
                size,
            });
        }
        Ok(self)
    }
}

/// The body of the log's superblock static line (bytes 16..56 of it; see
/// [`crate::superblock`] for the rest of the line).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RawLayout {
    /// Bytes of the region the log uses.
    pub region_len: U64,
    /// Offset of checkpoint slot 0: always [`CHECKPOINT_OFFSET`].
    pub checkpoint_offset: U64,
    /// Bytes of one checkpoint slot.
    pub slot_len: U64,
    /// Offset of the record area.
    pub record_offset: U64,
    /// Bytes of the record area.
    pub record_len: U64,
}

const _: () = assert!(size_of::<RawLayout>() == BODY_LEN);
const _: () = assert!(offset_of!(RawLayout, region_len) == 0);
const _: () = assert!(offset_of!(RawLayout, checkpoint_offset) == 8);
const _: () = assert!(offset_of!(RawLayout, slot_len) == 16);
const _: () = assert!(offset_of!(RawLayout, record_offset) == 24);
const _: () = assert!(offset_of!(RawLayout, record_len) == 32);

impl Body for Layout {
    const MAGIC: [u8; 8] = SUPERBLOCK_MAGIC;
    const VERSION: u32 = FORMAT_VERSION;
    type Raw = RawLayout;
    type Error = LayoutError;

    fn to_raw(&self) -> RawLayout {
        RawLayout {
            region_len: self.region_len.into(),
            checkpoint_offset: CHECKPOINT_OFFSET.into(),
            slot_len: self.slot_len.into(),
            record_offset: self.record_offset.into(),
            record_len: self.record_len.into(),
        }
    }

    fn from_raw(raw: &RawLayout, region_size: u64) -> Result<Self, LayoutError> {
        if raw.checkpoint_offset.get() != CHECKPOINT_OFFSET {
            return Err(LayoutError::Field {
                field: "checkpoint offset",
                value: raw.checkpoint_offset.get(),
            });
        }
        Self {
            region_len: raw.region_len.get(),
            slot_len: raw.slot_len.get(),
            record_offset: raw.record_offset.get(),
            record_len: raw.record_len.get(),
        }
        .validate(region_size)
    }
}

/// The log's two superblock static lines.
pub(crate) const SUPERBLOCKS: DualSuperblock = DualSuperblock::new(SUPERBLOCK_OFFSETS);

/// Why one superblock copy was rejected: the shared superblock code's
/// [`Fault`], with the log's [`LayoutError`] for a geometry that cannot be.
pub type SuperblockError = Fault<LayoutError>;

/// The check bits of a switch word holding `generation`. The constant makes
/// an all-zero word invalid.
fn switch_check(generation: u64) -> u64 {
    let crc = crc32c(&(generation ^ 0x5357_4954_4348_0000).to_le_bytes());
    u64::from(crc) & ((1 << (64 - GENERATION_BITS)) - 1)
}

/// The switch word naming checkpoint `generation` (at most
/// [`MAX_GENERATION`]).
pub(crate) fn encode_switch(generation: u64) -> u64 {
    let generation = generation & MAX_GENERATION;
    generation | switch_check(generation) << GENERATION_BITS
}

/// The generation a switch word names, if its check bits hold.
pub fn decode_switch(word: u64) -> Option<u64> {
    let generation = word & MAX_GENERATION;
    (word >> GENERATION_BITS == switch_check(generation)).then_some(generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_small_region() {
        let layout = Layout::new(0x5000, 100).unwrap();
        assert_eq!(layout.slot_len(), 0x1000);
        assert_eq!(layout.slot_offset(0), 0x2000);
        assert_eq!(layout.slot_offset(7), 0x3000);
        assert_eq!(layout.record_area(), 0x4000..0x5000);
        assert_eq!(layout.checkpoint_capacity(), 0x1000 - 64);
        assert!(matches!(
            Layout::new(0x4100, 100),
            Err(LayoutError::RegionTooSmall { needed: 0x4200, .. })
        ));
        assert!(Layout::new(u64::MAX, u64::MAX - 10).is_err());
    }

    #[test]
    fn superblock_round_trip_and_rejections() {
        let decode = |line: &[u8; 64], size| crate::superblock::decode::<Layout>(line, size);
        let layout = Layout::new(0x10000, 5000).unwrap();
        let line: [u8; 64] = zerocopy::transmute!(crate::superblock::encode(&layout));
        assert_eq!(decode(&line, 0x10000), Ok(layout));
        assert!(matches!(
            decode(&line, 0xffff),
            Err(SuperblockError::Body(LayoutError::BeyondRegion { .. }))
        ));
        let mut bad = line;
        bad[20] ^= 1;
        assert!(matches!(
            decode(&bad, 0x10000),
            Err(SuperblockError::Checksum { .. })
        ));
        let mut bad = line;
        bad[0] = b'X';
        assert!(matches!(
            decode(&bad, 0x10000),
            Err(SuperblockError::Magic { .. })
        ));
        let reseal = |mut b: [u8; 64]| {
            let crc = crc32c(&b[..56]);
            b[56..60].copy_from_slice(&crc.to_le_bytes());
            b
        };
        for other in [FORMAT_VERSION_1, FORMAT_VERSION_2, FORMAT_VERSION + 1] {
            let mut old = line;
            old[8..12].copy_from_slice(&other.to_le_bytes());
            assert_eq!(
                decode(&reseal(old), 0x10000),
                Err(SuperblockError::Version {
                    found: other,
                    expected: FORMAT_VERSION
                })
            );
        }
        let mut reserved = line;
        reserved[12] = 1;
        assert_eq!(
            decode(&reseal(reserved), 0x10000),
            Err(SuperblockError::Reserved { value: 1 })
        );
        // The bytes are those of format version 3, field by field.
        assert_eq!(&line[..8], b"NVIRTLOG");
        assert_eq!(line[8..16], [3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(line[16..24], 0x10000u64.to_le_bytes());
        assert_eq!(line[24..32], CHECKPOINT_OFFSET.to_le_bytes());
        assert_eq!(line[32..40], layout.slot_len().to_le_bytes());
        assert_eq!(line[40..48], layout.record_area().start.to_le_bytes());
        assert_eq!(line[48..56], layout.record_len().to_le_bytes());
        assert_eq!(line[56..60], crc32c(&line[..56]).to_le_bytes());
        assert_eq!(line[60..64], [0; 4]);
    }

    #[test]
    fn switch_words() {
        for generation in [0, 1, 2, 12345, MAX_GENERATION] {
            assert_eq!(decode_switch(encode_switch(generation)), Some(generation));
            assert_eq!(decode_switch(encode_switch(generation) ^ 1 << 50), None);
        }
        assert_eq!(decode_switch(0), None);
        assert_eq!(decode_switch(u64::MAX), None);
    }
}
