//! The `hv_nvpool_guest` target: its body, and what it checks, are in
//! `fuzz-targets/src/hv_nvpool_guest.rs` (`nvirt_fuzz_targets::hv_nvpool_guest`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::hv_nvpool_guest::Input| {
    nvirt_fuzz_targets::hv_nvpool_guest::run(input);
});
