//! The `buddy_per_cpu` target: its body, and what it checks, are in
//! `fuzz-targets/src/buddy_per_cpu.rs` (`nvirt_fuzz_targets::buddy_per_cpu`),
//! where `cargo test` also replays its seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: nvirt_fuzz_targets::buddy_per_cpu::Input| {
    nvirt_fuzz_targets::buddy_per_cpu::run(input);
});
