//! Synthesizing the memory map a guest sees.
//!
//! Guest-physical layout, in address order:
//!
//! | range | kind |
//! |---|---|
//! | `0` – `0x9fc00` | RAM (conventional memory) |
//! | `0x9fc00` – `0x10_0000` | reserved (EBDA, VGA hole, option and BIOS ROMs) |
//! | `0x10_0000` – `min(ram, pci_hole_start)` | RAM |
//! | `pci_hole_start` – 4 GiB | hole for device MMIO (not listed) |
//! | 4 GiB – 4 GiB + rest | RAM above the hole, if `ram > pci_hole_start` |
//! | `nvram_base` – `+ nvram` | NVRAM of the chosen kind, 1 GiB-aligned, above all RAM |
//!
//! As in QEMU, the RAM size counts guest-physical bytes backed by RAM: the
//! legacy hole below 1 MiB is backed too (and shown reserved), and the part of
//! RAM that would fall in the PCI hole is moved above 4 GiB. Extra reserved
//! ranges may be laid over anything; where they overlap RAM or NVRAM the
//! larger type code wins, as in any map.

use core::fmt;
use core::ops::Range;

use crate::entry::Entry;
use crate::error::{CapacityError, RangeError};
use crate::kind::Kind;
use crate::map::MemoryMap;

/// End of conventional memory: the EBDA starts here.
pub const LOW_RAM_END: u64 = 0x9_fc00;
/// End of the legacy hole.
pub const LEGACY_HOLE_END: u64 = 0x10_0000;
/// 4 GiB: where RAM resumes above the PCI hole.
pub const FOUR_GIB: u64 = 1 << 32;
/// Default start of the PCI hole: 3 GiB.
pub const DEFAULT_PCI_HOLE_START: u64 = 3 << 30;
/// Alignment of the default NVRAM base: 1 GiB, so it can be mapped with
/// 1 GiB pages.
pub const NVRAM_ALIGN: u64 = 1 << 30;
/// Granule of every size and address: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;

/// Why a guest layout cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthError {
    /// RAM below 1 MiB: no room for the legacy hole.
    RamTooSmall {
        /// Requested RAM.
        ram: u64,
    },
    /// A size or address is not a multiple of 4 KiB.
    Unaligned {
        /// Which value.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// The PCI hole start lies below 1 MiB or above 4 GiB.
    BadPciHole {
        /// Requested start.
        start: u64,
    },
    /// The NVRAM base overlaps RAM, the legacy area or the PCI hole.
    BadNvramBase {
        /// Requested base.
        base: u64,
    },
    /// The layout runs past the end of the address space.
    Range(RangeError),
    /// The map cannot hold the layout.
    Capacity(CapacityError),
}

impl fmt::Display for SynthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::RamTooSmall { ram } => {
                write!(f, "guest RAM of {ram:#x} bytes is below the 1 MiB minimum")
            }
            Self::Unaligned { what, value } => {
                write!(f, "{what} {value:#x} is not a multiple of 4 KiB")
            }
            Self::BadPciHole { start } => write!(
                f,
                "PCI hole start {start:#x} must lie between 1 MiB and 4 GiB"
            ),
            Self::BadNvramBase { base } => write!(
                f,
                "NVRAM base {base:#x} overlaps RAM, the legacy area or the PCI hole"
            ),
            Self::Range(e) => write!(f, "layout does not fit the address space: {e}"),
            Self::Capacity(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for SynthError {}

impl From<RangeError> for SynthError {
    fn from(e: RangeError) -> Self {
        Self::Range(e)
    }
}

impl From<CapacityError> for SynthError {
    fn from(e: CapacityError) -> Self {
        Self::Capacity(e)
    }
}

/// Describes a guest's memory; [`GuestLayout::build`] lays it out.
#[derive(Clone, Copy, Debug)]
pub struct GuestLayout<'a> {
    ram: u64,
    nvram: u64,
    nv_kind: Kind,
    pci_hole_start: u64,
    nvram_base: Option<u64>,
    reserved: &'a [Range<u64>],
}

/// A built guest layout: the map and where each kind of backing goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestMap<const N: usize> {
    /// The map to show the guest.
    pub map: MemoryMap<N>,
    /// Guest-physical ranges to back with RAM: below the PCI hole (including
    /// the legacy area) and, if any, above 4 GiB.
    pub ram: [Option<Range<u64>>; 2],
    /// The guest-physical NVRAM range, if any.
    pub nvram: Option<Range<u64>>,
}

impl<'a> GuestLayout<'a> {
    /// A guest with `ram` bytes of RAM and no NVRAM.
    #[must_use]
    pub const fn new(ram: u64) -> Self {
        Self {
            ram,
            nvram: 0,
            nv_kind: Kind::Pmem,
            pci_hole_start: DEFAULT_PCI_HOLE_START,
            nvram_base: None,
            reserved: &[],
        }
    }

