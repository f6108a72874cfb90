//! The `persist_meta_ops` target: its body, and what it checks, are in
//! `fuzz-targets/src/persist_meta_ops.rs` (`nvirt_fuzz_targets::persist_meta_ops`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::persist_meta_ops::Input| {
    nvirt_fuzz_targets::persist_meta_ops::run(input);
});
