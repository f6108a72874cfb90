//! Sequences of map edits checked against the reference model after every
//! step: add, update, remove, clip, on a grid of pages placed anywhere in the
//! address space.

use arbitrary::Arbitrary;
use nvirt_e820::model::{PageModel, entry_of, spans_of};
use nvirt_e820::{Kind, MemoryMap};

const PAGES: u64 = 64;

#[derive(Arbitrary, Debug)]
enum Op {
    Add(u8, u8, u32),
    Update(u8, u8, u32, u32),
    Remove(u8, u8, Option<u32>),
    Clip(u8),
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    top: bool,
    unit_shift: u8,
    initial: Vec<(u8, u8, u32)>,
    ops: Vec<Op>,
}

/// Interesting codes more often than random ones.
fn code(raw: u32) -> u32 {
    const CODES: [u32; 10] = [0, 1, 2, 3, 4, 5, 7, 12, 90, 0xefff_ffff];
    CODES.get(raw as usize % 16).copied().unwrap_or(raw)
}

fn span(a: u8, b: u8, k: u32) -> (u64, u64, u32) {
    let (a, b) = (u64::from(a) % (PAGES + 1), u64::from(b) % (PAGES + 1));
    (a.min(b), a.max(b), code(k))
}

/// Runs one decoded input.
pub fn run(input: Input) {
    let unit = 1u64 << (input.unit_shift % 31);
    let base = if input.top {
        u64::MAX - PAGES * unit
    } else {
        0
    };
    let initial: Vec<_> = input
        .initial
        .iter()
        .take(32)
        .map(|&(a, b, k)| span(a, b, k))
        .collect();
    let Ok(mut map) =
        MemoryMap::<256>::from_entries(initial.iter().filter_map(|&s| entry_of(s, base, unit)))
    else {
        return;
    };
    let mut model = PageModel::sanitize(PAGES, &initial);
    let range = |s: u64, e: u64| base + s * unit..base + e * unit;
    for op in input.ops.into_iter().take(64) {
        let ok = match op {
            Op::Add(a, b, k) => {
                let s = span(a, b, k);
                model = model.add(s);
                map.add(entry_of(s, base, unit).unwrap()).is_ok()
            }
            Op::Update(a, b, from, to) => {
                let (s, e, _) = span(a, b, 0);
                let (from, to) = (code(from), code(to));
                if from != to {
                    model = model.rewrite((s, e), Some(from), Some(to).filter(|&t| t != 0));
                }
                map.update(range(s, e), Kind::from_raw(from), Kind::from_raw(to))
                    .is_ok()
            }
            Op::Remove(a, b, only) => {
                let (s, e, _) = span(a, b, 0);
                let only = only.map(code);
                model = model.rewrite((s, e), only, None);
                map.remove(range(s, e), only.map(Kind::from_raw)).is_ok()
            }
            Op::Clip(p) => {
                let p = u64::from(p) % (PAGES + 1);
                model = model.rewrite((p, PAGES), None, None);
                map.clip(base + p * unit);
                true
            }
        };
        if !ok {
            return; // Capacity reached: the map is unchanged, the model moved on.
        }
        crate::check(&map);
        assert_eq!(
            spans_of(&map, base, unit).unwrap(),
            model.entries(),
            "{map}"
        );
    }
}

/// Runs one input: decodes it as `cargo fuzz` does, then [`run`].
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
