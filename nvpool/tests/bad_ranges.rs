//! Known-bad ranges: never handed out, never written, owners reported,
//! metadata in one refused, bad lists refused or normalised without panic.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeSet;

use nvirt_nvpool::{
    BadRange, BadRangeError, Config, DomainUuid, FormatError, Gfn, MAX_BAD_RANGES, MetadataPart,
    Mfn, NvPool, Owner, RecoverError,
};
use nvirt_persist_meta::{MemPmem, Pmem};
use proptest::prelude::*;

const PAGE: u64 = 4096;
const FILL: u8 = 0xa5;

fn config() -> Config {
    Config::for_region(0)
        .with_max_domains(4)
        .with_max_extents(256)
        .with_record_area(0x4000)
        .with_frame_base(Mfn::new(0x2_0000).unwrap())
}

/// Bytes of a region with 4 MiB of data frames.
fn size() -> u64 {
    config().geometry(1 << 40).unwrap().metadata_bytes() + (4 << 20)
}

fn meta() -> u64 {
    config().geometry(size()).unwrap().metadata_bytes()
}

fn work() -> Vec<u8> {
    vec![0; config().geometry(size()).unwrap().work_area_bytes()]
}

fn bad(start: u64, end: u64) -> BadRange {
    BadRange::new(start, end).unwrap()
}

/// The machine frame holding region byte `offset`.
fn frame_of(offset: u64) -> u64 {
    0x2_0000 + offset / PAGE
}

/// Every machine frame in `ranges` that is a data frame.
fn bad_frames(ranges: &[BadRange]) -> BTreeSet<u64> {
    let data_end = size() / PAGE * PAGE;
    ranges
        .iter()
        .flat_map(|r| {
            let (s, e) = (r.start().max(meta()), r.end().min(data_end));
            (s < e)
                .then(|| frame_of(s)..frame_of(e - 1) + 1)
                .into_iter()
                .flatten()
        })
        .collect()
}

/// (domain id, mfn) of every frame domains own.
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

/// (domain id, mfn) of every bad frame `bad_range_owners` reports, checking
/// each report against the pool.
fn reported<P: Pmem>(pool: &NvPool<'_, P>) -> BTreeSet<(u128, u64)> {
    let mut out = BTreeSet::new();
    let total = pool.bad_range_owners(|r| {
        assert_eq!(pool.find(r.id), Some(r.dom));
        assert!(pool.extents(r.dom).any(|e| e == r.extent));
        let host = r.extent.mapping().host();
        assert!(host.contains_range(r.frames), "{r}");
        assert_eq!(pool.lookup(r.dom, r.first_gfn()), Some(r.frames.start()));
        for m in r.frames.iter() {
            assert!(out.insert((r.id.get(), m.get())), "{r} reported twice");
        }
    });
    assert_eq!(total, out.len() as u64);
    out
}

#[test]
fn a_pool_formatted_with_bad_ranges_never_hands_them_out_nor_writes_them() {
    let m = meta();
    let ranges = [
        bad(m + 0x3_0000 + 5, m + 0x3_2000),
        bad(m, m + 1),
        bad(m + 0x3_1000, m + 0x3_1001),
        bad(size() - 1, size()),
    ];
    let mut work = work();
    let mut region = MemPmem::new(size() as usize);
    region.as_bytes_mut().fill(FILL);
    let mut pool = NvPool::format_with_bad_ranges(region, config(), &mut work, &ranges).unwrap();
    let expect = bad_frames(&ranges);
    assert_eq!(expect.len(), 4);
    let stats = pool.stats();
    assert_eq!(stats.bad_frames, 4);
    assert_eq!(stats.free_frames, stats.data_frames - 4);
    assert_eq!(pool.bad_frames_kept_out(), 4);
    assert_eq!(pool.bad_frames().map(|r| r.len()).sum::<u64>(), 4);
    for &f in &expect {
        assert_eq!(pool.owner_of(Mfn::new(f).unwrap()), Owner::Bad);
    }
    // Take everything there is.
    let vm = pool.create(DomainUuid::new(1), "all", 1 << 20).unwrap();
    let free = pool.stats().free_frames;
    assert_eq!(
        pool.populate(vm, Gfn::new(0).unwrap(), free)
            .unwrap()
            .frames,
        free
    );
    assert_eq!(pool.stats().free_frames, 0);
    assert!(owned(&pool).iter().all(|(_, f)| !expect.contains(f)));
    assert_eq!(reported(&pool).len(), 0);
    pool.check().unwrap();
    let image = pool.into_region().into_bytes();
    for f in 0..size() / PAGE {
        let page = &image[(f * PAGE) as usize..((f + 1) * PAGE) as usize];
        if expect.contains(&frame_of(f * PAGE)) {
            assert!(page.iter().all(|&b| b == FILL), "bad frame {f} written");
        } else if f * PAGE >= m {
            assert!(page.iter().all(|&b| b == 0), "data frame {f} not zeroed");
        }
    }
}

