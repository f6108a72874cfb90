//! Property tests: random operation sequences, valid and invalid, run on a
//! heap and on the per-frame reference model (`nvirt_buddy::model`), which
//! must agree on every result and on the whole state after every step;
//! `check_invariants` runs after every step too.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_buddy::model::{Op, Tally, run};
use nvirt_buddy::{Mfn, MfnRange, Order};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    let zone = proptest::option::weighted(0.3, 0u8..40);
    prop_oneof![
        2 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Op::Add(a, b)),
        6 => (any::<u8>(), zone.clone()).prop_map(|(o, z)| Op::Alloc(o % 8, z)),
        2 => (any::<u8>(), zone).prop_map(|(o, z)| Op::AllocAtMost(o % 8, z)),
        1 => (any::<u64>(), any::<u8>()).prop_map(|(a, o)| Op::Free(a, o)),
        6 => (any::<u32>(), any::<u8>()).prop_map(|(p, t)| Op::FreeAllocated(p, t)),
        1 => (any::<u64>(), any::<u8>()).prop_map(|(a, o)| Op::Claim(a, o)),
        2 => (any::<u32>(), any::<u8>()).prop_map(|(p, o)| Op::ClaimFree(p, o % 6)),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Op::ClaimRange(a, b)),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Op::Reserve(a, b)),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Op::FreeRange(a, b)),
    ]
}

/// Spans at frame 0 (where the block at 0 crosses zones), at odd and
/// aligned bases, and against the top of the frame-number space.
fn span() -> impl Strategy<Value = MfnRange> {
    let base = prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(0x3fu64),
        Just(0x100u64),
        Just(0x1234_5678u64),
        Just(Mfn::LIMIT - 400),
    ];
    (base, 1u64..300).prop_map(|(b, len)| {
        let end = (b + len).min(Mfn::LIMIT - 1);
        MfnRange::from_numbers(b, end).unwrap()
    })
}

/// 512 cases unless `PROPTEST_CASES` asks for more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn heap_matches_model(
        span in span(),
        max_order in 0u8..=8,
        setup in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..4),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let max_order = Order::new(max_order).unwrap();
        let all: Vec<Op> = setup.into_iter().map(|(a, b)| Op::Add(a, b)).chain(ops).collect();
        if let Err(e) = run(span, max_order, &all) {
            prop_assert!(false, "{}", e);
        }
    }

    /// Spans of several whole blocks of the largest order, which start
    /// lazy: adding, splitting, claiming, reserving and querying them, in
    /// whole and in part.
    #[test]
    fn lazy_blocks_match_model(
        base in prop_oneof![Just(0u64), Just(0xffdu64), Just(0x2000u64), Just(0x7_ffc0u64)],
        len in 128u64..800,
        max_order in 6u8..=7,
        setup in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..4),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let span = MfnRange::from_numbers(base, base + len).unwrap();
        let max_order = Order::new(max_order).unwrap();
        let all: Vec<Op> = setup.into_iter().map(|(a, b)| Op::Add(a, b)).chain(ops).collect();
        if let Err(e) = run(span, max_order, &all) {
            prop_assert!(false, "{}", e);
        }
    }

    /// Orders up to the largest (1 GiB) on a small span: most large orders
    /// only ever fail, cleanly.
    #[test]
    fn large_orders_match_model(
        ops in proptest::collection::vec(op(), 0..40),
        seed in any::<u64>(),
    ) {
        let span = MfnRange::from_numbers(0x40_0000 - 256, 0x40_0000 + 256).unwrap();
        let mut all = vec![Op::Add(seed, seed.rotate_left(17))];
        all.extend(ops.into_iter().map(|op| match op {
            Op::Alloc(o, z) => Op::Alloc(o.wrapping_mul(3), z),
            other => other,
        }));
        if let Err(e) = run(span, Order::MAX, &all) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The sequences are not vacuous: over a fixed set of random sequences,
/// every kind of step both succeeds and fails somewhere.
#[test]
fn every_kind_of_step_succeeds_and_fails() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut total = Tally::default();
    for case in 0..300u64 {
        let span = MfnRange::from_numbers(case % 5, case % 5 + 64 + next() % 200).unwrap();
        let mut ops = vec![Op::Add(next(), next())];
        for _ in 0..50 {
            let r = next();
            let (a, b, o) = (next(), next(), (r >> 8) as u8 % 8);
            let z = (r % 3 == 0).then_some((r >> 16) as u8 % 24);
            ops.push(match r % 16 {
                0 => Op::Add(a, b),
                1..=4 => Op::Alloc(o, z),
                5 => Op::AllocAtMost(o, z),
                6 => Op::Free(a, o),
                7..=10 => Op::FreeAllocated(a as u32, b as u8),
                11 => Op::Claim(a, o % 4),
                12 => Op::ClaimFree(a as u32, o % 4),
                13 => Op::ClaimRange(a, a.wrapping_add(b % 16)),
                14 => Op::Reserve(a, a.wrapping_add(b % 16)),
                _ => Op::FreeRange(a, a.wrapping_add(b % 16)),
            });
        }
        let tally = run(span, Order::new((case % 7) as u8).unwrap(), &ops).unwrap();
        total.merge(&tally);
    }
    for kind in 0..10 {
        assert!(total.ok[kind] > 0, "kind {kind} never succeeded: {total:?}");
        assert!(total.err[kind] > 0, "kind {kind} never failed: {total:?}");
    }
}
