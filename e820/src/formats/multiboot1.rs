//! The Multiboot 1 memory map: the buffer at `mmap_addr`, `mmap_length`
//! bytes long, of entries `size: u32`, `base_addr: u64`, `length: u64`,
//! `type: u32`, where `size` counts the bytes after itself (20 or more) and
//! the next entry starts `size + 4` bytes later.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::entry::Entry;
use crate::error::{FormatError, WriteError};
use crate::firmware::FirmwareEntry;
use crate::kind::Kind;

/// One Multiboot 1 memory-map entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct MmapEntry {
    /// Bytes of the entry after this field.
    pub size: U32,
    /// Base address.
    pub base_addr: U64,
    /// Length in bytes.
    pub length: U64,
    /// E820 type code (1 = available).
    pub kind: U32,
}

/// Bytes of an entry after its `size` field.
const BODY_LEN: usize = size_of::<MmapEntry>() - 4;

/// Reads a whole `mmap_addr` buffer. Every entry is validated before the
/// first is returned.
pub fn read(buffer: &[u8]) -> Result<impl Iterator<Item = FirmwareEntry> + '_, FormatError> {
    let mut offset = 0;
    while offset < buffer.len() {
        offset = next_offset(buffer, offset)?;
    }
    let mut offset = 0;
    Ok(core::iter::from_fn(move || {
        let (entry, _) = MmapEntry::read_from_prefix(buffer.get(offset..)?).ok()?;
        offset = next_offset(buffer, offset).ok()?;
        Some(FirmwareEntry {
            base: entry.base_addr.get(),
            size: entry.length.get(),
            kind: Kind::from_raw(entry.kind.get()),
        })
    }))
}

fn next_offset(buffer: &[u8], offset: usize) -> Result<usize, FormatError> {
    let rest = buffer.get(offset..).unwrap_or_default();
    let truncated = FormatError::Truncated {
        needed: offset + size_of::<MmapEntry>(),
        available: buffer.len(),
    };
    let (size, _) = U32::read_from_prefix(rest).map_err(|_| truncated)?;
    let size = size.get() as usize;
    if size < BODY_LEN {
        return Err(FormatError::EntrySize { size });
    }
    let next = offset
        .checked_add(4)
        .and_then(|o| o.checked_add(size))
        .ok_or(truncated)?;
    if next > buffer.len() {
        return Err(FormatError::Truncated {
            needed: next,
            available: buffer.len(),
        });
    }
    Ok(next)
}

/// Writes the entries (24 bytes each, `size` = 20) and returns the bytes
/// written, the value for `mmap_length`.
pub fn write(entries: &[Entry], out: &mut [u8]) -> Result<usize, WriteError> {
    let needed = entries.len().saturating_mul(size_of::<MmapEntry>());
    let available = out.len();
    let body = out
        .get_mut(..needed)
        .ok_or(WriteError::BufferTooSmall { needed, available })?;
    for (chunk, entry) in body.chunks_exact_mut(size_of::<MmapEntry>()).zip(entries) {
        let record = MmapEntry {
            size: U32::new(BODY_LEN as u32),
            base_addr: U64::new(entry.start()),
            length: U64::new(entry.size()),
            kind: U32::new(entry.kind().raw()),
        };
        record
            .write_to(chunk)
            .map_err(|_| WriteError::BufferTooSmall { needed, available })?;
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_follows_the_size_field() {
        let entries = [
            Entry::new(0, 0x9fc00, Kind::Ram).unwrap(),
            Entry::new(0x10_0000, 0x800_0000, Kind::Ram).unwrap(),
        ];
        let mut buf = [0u8; 48];
        assert_eq!(write(&entries, &mut buf).unwrap(), 48);
        let back: Vec<Entry> = read(&buf).unwrap().map(|f| f.to_entry().unwrap()).collect();
        assert_eq!(back, entries);

        // An entry with a larger size field is skipped over correctly.
        let mut long = vec![0u8; 28];
        long[..4].copy_from_slice(&24u32.to_le_bytes());
        long[12..20].copy_from_slice(&0x1000u64.to_le_bytes());
        long[20..24].copy_from_slice(&7u32.to_le_bytes());
        long.extend_from_slice(&buf[..24]);
        let back: Vec<_> = read(&long).unwrap().collect();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].kind, Kind::Pmem);

        assert!(read(&buf[..30]).is_err());
        long[0] = 3;
        assert_eq!(read(&long).err(), Some(FormatError::EntrySize { size: 3 }));
    }
}
