//! The `persist_meta_damage` target: its body, and what it checks, are in
//! `fuzz-targets/src/persist_meta_damage.rs` (`nvirt_fuzz_targets::persist_meta_damage`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nvirt_fuzz_targets::persist_meta_damage::fuzz(data));
