//! The E820 table in Linux's x86 boot parameters ("zero page",
//! `struct boot_params` in `arch/x86/include/uapi/asm/bootparam.h`).
//!
//! | offset | field | size |
//! |---|---|---|
//! | `0x1e8` | `e820_entries` (count) | 1 byte |
//! | `0x2d0` | `e820_table` | 128 × 20 bytes |
//!
//! More than 128 entries travel in `SETUP_E820_EXT` setup data, whose payload
//! is plain 20-byte entries: read it with [`crate::bios::read`].

use super::bios::BiosEntry;
use super::{read_records, write_records};
use crate::entry::Entry;
use crate::error::{FormatError, WriteError};
use crate::firmware::FirmwareEntry;

/// Offset of the `e820_entries` count byte.
pub const COUNT_OFFSET: usize = 0x1e8;
/// Offset of the `e820_table` array.
pub const TABLE_OFFSET: usize = 0x2d0;
/// Entries the zero page holds (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const MAX_ENTRIES: usize = 128;
/// Bytes of the zero page this module reads or writes: up to the table's end.
pub const MIN_LEN: usize = TABLE_OFFSET + MAX_ENTRIES * size_of::<BiosEntry>();

/// Reads the E820 table of a zero page (at least [`MIN_LEN`] bytes, usually
/// the whole 4 KiB page).
pub fn read(zero_page: &[u8]) -> Result<impl Iterator<Item = FirmwareEntry> + '_, FormatError> {
    if zero_page.len() < MIN_LEN {
        return Err(FormatError::Truncated {
            needed: MIN_LEN,
            available: zero_page.len(),
        });
    }
    let count = usize::from(zero_page[COUNT_OFFSET]);
    if count > MAX_ENTRIES {
        return Err(FormatError::TooManyEntries {
            count,
            max: MAX_ENTRIES,
        });
    }
    read_records::<BiosEntry>(&zero_page[TABLE_OFFSET..], count, size_of::<BiosEntry>())
}

/// Writes `entries` into a zero page's E820 table and count, leaving the
/// rest of the page alone.
pub fn write(entries: &[Entry], zero_page: &mut [u8]) -> Result<(), WriteError> {
    if entries.len() > MAX_ENTRIES {
        return Err(WriteError::TooManyEntries {
            count: entries.len(),
            max: MAX_ENTRIES,
        });
    }
    if zero_page.len() < MIN_LEN {
        return Err(WriteError::BufferTooSmall {
            needed: MIN_LEN,
            available: zero_page.len(),
        });
    }
    write_records::<BiosEntry>(
        entries,
        &mut zero_page[TABLE_OFFSET..MIN_LEN],
        size_of::<BiosEntry>(),
    )?;
    // At most 128, checked above.
    zero_page[COUNT_OFFSET] = u8::try_from(entries.len()).unwrap_or(u8::MAX);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Kind;

    #[test]
    fn round_trips_and_rejects_bad_counts() {
        let entries = [
            Entry::new(0, 0x9fc00, Kind::Ram).unwrap(),
            Entry::new(0x10_0000, 0x4000_0000, Kind::Ram).unwrap(),
        ];
        let mut page = [0u8; 4096];
        page[0x1f1] = 0x0f; // setup_sects: untouched by the write
        write(&entries, &mut page).unwrap();
        assert_eq!(page[COUNT_OFFSET], 2);
        assert_eq!(page[0x1f1], 0x0f);
        let back: Vec<Entry> = read(&page)
            .unwrap()
            .map(|f| f.to_entry().unwrap())
            .collect();
        assert_eq!(back, entries);
        page[COUNT_OFFSET] = 129;
        assert!(matches!(
            read(&page),
            Err(FormatError::TooManyEntries { count: 129, .. })
        ));
        assert!(read(&page[..MIN_LEN - 1]).is_err());
        let too_many = [entries[0]; 129];
        assert!(write(&too_many, &mut page).is_err());
    }
}
