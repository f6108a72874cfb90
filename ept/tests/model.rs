//! Property tests: random map / replace / unmap / protect / memory-type /
//! promote sequences against the reference model (`nvirt_ept::model`),
//! for both formats and both merge policies, with frame exhaustion
//! injected. After every step, through an independent walker written from
//! the manuals: every page translates as the model says, every entry is
//! valid and no table is referenced twice, the page decomposition is the
//! expected one (the minimal, greedy largest-aligned one under eager
//! merging) and the table count is the minimum for it.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_ept::host::HostFrames;
use nvirt_ept::model::{Checker, Kind, Step, Walker};
use nvirt_ept::{Config, Ept, Format, HostPhysAddr, MemType, Merge, Npt, Perms};
use proptest::prelude::*;

const PAT_LINUX: u64 = 0x0407_0506_0007_0106;
const PERMS: [Perms; 4] = [Perms::READ, Perms::RW, Perms::RX, Perms::RWX];
const HOST_BASE: u64 = 64 << 30;

fn gpa() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..4).prop_map(|g| g << 30),
        (0u64..2048).prop_map(|m| m << 21),
        (0u64..1 << 20).prop_map(|p| p << 12),
        (0u64..4, 0u64..1024).prop_map(|(g, p)| (g << 30) + (p << 12)),
    ]
}

fn len() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (1u64..=16).prop_map(|n| n << 12),
        3 => (1u64..=4).prop_map(|n| n << 21),
        1 => (1u64..=600).prop_map(|n| n << 12),
        1 => (1u64..=2).prop_map(|n| n << 30),
        1 => (1u64..=3, 0u64..8).prop_map(|(g, p)| (g << 30) + (p << 12)),
    ]
}

/// Host minus guest address, with a length: the alignment of the host
/// address relative to the guest decides the page sizes. Long runs of
/// 4 KiB pages are kept short so that checking every page stays cheap.
fn delta_len() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        (Just(0), len()),
        ((0u64..4).prop_map(|g| g << 30), len()),
        ((0u64..512).prop_map(|m| m << 21), len()),
        (
            (0u64..512).prop_map(|p| p << 12),
            (1u64..=4096).prop_map(|n| n << 12)
        ),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (gpa(), delta_len(), 0..4usize, 0..5usize, any::<bool>())
            .prop_map(|(gpa, (delta, len), perms, mem, replace)| Step::Map {
                gpa, delta, len, perms: PERMS[perms], mem: MemType::ALL[mem], replace,
            }),
        3 => (gpa(), len()).prop_map(|(gpa, len)| Step::Unmap { gpa, len }),
        4 => (gpa(), len(), 0..4usize).prop_map(|(gpa, len, p)| Step::Protect { gpa, len, perms: PERMS[p] }),
        2 => (gpa(), len(), 0..5usize).prop_map(|(gpa, len, m)| Step::SetMem { gpa, len, mem: MemType::ALL[m] }),
        2 => (gpa(), len()).prop_map(|(gpa, len)| Step::Promote { gpa, len }),
        1 => Just(Step::Reclaim),
        1 => (0usize..4).prop_map(Step::Starve),
    ]
}

fn run_case<F: Format>(format: F, kind: Kind, config: Config, steps: &[Step]) {
    let frames = HostFrames::new(HostPhysAddr::new(1 << 32).expect("an address"), 1 << 16);
    let walker = Walker {
        kind,
        phys_bits: config.physical_bits(),
        pages_1g: config.uses_1g(),
    };
    let mut checker = Checker::new(format, walker, config, &frames, HOST_BASE);
    for step in steps {
        checker.step(step);
    }
    checker.finish();
}

fn npt() -> (Npt, Kind) {
    (
        Npt::new().with_pat(PAT_LINUX),
        Kind::Npt {
            pat: PAT_LINUX,
            nx: true,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ept_eager(steps in prop::collection::vec(step(), 1..24)) {
        run_case(Ept::new(), Kind::Ept, Config::new().pages_1g(true), &steps);
    }

    #[test]
    fn npt_eager(steps in prop::collection::vec(step(), 1..24)) {
        let (f, k) = npt();
        run_case(f, k, Config::new().pages_1g(true), &steps);
    }

    #[test]
    fn ept_explicit(steps in prop::collection::vec(step(), 1..24)) {
        // Not-present entries carry suppress-#VE here: they must still read as empty.
        let ept = Ept::new().with_suppress_ve(true).with_ignore_pat(true);
        run_case(ept, Kind::Ept, Config::new().pages_1g(true).merge(Merge::Explicit), &steps);
    }

    #[test]
    fn npt_explicit_without_1g(steps in prop::collection::vec(step(), 1..24)) {
        let (f, k) = npt();
        run_case(f, k, Config::new().merge(Merge::Explicit), &steps);
    }

    #[test]
    fn npt_eager_without_1g_narrow(steps in prop::collection::vec(step(), 1..24)) {
        let (f, k) = npt();
        run_case(f, k, Config::new().phys_bits(40), &steps);
    }
}
