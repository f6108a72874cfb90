//! Binary memory-map formats: each module reads its format into
//! [`FirmwareEntry`] values and writes a map back, and the two round-trip.
//!
//! | format | entry | where it comes from |
//! |---|---|---|
//! | [`bios`] | 20 or 24 bytes | INT 15h, AX=E820h |
//! | [`boot_params`] | 20 bytes, at most 128 | Linux zero page `e820_table` |
//! | [`multiboot1`] | 24 bytes with a size prefix | Multiboot 1 `mmap_addr` |
//! | [`multiboot2`] | `entry_size` bytes (≥ 24) | Multiboot2 tag type 6 |
//! | [`pvh`] | 24 bytes | PVH `hvm_start_info.memmap_paddr` |

pub mod bios;
pub mod boot_params;
pub mod multiboot1;
pub mod multiboot2;
pub mod pvh;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::entry::Entry;
use crate::error::{FormatError, WriteError};
use crate::firmware::FirmwareEntry;

/// A fixed-size on-media entry record.
pub(crate) trait Record: FromBytes + IntoBytes + KnownLayout + Immutable + Sized {
    fn to_firmware(&self) -> Option<FirmwareEntry>;
    fn from_entry(entry: &Entry) -> Self;
}

/// Reads `count` records of `stride` bytes (at least the record's size)
/// from the start of `bytes`.
pub(crate) fn read_records<R: Record>(
    bytes: &[u8],
    count: usize,
    stride: usize,
) -> Result<impl Iterator<Item = FirmwareEntry> + '_, FormatError> {
    if stride < size_of::<R>() {
        return Err(FormatError::EntrySize { size: stride });
    }
    let needed = count
        .checked_mul(stride)
        .ok_or(FormatError::TooManyEntries {
            count,
            max: usize::MAX / stride,
        })?;
    let body = bytes.get(..needed).ok_or(FormatError::Truncated {
        needed,
        available: bytes.len(),
    })?;
    Ok(body
        .chunks_exact(stride)
        .filter_map(|chunk| R::read_from_prefix(chunk).ok())
        .filter_map(|(record, _)| record.to_firmware()))
}

/// Writes one record per entry at `stride`-byte steps (zero-filling any
/// padding) and returns the bytes written.
pub(crate) fn write_records<R: Record>(
    entries: &[Entry],
    out: &mut [u8],
    stride: usize,
) -> Result<usize, WriteError> {
    let stride = stride.max(size_of::<R>());
    let needed = entries.len().saturating_mul(stride);
    let available = out.len();
    let body = out
        .get_mut(..needed)
        .ok_or(WriteError::BufferTooSmall { needed, available })?;
    for (chunk, entry) in body.chunks_exact_mut(stride).zip(entries) {
        chunk.fill(0);
        R::from_entry(entry)
            .write_to_prefix(chunk)
            .map_err(|_| WriteError::BufferTooSmall { needed, available })?;
    }
    Ok(needed)
}
