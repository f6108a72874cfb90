//! Property tests: sanitize and every edit against the reference model
//! (`nvirt_e820::model`), which keeps one kind per page plus the set of
//! boundaries where Linux would cut a never-merging kind.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_e820::memmap::MemmapOp;
use nvirt_e820::model::{self, PageModel, Span, entry_of, linux_range_update, spans_of};
use nvirt_e820::{Entry, Kind, MemoryMap};
use proptest::prelude::*;

/// Pages in the modelled address space.
const PAGES: u64 = 48;
const UNIT: u64 = 4096;

fn model_sanitize(raw: &[Span]) -> PageModel {
    PageModel::sanitize(PAGES, raw)
}

fn to_entry(span: Span, base: u64, unit: u64) -> Entry {
    entry_of(span, base, unit).unwrap()
}

fn spans<const N: usize>(map: &MemoryMap<N>, base: u64, unit: u64) -> Vec<Span> {
    spans_of(map, base, unit).unwrap()
}

fn check_invariants<const N: usize>(map: &MemoryMap<N>) {
    if let Err(e) = model::check_invariants(map) {
        panic!("{e}");
    }
}

fn code() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => Just(1u32),
        2 => Just(2u32),
        1 => Just(3u32),
        1 => Just(4u32),
        1 => Just(5u32),
        1 => Just(7u32),
        2 => Just(12u32),
        1 => Just(90u32),
        1 => Just(0xefff_ffffu32),
        1 => Just(0u32),
    ]
}

fn span() -> impl Strategy<Value = Span> {
    (0..PAGES, 0..PAGES, code()).prop_map(|(a, len, k)| (a, (a + len).min(PAGES), k))
}

