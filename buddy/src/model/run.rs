//! The driver: operation sequences on a heap and the model side by side.

use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use super::{Model, Owner, pfn};
use crate::MfnRange;
use crate::heap::Heap;
use crate::range::Constraints;
use crate::{Block, MemKind, Mfn, Order, Zone};

/// One step of a sequence. Fields are raw numbers; [`run`] maps them onto
/// the heap's span (mostly inside it, sometimes just outside) and, for the
/// `*Allocated`/`*Free` steps, onto blocks the model knows, so random
/// sequences hit valid and invalid cases alike.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// Add frames `a..b` (offsets from the span's start).
    Add(u64, u64),
    /// Allocate an order, optionally below zone `zone`.
    Alloc(u8, Option<u8>),
    /// Allocate the largest block up to an order, optionally below a zone.
    AllocAtMost(u8, Option<u8>),
    /// Free an arbitrary frame with an arbitrary order.
    Free(u64, u8),
    /// Free the `pick`-th allocated block, `twist` making it wrong: 0–3
    /// right, 4 one order larger, 5 one smaller, 6 the next frame, 7 right
    /// and then again (a double free).
    FreeAllocated(u32, u8),
    /// Claim the block of an order at an arbitrary frame (aligned down).
    Claim(u64, u8),
    /// Claim a block of an order around the `pick`-th free frame.
    ClaimFree(u32, u8),
    /// Claim frames `a..b`.
    ClaimRange(u64, u64),
    /// Reserve frames `a..b`.
    Reserve(u64, u64),
    /// Free frames `a..b` as a range.
    FreeRange(u64, u64),
}

/// How many steps of each kind (in [`Op`]'s order) succeeded and failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Steps that returned `Ok`, per kind.
    pub ok: [u64; 10],
    /// Steps that returned an error (on both sides alike), per kind.
    pub err: [u64; 10],
}

impl Tally {
    /// Adds another tally to this one.
    pub fn merge(&mut self, other: &Tally) {
        for i in 0..10 {
            self.ok[i] += other.ok[i];
            self.err[i] += other.err[i];
        }
    }
}

fn kind_index(op: Op) -> usize {
    match op {
        Op::Add(..) => 0,
        Op::Alloc(..) => 1,
        Op::AllocAtMost(..) => 2,
        Op::Free(..) => 3,
        Op::FreeAllocated(..) => 4,
        Op::Claim(..) => 5,
        Op::ClaimFree(..) => 6,
        Op::ClaimRange(..) => 7,
        Op::Reserve(..) => 8,
        Op::FreeRange(..) => 9,
    }
}

/// Runs `ops` on a heap over `span` with blocks up to `max_order` and on the
/// model, and reports the first difference or broken invariant, or how
/// many steps succeeded.
pub fn run(span: MfnRange, max_order: Order, ops: &[Op]) -> Result<Tally, String> {
    let mut metadata = vec![0u8; crate::metadata_bytes(span, max_order) + 7];
    // Start from garbage: the heap must not trust the buffer's content.
    metadata.fill(0xa5);
    let mut heap = Heap::new(MemKind::NonVolatile, span, max_order, &mut metadata)
        .map_err(|e| e.to_string())?;
    let mut model = Model::new(span, max_order);
    let mut tally = Tally::default();
    for (step, op) in ops.iter().enumerate() {
        let ok =
            apply(&mut heap, &mut model, *op).map_err(|e| format!("step {step} {op:?}: {e}"))?;
        compare(&heap, &model).map_err(|e| format!("after step {step} {op:?}: {e}"))?;
        let counts = if ok { &mut tally.ok } else { &mut tally.err };
        counts[kind_index(*op)] += 1;
    }
    Ok(tally)
}

pub(super) fn range_of(span: MfnRange, a: u64, b: u64) -> MfnRange {
    let (base, end) = (span.start().get(), span.end().get());
    let len = end - base;
    // Offsets past the span by up to 1/8 of it, and below it when possible.
    let map = |x: u64| (base + x % (len + len / 8 + 2)).saturating_sub(len / 16 + 1);
    let (x, y) = (map(a), map(b));
    MfnRange::from_numbers(x.min(y), x.max(y)).unwrap_or_default()
}

pub(super) fn frame_of(span: MfnRange, a: u64) -> Mfn {
    range_of(span, a, a).start()
}

pub(super) fn order_of(raw: u8, max: Order) -> Order {
    Order::new(raw % (max.get() + 2)).unwrap_or(Order::MAX)
}

pub(super) fn constraints_of(zone: Option<u8>) -> Constraints {
    zone.and_then(|z| Zone::new(z % 40))
        .map_or(Constraints::ANY, Constraints::max_zone)
}

