//! A guest's NVRAM from an NV pool in memory: built from the pool's
//! extents, ballooned out and in with the pool and the guest's map equal
//! extent for extent after every change, and found again, at the same
//! guest frames and machine frames, after the pool is recovered.

use std::ops::Range;

use nvirt_addr::{Gfn, GuestPhysRange};
use nvirt_buddy::{Heap, MemKind, Order};
use nvirt_e820::{GuestLayout, GuestMap, Kind};
use nvirt_nvpool::{DomainState, DomainUuid, HostPhysAddr, Mfn};
use nvirt_persist_meta::MemPmem;

use super::NvFrames;
use crate::balloon::tests::config;
use crate::config::PoolMode;
use crate::guest_memory::{GuestMemory, MemoryError, PAGE};
use crate::nested::Format;
use crate::nv_boot::{self, Attached, GuestNvram, Opened};
use crate::p2m::BlockMapping;
use crate::regions::Regions;
use crate::testing::{Arena, heap, metadata_for};

const MIB: u64 = 1 << 20;
/// Host RAM: 16 MiB at 4 MiB.
const RAM_HOST: Range<u64> = 0x40_0000..0x140_0000;
/// The NVDIMM: 10 MiB at 64 MiB (8 MiB of guest NVRAM, room for metadata).
const NV_HOST: Range<u64> = 0x400_0000..0x4a0_0000;
const ID: DomainUuid = DomainUuid::new(0xfeed);

type Guest<'a, 'm, 's, 'p, 'w> = GuestMemory<'a, 'm, 's, NvFrames<'p, 'w, MemPmem>, &'a Arena>;

fn layout() -> GuestMap<16> {
    GuestLayout::new(8 * MIB)
        .nvram(8 * MIB, Kind::Pmem)
        .build()
        .unwrap()
}

fn nvram(layout: &GuestMap<16>) -> Range<u64> {
    layout.nvram.clone().unwrap()
}

fn guest_nvram(layout: &GuestMap<16>) -> GuestNvram<'static> {
    let r = nvram(layout);
    GuestNvram {
        id: ID,
        name: "test",
        gfns: GuestPhysRange::from_numbers(r.start, r.end)
            .unwrap()
            .frames_within(),
    }
}

/// Boots a guest over `region` (a pool or not): opens the pool, attaches
/// the guest's domain, backs RAM, maps the domain's NVRAM and backs its
/// holes; runs `f` on the guest; returns the region.
fn boot<R>(
    region: MemPmem,
    f: impl FnOnce(&mut Guest<'_, '_, '_, '_, '_>, Opened, Attached) -> R,
) -> (MemPmem, R) {
    let arena = Arena::new(RAM_HOST.start..NV_HOST.end);
    let mut rm = metadata_for(&RAM_HOST);
    let mut ram: Heap<'_> = heap(MemKind::Volatile, &RAM_HOST, &mut rm).unwrap();
    let base_pfn = HostPhysAddr::new(NV_HOST.start)
        .and_then(Mfn::from_addr)
        .unwrap();
    let mut work = vec![0u8; nv_boot::work_area_bytes(&region, base_pfn).unwrap()];
    let (mut pool, opened) = nv_boot::open(region, base_pfn, &mut work, PoolMode::Recover).unwrap();
    let layout = layout();
    let (dom, attached) = nv_boot::attach(&mut pool, &guest_nvram(&layout)).unwrap();
    let result = {
        let mut frames = NvFrames::new(&mut pool, dom);
        let mut storage = vec![BlockMapping::EMPTY; 512];
        let mut g = GuestMemory::new(
            &config(Format::Npt),
            &mut ram,
            Some(&mut frames),
            &arena,
            &mut storage,
            Regions::from_map(&layout.map),
        )
        .unwrap();
        for r in layout.ram.iter().flatten() {
            g.back(r, MemKind::Volatile, true).unwrap();
        }
        g.attach_owned(&nvram(&layout), MemKind::NonVolatile)
            .unwrap();
        g.back_holes(&nvram(&layout), MemKind::NonVolatile, true)
            .unwrap();
        let _ = g.take_invalidation();
        consistent(&g);
        f(&mut g, opened, attached)
    };
    pool.check().unwrap();
    (pool.into_region(), result)
}

/// The guest's map, its tables and its domain in the pool agree.
fn consistent(g: &Guest<'_, '_, '_, '_, '_>) {
    g.audit().unwrap();
    assert_eq!(g.footprint(), g.minimum());
    g.nvram_pool_ref().unwrap().agrees(g.extents()).unwrap();
    g.nvram_pool_ref().unwrap().pool_ref().check().unwrap();
}

fn translate(g: &Guest<'_, '_, '_, '_, '_>, gpa: u64) -> Option<u64> {
    g.tables().translate(gpa)
}

#[test]
fn a_new_guest_gets_its_region_largest_blocks_first() {
    let (_, ()) = boot(
        MemPmem::new((NV_HOST.end - NV_HOST.start) as usize),
        |g, opened, attached| {
            assert_eq!(opened, Opened::FormattedEmpty);
            assert!(matches!(attached, Attached::Created { .. }));
            assert_eq!(g.frames(MemKind::NonVolatile), 8 * MIB / PAGE);
            let nv = translate(g, 1 << 32).unwrap();
            assert!(NV_HOST.contains(&nv), "NVRAM from the NVDIMM");
            // The metadata fills the NVDIMM's first 2 MiB block; 8 MiB of
            // aligned blocks follow, all of them mapped with 2 MiB pages.
            assert_eq!(g.footprint().pages_4k, 0);
        },
    );
}

#[test]
fn balloons_through_the_pool_and_stays_equal_to_it() {
    let size = (NV_HOST.end - NV_HOST.start) as usize;
    boot(MemPmem::new(size), |g, _, _| {
        let first = (1u64 << 32) / PAGE;
        let free = |g: &Guest<'_, '_, '_, '_, '_>| {
            g.nvram_pool_ref().unwrap().pool_ref().stats().free_frames
        };
        let before = free(g);
        for p in [1u64, 8, 15] {
            g.decrease(gfn(first + p), Order::SIZE_4K, MemKind::NonVolatile)
                .unwrap();
            consistent(g);
        }
        g.decrease(gfn(first + 512), Order::SIZE_2M, MemKind::NonVolatile)
            .unwrap();
        consistent(g);
        assert_eq!(free(g), before + 3 + 512);
        assert_eq!(translate(g, (first + 8) * PAGE), None);
        // Back again: one page by populate, the 2 MiB extent and the
        // lowest holes by increase.
        g.populate(gfn(first + 8), Order::SIZE_4K, MemKind::NonVolatile)
            .unwrap();
        consistent(g);
        assert_eq!(
            g.increase(Order::SIZE_2M, MemKind::NonVolatile)
                .unwrap()
                .get(),
            first + 512
        );
        assert_eq!(
            g.increase(Order::SIZE_4K, MemKind::NonVolatile)
                .unwrap()
                .get(),
            first + 1
        );
        consistent(g);
        // Refusals leave both unchanged.
        let pool_extents = g.nvram_pool_ref().unwrap().pool_ref().stats().extents;
        assert!(matches!(
            g.decrease(gfn(first + 15), Order::SIZE_4K, MemKind::NonVolatile),
            Err(MemoryError::Map(_))
        ));
        assert!(matches!(
            g.populate(gfn(first + 8), Order::SIZE_4K, MemKind::NonVolatile),
            Err(MemoryError::Backed { .. })
        ));
        assert_eq!(
            g.nvram_pool_ref().unwrap().pool_ref().stats().extents,
            pool_extents
        );
        consistent(g);
        assert_eq!(free(g), before + 1);
    });
}

