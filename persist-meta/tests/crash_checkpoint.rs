//! Crash-state enumeration for checkpoints and truncation: a crash at any
//! point of a checkpoint recovers the same state from the old or the new
//! checkpoint; after truncation, records left over from before (stale
//! records at the append position) never rejoin the chain; a full log is
//! checkpointed and continues.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Image, Op, base_image, owner, payload, record, report};
use nvirt_persist_meta::replay;
use nvirt_persist_meta::sim::CrashConfig;

#[test]
fn checkpoint_then_appends_over_stale_records() {
    let setup: Vec<Op> = (1..=6).map(|id| Op::Append(payload(id, 40))).collect();
    let ops = vec![
        Op::Checkpoint,
        // Same lengths as the records before the checkpoint: the new
        // records land exactly on the old ones, which are intact and differ
        // only in sequence number, epoch and id.
        Op::Append(payload(11, 40)),
        Op::Append(payload(12, 40)),
        Op::Checkpoint,
        Op::Append(payload(13, 40)),
        Op::Group(vec![payload(14, 40), payload(15, 40)]),
        Op::Checkpoint,
        Op::Checkpoint,
    ];
    let (image, state) = base_image(4096, &setup);
    assert_eq!(state.len(), 6);
    let run = record(image, &ops);
    let stats = run.check_crashes(&CrashConfig::default(), |_, _, _| {});
    report("checkpoint and truncation", &stats);
}

#[test]
fn full_log_checkpoints_and_continues() {
    // A 512-byte record area holds seven 40-byte records (72 bytes each)
    // after the epoch record of `open`; the eighth append finds the log
    // full, checkpoints and retries.
    let ops: Vec<Op> = (1..=12).map(|id| Op::Append(payload(id, 40))).collect();
    let (image, _) = base_image(512, &[]);
    let run = record(image, &ops);
    let stats = run.check_crashes(&CrashConfig::default(), |_, _, _| {});
    report("log full, checkpoint, continue", &stats);
    let mut state = common::State::new();
    let recovery = replay(&Image(run.sim().image()), &mut owner(&mut state)).unwrap();
    assert!(
        recovery.checkpoint.generation >= 1,
        "the log never filled up"
    );
    assert_eq!(state.len(), 12);
}

#[test]
fn large_snapshot_checkpoint() {
    // A snapshot of several cache lines (the owner's table).
    let setup: Vec<Op> = (1..=30).map(|id| Op::Append(payload(id, 64))).collect();
    let ops = vec![Op::Checkpoint, Op::Append(payload(99, 64))];
    let (image, _) = base_image(4096, &setup);
    let run = record(image, &ops);
    let stats = run.check_crashes(&CrashConfig::default(), |_, _, _| {});
    report("checkpoint of a 2 KiB snapshot", &stats);
}
