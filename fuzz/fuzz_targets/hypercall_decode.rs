//! The `hypercall_decode` target: its body, and what it checks, are in
//! `fuzz-targets/src/hypercall_decode.rs` (`nvirt_fuzz_targets::hypercall_decode`), where
//! `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::hypercall_decode::Input| {
    nvirt_fuzz_targets::hypercall_decode::run(input);
});
