//! The nvirt test guest's pure logic: which guest-physical ranges it
//! tests, the pattern it writes and how densely, how it checks its memory
//! map against what it was configured with, and where it balloons.
//!
//! The guest (`src/main.rs`, bare metal) reads its memory map twice — from
//! the PVH start info and through `XENMEM_memory_map` — checks they agree
//! and hold RAM and NVRAM of the sizes its command line names
//! ([`check_sizes`]), writes [`pattern`] over its RAM above its own image
//! and all its NVRAM at a [`stride_for`] of at most 4 KiB (every page is
//! touched), balloons pages of both kinds out and in
//! ([`balloon_window`]), tries malformed hypercalls, and reports each check
//! as a line, ending in `PASS` or `FAIL`. Started with
//! `nvirt.crashloop=OPS` it runs the crash-loop workload instead
//! ([`crashloop`]); with `nvirt.vmtest=ROLE`, its part in a multi-VM test
//! ([`vmtest`]).
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

use core::fmt;
use core::ops::Range;

pub mod crashloop;
pub mod vmtest;

use nvirt_e820::{Kind, MemoryMap};
use nvirt_hypercall_abi::protocol::GuestParams;

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
/// Most words one pass over memory writes or reads: the stride grows with
/// memory so a pass stays short even in Bochs.
pub const WORD_BUDGET: u64 = 1 << 19;
/// The balloon window of each kind: 4 MiB, 2 MiB aligned.
pub const WINDOW: u64 = 4 << 20;
const SIZE_2M: u64 = 2 << 20;
/// The legacy area below 1 MiB: backed RAM, shown reserved.
const LEGACY: Range<u64> = 0x9_fc00..0x10_0000;

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

/// The distance between pattern words for `total` bytes: a power of two
/// from 8 (every word) to 4096 (one word per page), the smallest that keeps
/// a pass within [`WORD_BUDGET`] words.
#[must_use]
pub fn stride_for(total: u64) -> u64 {
    let per_word = total.div_ceil(WORD_BUDGET).max(8);
    per_word
        .checked_next_power_of_two()
        .unwrap_or(PAGE)
        .min(PAGE)
}

/// `range` without the sorted, disjoint `holes`.
pub fn subtract<'h>(
    range: Range<u64>,
    holes: &'h [Range<u64>],
) -> impl Iterator<Item = Range<u64>> + 'h {
    let mut at = range.start;
    let mut rest = holes.iter();
    let end = range.end;
    let mut done = false;
    core::iter::from_fn(move || {
        while !done {
            match rest.next() {
                Some(h) if h.end <= at => {}
                Some(h) if h.start >= end => {}
                Some(h) => {
                    let piece = at..h.start.min(end);
                    at = at.max(h.end);
                    if piece.start < piece.end {
                        return Some(piece);
                    }
                }
                None => {
                    done = true;
                    if at < end {
                        return Some(at..end);
                    }
                }
            }
        }
        None
    })
}

/// A map that does not hold what the guest was configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// RAM (usable plus the legacy area) differs.
    Ram {
        /// Bytes found.
        found: u64,
        /// Bytes configured.
        expected: u64,
    },
    /// Not exactly one NVRAM entry (or one where none was configured).
    NvramEntries {
        /// Entries found.
        found: usize,
    },
    /// The NVRAM entry's type or size differs.
    Nvram {
        /// Its type.
        kind: u32,
        /// Its bytes.
        size: u64,
    },
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Ram { found, expected } => {
                write!(f, "RAM of {found:#x} bytes, {expected:#x} configured")
            }
            Self::NvramEntries { found } => write!(f, "{found} NVRAM entries"),
            Self::Nvram { kind, size } => {
                write!(f, "NVRAM entry of type {kind} and {size:#x} bytes")
            }
        }
    }
}

/// Checks `map` holds the RAM and NVRAM of `params`: usable RAM plus the
/// legacy area below 1 MiB (backed, shown reserved) is `params.ram`, and
/// there is exactly one NVRAM entry, of type `params.nv_type` and
/// `params.nvram` bytes (none if that is 0). Returns the NVRAM range.
pub fn check_sizes<const N: usize>(
    map: &MemoryMap<N>,
    params: &GuestParams,
) -> Result<Option<Range<u64>>, SizeError> {
    let legacy: u64 = map
        .iter()
        .filter(|e| e.start() >= LEGACY.start && e.end() <= LEGACY.end)
        .map(|e| e.size())
        .sum();
    let ram = map.total(Kind::Ram) + legacy;
    if ram != params.ram {
        return Err(SizeError::Ram {
            found: ram,
            expected: params.ram,
        });
    }
    let found = map.nonvolatile().count();
    let wanted = usize::from(params.nvram > 0);
    if found != wanted {
        return Err(SizeError::NvramEntries { found });
    }
    match map.nonvolatile().next() {
        Some(e) if e.kind().raw() != params.nv_type || e.size() != params.nvram => {
            Err(SizeError::Nvram {
                kind: e.kind().raw(),
                size: e.size(),
            })
        }
        Some(e) => Ok(Some(e.start()..e.end())),
        None => Ok(None),
    }
}

