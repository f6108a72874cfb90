//! Crashes during and after recovery.
//!
//! `Log::open` writes: it rewrites a damaged or stale superblock copy and
//! appends an epoch record. A crash at any point of those writes must
//! recover to exactly the state the interrupted recovery found. And after a
//! recovery, new operations over a torn tail (with payloads that differ
//! from the torn ones only in their first word) must again satisfy the
//! prefix rule at every crash point: stale bytes never rejoin the chain.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Op, State, base_image, open, payload, record, recover, report};
use nvirt_persist_meta::sim::{CrashConfig, CrashStats, Event, SimPmem, check_recovery_crashes};

/// A scenario whose crash images include torn groups, torn checkpoints,
/// superblocks whose switch words disagree, and abandoned groups.
fn first_run() -> common::Run {
    let setup: Vec<Op> = (1..=3).map(|id| Op::Append(payload(id, 40))).collect();
    let ops = vec![
        Op::Group(vec![payload(10, 40), payload(11, 100), payload(12, 8)]),
        Op::Abandon(vec![payload(20, 40)]),
        Op::Checkpoint,
        Op::Group(vec![payload(30, 40), payload(31, 40)]),
        Op::Append(payload(40, 100)),
    ];
    let (image, _) = base_image(4096, &setup);
    record(image, &ops)
}

/// Recovers `image` on a simulator and checks every crash image of that
/// recovery's own writes; returns the counts and whether it repaired a
/// superblock.
fn recovery_crashes(image: &[u8], state: &State) -> (CrashStats, bool) {
    let (log, again) = open(SimPmem::from_image(image.to_vec()));
    assert_eq!(&again, state);
    let sim = log.into_pmem();
    let repaired = sim
        .events()
        .iter()
        .any(|e| matches!(e, Event::Store { word, .. } if *word < 0x2000 / 8));
    let stats = check_recovery_crashes(&sim, state, &CrashConfig::default(), recover)
        .unwrap_or_else(|e| panic!("{e}"));
    (stats, repaired)
}

#[test]
fn crash_during_recovery_recovers_the_same_state() {
    // Every crash image whose recovery repairs a superblock, and every
    // 48th of the others.
    let run = first_run();
    let mut total = CrashStats::default();
    let (mut starts, mut repaired, mut n) = (0, 0, 0);
    run.check_crashes(&CrashConfig::default(), |image, _, state| {
        n += 1;
        let switch_words_differ = image[64..72] != image[0x1040..0x1048];
        if switch_words_differ || n % 48 == 0 {
            let (stats, did_repair) = recovery_crashes(image, state);
            total.add(&stats);
            starts += 1;
            repaired += usize::from(did_repair);
        }
    });
    report(
        &format!(
            "crash during recovery ({starts} starting images, {repaired} with superblock repairs)"
        ),
        &total,
    );
    assert!(repaired > 0, "no starting image needed a superblock repair");
}

#[test]
fn crash_while_repairing_a_damaged_superblock() {
    let run = first_run();
    let state = run.states().last().unwrap().clone();
    let mut total = CrashStats::default();
    for (copy, byte) in [(0usize, 20usize), (1, 0x1000 + 3), (1, 0x1000 + 60)] {
        let mut image = run.sim().image().to_vec();
        image[byte] ^= 0x10;
        let (stats, repaired) = recovery_crashes(&image, &state);
        assert!(repaired, "copy {copy} was not rewritten");
        total.add(&stats);
    }
    report("crash while repairing a damaged superblock copy", &total);
}

#[test]
fn crashes_after_recovery_over_torn_tails() {
    // Every 250th crash image of the first run (torn groups, torn
    // checkpoints, abandoned groups) is recovered and followed by a second
    // run whose records have the same lengths as the first run's and
    // differ only in their ids.
    let run = first_run();
    let mut total = CrashStats::default();
    let config = CrashConfig {
        exhaustive_limit: 256,
        samples: 32,
        seed: 3,
    };
    let (mut starts, mut n) = (0u32, 0);
    run.check_crashes(&CrashConfig::default(), |image, _, _| {
        n += 1;
        if n % 250 != 0 {
            return;
        }
        starts += 1;
        let base = 1000 * starts;
        let ops = vec![
            Op::Group(vec![
                payload(base + 10, 40),
                payload(base + 11, 100),
                payload(base + 12, 8),
            ]),
            Op::Append(payload(base + 40, 100)),
            Op::Group(vec![payload(base + 30, 40), payload(base + 31, 40)]),
        ];
        let second = record(image.to_vec(), &ops);
        total.add(&second.check_crashes(&config, |_, _, _| {}));
    });
    report(
        &format!("crash after recovery ({starts} torn starting images)"),
        &total,
    );
}

#[test]
fn stale_records_aligned_with_the_new_chain_stay_dead() {
    // A torn group of records sized 64, 64, 72, 64 bytes. After recovery
    // the chain restarts at the group's offset with a 32-byte epoch
    // record; a second group sized 96, 72, 64 then puts its 2nd and 3rd
    // headers exactly where the torn group's 3rd and 4th headers lie, with
    // the same sequence numbers. Only the epoch tells them apart.
    let (image, _) = base_image(4096, &[Op::Append(payload(1, 24))]);
    let first = record(
        image,
        &[Op::Group(vec![
            payload(10, 32),
            payload(11, 32),
            payload(12, 40),
            payload(13, 8),
        ])],
    );
    let config = CrashConfig {
        exhaustive_limit: 1 << 12,
        samples: 256,
        seed: 11,
    };
    // Offsets of the group's records in the finished image.
    let done = first.sim().image().to_vec();
    let mut offsets = Vec::new();
    nvirt_persist_meta::inspect(&common::Image(&done), |r| offsets.push(r.offset() as usize));
    let stale = offsets[offsets.len() - 2]..offsets[offsets.len() - 1] + 64;
    let mut total = CrashStats::default();
    let (mut torn, mut candidates) = (0u32, 0u32);
    first.check_crashes(&CrashConfig::default(), |image, j, _| {
        // Only images where the group is torn but its last two records
        // are intact: those are the ones a new chain could pick up.
        if j == first.states().len() - 1 || image[stale.clone()] != done[stale.clone()] {
            return;
        }
        candidates += 1;
        torn += 1;
        let base = 100 * torn;
        let second = record(
            image.to_vec(),
            &[Op::Group(vec![
                payload(base, 64),
                payload(base + 1, 40),
                payload(base + 2, 8),
            ])],
        );
        total.add(&second.check_crashes(&config, |_, _, _| {}));
    });
    report(
        &format!("stale records aligned with the new chain ({torn} torn starting images)"),
        &total,
    );
    assert!(torn > 0);
}

#[test]
fn recovery_of_recovered_images_is_idempotent() {
    // Opening twice in a row (a crash right after recovery) adds only an
    // epoch record each time.
    let run = first_run();
    let image = run.sim().image().to_vec();
    let (log, state) = open(SimPmem::from_image(image));
    let (log, again) = open(log.into_pmem());
    assert_eq!(state, again);
    let (_, third) = open(log.into_pmem());
    assert_eq!(state, third);
    assert_eq!(&state, run.states().last().unwrap());
}
