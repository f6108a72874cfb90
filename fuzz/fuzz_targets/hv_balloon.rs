//! The `hv_balloon` target: its body, and what it checks, are in
//! `fuzz-targets/src/hv_balloon.rs` (`nvirt_fuzz_targets::hv_balloon`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::hv_balloon::Input| {
    nvirt_fuzz_targets::hv_balloon::run(input);
});