pub(super) fn same<T: PartialEq + core::fmt::Debug>(heap: T, model: T) -> Result<(), String> {
    if heap == model {
        Ok(())
    } else {
        Err(format!("heap returned {heap:?}, model {model:?}"))
    }
}

/// Like [`same`] for results: whether both succeeded.
fn same_result<T: PartialEq + core::fmt::Debug, E: PartialEq + core::fmt::Debug>(
    heap: Result<T, E>,
    model: Result<T, E>,
) -> Result<bool, String> {
    let ok = heap.is_ok();
    same(heap, model)?;
    Ok(ok)
}

fn apply(heap: &mut Heap<'_>, model: &mut Model, op: Op) -> Result<bool, String> {
    let span = heap.span();
    let max = heap.max_order();
    match op {
        Op::Add(a, b) => same_result(
            heap.add(range_of(span, a, b)),
            model.add(range_of(span, a, b)),
        ),
        Op::Alloc(o, z) => {
            let (o, c) = (order_of(o, max), constraints_of(z));
            let got = heap.alloc(o, c);
            model.alloc(o, c, got)?;
            Ok(got.is_ok())
        }
        Op::AllocAtMost(o, z) => {
            let (o, c) = (order_of(o, max), constraints_of(z));
            let got = heap.alloc_at_most(o, c);
            model.alloc_at_most(o, c, got)?;
            Ok(got.is_ok())
        }
        Op::Free(a, o) => {
            let (p, o) = (frame_of(span, a), order_of(o, max));
            same_result(heap.free(p, o), model.free(p, o))
        }
        Op::FreeAllocated(pick, twist) => {
            let blocks = model.allocated();
            if blocks.is_empty() {
                return Ok(false);
            }
            let b = blocks[pick as usize % blocks.len()];
            let (mut p, mut o) = (b.start(), b.order());
            match twist % 8 {
                4 => o = Order::new(o.get() + 1).unwrap_or(o),
                5 => o = o.smaller().unwrap_or(o),
                6 => p = p.checked_add(1).unwrap_or(p),
                _ => {}
            }
            let ok = same_result(heap.free(p, o), model.free(p, o))?;
            if twist % 8 == 7 {
                same_result(heap.free(p, o), model.free(p, o))?;
            }
            Ok(ok)
        }
        Op::Claim(a, o) => {
            let o = order_of(o, max);
            let p = frame_of(span, a);
            let p = Mfn::new(p.get() & !(o.frames() - 1)).unwrap_or(p);
            same_result(heap.claim(p, o), model.claim(p, o))
        }
        Op::ClaimFree(pick, o) => {
            let free: Vec<u64> = (span.start().get()..span.end().get())
                .filter(|&f| model.owner(f) == Owner::Free)
                .collect();
            if free.is_empty() {
                return Ok(false);
            }
            let o = order_of(o, max);
            let f = free[pick as usize % free.len()] & !(o.frames() - 1);
            let p = pfn(f);
            same_result(heap.claim(p, o), model.claim(p, o))
        }
        Op::ClaimRange(a, b) => {
            let r = range_of(span, a, b);
            same_result(heap.claim_range(r), model.claim_range(r))
        }
        Op::Reserve(a, b) => {
            let r = range_of(span, a, b);
            same_result(heap.reserve(r), model.reserve(r))
        }
        Op::FreeRange(a, b) => {
            let r = range_of(span, a, b);
            same_result(heap.free_range(r), model.free_range(r))
        }
    }
}

/// Compares everything the heap reports with the model, and checks the
/// heap's invariants.
pub fn compare(heap: &Heap<'_>, model: &Model) -> Result<(), String> {
    heap.check_invariants().map_err(|e| e.to_string())?;
    let blocks: Vec<Block> = heap.free_blocks_iter().collect();
    same(blocks, model.free_blocks())?;
    same(heap.free_frames(), model.free_frames())?;
    same(heap.managed_frames(), model.managed_frames())?;
    let span = heap.span();
    let (base, end) = (span.start().get(), span.end().get());
    for f in base.saturating_sub(2)..end.saturating_add(2).min(Mfn::LIMIT) {
        let p = pfn(f);
        same(heap.frame_state(p), model.state(f))?;
        let kind = (model.owner(f) != Owner::Unmanaged).then_some(MemKind::NonVolatile);
        same(heap.kind_of(p), kind)?;
    }
    for z in 0..=Zone::MAX.get() {
        let zone = Zone::new(z).unwrap_or_default();
        if zone.start() >= end {
            break;
        }
        let want = (zone.start().max(base)..zone.end().min(end))
            .filter(|&f| model.owner(f) == Owner::Free)
            .count() as u64;
        same(heap.free_frames_in_zone(zone), want)?;
    }
    Ok(())
}
