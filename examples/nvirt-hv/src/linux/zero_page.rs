//! The zero page (`struct boot_params`, 4 KiB) a 64-bit boot loader
//! hands the kernel in RSI: the setup header copied from the image with
//! the loader's fields filled in, and the E820 table.
//!
//! | offset | field | value |
//! |---|---|---|
//! | `0x0c0` | `ext_ramdisk_image` | initrd address, bits 32–63 |
//! | `0x0c4` | `ext_ramdisk_size` | initrd size, bits 32–63 |
//! | `0x0c8` | `ext_cmd_line_ptr` | command line address, bits 32–63 |
//! | `0x1e8` | `e820_entries` | count (written by `nvirt_e820::boot_params`) |
//! | `0x1f1`… | setup header | copied from the image |
//! | `0x210` | `type_of_loader` | 0xff: a loader without an assigned id |
//! | `0x218` | `ramdisk_image` | initrd address, bits 0–31 |
//! | `0x21c` | `ramdisk_size` | initrd size, bits 0–31 |
//! | `0x228` | `cmd_line_ptr` | command line address, bits 0–31 |
//! | `0x2d0` | `e820_table` | 128 entries of 20 bytes |
//!
//! Everything else stays zero: no screen (`orig_video_*` zero keeps the
//! VGA console away), no EDD, no EFI, no ACPI RSDP hint.

use nvirt_e820::{Entry, WriteError, boot_params};

use super::bzimage::{BzImage, HEADER_START};

/// Bytes of the zero page.
pub const ZERO_PAGE_LEN: usize = 4096;
/// `type_of_loader` for a loader without an assigned id.
const LOADER_UNDEFINED: u8 = 0xff;

/// Where the kernel finds its initrd and command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootPointers {
    /// Guest-physical address of the command line (NUL-terminated).
    pub cmdline: u64,
    /// Guest-physical address and bytes of the initrd (0, 0 for none).
    pub initrd: (u64, u64),
}

/// Builds the zero page for `image` with `map` and `pointers`.
pub fn build(
    image: &BzImage<'_>,
    map: &[Entry],
    pointers: BootPointers,
) -> Result<[u8; ZERO_PAGE_LEN], WriteError> {
    let mut page = [0u8; ZERO_PAGE_LEN];
    // `BzImage::parse` checked that the header ends within the setup
    // sectors, far below 4 KiB.
    page[HEADER_START..HEADER_START + image.header.len()].copy_from_slice(image.header);
    page[0x210] = LOADER_UNDEFINED;
    let (initrd, initrd_len) = pointers.initrd;
    put32(&mut page, 0x218, initrd as u32);
    put32(&mut page, 0x21c, initrd_len as u32);
    put32(&mut page, 0x0c0, (initrd >> 32) as u32);
    put32(&mut page, 0x0c4, (initrd_len >> 32) as u32);
    put32(&mut page, 0x228, pointers.cmdline as u32);
    put32(&mut page, 0x0c8, (pointers.cmdline >> 32) as u32);
    boot_params::write(map, &mut page)?;
    Ok(page)
}

fn put32(page: &mut [u8; ZERO_PAGE_LEN], at: usize, value: u32) {
    page[at..at + 4].copy_from_slice(&value.to_le_bytes());
}
