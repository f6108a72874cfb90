//! The `buddy_ops` target: its body, and what it checks, are in
//! `fuzz-targets/src/buddy_ops.rs` (`nvirt_fuzz_targets::buddy_ops`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::buddy_ops::Input| {
    nvirt_fuzz_targets::buddy_ops::run(input);
});
