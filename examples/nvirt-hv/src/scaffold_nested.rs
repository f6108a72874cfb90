//! TEMPORARY nested translation tables (AMD NPT / Intel EPT) with 2 MiB
//! pages only, until the `nvirt-ept` crate replaces this module.
//!
//! The seam: the virtualization backends take only the root pointer value
//! ([`ScaffoldNested::root_pointer`]: nCR3 for NPT, the EPTP for EPT) and
//! offer an "invalidate" hook; they never look inside the tables. Replacing
//! this module means building `nvirt_ept` tables over the same
//! [`TableMemory`]-like frame source and passing their root pointer.
//!
//! Formats (AMD APM Vol. 2 §15.25; Intel SDM Vol. 3C §29.3.2): four levels,
//! PML4 → PDPT → PD whose entries map 2 MiB.
//! - NPT entries are ordinary long-mode entries; nested walks are user
//!   accesses, so every entry, table or leaf, has U/S set: table `P|RW|US`,
//!   leaf `P|RW|US|PS` (write-back through the guest PAT).
//! - EPT entries: table `R|W|X`; leaf `R|W|X`, memory type 6 (write-back) in
//!   bits 5:3, bit 7 (2 MiB page). The EPTP: memory type 6, page-walk
//!   length − 1 = 3 in bits 5:3, the PML4's address.

use core::fmt;

/// Bytes mapped by one leaf.
pub const PAGE_2M: u64 = 2 << 20;
/// Address bits of an entry.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Guest-physical addresses must be below this (four levels: 256 TiB).
pub const GPA_LIMIT: u64 = 1 << 48;

/// Which hardware walks the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// AMD nested page tables.
    Npt,
    /// Intel extended page tables.
    Ept,
}

impl Format {
    const fn table_entry(self, addr: u64) -> u64 {
        match self {
            Self::Npt => addr | 0x7,
            Self::Ept => addr | 0x7,
        }
    }

    const fn leaf_2m(self, addr: u64) -> u64 {
        match self {
            Self::Npt => addr | 0x87,
            Self::Ept => addr | 0x7 | 6 << 3 | 1 << 7,
        }
    }

    const fn present(self, entry: u64) -> bool {
        match self {
            Self::Npt => entry & 1 != 0,
            Self::Ept => entry & 7 != 0,
        }
    }
}

/// Where the tables live: zeroed 4 KiB frames and access to their entries.
pub trait TableMemory {
    /// A zeroed 4 KiB frame for a table, by host-physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Entry `index` (0–511) of the table at `table`.
    fn read_entry(&self, table: u64, index: usize) -> u64;
    /// Sets entry `index` of the table at `table`.
    fn write_entry(&mut self, table: u64, index: usize, value: u64);
}

/// Why a mapping cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedError {
    /// An address or the length is not a multiple of 2 MiB.
    Unaligned {
        /// Guest-physical start.
        gpa: u64,
        /// Host-physical start.
        hpa: u64,
        /// Length.
        len: u64,
    },
    /// The guest range passes [`GPA_LIMIT`] or the host range wraps.
    OutOfRange {
        /// Guest-physical start.
        gpa: u64,
        /// Length.
        len: u64,
    },
    /// This guest address is mapped already.
    AlreadyMapped {
        /// The guest-physical address.
        gpa: u64,
    },
    /// No frame for a table.
    OutOfFrames,
}

impl fmt::Display for NestedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unaligned { gpa, hpa, len } => write!(
                f,
                "nested mapping {gpa:#x} -> {hpa:#x} ({len:#x} bytes) is not 2 MiB aligned"
            ),
            Self::OutOfRange { gpa, len } => {
                write!(
                    f,
                    "nested mapping at {gpa:#x} ({len:#x} bytes) is out of range"
                )
            }
            Self::AlreadyMapped { gpa } => write!(f, "guest-physical {gpa:#x} is mapped already"),
            Self::OutOfFrames => f.write_str("no frame left for a nested table"),
        }
    }
}

