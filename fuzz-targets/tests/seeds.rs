//! Replays every regression seed in `fuzz/seeds/<target>/` through its
//! target's body, one test per target, so that `cargo test` (without
//! libFuzzer or nightly) keeps every bug a fuzzer found fixed. Each target
//! also gets the empty input, which libFuzzer always tries first.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use nvirt_fuzz_targets::{DECODERS, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs the empty input and every seed of `target`; returns how many seeds.
fn replay(target: &str) -> usize {
    let (_, body) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("{target} is not in TARGETS"));
    body(&[]);
    let decodes = DECODERS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, d)| *d);
    let dir = fuzz_dir().join("seeds").join(target);
    let mut seeds: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        // Only a missing directory means no seeds; any other error fails.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    seeds.sort();
    for seed in &seeds {
        let data = fs::read(seed).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
        eprintln!("{target}: replaying {}", seed.display());
        // A structured target returns quietly on bytes that do not
        // decode: such a seed (its input type changed) would test nothing.
        if let Some(decodes) = decodes {
            assert!(
                decodes(&data),
                "{}: no longer decodes to {target}'s input, so replaying it tests nothing; regenerate it",
                seed.display()
            );
        }
        body(&data);
    }
    println!("{target}: {} seeds replayed", seeds.len());
    seeds.len()
}

macro_rules! seed_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*
        /// The targets that have a test above.
        const TESTED: &[&str] = &[$(stringify!($target)),*];
    };
}

seed_tests!(
    buddy_ops,
    buddy_per_cpu,
    e820_bios,
    e820_boot_params,
    e820_edits,
    e820_memmap,
    e820_multiboot,
    e820_nfit,
    e820_pvh,
    e820_text,
    ept_ops,
    guest_walk,
    hv_acpi,
    hv_balloon,
    hv_bootinfo,
    hv_guest_image,
    hv_linux_image,
    hv_nvpool_guest,
    hypercall_decode,
    nvpool_bad_ranges,
    nvpool_damage,
    nvpool_ops,
    nvpool_recover,
    nvpool_salvage,
    persist_meta_damage,
    persist_meta_ops,
    persist_meta_recover,
    vmconfig_parse,
);

fn target_names() -> BTreeSet<&'static str> {
    TARGETS.iter().map(|(name, _)| *name).collect()
}

#[test]
fn every_seed_directory_names_a_target() {
    let known = target_names();
    let mut seeded = 0;
    for entry in fs::read_dir(fuzz_dir().join("seeds")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            path.is_dir(),
            "fuzz/seeds/{name} is not a directory named after a target"
        );
        assert!(
            known.contains(name.as_str()),
            "fuzz/seeds/{name} names no fuzz target (known: {known:?})"
        );
        seeded += 1;
    }
    assert!(seeded > 0, "no seed directories under fuzz/seeds");
}

#[test]
fn every_target_has_a_test_a_wrapper_and_a_manifest_entry() {
    let known = target_names();
    assert_eq!(known.len(), TARGETS.len(), "a target is listed twice");
    assert_eq!(TESTED.iter().copied().collect::<BTreeSet<_>>(), known);
    // `[[bin]] name = "..."` entries of the cargo-fuzz manifest.
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let bins: BTreeSet<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|bin| {
            let line = bin.lines().find(|l| l.trim_start().starts_with("name"))?;
            line.split('"').nth(1)
        })
        .collect();
    assert_eq!(bins, known, "fuzz/Cargo.toml's [[bin]]s and TARGETS differ");
    for name in &known {
        let wrapper = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = fs::read_to_string(&wrapper).unwrap();
        assert!(
            text.contains(&format!("nvirt_fuzz_targets::{name}::")),
            "{} does not call its body in nvirt_fuzz_targets::{name}",
            wrapper.display()
        );
    }
}

#[test]
fn every_decoder_belongs_to_a_target() {
    let names = target_names();
    for (name, _) in DECODERS {
        assert!(names.contains(name), "DECODERS names {name}, not a target");
    }
}
