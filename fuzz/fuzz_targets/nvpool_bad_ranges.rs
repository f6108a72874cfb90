//! The `nvpool_bad_ranges` target: its body, and what it checks, are in
//! `fuzz-targets/src/nvpool_bad_ranges.rs` (`nvirt_fuzz_targets::nvpool_bad_ranges`),
//! where `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::nvpool_bad_ranges::Input| {
    nvirt_fuzz_targets::nvpool_bad_ranges::run(input);
});
