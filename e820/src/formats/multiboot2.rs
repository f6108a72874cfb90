//! The Multiboot2 memory-map tag (type 6) and a walker over the boot
//! information's tags to find it.
//!
//! Tag layout: `type: u32 = 6`, `size: u32` (whole tag), `entry_size: u32`
//! (a multiple of 8, at least 24), `entry_version: u32` (0; later versions
//! promise to stay compatible), then entries of `entry_size` bytes whose first
//! 24 are `base_addr: u64`, `length: u64`, `type: u32`, `reserved: u32`.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{Record, read_records, write_records};
use crate::entry::Entry;
use crate::error::{FormatError, WriteError};
use crate::firmware::FirmwareEntry;
use crate::kind::Kind;

/// Tag type of the memory map.
pub const MEMORY_MAP_TAG: u32 = 6;
/// Tag type that ends the tag list.
pub const END_TAG: u32 = 0;
/// Bytes of the memory-map tag before its entries.
pub const HEADER_LEN: usize = size_of::<TagHeader>();

/// The memory-map tag's fixed part.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct TagHeader {
    /// 6.
    pub tag_type: U32,
    /// Size of the whole tag in bytes.
    pub size: U32,
    /// Bytes per entry.
    pub entry_size: U32,
    /// Entry format version (0).
    pub entry_version: U32,
}

/// One Multiboot2 memory-map entry (its first 24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct MmapEntry {
    /// Base address.
    pub base_addr: U64,
    /// Length in bytes.
    pub length: U64,
    /// Type: 1 available, 3 ACPI, 4 preserve on hibernation, 5 defective;
    /// boot loaders pass E820 codes through unchanged.
    pub kind: U32,
    /// Zero.
    pub reserved: U32,
}

impl Record for MmapEntry {
    fn to_firmware(&self) -> Option<FirmwareEntry> {
        Some(FirmwareEntry {
            base: self.base_addr.get(),
            size: self.length.get(),
            kind: Kind::from_raw(self.kind.get()),
        })
    }

    fn from_entry(entry: &Entry) -> Self {
        Self {
            base_addr: U64::new(entry.start()),
            length: U64::new(entry.size()),
            kind: U32::new(entry.kind().raw()),
            reserved: U32::ZERO,
        }
    }
}

/// Reads a memory-map tag that starts at `tag[0]`.
pub fn read(tag: &[u8]) -> Result<impl Iterator<Item = FirmwareEntry> + '_, FormatError> {
    let (header, _) = TagHeader::read_from_prefix(tag).map_err(|_| FormatError::Truncated {
        needed: HEADER_LEN,
        available: tag.len(),
    })?;
    if header.tag_type.get() != MEMORY_MAP_TAG {
        return Err(FormatError::BadHeader {
            field: "tag type",
            found: header.tag_type.get().into(),
        });
    }
    let size = header.size.get() as usize;
    let entry_size = header.entry_size.get() as usize;
    if entry_size < size_of::<MmapEntry>() || entry_size % 8 != 0 {
        return Err(FormatError::EntrySize { size: entry_size });
    }
    let body_len = size.checked_sub(HEADER_LEN).ok_or(FormatError::BadHeader {
        field: "tag size",
        found: size as u64,
    })?;
    if body_len % entry_size != 0 {
        return Err(FormatError::BadHeader {
            field: "tag size",
            found: size as u64,
        });
    }
    let body = tag.get(HEADER_LEN..).unwrap_or_default();
    read_records::<MmapEntry>(body, body_len / entry_size, entry_size)
}

/// Bytes a memory-map tag with `count` entries of 24 bytes takes.
#[must_use]
pub const fn tag_len(count: usize) -> usize {
    HEADER_LEN + count * size_of::<MmapEntry>()
}

/// Writes a memory-map tag (24-byte entries, version 0) and returns its size.
pub fn write(entries: &[Entry], out: &mut [u8]) -> Result<usize, WriteError> {
    let needed = tag_len(entries.len());
    let size = u32::try_from(needed).map_err(|_| WriteError::TooManyEntries {
        count: entries.len(),
        max: (u32::MAX as usize - HEADER_LEN) / size_of::<MmapEntry>(),
    })?;
    let available = out.len();
    let (head, body) = out
        .split_at_mut_checked(HEADER_LEN)
        .ok_or(WriteError::BufferTooSmall { needed, available })?;
    if body.len() < needed - HEADER_LEN {
        return Err(WriteError::BufferTooSmall { needed, available });
    }
    let header = TagHeader {
        tag_type: U32::new(MEMORY_MAP_TAG),
        size: U32::new(size),
        entry_size: U32::new(size_of::<MmapEntry>() as u32),
        entry_version: U32::ZERO,
    };
    header
        .write_to(head)
        .map_err(|_| WriteError::BufferTooSmall { needed, available })?;
    write_records::<MmapEntry>(entries, body, size_of::<MmapEntry>())?;
    Ok(needed)
}

