//! Sequences of balloon operations — populate, decrease, increase of
//! single extents, well-formed reservation calls with continuations and
//! partial success, writes, and raw `memory_op` calls with arbitrary
//! registers and argument bytes — on a guest of the reference hypervisor
//! over buddy heaps in a buffer, under EPT or NPT, checked after every
//! step against a model (see `nvirt_hv::testing::balloon`): tables equal
//! to the guest's map and minimal, every frame accounted for, every page
//! holding what the model says, no guest input breaking the hypervisor.

use arbitrary::Arbitrary;
use nvirt_hv::fuzzing::guest::Format;
use nvirt_hv::testing::balloon::{BalloonOp, run as run_balloon};

#[derive(Arbitrary, Debug)]
enum FuzzOp {
    Populate(u64, u8, bool),
    Decrease(u64, u8, bool),
    Increase(u8, bool),
    Reservation(u8, Vec<u64>, u8, bool),
    Write(u64, u8),
    Hypercall(u64, u64, Vec<u8>, u32),
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    ept: bool,
    ops: Vec<FuzzOp>,
}

/// Runs one decoded input.
pub fn run(input: Input) {
    let ops: Vec<BalloonOp> = input
        .ops
        .into_iter()
        .take(64)
        .map(|op| match op {
            FuzzOp::Populate(gpfn, order, nvram) => BalloonOp::Populate { gpfn, order, nvram },
            FuzzOp::Decrease(gpfn, order, nvram) => BalloonOp::Decrease { gpfn, order, nvram },
            FuzzOp::Increase(order, nvram) => BalloonOp::Increase { order, nvram },
            FuzzOp::Reservation(cmd, gpfns, order, nvram) => BalloonOp::Reservation {
                cmd,
                gpfns,
                order,
                nvram,
            },
            FuzzOp::Write(gpfn, byte) => BalloonOp::Write { gpfn, byte },
            FuzzOp::Hypercall(cmd, arg, bytes, at) => BalloonOp::Hypercall {
                cmd,
                arg,
                bytes,
                at: u64::from(at),
            },
        })
        .collect();
    run_balloon(if input.ept { Format::Ept } else { Format::Npt }, &ops);
}

/// Runs one input: decodes it as `cargo fuzz` does, then [`run`].
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