#[test]
fn recovery_reports_owners_and_keeps_their_bad_frames_once_freed() {
    let mut work = work();
    let mut pool = NvPool::format(MemPmem::new(size() as usize), config(), &mut work).unwrap();
    let a = pool.create(DomainUuid::new(0xa), "a", 1024).unwrap();
    let b = pool.create(DomainUuid::new(0xb), "b", 1024).unwrap();
    pool.populate(a, Gfn::new(0x100).unwrap(), 256).unwrap();
    pool.populate(b, Gfn::new(0).unwrap(), 8).unwrap();
    let a_mfn = pool.lookup(a, Gfn::new(0x110).unwrap()).unwrap().get();
    let b_mfn = pool.lookup(b, Gfn::new(3).unwrap()).unwrap().get();
    let free_mfn = pool
        .geometry()
        .data_span()
        .iter()
        .rev()
        .find(|&m| pool.owner_of(m) == Owner::Free)
        .unwrap()
        .get();
    let before = owned(&pool);
    let mut image = pool.into_region().into_bytes();
    let offset = |mfn: u64| (mfn - 0x2_0000) * PAGE;
    // Something the scrub of a freed bad frame would overwrite.
    image[offset(a_mfn) as usize] = FILL;
    let ranges = [
        bad(offset(a_mfn) + 10, offset(a_mfn) + PAGE + 1),
        bad(offset(b_mfn), offset(b_mfn) + 8),
        bad(offset(free_mfn), offset(free_mfn) + PAGE),
    ];
    let expect = bad_frames(&ranges);
    let (pool, _) =
        NvPool::recover_with_bad_ranges(MemPmem::from_bytes(image), &mut work, &ranges).unwrap();
    assert_eq!(pool.bad_frames_owned(), 3);
    assert_eq!(pool.bad_frames_kept_out(), 1);
    let want: BTreeSet<_> = before
        .iter()
        .filter(|(_, f)| expect.contains(f))
        .copied()
        .collect();
    assert_eq!(reported(&pool), want);
    let mut lines = Vec::new();
    pool.bad_range_owners(|r| lines.push(r.to_string()));
    assert_eq!(
        lines[0],
        format!(
            "domain slot=0 id=00000000-0000-0000-0000-00000000000a owns bad frames: gpfn=0x110 mfn={a_mfn:#x} frames=2 (extent gpfn=0x100 mfn={:#x} order=8)",
            a_mfn - 0x10
        )
    );
    pool.check().unwrap();
    // The owners free them: they never come back.
    let mut pool = pool;
    let a = pool.find(DomainUuid::new(0xa)).unwrap();
    pool.destroy(a).unwrap();
    let b = pool.find(DomainUuid::new(0xb)).unwrap();
    pool.decrease_reservation(b, &[Gfn::new(3).unwrap()], 0)
        .unwrap();
    assert_eq!(pool.stats().bad_frames, 4);
    pool.check().unwrap();
    let c = pool.create(DomainUuid::new(0xc), "c", 1 << 20).unwrap();
    let free = pool.stats().free_frames;
    pool.populate(c, Gfn::new(0).unwrap(), free).unwrap();
    assert!(owned(&pool).iter().all(|(_, f)| !expect.contains(f)));
    for &f in &expect {
        assert_eq!(pool.owner_of(Mfn::new(f).unwrap()), Owner::Bad);
    }
    let image = pool.into_region().into_bytes();
    assert_eq!(
        image[offset(a_mfn) as usize],
        FILL,
        "a bad frame was scrubbed"
    );
    // The next open, with the same list, agrees.
    let (pool, _) =
        NvPool::recover_with_bad_ranges(MemPmem::from_bytes(image), &mut work, &ranges).unwrap();
    assert_eq!(
        (pool.bad_frames_kept_out(), pool.bad_frames_owned()),
        (4, 0)
    );
    pool.check().unwrap();
}

