//! The `ept_ops` target: its body, and what it checks, are in
//! `fuzz-targets/src/ept_ops.rs` (`nvirt_fuzz_targets::ept_ops`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::ept_ops::Input| {
    nvirt_fuzz_targets::ept_ops::run(input);
});