/// Where the modelled pages sit: at 0, or against the top of the address
/// space (the last byte of which no entry can cover).
fn placement() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        Just((0u64, UNIT)),
        Just((0u64, 1u64)),
        Just((u64::MAX - PAGES * UNIT, UNIT)),
        Just((0x1_0000_0000u64, 1u64 << 30)),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Add(Span),
    Update((u64, u64), u32, u32),
    Remove((u64, u64), Option<u32>),
    Clip(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0..=PAGES, 0..=PAGES).prop_map(|(a, b)| (a.min(b), a.max(b)));
    prop_oneof![
        3 => span().prop_map(Op::Add),
        2 => (range.clone(), code(), code()).prop_map(|(r, f, t)| Op::Update(r, f, t)),
        2 => (range, proptest::option::of(code())).prop_map(|(r, k)| Op::Remove(r, k)),
        1 => (0..=PAGES).prop_map(Op::Clip),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sanitize_matches_linux_semantics(raw in prop::collection::vec(span(), 0..24), (base, unit) in placement()) {
        let map = MemoryMap::<64>::from_entries(raw.iter().map(|&s| to_entry(s, base, unit))).unwrap();
        check_invariants(&map);
        prop_assert_eq!(spans(&map, base, unit), model_sanitize(&raw).entries().to_vec());
    }

    #[test]
    fn sanitize_does_not_depend_on_input_order(mut raw in prop::collection::vec(span(), 0..24), seed in any::<u64>()) {
        let first = MemoryMap::<64>::from_entries(raw.iter().map(|&s| to_entry(s, 0, UNIT))).unwrap();
        let mut state = seed | 1;
        for i in (1..raw.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            raw.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let second = MemoryMap::<64>::from_entries(raw.iter().map(|&s| to_entry(s, 0, UNIT))).unwrap();
        prop_assert_eq!(first.clone(), second);
        // Sanitizing a sanitized map changes nothing.
        let again = MemoryMap::<64>::from_entries(first.iter().copied()).unwrap();
        prop_assert_eq!(first, again);
    }

    #[test]
    fn edits_match_the_model(raw in prop::collection::vec(span(), 0..12), ops in prop::collection::vec(op(), 1..16), (base, unit) in placement()) {
        let mut map = MemoryMap::<128>::from_entries(raw.iter().map(|&s| to_entry(s, base, unit))).unwrap();
        let mut model = model_sanitize(&raw);
        for op in ops {
            let addr = |(s, e): (u64, u64)| base + s * unit..base + e * unit;
            match op {
                Op::Add(span) => {
                    map.add(to_entry(span, base, unit)).unwrap();
                    model = model.add(span);
                }
                Op::Update(r, from, to) => {
                    let before = model.kinds();
                    let changed = map.update(addr(r), Kind::from_raw(from), Kind::from_raw(to)).unwrap();
                    if from != to {
                        let expect = (r.0..r.1).filter(|&p| p < PAGES && before[p as usize] == from && from != 0).count() as u64;
                        prop_assert_eq!(changed, expect * unit);
                        model = model.rewrite(r, Some(from), Some(to).filter(|&t| t != 0));
                    } else {
                        prop_assert_eq!(changed, 0);
                    }
                }
                Op::Remove(r, only) => {
                    map.remove(addr(r), only.map(Kind::from_raw)).unwrap();
                    model = model.rewrite(r, only, None);
                }
                Op::Clip(page) => {
                    map.clip(base + page * unit);
                    model = model.rewrite((page, PAGES), None, None);
                }
            }
            check_invariants(&map);
            prop_assert_eq!(spans(&map, base, unit), model.entries().to_vec());
            for page in 0..PAGES {
                let k = model.kinds()[page as usize];
                prop_assert_eq!(map.kind_at(base + page * unit).map(Kind::raw), Some(k).filter(|&k| k != 0));
            }
        }
    }

    #[test]
    fn memmap_matches_linux_raw_table_edits(raw in prop::collection::vec(span(), 0..10), ops in prop::collection::vec(op(), 1..10)) {
        // The reference: a literal port of Linux's raw-table edits, then one sanitize.
        let map = MemoryMap::<128>::from_entries(raw.iter().map(|&s| to_entry(s, 0, UNIT))).unwrap();
        let mut table: Vec<Span> = spans(&map, 0, UNIT);
        let mut memmap_ops = Vec::new();
        for op in &ops {
            match *op {
                Op::Add(span) => {
                    table.push(span);
                    memmap_ops.push(MemmapOp::Add(to_entry(span, 0, UNIT)));
                }
                Op::Update(r, from, to) if from != to && from != 0 && to != 0 => {
                    linux_range_update(&mut table, r, Some(from), Some(to));
                    memmap_ops.push(MemmapOp::Update { range: r.0 * UNIT..r.1 * UNIT, from: Kind::from_raw(from), to: Kind::from_raw(to) });
                }
                Op::Update(..) => {}
                Op::Remove(r, only) => {
                    let only = only.filter(|&k| k != 0);
                    linux_range_update(&mut table, r, only, None);
                    memmap_ops.push(MemmapOp::Remove { range: r.0 * UNIT..r.1 * UNIT, only: only.map(Kind::from_raw) });
                }
                Op::Clip(page) if page > 0 => {
                    linux_range_update(&mut table, (page, u64::MAX / UNIT), Some(1), None);
                    memmap_ops.push(MemmapOp::Limit(page * UNIT));
                }
                Op::Clip(_) => {
                    table.clear();
                    memmap_ops.push(MemmapOp::ExactMap);
                }
            }
        }
        let mut got = map.clone();
        got.apply_memmap(memmap_ops).unwrap();
        check_invariants(&got);
        let clipped: Vec<Span> = table.into_iter().map(|(s, e, k)| (s.min(PAGES), e.min(PAGES), k)).collect();
        prop_assert_eq!(spans(&got, 0, UNIT), model_sanitize(&clipped).entries().to_vec());
    }
}

#[test]
fn nested_and_adjacent_never_merging_kinds() {
    // Soft reserved and PRAM next to each other and nested in RAM.
    let raw = [
        (0, 40, 1),
        (10, 20, 12),
        (20, 30, 12),
        (15, 25, 0xefff_ffff),
    ];
    let map = MemoryMap::<16>::from_entries(raw.iter().map(|&s| to_entry(s, 0, UNIT))).unwrap();
    assert_eq!(
        spans(&map, 0, UNIT),
        model_sanitize(&raw).entries().to_vec()
    );
    assert_eq!(
        spans(&map, 0, UNIT),
        [
            (0, 10, 1),
            (10, 15, 12),
            (15, 20, 0xefff_ffff),
            (20, 25, 0xefff_ffff),
            (25, 30, 12),
            (30, 40, 1)
        ]
    );
}
