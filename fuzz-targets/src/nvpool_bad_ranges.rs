//! Known-bad range lists — any order, overlapping, empty, on the metadata,
//! past the region — given at format or at recovery of a pool some
//! operations already filled, then more operations: the list is taken or
//! refused with a `BadRangeError`, never a panic; once taken, every domain
//! extent holding a bad frame is reported exactly, no operation ever hands
//! out a bad frame that was not owned before the list was known, and the
//! pool's invariants (no bad frame free) hold.

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use nvirt_nvpool::{
    BadRange, BadRangeError, Config, DomainUuid, FormatError, Gfn, Mfn, NvPool, RecoverError,
};
use nvirt_persist_meta::{MemPmem, Pmem};

#[derive(Arbitrary, Debug)]
enum FuzzOp {
    Populate { dom: u8, at: u8, frames: u8 },
    Increase { dom: u8, at: u8, order: u8 },
    Decrease { dom: u8, at: u8 },
    Recreate { dom: u8 },
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    /// Give the list at format (else at recovery, after `before`).
    at_format: bool,
    before: Vec<FuzzOp>,
    /// (start, length) in bytes, start reduced modulo the region plus a
    /// little past it.
    ranges: Vec<(u32, u16)>,
    after: Vec<FuzzOp>,
}

const PAGE: u64 = 4096;
const DOMAINS: u8 = 3;

fn config() -> Config {
    Config::for_region(0)
        .with_max_domains(4)
        .with_max_extents(128)
        .with_record_area(0x2000)
        .with_frame_base(Mfn::new(0x201).unwrap_or(Mfn::ZERO))
}

fn id(d: u8) -> DomainUuid {
    DomainUuid::new(u128::from(d % DOMAINS) + 1)
}

fn apply<P: Pmem>(pool: &mut NvPool<'_, P>, op: &FuzzOp) {
    let gfn = |at: u8| Gfn::new(u64::from(at % 32) * 16).unwrap_or(Gfn::ZERO);
    let Some(dom) = (match op {
        FuzzOp::Populate { dom, .. }
        | FuzzOp::Increase { dom, .. }
        | FuzzOp::Decrease { dom, .. }
        | FuzzOp::Recreate { dom } => pool.find(id(*dom)),
    }) else {
        return;
    };
    // Refusals (no memory, overlaps, quota) are fine: only what is handed
    // out matters.
    match *op {
        FuzzOp::Populate { at, frames, .. } => {
            let _ = pool.populate(dom, gfn(at), u64::from(frames % 48) + 1);
        }
        FuzzOp::Increase { at, order, .. } => {
            let _ = pool.increase_reservation(dom, &[gfn(at)], order % 5);
        }
        FuzzOp::Decrease { at, .. } => {
            let _ = pool.decrease_reservation(dom, &[gfn(at)], 0);
        }
        FuzzOp::Recreate { dom: d } => {
            pool.destroy(dom).expect("destroy");
            pool.create(id(d), "vm", 512).expect("create");
        }
    }
}

fn owned<P: Pmem>(pool: &NvPool<'_, P>) -> BTreeSet<(u128, u64)> {
    let mut out = BTreeSet::new();
    for d in pool.domains() {
        for e in pool.extents(d.dom) {
            for f in 0..e.frames() {
                out.insert((d.id.get(), e.mfn().get() + f));
            }
        }
    }
    out
}

fn reported<P: Pmem>(pool: &NvPool<'_, P>) -> BTreeSet<(u128, u64)> {
    let mut out = BTreeSet::new();
    let total = pool.bad_range_owners(|r| {
        assert!(r.extent.mapping().host().contains_range(r.frames), "{r}");
        for m in r.frames.iter() {
            assert!(out.insert((r.id.get(), m.get())), "{r} reported twice");
        }
    });
    assert_eq!(total, out.len() as u64);
    out
}

/// Runs one decoded input.
pub fn run(input: Input) {
    let config = config();
    let Ok(geo) = config.geometry(1 << 30) else {
        return;
    };
    let meta = geo.metadata_bytes();
    let size = meta + 96 * PAGE;
    let mut work = vec![0u8; geo.work_area_bytes()];
    let mut ranges = Vec::new();
    for &(start, len) in input.ranges.iter().take(80) {
        let start = u64::from(start) % (size + 2 * PAGE);
        match BadRange::new(start, start + u64::from(len)) {
            Ok(r) => ranges.push(r),
            Err(e) => assert_eq!(
                e,
                BadRangeError::Empty {
                    start,
                    end: start + u64::from(len)
                }
            ),
        }
    }
    let base = geo.frame_base().get();
    let bad: BTreeSet<u64> = ranges
        .iter()
        .flat_map(|r| {
            let (s, e) = (r.start().max(meta), r.end().min(size));
            (s < e)
                .then(|| base + s / PAGE..base + (e - 1) / PAGE + 1)
                .into_iter()
                .flatten()
        })
        .collect();
    let region = MemPmem::new(size as usize);
    let (mut pool, was) = if input.at_format {
        let pool = match NvPool::format_with_bad_ranges(region, config, &mut work, &ranges) {
            Ok(pool) => pool,
            Err(FormatError::BadRange(e)) => return assert!(!e.to_string().is_empty()),
            Err(e) => panic!("format: {e}"),
        };
        (pool, BTreeSet::new())
    } else {
        let mut pool = NvPool::format(region, config, &mut work).expect("format");
        for d in 0..DOMAINS {
            pool.create(id(d), "vm", 512).expect("create");
        }
        for op in input.before.iter().take(48) {
            apply(&mut pool, op);
        }
        let was: BTreeSet<_> = owned(&pool)
            .into_iter()
            .filter(|(_, f)| bad.contains(f))
            .collect();
        let image = pool.into_region();
        let pool = match NvPool::recover_with_bad_ranges(image, &mut work, &ranges) {
            Ok((pool, _)) => {
                assert_eq!(pool.bad_frames_owned(), was.len() as u64);
                pool
            }
            Err(RecoverError::BadRange(e)) => return assert!(!e.to_string().is_empty()),
            Err(e) => panic!("recover: {e}"),
        };
        (pool, was)
    };
    assert_eq!(reported(&pool), was);
    assert_eq!(pool.stats().bad_frames + was.len() as u64, bad.len() as u64);
    pool.check().expect("check");
    for d in 0..DOMAINS {
        if pool.find(id(d)).is_none() {
            pool.create(id(d), "vm", 512).expect("create");
        }
    }
    for op in input.after.iter().take(48) {
        apply(&mut pool, op);
        for (id, f) in owned(&pool) {
            assert!(
                !bad.contains(&f) || was.contains(&(id, f)),
                "{op:?} handed out bad frame {f:#x}"
            );
        }
    }
    assert!(reported(&pool).is_subset(&was));
    pool.check().expect("check");
}

/// Runs one input from raw bytes.
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