    /// Gives the guest `size` bytes of NVRAM of `kind` (7, 12 or 90 usually).
    #[must_use]
    pub const fn nvram(mut self, size: u64, kind: Kind) -> Self {
        self.nvram = size;
        self.nv_kind = kind;
        self
    }

    /// Where the PCI hole starts (default 3 GiB).
    #[must_use]
    pub const fn pci_hole_start(mut self, start: u64) -> Self {
        self.pci_hole_start = start;
        self
    }

    /// Places the NVRAM at `base` instead of the first 1 GiB boundary above
    /// all RAM and at or above 4 GiB.
    #[must_use]
    pub const fn nvram_base(mut self, base: u64) -> Self {
        self.nvram_base = Some(base);
        self
    }

    /// Extra ranges to show as reserved.
    #[must_use]
    pub const fn reserved(mut self, ranges: &'a [Range<u64>]) -> Self {
        self.reserved = ranges;
        self
    }

    /// Lays the guest out.
    pub fn build<const N: usize>(&self) -> Result<GuestMap<N>, SynthError> {
        for (what, value) in [
            ("RAM size", self.ram),
            ("NVRAM size", self.nvram),
            ("PCI hole start", self.pci_hole_start),
            ("NVRAM base", self.nvram_base.unwrap_or(0)),
        ] {
            if value % PAGE_SIZE != 0 {
                return Err(SynthError::Unaligned { what, value });
            }
        }
        if self.ram < LEGACY_HOLE_END {
            return Err(SynthError::RamTooSmall { ram: self.ram });
        }
        if !(LEGACY_HOLE_END..=FOUR_GIB).contains(&self.pci_hole_start) {
            return Err(SynthError::BadPciHole {
                start: self.pci_hole_start,
            });
        }
        let low_end = self.ram.min(self.pci_hole_start);
        let high = self.ram - low_end;
        let high_range = if high > 0 {
            let entry = Entry::from_base_size(FOUR_GIB, high, Kind::Ram)?;
            Some(entry.start()..entry.end())
        } else {
            None
        };
        let ram_end = high_range.as_ref().map_or(low_end, |r| r.end);

        let mut map = MemoryMap::<N>::new();
        map.add(Entry::new(0, LOW_RAM_END, Kind::Ram)?)?;
        map.add(Entry::new(LOW_RAM_END, LEGACY_HOLE_END, Kind::Reserved)?)?;
        map.add(Entry::new(LEGACY_HOLE_END, low_end, Kind::Ram)?)?;
        if let Some(high) = &high_range {
            map.add(Entry::new(high.start, high.end, Kind::Ram)?)?;
        }

        let nvram = if self.nvram > 0 {
            let base = match self.nvram_base {
                Some(base) => {
                    let clashes = base < ram_end;
                    let end = base
                        .checked_add(self.nvram)
                        .ok_or(RangeError::EndOverflow {
                            start: base,
                            size: self.nvram,
                        })?;
                    let in_pci_hole = base < FOUR_GIB && end > self.pci_hole_start;
                    if clashes || in_pci_hole {
                        return Err(SynthError::BadNvramBase { base });
                    }
                    base
                }
                None => align_up(ram_end.max(FOUR_GIB), NVRAM_ALIGN)?,
            };
            let entry = Entry::from_base_size(base, self.nvram, self.nv_kind)?;
            map.add(entry)?;
            Some(entry.start()..entry.end())
        } else {
            None
        };

        for range in self.reserved {
            map.add(Entry::new(range.start, range.end, Kind::Reserved)?)?;
        }
        Ok(GuestMap {
            map,
            ram: [Some(0..low_end), high_range],
            nvram,
        })
    }
}

