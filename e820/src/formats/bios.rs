//! Raw BIOS INT 15h, AX=E820h entries: 20 bytes, or 24 bytes with the ACPI
//! 3.0 extended attributes.

use bitflags::bitflags;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{Record, read_records, write_records};
use crate::entry::Entry;
use crate::error::{FormatError, WriteError};
use crate::firmware::FirmwareEntry;
use crate::kind::Kind;

/// The 20-byte entry every E820 BIOS returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BiosEntry {
    /// First byte address.
    pub base: U64,
    /// Length in bytes.
    pub size: U64,
    /// Type code.
    pub kind: U32,
}

/// The 24-byte entry of ACPI 3.0: a [`BiosEntry`] followed by extended
/// attributes.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct AcpiBiosEntry {
    /// The common fields.
    pub entry: BiosEntry,
    /// [`ExtendedAttributes`] bits.
    pub attributes: U32,
}

bitflags! {
    /// ACPI 3.0 extended attributes of a 24-byte E820 entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ExtendedAttributes: u32 {
        /// ACPI 3.0: clear means the OS must ignore the entry. (ACPI 4.0
        /// made the bit reserved-must-be-one, so ignoring is still right.)
        const ENABLED = 1 << 0;
        /// ACPI 3.0: the range is non-volatile.
        const NON_VOLATILE = 1 << 1;
        /// ACPI 4.0: slow access.
        const SLOW_ACCESS = 1 << 2;
        /// ACPI 4.0: hardware error log.
        const ERROR_LOG = 1 << 3;
        // Unknown bits are kept, not dropped.
        const _ = !0;
    }
}

/// Which entry layout a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryLayout {
    /// 20-byte entries.
    Legacy,
    /// 24-byte ACPI 3.0 entries with extended attributes.
    Acpi3,
}

impl EntryLayout {
    /// Bytes per entry.
    #[must_use]
    pub const fn size(self) -> usize {
        match self {
            Self::Legacy => size_of::<BiosEntry>(),
            Self::Acpi3 => size_of::<AcpiBiosEntry>(),
        }
    }

    /// The layout for an entry size the BIOS returned in ECX.
    pub const fn from_size(size: usize) -> Result<Self, FormatError> {
        match size {
            20 => Ok(Self::Legacy),
            24 => Ok(Self::Acpi3),
            _ => Err(FormatError::EntrySize { size }),
        }
    }
}

impl Record for BiosEntry {
    fn to_firmware(&self) -> Option<FirmwareEntry> {
        Some(FirmwareEntry {
            base: self.base.get(),
            size: self.size.get(),
            kind: Kind::from_raw(self.kind.get()),
        })
    }

    fn from_entry(entry: &Entry) -> Self {
        Self {
            base: U64::new(entry.start()),
            size: U64::new(entry.size()),
            kind: U32::new(entry.kind().raw()),
        }
    }
}

impl Record for AcpiBiosEntry {
    fn to_firmware(&self) -> Option<FirmwareEntry> {
        let attributes = ExtendedAttributes::from_bits_retain(self.attributes.get());
        if attributes.contains(ExtendedAttributes::ENABLED) {
            self.entry.to_firmware()
        } else {
            None
        }
    }

    fn from_entry(entry: &Entry) -> Self {
        Self {
            entry: BiosEntry::from_entry(entry),
            attributes: U32::new(ExtendedAttributes::ENABLED.bits()),
        }
    }
}

/// Reads a buffer of whole entries of one layout. Entries of the 24-byte
/// layout whose [`ExtendedAttributes::ENABLED`] bit is clear are skipped.
pub fn read(
    bytes: &[u8],
    layout: EntryLayout,
) -> Result<impl Iterator<Item = FirmwareEntry> + '_, FormatError> {
    let size = layout.size();
    if bytes.len() % size != 0 {
        return Err(FormatError::Truncated {
            needed: bytes.len().div_ceil(size) * size,
            available: bytes.len(),
        });
    }
    let count = bytes.len() / size;
    let (legacy, acpi) = match layout {
        EntryLayout::Legacy => (Some(read_records::<BiosEntry>(bytes, count, size)?), None),
        EntryLayout::Acpi3 => (
            None,
            Some(read_records::<AcpiBiosEntry>(bytes, count, size)?),
        ),
    };
    Ok(legacy
        .into_iter()
        .flatten()
        .chain(acpi.into_iter().flatten()))
}

/// Writes `entries` in `layout` (24-byte entries get the enabled bit) and
/// returns the bytes written.
pub fn write(entries: &[Entry], layout: EntryLayout, out: &mut [u8]) -> Result<usize, WriteError> {
    match layout {
        EntryLayout::Legacy => write_records::<BiosEntry>(entries, out, layout.size()),
        EntryLayout::Acpi3 => write_records::<AcpiBiosEntry>(entries, out, layout.size()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use static_assertions::const_assert_eq;

    const_assert_eq!(size_of::<BiosEntry>(), 20);
    const_assert_eq!(size_of::<AcpiBiosEntry>(), 24);
    const_assert_eq!(core::mem::offset_of!(BiosEntry, kind), 16);
    const_assert_eq!(core::mem::offset_of!(AcpiBiosEntry, attributes), 20);

    #[test]
    fn reads_both_layouts_and_honours_the_enabled_bit() {
        let mut raw = Vec::new();
        for (base, size, kind, attr) in [
            (0u64, 0x9fc00u64, 1u32, 1u32),
            (0x10_0000, 0x1000, 2, 0),
            (0x20_0000, 0x1000, 7, 3),
        ] {
            raw.extend_from_slice(&base.to_le_bytes());
            raw.extend_from_slice(&size.to_le_bytes());
            raw.extend_from_slice(&kind.to_le_bytes());
            raw.extend_from_slice(&attr.to_le_bytes());
        }
        let got: Vec<_> = read(&raw, EntryLayout::Acpi3).unwrap().collect();
        assert_eq!(got.len(), 2, "the disabled entry is ignored");
        assert_eq!(got[1].kind, Kind::Pmem);
        assert!(read(&raw[..47], EntryLayout::Acpi3).is_err());
        let legacy: Vec<_> = read(&raw[..60], EntryLayout::Legacy).unwrap().collect();
        assert_eq!(legacy.len(), 3);
        assert_eq!(legacy[0].base, 0);
        assert_eq!(legacy[0].size, 0x9fc00);
        assert_eq!(
            EntryLayout::from_size(28),
            Err(FormatError::EntrySize { size: 28 })
        );
    }

    #[test]
    fn write_then_read_round_trips() {
        let entries = [
            Entry::new(0, 0x9fc00, Kind::Ram).unwrap(),
            Entry::new(0x1_0000_0000, 0x2_0000_0000, Kind::VendorNvram).unwrap(),
        ];
        for layout in [EntryLayout::Legacy, EntryLayout::Acpi3] {
            let mut buf = [0xaau8; 64];
            let n = write(&entries, layout, &mut buf).unwrap();
            assert_eq!(n, 2 * layout.size());
            let back: Vec<Entry> = read(&buf[..n], layout)
                .unwrap()
                .map(|f| f.to_entry().unwrap())
                .collect();
            assert_eq!(back, entries);
            assert!(write(&entries, layout, &mut buf[..n - 1]).is_err());
        }
    }
}