#[test]
fn a_recovered_guest_finds_its_frames_where_they_were() {
    let size = (NV_HOST.end - NV_HOST.start) as usize;
    let first = (1u64 << 32) / PAGE;
    // First boot: balloon, mark running, remember the translation; then
    // "crash" (the region is all that is left).
    let (region, before) = boot(MemPmem::new(size), |g, _, _| {
        for p in [3u64, 4, 700] {
            g.decrease(gfn(first + p), Order::SIZE_4K, MemKind::NonVolatile)
                .unwrap();
        }
        g.populate(gfn(first + 4), Order::SIZE_4K, MemKind::NonVolatile)
            .unwrap();
        let f = g.nvram_pool().unwrap();
        let dom = f.dom();
        f.pool().mark_running(dom).unwrap();
        (0..2048u64)
            .map(|p| translate(g, (first + p) * PAGE))
            .collect::<Vec<_>>()
    });
    assert_eq!(before[3], None);
    // Second boot: the domain is found running at the crash, every frame
    // it held is where it was, and the two it had given back are backed
    // afresh.
    let (region, ()) = boot(region, |g, opened, attached| {
        let Opened::Recovered(report) = opened else {
            panic!("{opened:?}")
        };
        assert_eq!(report.crashed, 1);
        assert!(matches!(
            attached,
            Attached::Found {
                state: DomainState::CrashedWhileRunning,
                frames: 2046,
                ..
            }
        ));
        for (p, was) in before.iter().enumerate() {
            let now = translate(g, (first + p as u64) * PAGE);
            if was.is_some() {
                assert_eq!(now, *was, "page {p}");
            } else {
                assert!(now.is_some(), "page {p} backed again");
            }
        }
        assert_eq!(g.frames(MemKind::NonVolatile), 2048);
        let f = g.nvram_pool().unwrap();
        let dom = f.dom();
        f.pool().mark_shut_down(dom).unwrap();
    });
    // Third boot: shut down cleanly, nothing to report.
    let (_, ()) = boot(region, |_, opened, attached| {
        let Opened::Recovered(report) = opened else {
            panic!("{opened:?}")
        };
        assert_eq!(report.crashed, 0);
        assert!(matches!(
            attached,
            Attached::Found {
                state: DomainState::ShutDown,
                frames: 2048,
                ..
            }
        ));
    });
}

#[test]
fn a_pool_that_disagrees_with_the_map_is_named() {
    let size = (NV_HOST.end - NV_HOST.start) as usize;
    boot(MemPmem::new(size), |g, _, _| {
        let mut extents: Vec<BlockMapping> = g.extents().to_vec();
        let last = extents.len() - 1;
        let gpfn = extents[last].gfn();
        extents.remove(last);
        assert_eq!(g.nvram_pool_ref().unwrap().agrees(&extents), Err(gpfn));
        assert_eq!(g.nvram_pool_ref().unwrap().agrees(g.extents()), Ok(()));
    });
}

fn gfn(n: u64) -> Gfn {
    Gfn::new(n).unwrap()
}
