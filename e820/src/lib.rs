//! Firmware memory maps for hypervisors and kernels that manage RAM and
//! non-volatile RAM side by side.
//!
//! A hypervisor's first memory-management act is to read the firmware map
//! and decide what is RAM and what is NVRAM. Firmware maps are messy:
//! unsorted, overlapping, with duplicates; persistent memory arrives as E820
//! type 7, legacy type 12, a vendor code (90), or only in the ACPI NFIT. This
//! crate reads every common form, sanitizes with exactly Linux's semantics,
//! edits, finds the NVRAM, and synthesizes the map a guest should see.
//!
//! ```
//! use nvirt_e820::{Entry, Kind, MemoryMap, text};
//!
//! // Firmware entries, in any order, overlapping: sanitize like Linux.
//! let lines = "\
//!     BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable
//!     BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
//!     BIOS-e820: [mem 0x000000007ff00000-0x000000007fffffff] reserved
//!     BIOS-e820: [mem 0x0000000100000000-0x000000013fffffff] persistent (type 7)";
//! let entries = lines.lines().filter_map(|l| text::parse_line(l).transpose());
//! let entries: Result<Vec<Entry>, _> = entries.collect();
//! let mut map = MemoryMap::<128>::from_entries(entries?)?;
//! assert_eq!(map.kind_at(0x7ff0_0000), Some(Kind::Reserved));
//!
//! // Linux's `memmap=nn!ss` marks more NVRAM.
//! map.apply_cmdline("root=/dev/vda memmap=1G!0x140000000")?;
//! let nvram: Vec<_> = map.nonvolatile().map(|e| e.to_string()).collect();
//! assert_eq!(nvram, [
//!     "[mem 0x0000000100000000-0x000000013fffffff] persistent (type 7)",
//!     "[mem 0x0000000140000000-0x000000017fffffff] persistent (type 12)",
//! ]);
//!
//! // The map a guest with 2 GiB of RAM and 1 GiB of NVRAM should see.
//! let guest = nvirt_e820::GuestLayout::new(2 << 30)
//!     .nvram(1 << 30, Kind::Pmem)
//!     .build::<16>()?;
//! assert_eq!(guest.nvram, Some(0x1_0000_0000..0x1_4000_0000));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules, in the order a boot path uses them:
//! [`formats`] reads and writes binary maps (BIOS, boot params, Multiboot 1
//! and 2, PVH); [`text`] reads Linux's printed maps; [`nfit`] finds NVDIMMs;
//! [`memmap`] applies `memmap=`; [`MemoryMap`] sanitizes, edits and answers
//! queries; [`synth`] lays out guests.
//!
//! No allocator is needed; the feature `std` adds reading
//! `/sys/firmware/memmap` ([`sysfs`]).

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod edit;
mod entry;
mod error;
mod firmware;
pub mod formats;
mod kind;
mod map;
pub mod memmap;
#[cfg(feature = "model")]
pub mod model;
pub mod nfit;
mod sanitize;
pub mod synth;
#[cfg(feature = "std")]
pub mod sysfs;
pub mod text;

/// The examples of the crate's README, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use entry::Entry;
pub use error::{AlignmentError, CapacityError, FormatError, MapError, RangeError, WriteError};
pub use firmware::FirmwareEntry;
pub use formats::{bios, boot_params, multiboot1, multiboot2, pvh};
pub use kind::Kind;
pub use map::MemoryMap;
pub use memmap::{MemmapError, MemmapOp};
pub use nfit::{Nfit, NfitError};
pub use synth::{GuestLayout, GuestMap, SynthError};

/// The shared vocabulary the typed accessors return: a user of the map gets
/// it without depending on `nvirt-addr` directly.
pub use nvirt_addr;
pub use nvirt_addr::{HostPhysAddr, HostPhysRange, OutOfRange, PageSize};
