//! A guest's memory over buddy heaps in a buffer: built largest block
//! first with minimal tables, ballooned out and in, refused where it must
//! be, unchanged by every refusal.

use std::ops::Range;

use nvirt_addr::{Gfn, GfnRange};
use nvirt_buddy::{Block, Constraints, Heap, MemKind, MfnRange, Order};
use nvirt_e820::{GuestLayout, GuestMap, Kind};
use nvirt_ept::Invalidate;

use crate::guest_memory::{GuestMemory, MemoryError, PAGE};
use crate::nested::{Format, NestedConfig};
use crate::p2m::{BlockMapping, P2mError};
use crate::pool::{FramePool, PoolError};
use crate::regions::Regions;
use crate::testing::{Arena, heap, metadata_for};

/// Host RAM for the volatile heap: 16 MiB at 4 MiB.
pub(crate) const RAM_HOST: Range<u64> = 0x40_0000..0x140_0000;
/// Host NVRAM: 8 MiB at 20 MiB.
pub(crate) const NV_HOST: Range<u64> = 0x140_0000..0x1c0_0000;
const MIB: u64 = 1 << 20;
const NV_BASE: u64 = 1 << 32;

pub(crate) type Guest<'a, 'm, 's> = GuestMemory<'a, 'm, 's, Heap<'m>, &'a Arena>;

pub(crate) fn config(format: Format) -> NestedConfig {
    NestedConfig {
        format,
        pages_1g: true,
        phys_bits: 48,
        host_nxe: false,
        host_pat: 0x0007_0406_0007_0406,
    }
}

pub(crate) fn layout() -> GuestMap<16> {
    GuestLayout::new(8 * MIB)
        .nvram(4 * MIB, Kind::Pmem)
        .build()
        .unwrap()
}

/// A guest of [`layout`]'s map over `ram` and `nv` in `arena`, with no
/// memory backed yet.
pub(crate) fn empty_guest<'a, 'm, 's, 'r, N: FramePool>(
    format: Format,
    ram: &'a mut Heap<'m>,
    nv: &'a mut N,
    arena: &'r Arena,
    storage: &'s mut [BlockMapping],
) -> GuestMemory<'a, 'm, 's, N, &'r Arena> {
    GuestMemory::new(
        &config(format),
        ram,
        Some(nv),
        arena,
        storage,
        Regions::from_map(&layout().map),
    )
    .unwrap()
}

/// Backs all of `g`'s RAM (zeroed) and drops the invalidation it asks for.
pub(crate) fn back_ram<N: FramePool>(g: &mut GuestMemory<'_, '_, '_, N, &Arena>) {
    for r in layout().ram.iter().flatten() {
        g.back(r, MemKind::Volatile, true).unwrap();
    }
    let _ = g.take_invalidation();
}