#[test]
fn metadata_in_a_bad_range_is_refused_naming_it() {
    let mut work = work();
    let pool = NvPool::format(MemPmem::new(size() as usize), config(), &mut work).unwrap();
    let image = pool.into_region().into_bytes();
    let cases = [
        (bad(0x20, 0x30), MetadataPart::Superblock { copy: 0 }),
        (bad(0x1000, 0x2000), MetadataPart::Superblock { copy: 1 }),
        (bad(0x7f0, 0x801), MetadataPart::ScrubWord),
        (bad(0x2000 + 0x4000, meta() + PAGE), MetadataPart::Log),
    ];
    for (range, part) in cases {
        let open = NvPool::recover_with_bad_ranges(
            MemPmem::from_bytes(image.clone()),
            &mut work,
            &[bad(meta(), meta() + 1), range],
        );
        let Err(e) = open else {
            panic!("{range} on {part} was accepted")
        };
        assert_eq!(
            e,
            RecoverError::BadRange(BadRangeError::Metadata { range, part })
        );
        assert!(
            e.to_string()
                .starts_with(&format!("bad range {range} lies on ")),
            "{e}"
        );
        let format = NvPool::format_with_bad_ranges(
            MemPmem::from_bytes(image.clone()),
            config(),
            &mut work,
            &[range],
        );
        assert_eq!(
            format.err(),
            Some(FormatError::BadRange(BadRangeError::Metadata {
                range,
                part
            }))
        );
    }
    // The pool itself is intact.
    let (pool, _) = NvPool::recover(MemPmem::from_bytes(image), &mut work).unwrap();
    pool.check().unwrap();
}

#[test]
fn bad_lists_past_the_region_or_too_long_are_refused_before_any_write() {
    let mut work = work();
    let pool = NvPool::format(MemPmem::new(size() as usize), config(), &mut work).unwrap();
    let image = pool.into_region().into_bytes();
    let past = bad(size() - 1, size() + 1);
    let open = |ranges: &[BadRange], work: &mut Vec<u8>| {
        NvPool::recover_with_bad_ranges(MemPmem::from_bytes(image.clone()), work, ranges)
            .map(|(p, _)| p.stats())
    };
    assert_eq!(
        open(&[past], &mut work),
        Err(RecoverError::BadRange(BadRangeError::OutsideRegion {
            range: past,
            size: size()
        }))
    );
    let apart: Vec<_> = (0..=MAX_BAD_RANGES as u64)
        .map(|i| bad(meta() + i * 2 * PAGE, meta() + i * 2 * PAGE + 1))
        .collect();
    assert_eq!(
        open(&apart, &mut work),
        Err(RecoverError::BadRange(BadRangeError::TooMany {
            max: MAX_BAD_RANGES
        }))
    );
    // Unsorted, overlapping, duplicated: normalised.
    let m = meta();
    let messy = [
        bad(m + 9 * PAGE, m + 10 * PAGE),
        bad(m + PAGE, m + 3 * PAGE),
        bad(m + 2 * PAGE, m + 4 * PAGE),
        bad(m + PAGE, m + 3 * PAGE),
    ];
    let stats = open(&messy, &mut work).unwrap();
    assert_eq!(stats.bad_frames, 4);
    assert!(BadRange::new(7, 7).is_err());
    // A format refused for its bad list wrote nothing.
    let mut region = MemPmem::new(size() as usize);
    region.as_bytes_mut().fill(FILL);
    let mut w = work.clone();
    let Err(e) = NvPool::format_with_bad_ranges(region, config(), &mut w, &[past]) else {
        panic!("a range past the region was accepted")
    };
    assert_eq!(
        e,
        FormatError::BadRange(BadRangeError::OutsideRegion {
            range: past,
            size: size()
        })
    );
}

