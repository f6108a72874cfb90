//! Property tests: every checked operation agrees with exact (u128)
//! arithmetic, and returns `None` exactly where the result would leave the
//! 52-bit physical space.

use nvirt_addr::{
    FrameOffset, Gfn, GfnRange, GuestPhysAddr, GuestPhysRange, Mfn, Order, PAGE_SIZE, PageSize,
};
use proptest::prelude::*;

const ADDR_LIMIT: u128 = 1 << 52;
const FRAME_LIMIT: u128 = 1 << 40;

fn any_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0..(1u64 << 52),
        ((1u64 << 52) - 4096)..(1u64 << 52) + 4096,
        0..(1u64 << 41),
    ]
}

fn in_range<T>(exact: u128, limit: u128, got: Option<T>, get: impl Fn(T) -> u64) -> bool {
    match got {
        Some(v) => exact < limit && u128::from(get(v)) == exact,
        None => exact >= limit,
    }
}

proptest! {
    #[test]
    fn address_construction_and_addition(a in any_value(), b in any_value()) {
        let addr = GuestPhysAddr::new(a);
        prop_assert_eq!(addr.is_some(), u128::from(a) < ADDR_LIMIT);
        if let Some(addr) = addr {
            let sum = u128::from(a) + u128::from(b);
            prop_assert!(in_range(sum, ADDR_LIMIT, addr.checked_add(b), u64::from));
            prop_assert_eq!(addr.checked_sub(b).map(u64::from), a.checked_sub(b));
            prop_assert_eq!(addr.frame().addr().get(), a & !(PAGE_SIZE - 1));
            for size in PageSize::ALL {
                let up = (u128::from(a) + u128::from(size.bytes()) - 1) & !(u128::from(size.bytes()) - 1);
                prop_assert!(in_range(up, ADDR_LIMIT, addr.align_up(size), u64::from));
                prop_assert_eq!(addr.align_down(size).get() % size.bytes(), 0);
                prop_assert_eq!(addr.is_aligned(size), a % size.bytes() == 0);
            }
        }
    }

    #[test]
    fn frame_arithmetic(n in any_value(), k in any_value(), order in 0u8..=18) {
        let frame = Mfn::new(n);
        prop_assert_eq!(frame.is_some(), u128::from(n) < FRAME_LIMIT);
        if let Some(frame) = frame {
            let sum = u128::from(n) + u128::from(k);
            prop_assert!(in_range(sum, FRAME_LIMIT, frame.checked_add(k), u64::from));
            let order = Order::new(order).expect("order");
            prop_assert_eq!(frame.is_aligned(order), n % order.frames() == 0);
            prop_assert!(frame.alignment() >= order || !frame.is_aligned(order));
            prop_assert!(frame.is_aligned(frame.alignment()));
            prop_assert_eq!(Mfn::containing(frame.addr()), frame);
        }
    }

    #[test]
    fn offsets_round_trip(g in 0u64..(1 << 40), m in 0u64..(1 << 40), x in any_value()) {
        let off = FrameOffset::between(Gfn::new(g).expect("gfn"), Mfn::new(m).expect("mfn"));
        if let Some(gfn) = Gfn::new(x) {
            let exact = i128::from(x) + i128::from(m) - i128::from(g);
            match off.to_host(gfn) {
                Some(mfn) => {
                    prop_assert_eq!(i128::from(mfn.get()), exact);
                    prop_assert_eq!(off.to_guest(mfn), Some(gfn));
                }
                None => prop_assert!(exact < 0 || exact >= FRAME_LIMIT as i128),
            }
        }
    }

    #[test]
    fn ranges_match_a_set_model(a in 0u64..64, b in 0u64..64, c in 0u64..64, d in 0u64..64) {
        let r = GfnRange::new(Gfn::new(a.min(b)).expect("gfn"), Gfn::new(a.max(b)).expect("gfn")).expect("range");
        let s = GfnRange::new(Gfn::new(c.min(d)).expect("gfn"), Gfn::new(c.max(d)).expect("gfn")).expect("range");
        let model = |x: GfnRange| (x.start().get()..x.end().get()).collect::<std::collections::BTreeSet<_>>();
        let both: std::collections::BTreeSet<_> = model(r).intersection(&model(s)).copied().collect();
        prop_assert_eq!(r.overlaps(s), !both.is_empty());
        prop_assert_eq!(r.intersection(s).map(model).unwrap_or_default(), both);
        prop_assert_eq!(r.contains_range(s), model(s).is_subset(&model(r)) && (!s.is_empty() || (r.start() <= s.start() && s.end() <= r.end())));
        prop_assert_eq!(r.iter().count() as u64, r.len());
    }

    #[test]
    fn address_ranges_round_to_whole_frames(a in 0u64..(1 << 20), len in 0u64..(1 << 16)) {
        let r = GuestPhysRange::from_len(GuestPhysAddr::new(a).expect("gpa"), len).expect("range");
        let within = r.frames_within();
        let covering = r.frames_covering().expect("low ranges are covered");
        prop_assert!(r.contains_range(within.addrs()) || within.is_empty());
        prop_assert!(covering.addrs().contains_range(r));
        prop_assert!(covering.len() <= within.len() + 2);
    }

    #[test]
    fn ranges_from_numbers_are_checked(a in any_value(), b in any_value()) {
        let r = GfnRange::from_numbers(a, b);
        let valid = u128::from(a) < FRAME_LIMIT && u128::from(b) < FRAME_LIMIT && a <= b;
        prop_assert_eq!(r.is_some(), valid);
        if let Some(r) = r {
            prop_assert_eq!((r.start().get(), r.end().get(), r.len()), (a, b, b - a));
        }
    }
}