/// Runs `f` on a guest with 8 MiB of RAM and 4 MiB of NVRAM, built.
pub(crate) fn with_guest<R>(format: Format, f: impl FnOnce(&mut Guest<'_, '_, '_>) -> R) -> R {
    let arena = Arena::new(RAM_HOST.start..NV_HOST.end);
    let (mut rm, mut nm) = (metadata_for(&RAM_HOST), metadata_for(&NV_HOST));
    let mut ram = heap(MemKind::Volatile, &RAM_HOST, &mut rm).unwrap();
    let mut nv = heap(MemKind::NonVolatile, &NV_HOST, &mut nm).unwrap();
    let mut storage = vec![BlockMapping::EMPTY; 256];
    let mut g = empty_guest(format, &mut ram, &mut nv, &arena, &mut storage);
    back_ram(&mut g);
    g.back(
        layout().nvram.as_ref().unwrap(),
        MemKind::NonVolatile,
        false,
    )
    .unwrap();
    let _ = g.take_invalidation();
    f(&mut g)
}

fn consistent(g: &Guest<'_, '_, '_>) {
    g.audit().unwrap();
    assert_eq!(g.footprint(), g.minimum());
}

fn translate(g: &Guest<'_, '_, '_>, gpa: u64) -> Option<u64> {
    g.tables().translate(gpa)
}

#[test]
fn builds_with_the_largest_blocks_and_minimal_tables() {
    for format in [Format::Npt, Format::Ept] {
        with_guest(format, |g| {
            consistent(g);
            // 8 MiB of RAM in one 8 MiB block, 4 MiB of NVRAM in one block.
            assert_eq!(g.extents().len(), 2);
            let fp = g.footprint();
            assert_eq!((fp.pages_1g, fp.pages_2m, fp.pages_4k), (0, 6, 0));
            // PML4, PDPT, a page directory for 0 and one for 4 GiB.
            assert_eq!(fp.tables, 4);
            assert_eq!(g.frames(MemKind::Volatile), 8 * MIB / PAGE);
            assert_eq!(g.frames(MemKind::NonVolatile), 4 * MIB / PAGE);
            let nv = translate(g, NV_BASE).unwrap();
            assert!(NV_HOST.contains(&nv), "NVRAM from the NVRAM heap");
            let ram = translate(g, 0x1234).unwrap();
            assert!(RAM_HOST.contains(&ram), "RAM from the RAM heap");
            let mut b = [1u8; 4];
            g.read(0x10_0000, &mut b).unwrap();
            assert_eq!(b, [0; 4], "RAM is zeroed");
            assert!(g.check(8 * MIB - 2, 4).is_err());
        });
    }
}

#[test]
fn balloons_pages_out_and_in_and_stays_minimal() {
    with_guest(Format::Npt, |g| {
        let page = 0x300u64;
        g.write(page * PAGE, b"pattern").unwrap();
        g.write((page + 1) * PAGE, b"kept").unwrap();
        let free_before = g.heap().free_frames();
        g.decrease(gfn(page), Order::SIZE_4K, MemKind::Volatile)
            .unwrap();
        assert_eq!(g.take_invalidation(), Invalidate::ThisContext);
        g.reclaim_tables();
        consistent(g);
        assert_eq!(translate(g, page * PAGE), None);
        assert!(g.check(page * PAGE, 1).is_err());
        assert_eq!(g.frames(MemKind::Volatile), 8 * MIB / PAGE - 1);
        // The 2 MiB page around it became 511 4 KiB pages and a table.
        let fp = g.footprint();
        assert_eq!((fp.pages_2m, fp.pages_4k, fp.tables), (5, 511, 5));
        let mut kept = [0u8; 4];
        g.read((page + 1) * PAGE, &mut kept).unwrap();
        assert_eq!(&kept, b"kept");
        // The frame went back to the heap (the table for the split came
        // out of it).
        assert_eq!(g.heap().free_frames(), free_before);

        g.populate(gfn(page), Order::SIZE_4K, MemKind::Volatile)
            .unwrap();
        consistent(g);
        let mut back = [0xffu8; 7];
        g.read(page * PAGE, &mut back).unwrap();
        assert_eq!(back, [0; 7], "a fresh page is zeroed");

        // NVRAM: a 2 MiB extent out, then back by increase_reservation,
        // which finds the hole.
        let nv = NV_BASE / PAGE + 512;
        g.decrease(gfn(nv), Order::SIZE_2M, MemKind::NonVolatile)
            .unwrap();
        consistent(g);
        assert_eq!(
            g.increase(Order::SIZE_2M, MemKind::NonVolatile),
            Ok(gfn(nv)),
            "the only 2 MiB hole"
        );
        consistent(g);
        assert_eq!(
            g.increase(Order::SIZE_4K, MemKind::NonVolatile),
            Err(MemoryError::NoMemory {
                kind: MemKind::NonVolatile
            }),
            "no hole left: the guest cannot exceed its map"
        );
        assert!(NV_HOST.contains(&translate(g, nv * PAGE).unwrap()));
    });
}

#[test]
fn refuses_frames_outside_its_regions_or_in_the_wrong_state() {
    with_guest(Format::Ept, |g| {
        let nv = NV_BASE / PAGE;
        let cases: [(MemoryError, Result<(), MemoryError>); 6] = [
            (
                MemoryError::Backed { gpfn: 0x300 },
                g.populate(gfn(0x300), Order::SIZE_4K, MemKind::Volatile),
            ),
            (
                MemoryError::OutsideRegion {
                    gpfn: 0x9f,
                    frames: 1,
                    kind: MemKind::Volatile,
                },
                g.decrease(gfn(0x9f), Order::SIZE_4K, MemKind::Volatile),
            ),
            (
                MemoryError::OutsideRegion {
                    gpfn: 0xc_0000,
                    frames: 1,
                    kind: MemKind::Volatile,
                },
                g.populate(gfn(0xc_0000), Order::SIZE_4K, MemKind::Volatile),
            ),
            (
                MemoryError::OutsideRegion {
                    gpfn: nv,
                    frames: 1,
                    kind: MemKind::Volatile,
                },
                g.decrease(gfn(nv), Order::SIZE_4K, MemKind::Volatile),
            ),
            (
                MemoryError::OutsideRegion {
                    gpfn: 0x100,
                    frames: 512,
                    kind: MemKind::NonVolatile,
                },
                g.populate(gfn(0x100), Order::SIZE_2M, MemKind::NonVolatile),
            ),
            (
                MemoryError::OutsideRegion {
                    gpfn: 0x7ff,
                    frames: 2,
                    kind: MemKind::Volatile,
                },
                g.populate(gfn(0x7ff), Order::new(1).unwrap(), MemKind::Volatile),
            ),
        ];
        for (expected, got) in cases {
            assert_eq!(got, Err(expected));
        }
        g.decrease(gfn(0x400), Order::SIZE_4K, MemKind::Volatile)
            .unwrap();
        assert_eq!(
            g.decrease(gfn(0x400), Order::SIZE_4K, MemKind::Volatile),
            Err(MemoryError::Map(P2mError::NotBacked { gpfn: gfn(0x400) }))
        );
        assert_eq!(
            g.populate(gfn(0x3ff), Order::new(1).unwrap(), MemKind::Volatile),
            Err(MemoryError::Backed { gpfn: 0x3ff })
        );
        consistent(g);
    });
}

/// A non-volatile heap whose releases never have room, like an NV pool
/// whose extent slots other domains hold.
struct Cramped<'m>(Heap<'m>);

