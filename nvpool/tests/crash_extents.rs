//! Crash-state enumeration for the operations on extents: populate
//! (several extents in one group), increase reservation, and decrease
//! reservation (splitting extents, freeing whole ones, scrubbing).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Op, base_image, meta_config, record, report, scrub_config};

#[test]
fn populate_and_increase() {
    let image = base_image(&[Op::Create(1, "a", 64), Op::Create(2, "b", 64)]);
    let ops = vec![
        // 13 frames at 0x43: extents of orders 0, 2, 3 (by alignment), then
        // whatever is left.
        Op::Populate(1, 0x43, 13),
        Op::Write(1, 0x43),
        Op::Increase(2, vec![0x100, 0x104, 0x108], 2),
        Op::Populate(2, 0x3, 5),
        Op::Write(2, 0x6),
        Op::Populate(1, 0x200, 16),
    ];
    let run = record(image, &ops);
    let stats = run.check_crashes(&meta_config(), |_, _, _| {});
    report("populate and increase", &stats);
    assert!(stats.images > 500);
}

#[test]
fn decrease_splits_and_scrubs() {
    let setup = vec![
        Op::Create(1, "a", 64),
        Op::Create(2, "b", 64),
        Op::Populate(1, 0x40, 16),
        Op::Populate(2, 0, 8),
        Op::Write(1, 0x41),
        Op::Write(1, 0x48),
        Op::Write(1, 0x4d),
        Op::Write(2, 0x2),
    ];
    let image = base_image(&setup);
    let ops = vec![
        // One frame out of the middle of a 16-frame extent: a split.
        Op::Decrease(1, vec![0x41], 0),
        // Two blocks of 4 frames of the pieces, one of them written.
        Op::Decrease(1, vec![0x48, 0x4c], 2),
        // The frames come back to another domain.
        Op::Populate(2, 0x20, 9),
        Op::Write(2, 0x21),
        // A block covering several whole extents.
        Op::Decrease(2, vec![0x20], 3),
    ];
    let run = record(image, &ops);
    let stats = run.check_crashes(&scrub_config(), |_, _, _| {});
    report("decrease (split, scrub, reuse)", &stats);
    assert!(stats.points > 1000);
}
