//! The ACPI NVDIMM Firmware Interface Table (NFIT, ACPI 6.0 §5.2.25).
//!
//! Modern NVDIMMs need not appear in E820 at all (QEMU's `-device nvdimm`
//! does not): their system-physical-address (SPA) ranges are described only
//! here. [`Nfit::parse`] checks the header (signature, length, checksum) and
//! the bounds of every sub-structure before anything is returned;
//! [`Nfit::spa_ranges`] then decodes the SPA Range structures, and
//! [`Nfit::add_pmem_to`] adds the persistent-memory ones to a map as
//! [`Kind::Pmem`](crate::Kind::Pmem).
//!
//! Layout (little-endian):
//!
//! | offset | field |
//! |---|---|
//! | 0 | standard ACPI header: signature `NFIT`, length `u32` at 4, checksum at 9 |
//! | 36 | reserved `u32` |
//! | 40 | sub-structures: `type: u16`, `length: u16`, body |
//!
//! SPA Range structure (type 0, 56 bytes; 64 with the ACPI 6.4 location cookie):
//!
//! | offset | field |
//! |---|---|
//! | 4 | range index `u16` |
//! | 6 | flags `u16` |
//! | 12 | proximity domain `u32` |
//! | 16 | address range type GUID |
//! | 32 | base `u64` |
//! | 40 | length `u64` |
//! | 48 | memory mapping attributes `u64` (EFI memory attributes) |
//! | 56 | location cookie `u64` (if flag bit 2) |

//!
//! The pieces: [`Nfit`] and its errors (`table.rs`), the SPA Range
//! structure and its GUIDs (`spa.rs`), [`NfitBuilder`] (`builder.rs`).

mod builder;
mod spa;
mod table;

pub use builder::NfitBuilder;
pub use spa::{Guid, SpaFlags, SpaRange, SpaType};
pub use table::{Nfit, NfitError, Structure};

/// Bytes before the first sub-structure: the ACPI header and 4 reserved bytes.
pub const STRUCTURES_OFFSET: usize = 40;
/// Sub-structure type of an SPA Range structure.
pub const SPA_RANGE_TYPE: u16 = 0;
/// Minimum length of an SPA Range structure (ACPI 6.0).
pub const SPA_RANGE_MIN_LEN: usize = 56;

#[cfg(test)]
mod tests;