/// Walks the tags of a Multiboot2 boot information structure (`mbi` starts
/// at its `total_size` field) and yields `(type, tag bytes)` for each tag
/// before the end tag. Stops at the first malformed tag.
pub fn tags(mbi: &[u8]) -> impl Iterator<Item = (u32, &[u8])> + '_ {
    let total = mbi
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b| u32::from_le_bytes(b) as usize)
        .min(mbi.len());
    let mut offset: usize = 8;
    core::iter::from_fn(move || {
        let head = mbi.get(offset..offset.checked_add(8)?.min(total))?;
        let (tag_type, size) = (
            u32::from_le_bytes(head.get(..4)?.try_into().ok()?),
            u32::from_le_bytes(head.get(4..8)?.try_into().ok()?) as usize,
        );
        if tag_type == END_TAG || size < 8 {
            return None;
        }
        let end = offset.checked_add(size).filter(|&e| e <= total)?;
        let tag = mbi.get(offset..end)?;
        // The next tag starts at the next multiple of 8.
        offset = end.checked_add(7)? & !7;
        Some((tag_type, tag))
    })
}

/// Finds and reads the memory-map tag of a Multiboot2 boot information
/// structure.
pub fn read_from_boot_info(
    mbi: &[u8],
) -> Result<impl Iterator<Item = FirmwareEntry> + '_, FormatError> {
    let (_, tag) = tags(mbi)
        .find(|&(t, _)| t == MEMORY_MAP_TAG)
        .ok_or(FormatError::BadHeader {
            field: "memory map tag (absent)",
            found: 0,
        })?;
    read(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use static_assertions::const_assert_eq;

    const_assert_eq!(HEADER_LEN, 16);
    const_assert_eq!(size_of::<MmapEntry>(), 24);

    fn sample() -> [Entry; 2] {
        [
            Entry::new(0, 0x9fc00, Kind::Ram).unwrap(),
            Entry::new(0x1_0000_0000, 0x1_4000_0000, Kind::Pram).unwrap(),
        ]
    }

    #[test]
    fn round_trips_and_walks_the_boot_information() {
        let mut tag = [0u8; 64];
        let n = write(&sample(), &mut tag).unwrap();
        assert_eq!(n, tag_len(2));
        let back: Vec<Entry> = read(&tag[..n])
            .unwrap()
            .map(|f| f.to_entry().unwrap())
            .collect();
        assert_eq!(back, sample());

        // A boot information with a command-line tag, the map, and the end tag.
        let mut mbi = vec![0u8; 8];
        mbi.extend_from_slice(&1u32.to_le_bytes());
        mbi.extend_from_slice(&13u32.to_le_bytes());
        mbi.extend_from_slice(b"nvirt\0\0\0");
        mbi.extend_from_slice(&tag[..n]);
        mbi.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
        let total = mbi.len() as u32;
        mbi[..4].copy_from_slice(&total.to_le_bytes());
        let kinds: Vec<u32> = tags(&mbi).map(|(t, _)| t).collect();
        assert_eq!(kinds, [1, 6]);
        assert_eq!(read_from_boot_info(&mbi).unwrap().count(), 2);
    }

    #[test]
    fn honours_a_larger_entry_size() {
        let mut tag = vec![0u8; 16];
        tag[..4].copy_from_slice(&6u32.to_le_bytes());
        tag[4..8].copy_from_slice(&(16u32 + 2 * 32).to_le_bytes());
        tag[8..12].copy_from_slice(&32u32.to_le_bytes());
        tag[12..16].copy_from_slice(&1u32.to_le_bytes());
        for entry in sample() {
            let mut rec = [0xffu8; 32];
            MmapEntry::from_entry(&entry)
                .write_to_prefix(&mut rec[..])
                .unwrap();
            tag.extend_from_slice(&rec);
        }
        let back: Vec<Entry> = read(&tag).unwrap().map(|f| f.to_entry().unwrap()).collect();
        assert_eq!(back, sample());
        tag[8] = 20;
        assert_eq!(read(&tag).err(), Some(FormatError::EntrySize { size: 20 }));
        tag[8] = 32;
        tag[4] = 17;
        assert!(read(&tag).is_err());
        tag[0] = 5;
        assert!(read(&tag).is_err());
    }
}
