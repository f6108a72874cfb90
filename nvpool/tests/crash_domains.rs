//! Crash-state enumeration for the operations on whole domains: create,
//! mark running, mark shut down, set quota, destroy (with its scrub), and
//! a new domain taking the destroyed domain's slot and frames.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Op, base_image, meta_config, record, report, scrub_config};

#[test]
fn create_mark_and_quota() {
    let image = base_image(&[]);
    let ops = vec![
        Op::Create(1, "first", 100),
        Op::Running(1),
        Op::Create(2, "second-domain-name-of-32-bytes!!", 7),
        Op::ShutDown(1),
        Op::Quota(2, 300),
        Op::Running(2),
    ];
    let run = record(image, &ops);
    let stats = run.check_crashes(&meta_config(), |_, _, _| {});
    report("create, mark running/shut down, quota", &stats);
    assert!(stats.images > 100);
}

#[test]
fn destroy_scrubs_before_reuse() {
    let setup = vec![
        Op::Create(1, "a", 64),
        Op::Create(2, "b", 64),
        Op::Populate(1, 0x10, 12),
        Op::Populate(2, 0, 6),
        Op::Write(1, 0x10),
        Op::Write(1, 0x1b),
        Op::Write(2, 0x5),
        Op::Running(1),
    ];
    let image = base_image(&setup);
    let ops = vec![
        Op::Destroy(1),
        // The new domain takes the destroyed one's slot and frames.
        Op::Create(3, "c", 64),
        Op::Populate(3, 0x10, 12),
        Op::Write(3, 0x12),
        Op::Destroy(2),
    ];
    let run = record(image, &ops);
    let stats = run.check_crashes(&scrub_config(), |_, _, _| {});
    report("destroy (scrub) and reuse", &stats);
    assert!(stats.points > 1000);
}