/// An operation of the random sequences.
#[derive(Clone, Debug)]
enum Op {
    Populate { dom: u8, at: u16, frames: u8 },
    Increase { dom: u8, at: u16, order: u8 },
    Decrease { dom: u8, at: u16 },
    Recreate { dom: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..64u16, 1..=64u8).prop_map(|(dom, at, frames)| Op::Populate { dom, at, frames }),
        2 => (0..3u8, 0..64u16, 0..=4u8).prop_map(|(dom, at, order)| Op::Increase { dom, at, order }),
        2 => (0..3u8, 0..64u16).prop_map(|(dom, at)| Op::Decrease { dom, at }),
        1 => (0..3u8).prop_map(|dom| Op::Recreate { dom }),
    ]
}

fn apply<P: Pmem>(pool: &mut NvPool<'_, P>, op: &Op) {
    let id = |d: u8| DomainUuid::new(u128::from(d) + 1);
    let dom = |pool: &NvPool<'_, P>, d: u8| pool.find(id(d)).unwrap();
    let gfn = |at: u16| Gfn::new(u64::from(at) * 64).unwrap();
    // Refusals (out of memory, overlap, quota) are fine: only what is
    // handed out matters here.
    match *op {
        Op::Populate { dom: d, at, frames } => {
            let _ = pool.populate(dom(pool, d), gfn(at), u64::from(frames));
        }
        Op::Increase { dom: d, at, order } => {
            let _ = pool.increase_reservation(dom(pool, d), &[gfn(at)], order);
        }
        Op::Decrease { dom: d, at } => {
            let _ = pool.decrease_reservation(dom(pool, d), &[gfn(at)], 0);
        }
        Op::Recreate { dom: d } => {
            pool.destroy(dom(pool, d)).unwrap();
            pool.create(id(d), "vm", 2048).unwrap();
        }
    }
}

fn ranges() -> impl Strategy<Value = Vec<BadRange>> {
    let m = meta();
    let span = size() - m;
    proptest::collection::vec((0..span, 1..0x6000u64), 0..8).prop_map(move |v| {
        v.into_iter()
            .map(|(s, len)| bad(m + s, (m + s + len).min(size())))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever was owned before the bad list was known is reported,
    /// exactly; nothing handed out after is bad; a freed bad frame stays
    /// out.
    #[test]
    fn bad_frames_are_never_handed_out_and_every_owner_is_reported(
        before in proptest::collection::vec(op(), 0..24),
        ranges in ranges(),
        after in proptest::collection::vec(op(), 0..24),
    ) {
        let mut work = work();
        let mut pool = NvPool::format(MemPmem::new(size() as usize), config(), &mut work).unwrap();
        for d in 0..3u8 {
            pool.create(DomainUuid::new(u128::from(d) + 1), "vm", 2048).unwrap();
        }
        for op in &before {
            apply(&mut pool, op);
        }
        let was = owned(&pool);
        let expect = bad_frames(&ranges);
        let image = pool.into_region();
        let (mut pool, _) =
            NvPool::recover_with_bad_ranges(image, &mut work, &ranges).unwrap();
        let want: BTreeSet<_> = was.iter().filter(|(_, f)| expect.contains(f)).copied().collect();
        prop_assert_eq!(reported(&pool), want.clone());
        prop_assert_eq!(pool.bad_frames_owned(), want.len() as u64);
        prop_assert_eq!(pool.bad_frames_kept_out() + want.len() as u64, expect.len() as u64);
        pool.check().unwrap();
        for op in &after {
            apply(&mut pool, op);
            // Only frames owned since before the list may be bad.
            for (id, f) in owned(&pool) {
                prop_assert!(!expect.contains(&f) || want.contains(&(id, f)), "{op:?} handed out bad frame {f:#x}");
            }
        }
        pool.check().unwrap();
        let still = reported(&pool);
        prop_assert!(still.is_subset(&want));
        prop_assert_eq!(pool.stats().bad_frames + still.len() as u64, expect.len() as u64);
    }
}