/// Where the guest balloons memory of one kind: [`WINDOW`] bytes, 2 MiB
/// aligned, at the top of the largest RAM entry (its image and stack are
/// at the bottom) for RAM, at the start of the NVRAM entry for NVRAM;
/// `None` if the region is too small or the window would reach below
/// `image_end`.
#[must_use]
pub fn balloon_window<const N: usize>(
    map: &MemoryMap<N>,
    nvram: bool,
    image_end: u64,
) -> Option<Range<u64>> {
    let window = if nvram {
        let e = map.nonvolatile().next()?;
        let start = e.start().checked_add(SIZE_2M - 1)? & !(SIZE_2M - 1);
        start..start.checked_add(WINDOW)?
    } else {
        let e = map.iter_kind(Kind::Ram).max_by_key(|e| e.size())?;
        let end = e.end() & !(SIZE_2M - 1);
        end.checked_sub(WINDOW)?..end
    };
    let inside = map
        .iter()
        .any(|e| e.start() <= window.start && window.end <= e.end());
    (inside && window.start >= image_end).then_some(window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvirt_e820::{Entry, GuestLayout};

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

    #[test]
    fn the_stride_touches_every_page_within_the_budget() {
        assert_eq!(stride_for(0), 8);
        assert_eq!(stride_for(4 << 20), 8);
        assert_eq!(stride_for(32 << 20), 64);
        assert_eq!(stride_for(128 << 20), 256);
        assert_eq!(stride_for(3 << 30), 4096);
        assert_eq!(stride_for(1 << 40), 4096, "never more than a page");
        for total in [1 << 20, 100 << 20, 1 << 30] {
            assert!(total / stride_for(total) <= WORD_BUDGET);
        }
    }

    #[test]
    fn subtracts_holes() {
        let holes = [0x10..0x20, 0x30..0x40, 0x90..0xa0];
        let got: Vec<_> = subtract(0x18..0x50, &holes).collect();
        assert_eq!(got, [0x20..0x30, 0x40..0x50]);
        let got: Vec<_> = subtract(0..0x100, &holes).collect();
        assert_eq!(got, [0..0x10, 0x20..0x30, 0x40..0x90, 0xa0..0x100]);
        assert_eq!(subtract(0x10..0x20, &holes).count(), 0);
        let whole: Vec<Range<u64>> = subtract(0..8, &[]).collect();
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0], 0..8);
    }

    fn map(ram: u64, nvram: u64, kind: Kind) -> MemoryMap<16> {
        GuestLayout::new(ram)
            .nvram(nvram, kind)
            .build::<16>()
            .unwrap()
            .map
    }

    #[test]
    fn sizes_match_the_configuration_or_say_why() {
        let params = GuestParams {
            ram: 64 << 20,
            nvram: 32 << 20,
            nv_type: 12,
        };
        let m = map(64 << 20, 32 << 20, Kind::Pram);
        assert_eq!(
            check_sizes(&m, &params),
            Ok(Some(0x1_0000_0000..0x1_0200_0000))
        );
        assert!(matches!(
            check_sizes(&map(62 << 20, 32 << 20, Kind::Pram), &params),
            Err(SizeError::Ram { .. })
        ));
        assert_eq!(
            check_sizes(&map(64 << 20, 32 << 20, Kind::Pmem), &params),
            Err(SizeError::Nvram {
                kind: 7,
                size: 32 << 20
            })
        );
        assert_eq!(
            check_sizes(&map(64 << 20, 0, Kind::Pmem), &params),
            Err(SizeError::NvramEntries { found: 0 })
        );
        let none = GuestParams { nvram: 0, ..params };
        assert_eq!(check_sizes(&map(64 << 20, 0, Kind::Pmem), &none), Ok(None));
        // A big guest: RAM above 4 GiB counts too.
        let big = GuestParams {
            ram: 4 << 30,
            nvram: 1 << 30,
            nv_type: 90,
        };
        assert!(check_sizes(&map(4 << 30, 1 << 30, Kind::VendorNvram), &big).is_ok());
    }

    #[test]
    fn windows_sit_at_the_top_of_ram_and_the_start_of_nvram() {
        let m = map(64 << 20, 32 << 20, Kind::Pmem);
        assert_eq!(
            balloon_window(&m, false, 0x20_0000),
            Some(0x3c0_0000..0x400_0000)
        );
        assert_eq!(
            balloon_window(&m, true, 0x20_0000),
            Some(0x1_0000_0000..0x1_0040_0000)
        );
        assert_eq!(
            balloon_window(&m, false, 0x3d0_0000),
            None,
            "over the image"
        );
        let small = map(4 << 20, 2 << 20, Kind::Pmem);
        assert_eq!(balloon_window(&small, true, 0), None, "NVRAM too small");
        assert_eq!(balloon_window(&small, false, 0x20_0000), None);
    }
}
