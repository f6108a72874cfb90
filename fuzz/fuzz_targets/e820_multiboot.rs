//! The `e820_multiboot` target: its body, and what it checks, are in
//! `fuzz-targets/src/e820_multiboot.rs` (`nvirt_fuzz_targets::e820_multiboot`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nvirt_fuzz_targets::e820_multiboot::fuzz(data));
