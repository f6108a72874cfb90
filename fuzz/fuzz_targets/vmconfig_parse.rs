//! The `vmconfig_parse` target: its body, and what it checks, are in
//! `fuzz-targets/src/vmconfig_parse.rs` (`nvirt_fuzz_targets::vmconfig_parse`),
//! where `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nvirt_fuzz_targets::vmconfig_parse::fuzz(data));
