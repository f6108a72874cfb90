//! `nvirt pool repair` as a user runs it: refused without `--salvage`
//! (saying what it would do, the file untouched), the salvage with its
//! metadata copy and its report, a harmless re-run, and `lost+found`
//! destroyed like any domain.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::PathBuf;
mod common;

use common::pool as nvirt;

use nvirt_nvpool::{Config, DomainUuid, Gfn, NvPool, SalvageReport};
use nvirt_persist_meta::MemPmem;

fn path(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pool-repair-{name}"));
    let p = p.to_str().unwrap().to_owned();
    // Earlier runs' copies would shift the copy's number.
    for n in 0..4 {
        let _ = std::fs::remove_file(format!("{p}.meta-{n}"));
    }
    p
}

const SIZE: u64 = 4 << 20;

fn work() -> Vec<u8> {
    let config = Config::for_region(SIZE);
    vec![0; config.geometry(SIZE).unwrap().work_area_bytes()]
}

/// A pool built by three opens, guests' data in every frame, then one bit
/// of an early committed record flipped: recovery refuses it.
fn damaged() -> (Vec<u8>, u64) {
    let mut work = work();
    let mut pool = NvPool::format(
        MemPmem::new(SIZE as usize),
        Config::for_region(SIZE),
        &mut work,
    )
    .unwrap();
    let a = pool.create(DomainUuid::new(0xa), "a", 64).unwrap();
    pool.populate(a, Gfn::new(0).unwrap(), 40).unwrap();
    let mut image = pool.into_region();
    for (id, name) in [(0xb, "b"), (0xc, "c")] {
        let (mut pool, _) = NvPool::recover(image, &mut work).unwrap();
        let d = pool.create(DomainUuid::new(id), name, 64).unwrap();
        pool.populate(d, Gfn::new(0x100).unwrap(), 24).unwrap();
        for g in 0x100..0x118 {
            pool.write_guest(d, Gfn::new(g).unwrap(), 0, b"guest data")
                .unwrap();
        }
        pool.persist();
        image = pool.into_region();
    }
    let image = image.into_bytes();
    let meta = NvPool::probe(&MemPmem::from_bytes(image.clone()))
        .unwrap()
        .metadata_bytes();
    for at in 0..meta as usize {
        if image[at] == 0 {
            continue;
        }
        let mut bytes = image.clone();
        bytes[at] ^= 1;
        let mut mem = MemPmem::from_bytes(bytes.clone());
        if let Ok((_, SalvageReport::Salvaged(r))) =
            NvPool::salvage(&mut mem, &mut work, &[], |_| {})
        {
            if r.dropped_records >= 4 && r.quarantined_frames > 0 {
                return (bytes, meta);
            }
        }
    }
    panic!("no flip loses records");
}

#[test]
fn repair_without_consent_says_what_it_would_do_and_writes_nothing() {
    let (bytes, _) = damaged();
    let file = path("dry.img");
    std::fs::write(&file, &bytes).unwrap();
    let out = nvirt(&["repair", &file]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stdout.contains("\ndamaged offset="), "{}", out.stdout);
    assert!(out.stdout.contains("\n  affected record seq="));
    assert!(out.stdout.contains("\nlost: records seq="));
    assert!(out.stdout.contains("\nquarantine mfn=0x"));
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("would salvage: checkpoint-generation=")),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("--salvage") && out.stderr.contains("quarantines"),
        "{}",
        out.stderr
    );
    assert!(std::fs::read(&file).unwrap() == bytes);
    assert!(!std::path::Path::new(&format!("{file}.meta-0")).exists());
}

#[test]
fn salvage_keeps_a_copy_reports_the_loss_and_a_rerun_changes_nothing() {
    let (bytes, meta) = damaged();
    let file = path("salvage.img");
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(nvirt(&["check", &file]).status, 2);
    let out = nvirt(&["repair", &file, "--salvage"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("image: {} bytes, pool at offset 0x0", bytes.len())
    );
    let copy = format!("{file}.meta-0");
    assert!(lines.contains(&format!("metadata copy: {copy} ({meta} bytes)").as_str()));
    assert!(lines.iter().any(|l| l.starts_with("lost: records seq=")));
    let quarantined: u64 = lines
        .iter()
        .filter_map(|l| l.strip_prefix("quarantine mfn="))
        .map(|l| {
            let n = l.split(" frames=").nth(1).unwrap();
            n.split(':').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    let summary = lines.iter().find(|l| l.starts_with("salvaged: ")).unwrap();
    assert!(summary.contains(&format!(" quarantined-frames={quarantined} ")));
    assert!(lines.iter().any(|l| l.starts_with(&format!(
        "lost+found: id=00000000-0000-6c6f-7374-2b666f756e64 frames={quarantined} "
    ))));
    assert_eq!(*lines.last().unwrap(), "check: ok");
    // The copy holds the metadata as it was.
    assert!(std::fs::read(&copy).unwrap() == bytes[..meta as usize]);
    let salvaged = std::fs::read(&file).unwrap();
    assert!(salvaged != bytes && salvaged[meta as usize..] == bytes[meta as usize..]);
    assert!(nvirt(&["check", &file]).stdout.ends_with("check: ok\n"));
    // Again: nothing to do, nothing written, no second copy.
    let out = nvirt(&["repair", &file, "--salvage"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(out.stdout.contains("repair: nothing to salvage"));
    assert!(std::fs::read(&file).unwrap() == salvaged);
    assert!(!std::path::Path::new(&format!("{file}.meta-1")).exists());
    // The damaged image salvaged once more: a new copy, the old one kept.
    std::fs::write(&file, &bytes).unwrap();
    let out = nvirt(&["repair", &file, "--salvage"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("metadata copy: {file}.meta-1 "))
    );
    assert!(std::fs::read(&file).unwrap() == salvaged);
    assert!(std::fs::read(&copy).unwrap() == bytes[..meta as usize]);
    // The operator frees the quarantine: scrubbed like any domain.
    let out = nvirt(&["destroy", &file, "lost+found"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("{quarantined} frames scrubbed"))
    );
    let mem = MemPmem::from_bytes(std::fs::read(&file).unwrap());
    let mut work = work();
    let (pool, _) = NvPool::recover(mem, &mut work).unwrap();
    pool.check().unwrap();
    assert!(pool.find_name("lost+found").is_none());
}

#[test]
fn what_cannot_be_salvaged_exits_2_with_the_reason_unwritten() {
    let file = path("foreign.img");
    std::fs::write(&file, vec![0x5au8; 1 << 20]).unwrap();
    let out = nvirt(&["repair", &file, "--salvage"]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("nothing to salvage"), "{}", out.stderr);
    assert!(std::fs::read(&file).unwrap() == vec![0x5au8; 1 << 20]);
    assert!(!std::path::Path::new(&format!("{file}.meta-0")).exists());
}
