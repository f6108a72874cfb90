//! The `hv_guest_image` target: its body, and what it checks, are in
//! `fuzz-targets/src/hv_guest_image.rs` (`nvirt_fuzz_targets::hv_guest_image`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nvirt_fuzz_targets::hv_guest_image::fuzz(data));