fn align_up(value: u64, align: u64) -> Result<u64, RangeError> {
    value
        .checked_add(align - 1)
        .map(|v| v & !(align - 1))
        .ok_or(RangeError::EndOverflow {
            start: value,
            size: align,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;
    const G: u64 = 1 << 30;

    fn lines<const N: usize>(g: &GuestMap<N>) -> String {
        g.map.to_string()
    }

    #[test]
    fn small_guest_with_nvram() {
        let g = GuestLayout::new(512 * M)
            .nvram(256 * M, Kind::Pmem)
            .build::<16>()
            .unwrap();
        assert_eq!(
            lines(&g),
            "[mem 0x0000000000000000-0x000000000009fbff] usable\n\
             [mem 0x000000000009fc00-0x00000000000fffff] reserved\n\
             [mem 0x0000000000100000-0x000000001fffffff] usable\n\
             [mem 0x0000000100000000-0x000000010fffffff] persistent (type 7)\n"
        );
        assert_eq!(g.ram, [Some(0..512 * M), None]);
        assert_eq!(g.nvram, Some(4 * G..4 * G + 256 * M));
    }

    #[test]
    fn large_guest_splits_around_the_pci_hole() {
        let g = GuestLayout::new(6 * G)
            .nvram(2 * G, Kind::VendorNvram)
            .pci_hole_start(2 * G)
            .build::<16>()
            .unwrap();
        assert_eq!(g.ram, [Some(0..2 * G), Some(4 * G..8 * G)]);
        assert_eq!(g.nvram, Some(8 * G..10 * G));
        assert_eq!(
            g.map.total(Kind::Ram) + (LEGACY_HOLE_END - LOW_RAM_END),
            6 * G
        );
        assert_eq!(g.map.kind_at(9 * G), Some(Kind::VendorNvram));
        assert_eq!(g.map.kind_at(3 * G), None);
    }

    #[test]
    fn unaligned_ram_end_rounds_the_nvram_base_up_to_1g() {
        let g = GuestLayout::new(4 * G + 4096)
            .nvram(4096, Kind::Pram)
            .build::<16>()
            .unwrap();
        // 3 GiB below the hole, 1 GiB + 4 KiB above 4 GiB.
        assert_eq!(g.nvram, Some(6 * G..6 * G + 4096));
    }

    #[test]
    fn extra_reserved_ranges_and_explicit_nvram_base() {
        let extra = [0xfee0_0000..0xfee0_1000, 0x1000..0x2000];
        let g = GuestLayout::new(G)
            .nvram(G, Kind::Pmem)
            .nvram_base(2 * G)
            .reserved(&extra)
            .pci_hole_start(3 * G)
            .build::<16>()
            .unwrap();
        assert_eq!(g.map.kind_at(0x1000), Some(Kind::Reserved));
        assert_eq!(g.map.kind_at(0xfee0_0000), Some(Kind::Reserved));
        assert_eq!(g.map.kind_at(2 * G), Some(Kind::Pmem));
    }

    #[test]
    fn every_output_format_round_trips() {
        use crate::formats::{bios, boot_params, multiboot1, multiboot2, pvh};
        let g = GuestLayout::new(6 * G)
            .nvram(3 * G, Kind::Pram)
            .build::<16>()
            .unwrap();
        let entries = g.map.entries();
        let back = |fw: &mut dyn Iterator<Item = crate::FirmwareEntry>| {
            MemoryMap::<16>::from_firmware(fw).unwrap()
        };
        let mut buf = vec![0u8; 4096];
        for layout in [bios::EntryLayout::Legacy, bios::EntryLayout::Acpi3] {
            let n = bios::write(entries, layout, &mut buf).unwrap();
            assert_eq!(back(&mut bios::read(&buf[..n], layout).unwrap()), g.map);
        }
        boot_params::write(entries, &mut buf).unwrap();
        assert_eq!(back(&mut boot_params::read(&buf).unwrap()), g.map);
        let n = multiboot2::write(entries, &mut buf).unwrap();
        assert_eq!(back(&mut multiboot2::read(&buf[..n]).unwrap()), g.map);
        let n = multiboot1::write(entries, &mut buf).unwrap();
        assert_eq!(back(&mut multiboot1::read(&buf[..n]).unwrap()), g.map);
        let n = pvh::write(entries, &mut buf).unwrap();
        assert_eq!(
            back(&mut pvh::read(&buf[..n], entries.len()).unwrap()),
            g.map
        );
    }

    #[test]
    fn bad_layouts_are_refused() {
        assert_eq!(
            GuestLayout::new(512 * 1024).build::<8>().unwrap_err(),
            SynthError::RamTooSmall { ram: 512 * 1024 }
        );
        assert!(matches!(
            GuestLayout::new(G + 1).build::<8>(),
            Err(SynthError::Unaligned { .. })
        ));
        assert!(matches!(
            GuestLayout::new(G).pci_hole_start(5 * G).build::<8>(),
            Err(SynthError::BadPciHole { .. })
        ));
        assert!(matches!(
            GuestLayout::new(G)
                .nvram(G, Kind::Pmem)
                .nvram_base(0x8000_0000)
                .pci_hole_start(0x8000_0000)
                .build::<8>(),
            Err(SynthError::BadNvramBase { .. })
        ));
        assert!(matches!(
            GuestLayout::new(2 * G)
                .nvram(G, Kind::Pmem)
                .nvram_base(G)
                .build::<8>(),
            Err(SynthError::BadNvramBase { .. })
        ));
        assert!(matches!(
            GuestLayout::new(u64::MAX - 4095).build::<8>(),
            Err(SynthError::Range(_))
        ));
        assert!(matches!(
            GuestLayout::new(G)
                .nvram(u64::MAX - 4095, Kind::Pmem)
                .build::<8>(),
            Err(SynthError::Range(_))
        ));
        assert!(matches!(
            GuestLayout::new(G).nvram(G, Kind::Pmem).build::<3>(),
            Err(SynthError::Capacity(_))
        ));
    }
}
