//! The nvirt reference hypervisor's pure logic: everything that can be
//! checked without the machine, tested on the host.
//!
//! The bare-metal binary (`src/main.rs`, built for `x86_64-unknown-none`)
//! uses it for: reading the boot information of Multiboot2, Multiboot1 and
//! PVH ([`bootinfo`]); finding ACPI tables such as the NFIT ([`acpi`]);
//! deciding which physical memory is free, reserved or NVRAM
//! ([`ranges`], [`host_memory`]); handing out frames ([`frames`]); the
//! options on its command line ([`config`]); laying out and loading the
//! guest ([`guest_abi`], [`guest_setup`]); and the temporary nested
//! translation tables ([`scaffold_nested`]).
//!
//! ```
//! use nvirt_hv::ranges::RangeSet;
//!
//! // Usable RAM minus what the boot loader left there.
//! let mut free = RangeSet::<8>::new();
//! free.insert(0x10_0000..0x800_0000)?;
//! free.remove(0x10_0000..0x14_0000)?; // the hypervisor image
//! assert_eq!(free.ranges(), [0x14_0000..0x800_0000]);
//! # Ok::<(), nvirt_hv::ranges::RangeSetFull>(())
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod bootinfo;
pub mod config;
pub mod frames;
pub mod guest_abi;
pub mod guest_console;
pub mod guest_memory;
pub mod guest_setup;
pub mod host_memory;
pub mod phys;
pub mod ranges;
pub mod scaffold_nested;
