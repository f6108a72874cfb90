//! The nvirt reference hypervisor.
//!
//! Built for `x86_64-unknown-none` this crate is the whole hypervisor: the
//! binary (`src/main.rs`) only hands the boot code's registers to
//! `start` and panics to `on_panic` (both only on bare metal). Its modules are private: the
//! machine layer (`hw`: boot code, console, CPU tables, the SVM and VMX
//! backends, the boot phases and the exit loop) over pure logic that is
//! tested on the host — boot information (Multiboot2, Multiboot1, PVH),
//! the ACPI walk, which physical memory is free, reserved or NVRAM, the
//! volatile buddy heap and the NV pool every frame comes from, a guest's
//! physical-to-machine map and EPT/NPT tables checked against the minimal
//! footprint, its balloon through `memory_op`, and laying out and loading
//! the guest as `nvirt_hypercall_abi::protocol` says.
//!
//! What others may use is small and listed here:
//! - [`nv_pool_config`]: the NV pool configuration the hypervisor gives an
//!   NVRAM region (the host tool sizes NVDIMMs with it);
//! - with the `std` feature, `fuzzing` (the parsers and guest-memory
//!   pieces the fuzz targets drive) and `testing` (host memory in a
//!   buffer, the model-checked balloon driver).
//!
//! ```
//! // The pool metadata an NVRAM region of 64 MiB needs.
//! let config = nvirt_hv::nv_pool_config(64 << 20, nvirt_addr::Mfn::ZERO);
//! let geometry = config.geometry(64 << 20)?;
//! assert!(geometry.metadata_bytes() < 2 << 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]
// Only the machine layer (`hw`) may use `unsafe`; the pure logic never does.
#![deny(unsafe_code)]
// On any target but bare metal the machine layer is compiled out, and with
// it the only user of much of the pure logic; the bare-metal build (which
// `nvirt test` lints with `-D warnings`) still reports real dead code.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]
// Items inside the private modules stay `pub`: the module is the boundary,
// and the crate's public surface is what this file re-exports.
#![allow(unreachable_pub)]

mod acpi;
mod audit;
mod balloon;
mod bootinfo;
mod config;
mod devices;
mod footprint;
mod guest_console;
mod guest_cpuid;
mod guest_memory;
mod guest_setup;
mod heaps;
mod host_memory;
mod linux;
mod memory_op;
mod nested;
mod nv_boot;
mod nv_frames;
mod p2m;
mod phys;
mod pool;
mod ranges;
mod regions;

#[cfg(any(test, feature = "std"))]
pub mod fuzzing;
#[cfg(any(test, feature = "std"))]
pub mod testing;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod hw;

/// The NV pool configuration the hypervisor uses for an NVRAM region of
/// `bytes` whose first frame is host frame `frame_base`. The host tool
/// (`nvirt run`) sizes the NVDIMM it gives the hypervisor with it, so the
/// guest's NVRAM and the pool's metadata both fit.
#[must_use]
pub fn nv_pool_config(bytes: u64, frame_base: nvirt_addr::Mfn) -> nvirt_nvpool::Config {
    nv_boot::config_for(bytes, frame_base)
}

/// Runs the hypervisor from the boot code's entry: `magic` is EAX at entry
/// (which boot protocol), `info` the boot information's address. Never
/// returns: the emulator is stopped with the verdict.
#[cfg(target_os = "none")]
pub fn start(magic: u32, info: u32) -> ! {
    hw::console::init();
    hw::cpu::init();
    hw::hypervisor::run(magic, info)
}

/// Reports a panic on the console and stops the emulator with failure.
#[cfg(target_os = "none")]
pub fn on_panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hw::console::hvprintln!("PANIC: {info}");
    hw::console::exit(false)
}
