//! The nvirt reference hypervisor's pure logic: everything that can be
//! checked without the machine, tested on the host.
//!
//! The bare-metal binary (`src/main.rs`, built for `x86_64-unknown-none`)
//! uses it for: reading the boot information of Multiboot2, Multiboot1 and
//! PVH ([`bootinfo`]); finding ACPI tables such as the NFIT ([`acpi`]);
//! deciding which physical memory is free, reserved or NVRAM
//! ([`ranges`], [`host_memory`]); the volatile buddy heap and the NV pool
//! every frame comes from ([`heaps`], [`pool`], [`nv_frames`]; [`nv_boot`]
//! recovers or formats the pool and finds each guest's NVRAM again by its
//! stable id); the options on its command
//! line ([`config`]); a guest's memory — its physical-to-machine map
//! ([`p2m`]), its EPT or NPT tables ([`nested`]) checked against the
//! minimal footprint ([`footprint`]), backed and ballooned
//! ([`guest_memory`], [`balloon`]); serving its `memory_op` hypercalls
//! ([`memory_op`]); and laying out and loading the guest ([`guest_abi`],
//! [`guest_setup`], [`guest_console`]).
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

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod audit;
pub mod balloon;
pub mod bootinfo;
pub mod config;
pub mod footprint;
pub mod guest_abi;
pub mod guest_console;
pub mod guest_memory;
pub mod guest_setup;
pub mod heaps;
pub mod host_memory;
pub mod memory_op;
pub mod nested;
pub mod nv_boot;
pub mod nv_frames;
pub mod p2m;
pub mod phys;
pub mod pool;
pub mod ranges;
pub mod regions;
#[cfg(any(test, feature = "std"))]
pub mod testing;
