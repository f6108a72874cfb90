//! The `guest_walk` target: its body, and what it checks, are in
//! `fuzz-targets/src/guest_walk.rs` (`nvirt_fuzz_targets::guest_walk`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::guest_walk::Input| {
    nvirt_fuzz_targets::guest_walk::run(input);
});
