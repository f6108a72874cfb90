//! The `nvpool_ops` target: its body, and what it checks, are in
//! `fuzz-targets/src/nvpool_ops.rs` (`nvirt_fuzz_targets::nvpool_ops`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::nvpool_ops::Input| {
    nvirt_fuzz_targets::nvpool_ops::run(input);
});
