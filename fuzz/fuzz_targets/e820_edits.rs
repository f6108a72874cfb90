//! The `e820_edits` target: its body, and what it checks, are in
//! `fuzz-targets/src/e820_edits.rs` (`nvirt_fuzz_targets::e820_edits`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::e820_edits::Input| {
    nvirt_fuzz_targets::e820_edits::run(input);
});
