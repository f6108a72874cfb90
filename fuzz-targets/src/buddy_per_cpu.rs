//! Sequences on the per-CPU front end of a buddy heap — allocations on two
//! CPUs (single frames from reservations, other orders and zone-limited
//! ones from the heap), frees right and wrong and double, from either CPU
//! into either reservation, hand-backs of one or all reservations — checked
//! against the per-frame reference model after every step, with the heap's
//! invariants checked after every step and its whole state compared after
//! every hand-back of all reservations.

use arbitrary::Arbitrary;
use nvirt_buddy::model::{PerCpuOp, run_per_cpu};
use nvirt_buddy::{Mfn, MfnRange, Order};

#[derive(Arbitrary, Debug)]
enum FuzzOp {
    Add(u64, u64),
    Alloc(u8, u8, Option<u8>),
    AllocFrames(u8, u8),
    Free(u64, u8),
    FreeAllocated(u32, u8),
    Drain(u8),
    DrainAll,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    base: u8,
    len: u16,
    max_order: u8,
    ops: Vec<FuzzOp>,
}

/// Bases at frame 0, unaligned, aligned to a reservation, and near the top
/// of the frame numbers.
const BASES: [u64; 4] = [0, 0x3f, 0x200, Mfn::LIMIT - 0x1000];

/// Runs one decoded input.
pub fn run(input: Input) {
    let base = BASES[usize::from(input.base) % BASES.len()];
    let len = 1 + u64::from(input.len) % 0xc00;
    let Some(span) = MfnRange::from_numbers(base, (base + len).min(Mfn::LIMIT - 1)) else {
        return;
    };
    let max_order = Order::new(input.max_order % 13).unwrap_or(Order::MAX);
    let ops: Vec<PerCpuOp> = input
        .ops
        .iter()
        .take(96)
        .map(|op| match *op {
            FuzzOp::Add(a, b) => PerCpuOp::Add(a, b),
            FuzzOp::Alloc(c, o, z) => PerCpuOp::Alloc(c, o, z),
            FuzzOp::AllocFrames(c, n) => PerCpuOp::AllocFrames(c, n),
            FuzzOp::Free(a, o) => PerCpuOp::Free(a, o),
            FuzzOp::FreeAllocated(p, t) => PerCpuOp::FreeAllocated(p, t),
            FuzzOp::Drain(c) => PerCpuOp::Drain(c),
            FuzzOp::DrainAll => PerCpuOp::DrainAll,
        })
        .collect();
    if let Err(e) = run_per_cpu(span, max_order, &ops) {
        panic!("{e}");
    }
}

/// Runs one input: decodes it as `cargo fuzz` does, then [`run`].
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
