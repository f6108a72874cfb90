//! Property tests: random operation sequences, valid and invalid, on a pool
//! and on the reference model (`nvirt_nvpool::model`), which must agree on
//! every result and on the whole state after every step; the pool's
//! invariants are checked after every step, and every freed frame must
//! read back as zeros.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_nvpool::model::{Op, Tally, run};
use nvirt_nvpool::{Config, Mfn};
use proptest::prelude::*;

/// Mostly a domain that exists, sometimes one that does not.
fn dom() -> impl Strategy<Value = u8> {
    prop_oneof![9 => 0u8..4, 1 => 200u8..=255]
}

fn op() -> impl Strategy<Value = Op> {
    let gpfns = proptest::collection::vec(0u32..1024, 0..6);
    prop_oneof![
        3 => (prop_oneof![4 => Just(0u8), 1 => 1u8..3], any::<u8>(), any::<u16>())
            .prop_map(|(reuse, name_len, quota)| Op::Create { reuse, name_len, quota: quota % 1200 }),
        6 => (dom(), 0u32..1024, any::<u16>())
            .prop_map(|(dom, gpfn, frames)| Op::Populate { dom, gpfn, frames }),
        3 => (dom(), gpfns.clone(), 0u8..5)
            .prop_map(|(dom, gpfns, order)| Op::Increase { dom, gpfns, order }),
        4 => (dom(), gpfns, 0u8..10)
            .prop_map(|(dom, gpfns, order)| Op::Decrease { dom, gpfns, order }),
        1 => dom().prop_map(|dom| Op::Destroy { dom }),
        2 => (dom(), any::<bool>()).prop_map(|(dom, running)| Op::Mark { dom, running }),
        1 => (dom(), any::<u16>()).prop_map(|(dom, quota)| Op::SetQuota { dom, quota: quota % 1200 }),
        2 => (dom(), any::<u16>()).prop_map(|(dom, nth)| Op::Write { dom, nth }),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Recover),
    ]
}

/// Pools of 256 KiB to 4 MiB of data, with small limits (so that domain,
/// extent and log limits are reached) and unaligned frame bases.
fn config() -> impl Strategy<Value = (u64, Config)> {
    (
        0u64..4,
        2u32..6,
        prop_oneof![Just(48u32), Just(512)],
        any::<bool>(),
        0u64..4,
    )
        .prop_map(|(size, domains, extents, small_log, base)| {
            let data = (64u64 << 10) << (2 * size);
            let config = Config::for_region(0)
                .with_max_domains(domains)
                .with_max_extents(extents)
                .with_record_area(if small_log { 0x2000 } else { 0x10000 })
                .with_frame_base(Mfn::new([0, 1, 0x1ff, 0x4_0000][base as usize]).unwrap());
            let meta = config.geometry(1 << 30).unwrap().metadata_bytes();
            (meta + data, config)
        })
}

/// 256 cases unless `PROPTEST_CASES` asks for more.
fn cases() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn pool_matches_the_model(
        (size, config) in config(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut ops = ops;
        ops.insert(0, Op::Create { reuse: 0, name_len: 4, quota: 800 });
        match run(size, config, &ops) {
            Ok(t) => if std::env::var("NVPOOL_TALLY").is_ok() { eprintln!("TALLY {t:?}"); },
            Err(e) => panic!("{e}"),
        }
    }
}

/// A fixed sequence through every operation, so a regression shows even
/// when the random cases miss it; and proof that the sequences reach the
/// interesting states (refusals, checkpoints, recoveries).
#[test]
fn a_long_sequence_reaches_every_state() {
    let mut ops = vec![
        Op::Create {
            reuse: 0,
            name_len: 5,
            quota: 1000,
        },
        Op::Create {
            reuse: 0,
            name_len: 33,
            quota: 10,
        },
        Op::Create {
            reuse: 1,
            name_len: 2,
            quota: 10,
        },
        Op::Create {
            reuse: 0,
            name_len: 7,
            quota: 300,
        },
    ];
    for i in 0..40u32 {
        ops.push(Op::Populate {
            dom: (i % 3) as u8,
            gpfn: i * 37,
            frames: (i * 13 % 90) as u16,
        });
        ops.push(Op::Write {
            dom: (i % 2) as u8,
            nth: i as u16,
        });
        ops.push(Op::Decrease {
            dom: (i % 2) as u8,
            gpfns: vec![i * 37 + 1, i * 37 + 3],
            order: (i % 2) as u8,
        });
        ops.push(Op::Increase {
            dom: 1,
            gpfns: vec![2000 + i * 8, 2000 + i * 8],
            order: 2,
        });
        ops.push(Op::Increase {
            dom: 1,
            gpfns: vec![2000 + i * 8],
            order: 3,
        });
        ops.push(Op::Mark {
            dom: (i % 2) as u8,
            running: i % 3 == 0,
        });
        if i % 9 == 4 {
            ops.push(Op::Recover);
        }
        if i % 11 == 5 {
            ops.push(Op::Checkpoint);
        }
        if i == 30 {
            ops.push(Op::Destroy { dom: 1 });
            ops.push(Op::Create {
                reuse: 0,
                name_len: 3,
                quota: 500,
            });
        }
    }
    let config = Config::for_region(0)
        .with_max_domains(3)
        .with_max_extents(400)
        .with_record_area(0x2000)
        .with_frame_base(Mfn::new(0x1ff).unwrap());
    let size = config.geometry(1 << 30).unwrap().metadata_bytes() + (2 << 20);
    let tally: Tally = run(size, config, &ops).unwrap();
    assert!(tally.ok > 60 && tally.refused > 20, "{tally:?}");
    assert!(tally.recoveries >= 4 && tally.checkpoints >= 4, "{tally:?}");
}
