//! Crash-state enumeration for group commits: a group of records shares one
//! fence and survives a crash entirely or not at all; abandoned groups never
//! survive and leave the log usable.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Op, base_image, payload, record, report};
use nvirt_persist_meta::sim::CrashConfig;

fn group(first_id: u32, lens: &[usize]) -> Op {
    Op::Group(
        lens.iter()
            .zip(first_id..)
            .map(|(&len, id)| payload(id, len))
            .collect(),
    )
}

#[test]
fn groups_of_two_to_eight() {
    let ops = vec![
        group(100, &[8, 8]),
        group(200, &[40, 4, 100]),
        Op::Append(payload(300, 30)),
        group(400, &[20; 8]),
        group(500, &[64, 64, 64, 64]),
        group(600, &[200, 8]),
    ];
    let (image, _) = base_image(8192, &[Op::Append(payload(1, 50))]);
    let run = record(image, &ops);
    let stats = run.check_crashes(&CrashConfig::default(), |_, _, _| {});
    report("group commit (2..8 records)", &stats);
    assert!(stats.sampled_points > 0);
}

#[test]
fn group_of_eight_exhaustive_where_small() {
    let ops = vec![group(10, &[4; 8]), group(20, &[4; 8])];
    let (image, _) = base_image(4096, &[]);
    let run = record(image, &ops);
    let config = CrashConfig {
        exhaustive_limit: 1 << 14,
        samples: 1000,
        seed: 7,
    };
    let stats = run.check_crashes(&config, |_, _, _| {});
    report(
        "group commit (8 x 4-byte records, 2^14 exhaustive limit)",
        &stats,
    );
}

#[test]
fn abandoned_groups_never_survive() {
    let ops = vec![
        Op::Append(payload(1, 24)),
        Op::Abandon(vec![payload(2, 24), payload(3, 60)]),
        // Same lengths as the abandoned records: their lines differ only in
        // the id word.
        group(4, &[24, 60]),
        Op::Abandon(vec![payload(6, 100)]),
        Op::Append(payload(7, 100)),
    ];
    let (image, _) = base_image(4096, &[]);
    let run = record(image, &ops);
    let stats = run.check_crashes(&CrashConfig::default(), |_, _, _| {});
    report("abandoned groups", &stats);
}

#[test]
fn abandoned_records_aligned_with_later_records_stay_dead() {
    // The abandoned group's stored headers sit exactly where the next
    // group's headers go, with the same sequence numbers: once as if no
    // epoch record were written (same sizes), once after the epoch record
    // the abandon writes (sizes shifted by its 32 bytes).
    let ops = vec![
        Op::Append(payload(1, 24)),
        Op::Abandon(vec![payload(2, 32), payload(3, 40), payload(4, 8)]),
        group(5, &[32, 40, 8]),
        Op::Abandon(vec![
            payload(8, 32),
            payload(9, 32),
            payload(10, 40),
            payload(11, 8),
        ]),
        group(12, &[64, 40, 8]),
    ];
    let (image, _) = base_image(4096, &[]);
    let run = record(image, &ops);
    let config = CrashConfig {
        exhaustive_limit: 1 << 16,
        ..CrashConfig::default()
    };
    let stats = run.check_crashes(&config, |_, _, _| {});
    report("abandoned records aligned with later records", &stats);
}
