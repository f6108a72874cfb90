//! `nvirt log inspect`: sample region images written through the in-memory
//! `Pmem` (and damaged on purpose), checked line by line.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Output, run};
use std::ffi::OsStr;

use std::path::{Path, PathBuf};

use nvirt_persist_meta::{Log, MemPmem, Raw, RecordKind};

const KIND: RecordKind = match RecordKind::new(0x42) {
    Some(k) => k,
    None => unreachable!(),
};

/// Region of the samples: superblocks, two 4 KiB slots, 4 KiB of records
/// from 0x4000.
const REGION: usize = 0x5000;

/// Writes a sample image and returns its path.
fn save(name: &str, bytes: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("log-inspect-{name}.img"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A log with three single records and a group of two.
fn sample() -> Log<MemPmem> {
    let mut log = Log::format(MemPmem::new(REGION), 1000).unwrap();
    for p in [&b"one"[..], b"two", b"three"] {
        log.append(&Raw {
            kind: KIND,
            payload: p,
        })
        .unwrap();
    }
    log.append_group(&[
        Raw {
            kind: KIND,
            payload: &[4; 40],
        },
        Raw {
            kind: KIND,
            payload: &[5; 100],
        },
    ])
    .unwrap();
    log
}

fn inspect(path: &Path) -> Output {
    run([OsStr::new("log"), OsStr::new("inspect"), path.as_os_str()])
}

#[test]
fn a_valid_log_lists_every_record_and_where_replay_stops() {
    let image = sample().into_pmem().into_bytes();
    let out = inspect(&save("valid", &image));
    assert_eq!(out.status, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "image: 20480 bytes");
    assert_eq!(
        lines[1],
        "superblock 0 offset=0x0: ok version=3 region=0x5000 slot=0x1000 records=0x4000+0x1000"
    );
    assert!(lines[2].starts_with("superblock 1 offset=0x1000: ok"));
    assert_eq!(lines[3], "switch 0: generation=0");
    assert_eq!(lines[4], "switch 1: generation=0");
    assert_eq!(
        lines[5],
        "checkpoint: generation=0 offset=0x2000 epoch=0 next-seq=1 len=0 crc=ok"
    );
    // Format 3: each group is a line-aligned 32-byte header and its
    // records packed behind it, each a 4-byte entry header and its payload;
    // a record's offset is its entry header's.
    assert_eq!(
        lines[6],
        "record offset=0x4020 seq=1 kind=0x0042 len=3 crc=ok end"
    );
    assert_eq!(
        lines[7],
        "record offset=0x4060 seq=2 kind=0x0042 len=3 crc=ok end"
    );
    assert_eq!(
        lines[8],
        "record offset=0x40a0 seq=3 kind=0x0042 len=5 crc=ok end"
    );
    assert_eq!(
        lines[9],
        "record offset=0x40e0 seq=4 kind=0x0042 len=40 crc=ok"
    );
    assert_eq!(
        lines[10],
        "record offset=0x410c seq=5 kind=0x0042 len=100 crc=ok end"
    );
    assert_eq!(lines[11], "stop offset=0x4180: blank (never written)");
    assert_eq!(
        lines[12],
        "replay: 5 records in 4 groups (0 epoch records); next append offset=0x4180 seq=6 epoch=0; 384 of 4096 record bytes used"
    );
    assert_eq!(lines.len(), 13);
}

#[test]
fn a_torn_group_is_not_replayed() {
    let mut image = sample().into_pmem().into_bytes();
    // Tear the group's last record: one payload byte never reached NVRAM.
    image[0x410c + 4 + 50] ^= 0xff;
    let out = inspect(&save("torn", &image));
    assert_eq!(out.status, 0);
    // One checksum covers the whole group: none of its records is shown
    // (format 2 showed the intact ones, marked `discarded`).
    assert!(!out.stdout.contains("seq=4 kind"), "{}", out.stdout);
    assert!(!out.stdout.contains("seq=5 kind"), "{}", out.stdout);
    assert!(!out.stdout.contains("discarded"), "{}", out.stdout);
    // The complete group before it is replayed, not discarded with it.
    assert!(
        out.stdout
            .contains("record offset=0x40a0 seq=3 kind=0x0042 len=5 crc=ok end\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("stop offset=0x40c0: checksum mismatch"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "replay: 3 records in 3 groups (0 epoch records); next append offset=0x40c0 seq=4"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn stale_records_after_a_checkpoint_stop_replay() {
    let mut log = sample();
    log.checkpoint_bytes(b"the owner's table").unwrap();
    log.append(&Raw {
        kind: KIND,
        payload: b"new",
    })
    .unwrap();
    let image = log.into_pmem().into_bytes();
    let out = inspect(&save("stale", &image));
    assert_eq!(out.status, 0);
    assert!(
        out.stdout
            .contains("checkpoint: generation=1 offset=0x3000 epoch=1 next-seq=6 len=17 crc=ok\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("record offset=0x4020 seq=6 kind=0x0042 len=3 crc=ok end\n"),
        "{}",
        out.stdout
    );
    // The old record 2's group still sits at 0x4040.
    assert!(
        out.stdout.contains(
            "stop offset=0x4040: sequence mismatch (expected 7, found 2): stale record\n"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn a_damaged_superblock_copy_is_reported_and_the_other_used() {
    let mut image = sample().into_pmem().into_bytes();
    image[0x1000 + 20] ^= 1;
    let out = inspect(&save("one-superblock", &image));
    assert_eq!(out.status, 0);
    assert!(
        out.stdout
            .contains("superblock 1 offset=0x1000: invalid: checksum mismatch"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("replay: 5 records"), "{}", out.stdout);
}

#[test]
fn invalid_images_exit_2_with_the_reason() {
    let blank = vec![0; REGION];
    let out = inspect(&save("blank", &blank));
    assert_eq!(out.status, 2);
    assert!(
        out.stdout
            .contains("superblock 0 offset=0x0: invalid: bad magic"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("not a valid log: no valid superblock"),
        "{}",
        out.stderr
    );

    let mut bad_checkpoint = sample().into_pmem().into_bytes();
    bad_checkpoint[0x2000 + 8] ^= 1; // generation 0's header
    let out = inspect(&save("bad-checkpoint", &bad_checkpoint));
    assert_eq!(out.status, 2);
    assert!(
        out.stdout
            .contains("checkpoint: invalid: checksum mismatch"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("checkpoint generation 0 at 0x2000 is invalid"),
        "{}",
        out.stderr
    );

    let out = inspect(&save("short", &blank[..100]));
    assert_eq!(out.status, 2);

    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-image.img");
    let out = inspect(&missing);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("no-such-image.img"));
}

fn check(path: &Path) -> Output {
    run([OsStr::new("log"), OsStr::new("check"), path.as_os_str()])
}

#[test]
fn check_lists_every_damaged_range_and_the_records_after_it() {
    let mut image = sample().into_pmem().into_bytes();
    let path = save("check-clean", &image);
    let out = check(&path);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "image: 20480 bytes\ncheck: ok\n");
    // The first record's payload: three records and a group follow it.
    image[0x4024] ^= 1;
    let path = save("check-damaged", &image);
    let out = check(&path);
    assert_eq!(out.status, 2);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "image: 20480 bytes");
    assert!(
        lines[1].starts_with(
            "damaged offset=0x4000 len=64: committed record at 0x4000 is damaged (checksum mismatch"
        ),
        "{}",
        out.stdout
    );
    assert!(lines[1].ends_with("lost records: seq 1"), "{}", out.stdout);
    assert_eq!(
        &lines[2..],
        [
            "  affected record seq=2 offset=0x4060 kind=0x0042 len=3",
            "  affected record seq=3 offset=0x40a0 kind=0x0042 len=5",
            "  affected record seq=4 offset=0x40e0 kind=0x0042 len=40",
            "  affected record seq=5 offset=0x410c kind=0x0042 len=100",
            "check: 1 damaged ranges",
        ]
    );
    assert!(out.stderr.contains("1 damaged ranges"), "{}", out.stderr);
    assert!(std::fs::read(&path).unwrap() == image);
}
