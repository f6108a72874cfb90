//! Sequences of heap operations — add, alloc (with zone limits), alloc of
//! the largest block up to an order, free (right, wrong order, interior
//! frame, double), claim, claim of ranges, reserve, free of ranges — on a
//! buddy heap and on the per-frame reference model, compared after every
//! step, with the heap's invariants checked after every step.

use arbitrary::Arbitrary;
use nvirt_buddy::model::{Op, run as run_model};
use nvirt_buddy::{Mfn, MfnRange, Order};

#[derive(Arbitrary, Debug)]
enum FuzzOp {
    Add(u64, u64),
    Alloc(u8, Option<u8>),
    AllocAtMost(u8, Option<u8>),
    Free(u64, u8),
    FreeAllocated(u32, u8),
    Claim(u64, u8),
    ClaimFree(u32, u8),
    ClaimRange(u64, u64),
    Reserve(u64, u64),
    FreeRange(u64, u64),
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    base: u8,
    len: u16,
    max_order: u8,
    ops: Vec<FuzzOp>,
}

/// Bases at frame 0, unaligned, aligned, and near the top of the frame
/// numbers, so zone limits, edges and the block at frame 0 all occur.
const BASES: [u64; 6] = [0, 1, 0x3f, 0x200, 0x1234_5679, Mfn::LIMIT - 0x400];

/// Runs one decoded input.
pub fn run(input: Input) {
    let base = BASES[usize::from(input.base) % BASES.len()];
    let len = 1 + u64::from(input.len) % 0x300;
    let Some(span) = MfnRange::from_numbers(base, (base + len).min(Mfn::LIMIT - 1)) else {
        return;
    };
    let max_order = Order::new(input.max_order % (Order::MAX.get() + 1)).unwrap_or(Order::MAX);
    let ops: Vec<Op> = input
        .ops
        .iter()
        .take(128)
        .map(|op| match *op {
            FuzzOp::Add(a, b) => Op::Add(a, b),
            FuzzOp::Alloc(o, z) => Op::Alloc(o, z),
            FuzzOp::AllocAtMost(o, z) => Op::AllocAtMost(o, z),
            FuzzOp::Free(a, o) => Op::Free(a, o),
            FuzzOp::FreeAllocated(p, t) => Op::FreeAllocated(p, t),
            FuzzOp::Claim(a, o) => Op::Claim(a, o),
            FuzzOp::ClaimFree(p, o) => Op::ClaimFree(p, o),
            FuzzOp::ClaimRange(a, b) => Op::ClaimRange(a, b),
            FuzzOp::Reserve(a, b) => Op::Reserve(a, b),
            FuzzOp::FreeRange(a, b) => Op::FreeRange(a, b),
        })
        .collect();
    if let Err(e) = run_model(span, max_order, &ops) {
        panic!("{e}");
    }
}

/// Runs one input: decodes it as `cargo fuzz` does, then [`run`].
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