impl FramePool for Cramped<'_> {
    fn kind(&self) -> MemKind {
        MemKind::NonVolatile
    }
    fn alloc_for(&mut self, gpfn: Gfn, order: Order) -> Result<Block, PoolError> {
        self.0.alloc_for(gpfn, order)
    }
    fn release(&mut self, gpfn: Gfn, block: Block, part: MfnRange) -> Result<(), PoolError> {
        self.0.release(gpfn, block, part)
    }
    fn free_frames(&self) -> u64 {
        Heap::free_frames(&self.0)
    }
    fn can_release(&self, _: Block, _: MfnRange) -> bool {
        false
    }
}

#[test]
fn a_release_the_pool_has_no_room_for_changes_nothing() {
    let arena = Arena::new(RAM_HOST.start..NV_HOST.end);
    let (mut rm, mut nm) = (metadata_for(&RAM_HOST), metadata_for(&NV_HOST));
    let mut ram = heap(MemKind::Volatile, &RAM_HOST, &mut rm).unwrap();
    let mut nv = Cramped(heap(MemKind::NonVolatile, &NV_HOST, &mut nm).unwrap());
    let mut storage = vec![BlockMapping::EMPTY; 256];
    let mut g = empty_guest(Format::Ept, &mut ram, &mut nv, &arena, &mut storage);
    let nvram = layout().nvram.unwrap();
    g.back(&nvram, MemKind::NonVolatile, false).unwrap();
    let _ = g.take_invalidation();
    let gpfn = nvram.start / PAGE + 5;
    let before = (
        g.extents().to_vec(),
        g.footprint(),
        g.tables().translate(gpfn * PAGE),
    );
    assert_eq!(
        g.decrease(gfn(gpfn), Order::SIZE_4K, MemKind::NonVolatile),
        Err(MemoryError::NoMemory {
            kind: MemKind::NonVolatile
        })
    );
    assert_eq!(g.take_invalidation(), Invalidate::Nothing);
    assert_eq!(
        before,
        (
            g.extents().to_vec(),
            g.footprint(),
            g.tables().translate(gpfn * PAGE)
        )
    );
    assert!(before.2.is_some(), "the page stays mapped");
    g.audit().unwrap();
}

#[test]
fn a_refused_populate_changes_nothing() {
    with_guest(Format::Npt, |g| {
        g.decrease(gfn(0x400), Order::SIZE_2M, MemKind::Volatile)
            .unwrap();
        let _ = g.take_invalidation();
        g.reclaim_tables();
        // Take every free RAM frame but a few: not enough for 2 MiB.
        let mut taken = Vec::new();
        while g.heap().free_frames() > 3 {
            taken.push(g.heap().alloc(Order::SIZE_4K, Constraints::ANY).unwrap());
        }
        let before = (g.extents().to_vec(), g.heap().free_frames(), g.footprint());
        assert_eq!(
            g.populate(gfn(0x400), Order::SIZE_2M, MemKind::Volatile),
            Err(MemoryError::NoMemory {
                kind: MemKind::Volatile
            })
        );
        let _ = g.take_invalidation();
        g.reclaim_tables();
        assert_eq!(
            before,
            (g.extents().to_vec(), g.heap().free_frames(), g.footprint())
        );
        consistent(g);
        for b in taken {
            g.heap().free_block(b).unwrap();
        }
        g.populate(gfn(0x400), Order::SIZE_2M, MemKind::Volatile)
            .unwrap();
        consistent(g);
    });
}

#[test]
fn releases_across_extents_and_refills_largest_first() {
    with_guest(Format::Ept, |g| {
        // Punch single pages, then give back a range that spans them.
        for p in [0x210, 0x220, 0x3f0] {
            g.decrease(gfn(p), Order::SIZE_4K, MemKind::Volatile)
                .unwrap();
            g.populate(gfn(p), Order::SIZE_4K, MemKind::Volatile)
                .unwrap();
        }
        consistent(g);
        let n = g.extents().len();
        assert!(n > 10, "{n} extents after the punches");
        g.decrease(gfn(0x200), Order::SIZE_2M, MemKind::Volatile)
            .unwrap();
        consistent(g);
        assert_eq!(g.p2m_hole(0x200), Some(0x200));
        g.populate(gfn(0x200), Order::SIZE_2M, MemKind::Volatile)
            .unwrap();
        consistent(g);
        let e = *g.extents().iter().find(|e| e.gfn().get() == 0x200).unwrap();
        assert_eq!(e.block().order(), Order::SIZE_2M, "one 2 MiB block");
    });
}