impl core::error::Error for NestedError {}

/// A four-level nested table of 2 MiB pages.
#[derive(Clone, Copy, Debug)]
pub struct ScaffoldNested {
    format: Format,
    pml4: u64,
    tables: usize,
}

impl ScaffoldNested {
    /// Empty tables (one PML4).
    pub fn new(mem: &mut impl TableMemory, format: Format) -> Result<Self, NestedError> {
        let pml4 = mem.alloc_table().ok_or(NestedError::OutOfFrames)?;
        Ok(Self {
            format,
            pml4,
            tables: 1,
        })
    }

    /// The value the hardware takes: nCR3 (NPT) or the EPTP (EPT).
    #[must_use]
    pub const fn root_pointer(&self) -> u64 {
        match self.format {
            Format::Npt => self.pml4,
            Format::Ept => self.pml4 | 3 << 3 | 6,
        }
    }

    /// The table format.
    #[must_use]
    pub const fn format(&self) -> Format {
        self.format
    }

    /// Paging-structure pages in use.
    #[must_use]
    pub const fn table_pages(&self) -> usize {
        self.tables
    }

    /// Maps `len` bytes of guest-physical `gpa` to host-physical `hpa`, all
    /// multiples of 2 MiB; returns the number of 2 MiB leaves written.
    /// Fails without writing a leaf if any page is mapped already.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        hpa: u64,
        len: u64,
    ) -> Result<u64, NestedError> {
        if (gpa | hpa | len) % PAGE_2M != 0 {
            return Err(NestedError::Unaligned { gpa, hpa, len });
        }
        let range_ok = gpa.checked_add(len).is_some_and(|end| end <= GPA_LIMIT)
            && hpa.checked_add(len).is_some_and(|end| end <= ADDRESS_MASK);
        if !range_ok {
            return Err(NestedError::OutOfRange { gpa, len });
        }
        let pages = len / PAGE_2M;
        for page in 0..pages {
            if self.translate(mem, gpa + page * PAGE_2M).is_some() {
                return Err(NestedError::AlreadyMapped {
                    gpa: gpa + page * PAGE_2M,
                });
            }
        }
        for page in 0..pages {
            let (g, h) = (gpa + page * PAGE_2M, hpa + page * PAGE_2M);
            let pdpt = self.next_table(mem, self.pml4, index(g, 39))?;
            let pd = self.next_table(mem, pdpt, index(g, 30))?;
            mem.write_entry(pd, index(g, 21), self.format.leaf_2m(h));
        }
        Ok(pages)
    }

    fn next_table(
        &mut self,
        mem: &mut impl TableMemory,
        table: u64,
        i: usize,
    ) -> Result<u64, NestedError> {
        let entry = mem.read_entry(table, i);
        if self.format.present(entry) {
            return Ok(entry & ADDRESS_MASK);
        }
        let next = mem.alloc_table().ok_or(NestedError::OutOfFrames)?;
        self.tables += 1;
        mem.write_entry(table, i, self.format.table_entry(next));
        Ok(next)
    }

    /// The host-physical address `gpa` maps to, walking the tables as the
    /// hardware would.
    pub fn translate(&self, mem: &impl TableMemory, gpa: u64) -> Option<u64> {
        if gpa >= GPA_LIMIT {
            return None;
        }
        let mut table = self.pml4;
        for shift in [39, 30] {
            let entry = mem.read_entry(table, index(gpa, shift));
            if !self.format.present(entry) {
                return None;
            }
            table = entry & ADDRESS_MASK;
        }
        let leaf = mem.read_entry(table, index(gpa, 21));
        self.format
            .present(leaf)
            .then_some((leaf & ADDRESS_MASK & !(PAGE_2M - 1)) | (gpa & (PAGE_2M - 1)))
    }
}

