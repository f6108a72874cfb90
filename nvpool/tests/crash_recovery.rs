//! Crashes during recovery. Recovery writes: it rewrites a damaged pool
//! superblock copy, the log repairs itself and appends an epoch record,
//! and the frees a crash interrupted are scrubbed again and noted in the
//! scrub word. A second crash at any point of that must recover to exactly
//! the state the interrupted recovery found.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{
    Op, base_image, check_second_crash, meta_config, record, recover_image, report, scrub_config,
};
use nvirt_persist_meta::sim::{CrashConfig, CrashStats};

/// A run with frees (destroy, decrease) whose crash images include
/// interrupted scrubs.
fn freeing_run() -> common::Run {
    let setup = vec![
        Op::Create(1, "a", 64),
        Op::Create(2, "b", 64),
        Op::Populate(1, 0x10, 12),
        Op::Populate(2, 0, 16),
        Op::Write(1, 0x11),
        Op::Write(2, 0x4),
        Op::Running(1),
        Op::Running(2),
    ];
    let ops = vec![
        Op::Decrease(2, vec![0x4], 2),
        Op::Destroy(1),
        Op::Create(3, "c", 8),
    ];
    record(base_image(&setup), &ops)
}

#[test]
fn crash_while_finishing_interrupted_frees() {
    // Of the crash images whose recovery scrubs again, every 150th (at
    // most 8), and of the others every 500th (at most 8), are recovered on
    // the simulator and that recovery crashed at every point.
    let run = freeing_run();
    let mut total = CrashStats::default();
    let (mut scrubbing, mut other, mut starts) = (0, 0, 0);
    let light = common::scaled(CrashConfig {
        exhaustive_limit: 16,
        samples: 2,
        seed: 9,
    });
    run.check_crashes(&scrub_config(), |c, _, state| {
        let (_, report) = recover_image(c.image).unwrap();
        if report.is_some_and(|r| r.scrubbed_frames > 0) {
            scrubbing += 1;
            if scrubbing % 150 == 1 && scrubbing / 150 < 8 {
                starts += 1;
                total.add(&check_second_crash(c.image, state, &light));
            }
        } else {
            other += 1;
            if other % 500 == 1 && other / 500 < 8 {
                starts += 1;
                total.add(&check_second_crash(c.image, state, &meta_config()));
            }
        }
    });
    report(
        &format!("crash during recovery ({starts} starting images, {scrubbing} needing a scrub)"),
        &total,
    );
    assert!(scrubbing > 0);
}

#[test]
fn crash_while_repairing_a_superblock() {
    let run = freeing_run();
    let image = run.sim.image().to_vec();
    let (state, _) = recover_image(&image).unwrap();
    let mut total = CrashStats::default();
    for byte in [0x20usize, 0x1000 + 3, 0x1000 + 60] {
        let mut damaged = image.clone();
        damaged[byte] ^= 0x10;
        let (again, report) = recover_image(&damaged).unwrap();
        assert_eq!(again, state);
        assert!(report.unwrap().superblock_repairs.contains(&true));
        total.add(&check_second_crash(&damaged, &state, &meta_config()));
    }
    report("crash while repairing a pool superblock", &total);
}

#[test]
fn recovery_is_idempotent() {
    let run = freeing_run();
    let (first, _) = recover_image(run.sim.image()).unwrap();
    // Recover, then recover what that left, three times.
    let mut image = run.sim.image().to_vec();
    for _ in 0..3 {
        let pmem = nvirt_persist_meta::MemPmem::from_bytes(image);
        let geo = nvirt_nvpool::NvPool::probe(&pmem).unwrap();
        let mut work = vec![0u8; geo.work_area_bytes()];
        let (pool, report) = nvirt_nvpool::NvPool::recover(pmem, &mut work).unwrap();
        assert_eq!(common::view(&pool), first);
        assert_eq!(report.scrubbed_frames, 0);
        image = pool.into_region().into_bytes();
    }
}
