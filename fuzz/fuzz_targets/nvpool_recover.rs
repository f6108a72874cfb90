//! The `nvpool_recover` target: its body, and what it checks, are in
//! `fuzz-targets/src/nvpool_recover.rs` (`nvirt_fuzz_targets::nvpool_recover`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nvirt_fuzz_targets::nvpool_recover::fuzz(data));
