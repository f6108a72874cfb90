//! Property tests of [`nvirt_buddy::PerCpuHeap`] seen from one thread:
//! random allocations on two CPUs, frees (right, wrong, double) and
//! hand-backs, checked against the per-frame reference model after every
//! step (`nvirt_buddy::model::run_per_cpu`).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_buddy::model::{PerCpuOp, run_per_cpu};
use nvirt_buddy::{MfnRange, Order};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = PerCpuOp> {
    let zone = proptest::option::weighted(0.2, 0u8..40);
    prop_oneof![
        1 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| PerCpuOp::Add(a, b)),
        4 => (0u8..3, any::<u8>(), zone).prop_map(|(c, o, z)| PerCpuOp::Alloc(c, o % 4, z)),
        4 => (0u8..3, any::<u8>()).prop_map(|(c, n)| PerCpuOp::AllocFrames(c, n)),
        1 => (any::<u64>(), any::<u8>()).prop_map(|(a, o)| PerCpuOp::Free(a, o)),
        8 => (any::<u32>(), any::<u8>()).prop_map(|(p, t)| PerCpuOp::FreeAllocated(p, t)),
        1 => (0u8..3).prop_map(PerCpuOp::Drain),
        1 => Just(PerCpuOp::DrainAll),
    ]
}

/// Spans holding several reservations, at an aligned and an odd base, some
/// with blocks smaller than a reservation.
fn span() -> impl Strategy<Value = (MfnRange, Order)> {
    let base = prop_oneof![Just(0u64), Just(0x200u64), Just(0x1_0003u64)];
    (
        base,
        1u64..2200,
        prop_oneof![Just(3u8), Just(9u8), Just(12u8)],
    )
        .prop_map(|(b, len, o)| {
            (
                MfnRange::from_numbers(b, b + len).unwrap(),
                Order::new(o).unwrap(),
            )
        })
}

/// 256 cases unless `PROPTEST_CASES` asks for more.
fn config() -> ProptestConfig {
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
    #![proptest_config(config())]

    #[test]
    fn per_cpu_heap_matches_model(
        (span, max) in span(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        if let Err(e) = run_per_cpu(span, max, &ops) {
            panic!("{e}");
        }
    }
}
