//! Crash-state enumeration for single-record appends: every crash image at
//! every crash point recovers to the state after a prefix of the appends
//! that includes every append that had returned.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Op, base_image, payload, record, report};
use nvirt_persist_meta::sim::CrashConfig;

#[test]
fn appends_of_every_size_from_empty() {
    // Sizes around the 32-byte record alignment and 64-byte lines, up to
    // records of seven lines.
    let lens = [4, 8, 24, 28, 32, 33, 40, 60, 64, 100, 200, 400];
    let ops: Vec<Op> = lens
        .iter()
        .zip(1..)
        .map(|(&len, id)| Op::Append(payload(id, len)))
        .collect();
    let (image, _) = base_image(8192, &[]);
    let run = record(image, &ops);
    let stats = run.check_crashes(&CrashConfig::default(), |_, _, _| {});
    report("append (12 sizes, empty log)", &stats);
    assert_eq!(stats.points as usize, run.sim().point() + 1);
    assert!(stats.exhaustive_points > 0 && stats.sampled_points > 0);
}

#[test]
fn appends_after_committed_records() {
    // The new records share cache lines with durable ones.
    let setup: Vec<Op> = (1..=5)
        .map(|id| Op::Append(payload(id, 20 + 13 * id as usize)))
        .collect();
    let ops: Vec<Op> = (10..16).map(|id| Op::Append(payload(id, 44))).collect();
    let (image, state) = base_image(4096, &setup);
    assert_eq!(state.len(), 5);
    let run = record(image, &ops);
    let stats = run.check_crashes(&CrashConfig::default(), |_, _, _| {});
    report("append (after 5 committed records)", &stats);
}

#[test]
fn exhaustive_small_appends() {
    // Small enough that every crash point is enumerated exhaustively.
    let ops: Vec<Op> = (1..=6)
        .map(|id| Op::Append(payload(id, 8 * id as usize)))
        .collect();
    let (image, _) = base_image(4096, &[]);
    let run = record(image, &ops);
    let config = CrashConfig {
        exhaustive_limit: u64::MAX,
        ..CrashConfig::default()
    };
    let stats = run.check_crashes(&config, |_, _, _| {});
    report("append (exhaustive, 6 records of 8..48 bytes)", &stats);
    assert_eq!(stats.sampled_points, 0);
}

#[test]
fn large_appends_and_groups() {
    // Payloads stored a slice at a time with their inner lines written
    // back early: every slice boundary, the padding line after a payload's
    // end, lines shared with the next record's header.
    let ops = vec![
        Op::Append(payload(1, 1100)),
        Op::Append(payload(2, 4096)),
        Op::Group(vec![payload(3, 2100), payload(4, 33), payload(5, 1030)]),
        Op::Append(payload(6, 2047)),
    ];
    let (image, _) = base_image(32768, &[Op::Append(payload(0, 40))]);
    let run = record(image, &ops);
    let stats = run.check_crashes(&CrashConfig::default(), |_, _, _| {});
    report("append (large payloads and a large group)", &stats);
    assert_eq!(stats.points as usize, run.sim().point() + 1);
}
