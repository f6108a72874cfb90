//! The `hv_linux_image` target: its body, and what it checks, are in
//! `fuzz-targets/src/hv_linux_image.rs` (`nvirt_fuzz_targets::hv_linux_image`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nvirt_fuzz_targets::hv_linux_image::fuzz(data));
