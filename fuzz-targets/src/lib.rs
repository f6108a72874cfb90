//! The bodies of the cargo-fuzz targets, one module per target.
//!
//! `fuzz/` is a cargo-fuzz workspace of its own (libFuzzer and sanitizer
//! flags); each of its `fuzz_targets/*.rs` is a thin `fuzz_target!`
//! wrapper around a module here. Living in the main workspace, the bodies
//! also run under `cargo test`: `tests/seeds.rs` replays every regression
//! seed in `fuzz/seeds/<target>/` through [`TARGETS`], so a bug a fuzzer
//! once found stays fixed without libFuzzer or nightly.
//!
//! Every module has `pub fn fuzz(data: &[u8])`, which takes the raw bytes
//! libFuzzer hands the target. Targets whose input is structured also have
//! `Input` (decoded from the bytes with `arbitrary`, as `fuzz_target!`
//! decodes it) and `pub fn run(input: Input)`, which their wrappers call so
//! that `cargo fuzz fmt` still prints the decoded input.

#![allow(clippy::unwrap_used, reason = "a fuzz target fails by panicking")]

use arbitrary::{Arbitrary, Unstructured};
use nvirt_e820::{FirmwareEntry, MapError, MemoryMap};

pub mod buddy_ops;
pub mod buddy_per_cpu;
pub mod e820_bios;
pub mod e820_boot_params;
pub mod e820_edits;
pub mod e820_memmap;
pub mod e820_multiboot;
pub mod e820_nfit;
pub mod e820_pvh;
pub mod e820_text;
pub mod ept_ops;
pub mod guest_walk;
pub mod hv_acpi;
pub mod hv_balloon;
pub mod hv_bootinfo;
pub mod hv_guest_image;
pub mod hv_linux_image;
pub mod hv_nvpool_guest;
pub mod hypercall_decode;
pub mod nvpool_bad_ranges;
pub mod nvpool_damage;
pub mod nvpool_ops;
pub mod nvpool_recover;
pub mod nvpool_salvage;
pub mod persist_meta_damage;
pub mod persist_meta_ops;
pub mod persist_meta_recover;
pub mod vmconfig_parse;

mod pool_history;

/// A target's body: runs one input, panicking on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name in `fuzz/Cargo.toml` and `fuzz/seeds/`, and its
/// body.
pub const TARGETS: &[(&str, Body)] = &[
    ("buddy_ops", buddy_ops::fuzz),
    ("buddy_per_cpu", buddy_per_cpu::fuzz),
    ("e820_bios", e820_bios::fuzz),
    ("e820_boot_params", e820_boot_params::fuzz),
    ("e820_edits", e820_edits::fuzz),
    ("e820_memmap", e820_memmap::fuzz),
    ("e820_multiboot", e820_multiboot::fuzz),
    ("e820_nfit", e820_nfit::fuzz),
    ("e820_pvh", e820_pvh::fuzz),
    ("e820_text", e820_text::fuzz),
    ("ept_ops", ept_ops::fuzz),
    ("guest_walk", guest_walk::fuzz),
    ("hv_acpi", hv_acpi::fuzz),
    ("hv_balloon", hv_balloon::fuzz),
    ("hv_bootinfo", hv_bootinfo::fuzz),
    ("hv_guest_image", hv_guest_image::fuzz),
    ("hv_linux_image", hv_linux_image::fuzz),
    ("hv_nvpool_guest", hv_nvpool_guest::fuzz),
    ("hypercall_decode", hypercall_decode::fuzz),
    ("nvpool_bad_ranges", nvpool_bad_ranges::fuzz),
    ("nvpool_damage", nvpool_damage::fuzz),
    ("nvpool_ops", nvpool_ops::fuzz),
    ("nvpool_recover", nvpool_recover::fuzz),
    ("nvpool_salvage", nvpool_salvage::fuzz),
    ("persist_meta_damage", persist_meta_damage::fuzz),
    ("persist_meta_ops", persist_meta_ops::fuzz),
    ("persist_meta_recover", persist_meta_recover::fuzz),
    ("vmconfig_parse", vmconfig_parse::fuzz),
];

/// The targets whose input is structured, with whether bytes decode to
/// an input. A seed that does not decode would replay as nothing, so the
/// seed tests refuse one.
pub const DECODERS: &[(&str, Decodes)] = &[
    ("buddy_ops", decodes::<buddy_ops::Input>),
    ("buddy_per_cpu", decodes::<buddy_per_cpu::Input>),
    ("e820_edits", decodes::<e820_edits::Input>),
    ("ept_ops", decodes::<ept_ops::Input>),
    ("guest_walk", decodes::<guest_walk::Input>),
    ("hv_balloon", decodes::<hv_balloon::Input>),
    ("hv_nvpool_guest", decodes::<hv_nvpool_guest::Input>),
    ("hypercall_decode", decodes::<hypercall_decode::Input>),
    ("nvpool_bad_ranges", decodes::<nvpool_bad_ranges::Input>),
    ("nvpool_ops", decodes::<nvpool_ops::Input>),
    ("persist_meta_ops", decodes::<persist_meta_ops::Input>),
];

/// Whether bytes decode to a structured target's input.
pub type Decodes = fn(&[u8]) -> bool;

/// Whether `data` decodes to a `T` as [`decode`] would.
pub fn decodes<T: for<'a> Arbitrary<'a>>(data: &[u8]) -> bool {
    decode::<T>(data).is_some()
}

/// Decodes a structured input exactly as `libfuzzer_sys::fuzz_target!`
/// does: too short for the type's minimum size, or not decodable, is no
/// input (libFuzzer is told to drop it).
pub fn decode<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    if data.len() < T::size_hint(0).0 {
        return None;
    }
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

/// Capacity of the maps the fuzz targets build.
pub const CAPACITY: usize = 512;

/// Sanitizes parsed firmware entries and checks the map's invariants; a
/// capacity or range error is a fine answer, a broken map is a bug.
pub fn sanitize_and_check(
    entries: impl IntoIterator<Item = FirmwareEntry>,
) -> Option<MemoryMap<CAPACITY>> {
    match MemoryMap::<CAPACITY>::from_firmware(entries) {
        Ok(map) => {
            check(&map);
            Some(map)
        }
        Err(MapError::Capacity(_) | MapError::Range { .. }) => None,
    }
}

/// Panics if a map breaks an invariant.
pub fn check<const N: usize>(map: &MemoryMap<N>) {
    if let Err(e) = nvirt_e820::model::check_invariants(map) {
        panic!("invariant broken: {e}\n{map}");
    }
}
