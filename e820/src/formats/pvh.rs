//! The PVH boot protocol's memory map: an array of
//! `struct hvm_memmap_table_entry` (Xen `public/arch-x86/hvm/start_info.h`)
//! at `hvm_start_info.memmap_paddr`, `memmap_entries` long. Its type codes
//! are the E820 codes.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{Record, read_records, write_records};
use crate::entry::Entry;
use crate::error::{FormatError, WriteError};
use crate::firmware::FirmwareEntry;
use crate::kind::Kind;

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct MemmapEntry {
    /// Base address.
    pub addr: U64,
    /// Size in bytes.
    pub size: U64,
    /// E820 type code.
    pub kind: U32,
    /// Must be zero.
    pub reserved: U32,
}

impl Record for MemmapEntry {
    fn to_firmware(&self) -> Option<FirmwareEntry> {
        Some(FirmwareEntry {
            base: self.addr.get(),
            size: self.size.get(),
            kind: Kind::from_raw(self.kind.get()),
        })
    }

    fn from_entry(entry: &Entry) -> Self {
        Self {
            addr: U64::new(entry.start()),
            size: U64::new(entry.size()),
            kind: U32::new(entry.kind().raw()),
            reserved: U32::ZERO,
        }
    }
}

/// Reads `count` entries from `bytes`.
pub fn read(
    bytes: &[u8],
    count: usize,
) -> Result<impl Iterator<Item = FirmwareEntry> + '_, FormatError> {
    read_records::<MemmapEntry>(bytes, count, size_of::<MemmapEntry>())
}

/// Writes the table and returns the bytes written (24 per entry).
pub fn write(entries: &[Entry], out: &mut [u8]) -> Result<usize, WriteError> {
    write_records::<MemmapEntry>(entries, out, size_of::<MemmapEntry>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use static_assertions::const_assert_eq;

    const_assert_eq!(size_of::<MemmapEntry>(), 24);
    const_assert_eq!(core::mem::offset_of!(MemmapEntry, kind), 16);

    #[test]
    fn round_trips() {
        let entries = [Entry::new(0x1_0000_0000, 0x1_4000_0000, Kind::Pmem).unwrap()];
        let mut buf = [0u8; 24];
        assert_eq!(write(&entries, &mut buf).unwrap(), 24);
        let back: Vec<_> = read(&buf, 1).unwrap().collect();
        assert_eq!(back[0].to_entry().unwrap(), entries[0]);
        assert!(read(&buf, 2).is_err());
        assert!(read(&buf, usize::MAX).is_err());
    }
}