impl Guest<'_, '_, '_> {
    fn p2m_hole(&self, from: u64) -> Option<u64> {
        let region = GfnRange::from_len(gfn(from), 512).unwrap();
        self.p2m.first_hole(&region, Order::SIZE_2M).map(Gfn::get)
    }
}

mod model {
    use proptest::prelude::*;

    use crate::nested::Format;
    use crate::testing::balloon::{BalloonOp, run};

    fn op() -> impl Strategy<Value = BalloonOp> {
        prop_oneof![
            (any::<u64>(), 0u8..11, any::<bool>())
                .prop_map(|(gpfn, order, nvram)| BalloonOp::Populate { gpfn, order, nvram }),
            (any::<u64>(), 0u8..11, any::<bool>())
                .prop_map(|(gpfn, order, nvram)| BalloonOp::Decrease { gpfn, order, nvram }),
            (0u8..11, any::<bool>())
                .prop_map(|(order, nvram)| BalloonOp::Increase { order, nvram }),
            (
                any::<u8>(),
                proptest::collection::vec(any::<u64>(), 0..8),
                0u8..10,
                any::<bool>()
            )
                .prop_map(|(cmd, gpfns, order, nvram)| BalloonOp::Reservation {
                    cmd,
                    gpfns,
                    order,
                    nvram
                }),
            (any::<u64>(), any::<u8>()).prop_map(|(gpfn, byte)| BalloonOp::Write { gpfn, byte }),
            (
                0u64..16,
                any::<u16>(),
                proptest::collection::vec(any::<u8>(), 0..64),
                any::<u16>()
            )
                .prop_map(|(cmd, arg, bytes, at)| BalloonOp::Hypercall {
                    cmd,
                    arg: u64::from(arg),
                    bytes,
                    at: u64::from(at) << 4,
                }),
        ]
    }

    proptest! {
        // 64 cases by default; PROPTEST_CASES raises it.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
        ))]
        #[test]
        fn balloon_sequences_match_the_model(
            ops in proptest::collection::vec(op(), 1..48),
            ept in any::<bool>(),
        ) {
            run(if ept { Format::Ept } else { Format::Npt }, &ops);
        }
    }
}

fn gfn(n: u64) -> Gfn {
    Gfn::new(n).unwrap()
}

#[test]
fn an_ended_guest_gives_back_all_its_ram_and_tables_and_keeps_its_nvram() {
    for format in [Format::Ept, Format::Npt] {
        let arena = Arena::new(RAM_HOST.start..NV_HOST.end);
        let (mut rm, mut nm) = (metadata_for(&RAM_HOST), metadata_for(&NV_HOST));
        let mut ram = heap(MemKind::Volatile, &RAM_HOST, &mut rm).unwrap();
        let mut nv = heap(MemKind::NonVolatile, &NV_HOST, &mut nm).unwrap();
        let ram_free = ram.free_frames();
        let nv_free = nv.free_frames();
        let mut storage = vec![BlockMapping::EMPTY; 256];
        let mut g = empty_guest(format, &mut ram, &mut nv, &arena, &mut storage);
        back_ram(&mut g);
        let nvram = layout().nvram.unwrap();
        g.back(&nvram, MemKind::NonVolatile, false).unwrap();
        // A balloon cycle leaves RAM in pieces that are not whole extents.
        for page in [0x123, 0x124, 0x200, 0x3ff, 0x7ff] {
            g.decrease(gfn(page), Order::SIZE_4K, MemKind::Volatile)
                .unwrap();
        }
        let _ = g.take_invalidation();
        g.reclaim_tables();
        let tables = g.footprint().tables;
        assert!(tables > 0);

        let released = g.release_ram();
        assert_eq!(released.refused, 0);
        assert_eq!(released.ram_frames, 8 * MIB / PAGE - 5);
        assert_eq!(released.table_frames, tables);
        assert!(
            released
                .p2m
                .extents()
                .iter()
                .all(|e| e.kind() == MemKind::NonVolatile)
        );
        assert_eq!(released.p2m.frames(MemKind::NonVolatile), 4 * MIB / PAGE);
        assert_eq!(ram.free_frames(), ram_free, "{format:?}: RAM leaked");
        assert_eq!(nv.free_frames(), nv_free - 4 * MIB / PAGE);
        ram.check_invariants().unwrap();
    }
}
