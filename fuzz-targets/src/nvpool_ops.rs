//! Sequences of pool operations — create, populate, increase and decrease
//! reservation, destroy, mark running or shut down, set quota, write guest
//! data, checkpoint, stop and recover — on a pool and on the reference
//! model (`nvirt_nvpool::model`), which must agree on every result and on
//! the whole state after every step; the pool's invariants are checked
//! after every step and every freed frame must read back as zeros.

use arbitrary::Arbitrary;
use nvirt_nvpool::model::{Op, run as run_model};
use nvirt_nvpool::{Config, Mfn};

#[derive(Arbitrary, Debug)]
enum FuzzOp {
    Create { reuse: u8, name_len: u8, quota: u16 },
    Populate { dom: u8, gpfn: u16, frames: u16 },
    Increase { dom: u8, gpfns: Vec<u16>, order: u8 },
    Decrease { dom: u8, gpfns: Vec<u16>, order: u8 },
    Destroy { dom: u8 },
    Mark { dom: u8, running: bool },
    SetQuota { dom: u8, quota: u16 },
    Write { dom: u8, nth: u16 },
    Checkpoint,
    Recover,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    data_pages: u8,
    domains: u8,
    extents: u16,
    big_log: bool,
    base: u8,
    ops: Vec<FuzzOp>,
}

/// Frame bases at 0, unaligned, 2 MiB-aligned plus one, 1 GiB-aligned.
const BASES: [u64; 4] = [0, 1, 0x201, 0x4_0000];

/// Runs one decoded input.
pub fn run(input: Input) {
    let config = Config::for_region(0)
        .with_max_domains(1 + u32::from(input.domains % 6))
        .with_max_extents(16 + u32::from(input.extents % 1024))
        .with_record_area(if input.big_log { 0x10000 } else { 0x2000 })
        .with_frame_base(Mfn::new(BASES[usize::from(input.base % 4)]).unwrap_or(Mfn::ZERO));
    let Ok(geo) = config.geometry(1 << 30) else {
        return;
    };
    let size = geo.metadata_bytes() + (1 + u64::from(input.data_pages)) * 4 * 4096;
    let gpfns = |list: &[u16]| list.iter().take(16).map(|&g| u32::from(g)).collect();
    let ops: Vec<Op> = input
        .ops
        .iter()
        .take(96)
        .map(|op| match op {
            &FuzzOp::Create {
                reuse,
                name_len,
                quota,
            } => Op::Create {
                reuse: reuse % 4,
                name_len,
                quota: quota % 2048,
            },
            &FuzzOp::Populate { dom, gpfn, frames } => Op::Populate {
                dom,
                gpfn: u32::from(gpfn),
                frames,
            },
            FuzzOp::Increase {
                dom,
                gpfns: g,
                order,
            } => Op::Increase {
                dom: *dom,
                gpfns: gpfns(g),
                order: *order,
            },
            FuzzOp::Decrease {
                dom,
                gpfns: g,
                order,
            } => Op::Decrease {
                dom: *dom,
                gpfns: gpfns(g),
                order: *order,
            },
            &FuzzOp::Destroy { dom } => Op::Destroy { dom },
            &FuzzOp::Mark { dom, running } => Op::Mark { dom, running },
            &FuzzOp::SetQuota { dom, quota } => Op::SetQuota {
                dom,
                quota: quota % 2048,
            },
            &FuzzOp::Write { dom, nth } => Op::Write { dom, nth },
            FuzzOp::Checkpoint => Op::Checkpoint,
            FuzzOp::Recover => Op::Recover,
        })
        .collect();
    if let Err(e) = run_model(size, config, &ops) {
        panic!("{e}");
    }
}

/// Runs one input: decodes it as `cargo fuzz` does, then [`run`].
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
