//! The driver for [`PerCpuHeap`] seen from one thread: operation sequences
//! on the front end and on the model side by side.
//!
//! Which frames an allocation gets is the front end's business (a
//! reservation's lowest free frame, or the heap's choice), so the model
//! checks each allocation instead of predicting it: the exact order, the
//! constraint, and every frame free in the model; a refusal only where the
//! model has no fitting free block at all. Every free's result is predicted
//! exactly, error included. After every step the free frames agree; after
//! every hand-back of all reservations the heap's whole state is compared.

use std::format;
use std::string::{String, ToString};
use std::vec;

use super::run::{constraints_of, frame_of, order_of, range_of, same};
use super::{Model, compare};
use crate::error::AllocError;
use crate::heap::Heap;
use crate::percpu::PerCpuHeap;
use crate::{MemKind, MfnRange, Order};

/// CPUs of the front end under test.
const CPUS: usize = 2;

/// One step of a sequence, with raw numbers mapped as [`super::Op`]'s are.
#[derive(Clone, Copy, Debug)]
pub enum PerCpuOp {
    /// Add frames `a..b` to the heap (offsets from the span's start).
    Add(u64, u64),
    /// Allocate an order on a CPU, optionally below zone `zone`.
    Alloc(u8, u8, Option<u8>),
    /// Allocate one frame on a CPU, `n` times.
    AllocFrames(u8, u8),
    /// Free an arbitrary frame with an arbitrary order.
    Free(u64, u8),
    /// Free the `pick`-th allocated block, `twist` making it wrong: 0–3
    /// right, 4 one order larger, 5 the next frame, 6 right and then again
    /// (a double free), 7 right and then the whole reservation's order.
    FreeAllocated(u32, u8),
    /// Hand one CPU's reservation back.
    Drain(u8),
    /// Hand every reservation back, then compare the heap with the model.
    DrainAll,
}

/// Runs `ops` on a [`PerCpuHeap`] of two CPUs over `span`, with the whole
/// span added first and blocks up to `max_order`, and on the model; reports
/// the first difference or broken invariant, or how many steps succeeded.
pub fn run_per_cpu(span: MfnRange, max_order: Order, ops: &[PerCpuOp]) -> Result<u64, String> {
    let mut metadata = vec![0u8; crate::metadata_bytes(span, max_order) + 7];
    metadata.fill(0xa5);
    let mut heap = Heap::new(MemKind::NonVolatile, span, max_order, &mut metadata)
        .map_err(|e| e.to_string())?;
    let mut model = Model::new(span, max_order);
    same(heap.add(span), model.add(span))?;
    let front = PerCpuHeap::<CPUS>::new(heap);
    let mut ok = 0;
    for (step, op) in ops.iter().enumerate() {
        let done =
            apply(&front, &mut model, *op).map_err(|e| format!("step {step} {op:?}: {e}"))?;
        same(front.free_frames(), model.free_frames())
            .map_err(|e| format!("free frames after step {step} {op:?}: {e}"))?;
        front
            .heap()
            .lock()
            .check_invariants()
            .map_err(|e| format!("after step {step} {op:?}: {e}"))?;
        ok += u64::from(done);
    }
    let mut heap = front.into_inner();
    settle(&mut heap, &mut model);
    compare(&heap, &model).map_err(|e| format!("at the end: {e}"))?;
    Ok(ok)
}

/// Completes both sides' deferred merges, which the front end's calls
/// leave at different points than the model's.
fn settle(heap: &mut Heap<'_>, model: &mut Model) {
    heap.merge_deferred();
    model.merge_deferred();
}

fn apply(front: &PerCpuHeap<'_, CPUS>, model: &mut Model, op: PerCpuOp) -> Result<bool, String> {
    let (span, max) = {
        let heap = front.heap().lock();
        (heap.span(), heap.max_order())
    };
    match op {
        PerCpuOp::Add(a, b) => {
            let r = range_of(span, a, b);
            let got = front.heap().lock().add(r);
            let ok = got.is_ok();
            same(got, model.add(r))?;
            Ok(ok)
        }
        PerCpuOp::Alloc(cpu, o, z) => alloc(
            front,
            model,
            usize::from(cpu),
            order_of(o, max),
            constraints_of(z),
        ),
        PerCpuOp::AllocFrames(cpu, n) => {
            let mut ok = true;
            for _ in 0..n % 40 {
                ok &= alloc(
                    front,
                    model,
                    usize::from(cpu),
                    Order::SIZE_4K,
                    crate::Constraints::ANY,
                )?;
            }
            Ok(ok)
        }
        PerCpuOp::Free(a, o) => {
            let (p, o) = (frame_of(span, a), order_of(o, max));
            let got = front.free(p, o);
            let ok = got.is_ok();
            same(got, model.free(p, o))?;
            Ok(ok)
        }
        PerCpuOp::FreeAllocated(pick, twist) => {
            let blocks = model.allocated();
            if blocks.is_empty() {
                return Ok(false);
            }
            let b = blocks[pick as usize % blocks.len()];
            let (mut p, mut o) = (b.start(), b.order());
            match twist % 8 {
                4 => o = Order::new(o.get() + 1).unwrap_or(o),
                5 => p = p.checked_add(1).unwrap_or(p),
                _ => {}
            }
            let got = front.free(p, o);
            let ok = got.is_ok();
            same(got, model.free(p, o))?;
            match twist % 8 {
                6 => same(front.free(p, o), model.free(p, o))?,
                7 => {
                    let o = crate::RESERVATION_ORDER.min(max);
                    let p = crate::Mfn::new(p.get() & !(o.frames() - 1)).unwrap_or(p);
                    same(front.free(p, o), model.free(p, o))?;
                }
                _ => {}
            }
            Ok(ok)
        }
        PerCpuOp::Drain(cpu) => {
            front.drain(usize::from(cpu));
            Ok(true)
        }
        PerCpuOp::DrainAll => {
            front.drain_all();
            let mut heap = front.heap().lock();
            settle(&mut heap, model);
            compare(&heap, model)?;
            Ok(true)
        }
    }
}

/// One allocation, checked against the model.
fn alloc(
    front: &PerCpuHeap<'_, CPUS>,
    model: &mut Model,
    cpu: usize,
    order: Order,
    c: crate::Constraints,
) -> Result<bool, String> {
    let got = front.alloc(cpu, order, c);
    let max = Order::new(model.max_order).unwrap_or(Order::MAX);
    let Ok(b) = got else {
        if order > max {
            same(got, Err(AllocError::OrderTooLarge { order, max }))?;
            return Ok(false);
        }
        // After a refusal every reservation was handed back; the model,
        // merged, must have no fitting block either.
        model.merge_deferred();
        let fits = model.fits(usize::from(order.get()), c.limit());
        if !fits.is_empty() {
            return Err(format!("refused with {got:?}; model could use {fits:x?}"));
        }
        same(
            got,
            Err(AllocError::OutOfMemory {
                order,
                constraints: c,
            }),
        )?;
        return Ok(false);
    };
    if b.order() != order || b.end().get() > c.limit() {
        return Err(format!("gave {b:?} for {order} below {:#x}", c.limit()));
    }
    model
        .claim(b.start(), b.order())
        .map_err(|e| format!("gave {b:?}, which the model cannot claim: {e}"))?;
    Ok(true)
}
