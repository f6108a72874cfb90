//! The nvirt test guest's pure logic: which guest-physical ranges it may
//! test, and the pattern it writes.
//!
//! The guest (`src/main.rs`, bare metal) reads its memory map from the PVH
//! start info the hypervisor wrote (see `nvirt_hv::guest_abi`), writes
//! [`pattern`] over every RAM byte above its own image and every NVRAM
//! byte, reads it all back, and reports each check as a line ending in a
//! `PASS` or `FAIL` line.
//!
//! ```
//! use nvirt_e820::{Entry, Kind, MemoryMap};
//! use nvirt_guest::{TestKind, test_ranges};
//!
//! let map = MemoryMap::<8>::from_entries([
//!     Entry::new(0, 0x9_fc00, Kind::Ram)?,
//!     Entry::new(0x10_0000, 0x400_0000, Kind::Ram)?,
//!     Entry::new(0x1_0000_0000, 0x1_0200_0000, Kind::Pmem)?,
//! ])?;
//! let ranges: Vec<_> = test_ranges(&map, 0x12_3456).collect();
//! assert_eq!(ranges, [
//!     (TestKind::Ram, 0x12_4000..0x400_0000),
//!     (TestKind::Nvram(Kind::Pmem), 0x1_0000_0000..0x1_0200_0000),
//! ]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use core::ops::Range;

use nvirt_e820::{Kind, MemoryMap};

/// What a tested range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestKind {
    /// RAM.
    Ram,
    /// NVRAM of this kind.
    Nvram(Kind),
}

/// Page size: tested ranges are whole pages.
pub const PAGE: u64 = 4096;

/// The ranges to test: RAM above `image_end` (the guest's own image, stack
/// and everything the hypervisor put below it are left alone) and all
/// NVRAM, each shrunk to whole pages, in address order.
pub fn test_ranges<const N: usize>(
    map: &MemoryMap<N>,
    image_end: u64,
) -> impl Iterator<Item = (TestKind, Range<u64>)> + '_ {
    map.iter().filter_map(move |e| {
        let kind = if e.kind().is_ram() {
            TestKind::Ram
        } else if e.kind().is_nonvolatile() {
            TestKind::Nvram(e.kind())
        } else {
            return None;
        };
        let from = if kind == TestKind::Ram {
            e.start().max(image_end)
        } else {
            e.start()
        };
        let start = from.checked_add(PAGE - 1)? & !(PAGE - 1);
        let end = e.end() & !(PAGE - 1);
        (start < end).then_some((kind, start..end))
    })
}

/// The word written at guest-physical `addr` in a run seeded with `seed`:
/// distinct for every address, so a page mapped twice or at the wrong place
/// shows up.
#[must_use]
pub const fn pattern(addr: u64, seed: u64) -> u64 {
    addr.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ seed
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvirt_e820::Entry;

    #[test]
    fn skips_the_image_and_non_memory() {
        let map = MemoryMap::<8>::from_entries([
            Entry::new(0, 0x9_fc00, Kind::Ram).unwrap(),
            Entry::new(0x9_fc00, 0x10_0000, Kind::Reserved).unwrap(),
            Entry::new(0x10_0000, 0x200_0000, Kind::Ram).unwrap(),
            Entry::new(0x1_0000_0000, 0x1_0000_0800, Kind::Pram).unwrap(),
            Entry::new(0x1_4000_0000, 0x1_4100_0000, Kind::VendorNvram).unwrap(),
        ])
        .unwrap();
        let got: Vec<_> = test_ranges(&map, 0x10_8000).collect();
        assert_eq!(
            got,
            [
                (TestKind::Ram, 0x10_8000..0x200_0000),
                (
                    TestKind::Nvram(Kind::VendorNvram),
                    0x1_4000_0000..0x1_4100_0000
                ),
            ]
        );
    }

    #[test]
    fn the_pattern_differs_between_neighbouring_words() {
        let words: std::collections::HashSet<u64> =
            (0..100_000u64).map(|i| pattern(i * 8, 7)).collect();
        assert_eq!(words.len(), 100_000);
        assert_ne!(pattern(0x1000, 1), pattern(0x1000, 2));
    }
}