const fn index(addr: u64, shift: u32) -> usize {
    ((addr >> shift) & 0x1ff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Tables in a hash map of frames.
    #[derive(Default)]
    struct Frames {
        next: u64,
        tables: HashMap<u64, [u64; 512]>,
    }

    impl TableMemory for Frames {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.tables.len() >= 8 {
                return None;
            }
            self.next += 0x1000;
            let addr = 0x5000_0000 + self.next;
            self.tables.insert(addr, [0; 512]);
            Some(addr)
        }
        fn read_entry(&self, table: u64, index: usize) -> u64 {
            self.tables[&table][index]
        }
        fn write_entry(&mut self, table: u64, index: usize, value: u64) {
            self.tables.get_mut(&table).unwrap()[index] = value;
        }
    }

    #[test]
    fn maps_ram_and_nvram_with_2m_leaves_in_both_formats() {
        for format in [Format::Npt, Format::Ept] {
            let mut mem = Frames::default();
            let mut t = ScaffoldNested::new(&mut mem, format).unwrap();
            assert_eq!(t.map(&mut mem, 0, 0x800_0000, 64 << 20).unwrap(), 32);
            assert_eq!(
                t.map(&mut mem, 0x1_0000_0000, 0x1_0000_0000, 32 << 20)
                    .unwrap(),
                16
            );
            // PML4, one PDPT, two PDs: the minimum for this layout.
            assert_eq!(t.table_pages(), 4);
            assert_eq!(t.translate(&mem, 0x1234), Some(0x800_1234));
            assert_eq!(t.translate(&mem, 0x3ff_ffff), Some(0xbff_ffff));
            assert_eq!(t.translate(&mem, 0x400_0000), None);
            assert_eq!(t.translate(&mem, 0x1_01ff_fff0), Some(0x1_01ff_fff0));
            assert_eq!(t.translate(&mem, u64::MAX), None);
            let pml4 = t.root_pointer() & ADDRESS_MASK;
            let pdpt = mem.read_entry(pml4, 0) & ADDRESS_MASK;
            let pd = mem.read_entry(pdpt, 0) & ADDRESS_MASK;
            let leaf = mem.read_entry(pd, 0);
            match format {
                Format::Npt => {
                    assert_eq!(t.root_pointer(), pml4);
                    assert_eq!(mem.read_entry(pml4, 0) & 0xfff, 0x7, "U/S on tables");
                    assert_eq!(leaf, 0x800_0000 | 0x87, "U/S on leaves");
                }
                Format::Ept => {
                    assert_eq!(t.root_pointer(), pml4 | 0x1e);
                    assert_eq!(leaf, 0x800_0000 | 0xb7);
                }
            }
        }
    }

    #[test]
    fn refuses_unaligned_overlapping_and_out_of_range_mappings() {
        let mut mem = Frames::default();
        let mut t = ScaffoldNested::new(&mut mem, Format::Npt).unwrap();
        assert!(matches!(
            t.map(&mut mem, 0x1000, 0, PAGE_2M),
            Err(NestedError::Unaligned { .. })
        ));
        assert!(matches!(
            t.map(&mut mem, GPA_LIMIT - PAGE_2M, 0, 2 * PAGE_2M),
            Err(NestedError::OutOfRange { .. })
        ));
        t.map(&mut mem, 0, 0, 4 * PAGE_2M).unwrap();
        assert_eq!(
            t.map(&mut mem, 2 * PAGE_2M, 0, 4 * PAGE_2M),
            Err(NestedError::AlreadyMapped { gpa: 2 * PAGE_2M })
        );
        // The failed call wrote nothing past the existing pages.
        assert_eq!(t.translate(&mem, 4 * PAGE_2M), None);
        // Tables in 8 different GiB need more frames than the mock has.
        let mut result = Ok(0);
        for gib in 1..9 {
            result = t.map(&mut mem, gib << 39, 0, PAGE_2M);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(NestedError::OutOfFrames));
    }
}
