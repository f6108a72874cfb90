//! Issue 15's experiment as a test: a small pool built by several opens
//! (each like one `nvirt pool` command), then every bit of its metadata
//! flipped, one at a time. Recovery must give the same pool, the pool
//! before the final group (the final commit, read as a torn tail), or a
//! named error — never another pool.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Op, View, apply, base_image, config, view};
use nvirt_nvpool::NvPool;
use nvirt_persist_meta::{MemPmem, Pmem, PmemError};

/// A region that remembers where recovery stored, so that one buffer
/// serves every flip: copying the whole image per flip would dominate.
struct Dirty<'a> {
    mem: &'a mut MemPmem,
    stored: Vec<(u64, u64)>,
}

impl Pmem for Dirty<'_> {
    fn size(&self) -> u64 {
        self.mem.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        self.mem.read(offset, buf)
    }
    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        self.stored.push((offset, 8));
        self.mem.store_u64(offset, value)
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        self.stored.push((offset, data.len() as u64));
        self.mem.store(offset, data)
    }
    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        self.mem.write_back(offset, len)
    }
    fn fence(&mut self) {}
}

/// Recovers the image in `mem` and checks its invariants, then puts back
/// every byte recovery stored (from `original`).
fn recover(mem: &mut MemPmem, original: &[u8], work: &mut [u8]) -> Result<View, String> {
    let mut region = Dirty {
        mem,
        stored: Vec::new(),
    };
    let result = match NvPool::recover(&mut region, work) {
        Ok((pool, _)) => pool
            .check()
            .map_err(|e| format!("check: {e}"))
            .map(|()| view(&pool)),
        Err(e) => Err(e.to_string()),
    };
    for (at, len) in region.stored {
        let (at, end) = (at as usize, (at + len) as usize);
        region.mem.as_bytes_mut()[at..end].copy_from_slice(&original[at..end]);
    }
    result
}

#[test]
fn every_bit_flip_of_a_multi_open_pool_is_same_torn_final_group_or_refused() {
    let opens: Vec<Vec<Op>> = vec![
        vec![Op::Create(1, "vm1", 32), Op::Populate(1, 0, 16)],
        vec![Op::Create(2, "vm2", 32), Op::Populate(2, 0x200, 9)],
        vec![
            Op::Create(3, "vm3", 32),
            Op::Populate(3, 0, 5),
            Op::Checkpoint,
        ],
        vec![Op::Running(3), Op::Destroy(2)],
        vec![Op::Populate(3, 0x40, 3)],
    ];
    let mut image = base_image(&[]);
    let probe = NvPool::probe(&MemPmem::from_bytes(image.clone())).unwrap();
    let mut work = vec![0u8; probe.work_area_bytes()];
    let mut before_last = None;
    for ops in &opens {
        let (mut pool, _) = NvPool::recover(MemPmem::from_bytes(image), &mut work).unwrap();
        for op in ops {
            before_last = Some(view(&pool));
            apply(&mut pool, op);
        }
        image = pool.into_region().into_bytes();
    }
    let mut mem = MemPmem::from_bytes(image.clone());
    let last = recover(&mut mem, &image, &mut work).unwrap();
    let before_last = before_last.unwrap();
    assert_ne!(last, before_last);
    let meta = config()
        .geometry(image.len() as u64)
        .unwrap()
        .metadata_bytes() as usize;
    let (mut same, mut torn, mut refused) = (0, 0, 0);
    for at in 0..meta {
        for bit in 0..8 {
            mem.as_bytes_mut()[at] ^= 1 << bit;
            match recover(&mut mem, &image, &mut work) {
                Ok(v) if v == last => same += 1,
                Ok(v) if v == before_last => torn += 1,
                Ok(v) => panic!("byte {at:#x} bit {bit}: silently recovered another pool: {v:?}"),
                Err(e) => {
                    assert!(!e.is_empty());
                    refused += 1;
                }
            }
            mem.as_bytes_mut()[at] = image[at];
        }
    }
    assert!(mem.as_bytes() == &image[..], "every flip was undone");
    println!(
        "bit flips of {meta} bytes of pool metadata: same pool {same}, pool before the final \
         group {torn}, refused {refused}"
    );
    assert!(refused > 0 && torn > 0);
}
