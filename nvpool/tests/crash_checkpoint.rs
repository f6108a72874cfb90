//! Crash-state enumeration for checkpoints: an explicit one, and the
//! automatic ones a full record area forces (a change then commits through
//! a checkpoint of the whole pool, or a free checkpoints first).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Op, base_image, meta_config, record, recover_image, report, scrub_config};

#[test]
fn explicit_checkpoint() {
    let setup = vec![
        Op::Create(1, "a", 64),
        Op::Populate(1, 0, 10),
        Op::Running(1),
    ];
    let image = base_image(&setup);
    let ops = vec![
        Op::Checkpoint,
        Op::Create(2, "b", 8),
        Op::Checkpoint,
        Op::Populate(2, 0x9, 3),
    ];
    let run = record(image, &ops);
    let stats = run.check_crashes(&meta_config(), |_, _, _| {});
    report("explicit checkpoints", &stats);
}

#[test]
fn automatic_checkpoints_of_a_full_log() {
    // 8 KiB of record area: each flag change takes 64 bytes, so ~120 of
    // them fill it; the changes that do not fit commit by checkpoint.
    let mut setup = vec![Op::Create(1, "a", 64), Op::Create(2, "b", 64)];
    setup.push(Op::Populate(1, 0, 8));
    for _ in 0..60 {
        setup.push(Op::Running(2));
        setup.push(Op::ShutDown(2));
    }
    let image = base_image(&setup);
    let before = recover_image(&image).unwrap().1.unwrap();
    let mut ops = Vec::new();
    for i in 0..8u64 {
        ops.push(Op::Running(1));
        ops.push(Op::Populate(2, i * 4, 2));
        ops.push(Op::ShutDown(1));
    }
    ops.push(Op::Decrease(2, vec![0, 4], 1));
    let run = record(image, &ops);
    let after = recover_image(run.sim.image()).unwrap().1.unwrap();
    assert!(
        after.log.checkpoint.generation > before.log.checkpoint.generation,
        "no automatic checkpoint happened"
    );
    let stats = run.check_crashes(&scrub_config(), |_, _, _| {});
    report("automatic checkpoints (full log)", &stats);
}
