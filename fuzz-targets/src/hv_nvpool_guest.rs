//! Sequences of NVRAM balloon operations (populate, decrease, increase of
//! single extents) on a guest of the reference hypervisor whose NVRAM comes
//! from an NV pool in memory, broken by "crashes" (the pool's region is all
//! that is kept, and the guest is booted again as the hypervisor boots it:
//! the pool recovered, the domain found by id, its extents mapped again,
//! its holes backed afresh). Checked after every step: the tables
//! translate exactly the guest's map and are minimal, the map equals the
//! domain in the pool extent for extent, the pool's invariants hold, no
//! operation breaks the hypervisor; and after every crash every guest
//! frame the domain held is backed by the same machine frame.

use std::collections::BTreeMap;
use std::ops::Range;

use arbitrary::Arbitrary;
use nvirt_buddy::{MemKind, Order};
use nvirt_e820::{GuestLayout, Kind};
use nvirt_hv::fuzzing::guest::{
    self as nv_boot, BlockMapping, Format, GuestMemory, GuestNvram, NestedConfig, NvFrames, PAGE,
    PoolMode, Regions,
};
use nvirt_hv::testing::{Arena, heap, metadata_for};
use nvirt_nvpool::nvirt_addr::{Gfn, GuestPhysRange};
use nvirt_nvpool::{DomainUuid, HostPhysAddr, Mfn};
use nvirt_persist_meta::MemPmem;

const MIB: u64 = 1 << 20;
/// Host RAM: 4 MiB at 4 MiB.
const RAM_HOST: Range<u64> = 0x40_0000..0x80_0000;
/// The NVDIMM: 4 MiB at 8 MiB (2 MiB of guest NVRAM and room to spare).
const NV_HOST: Range<u64> = 0x80_0000..0xc0_0000;
/// The guest's NVRAM: 512 frames at 4 GiB.
const NV_FIRST: u64 = (1 << 32) / PAGE;
const NV_PAGES: u64 = 512;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Populate(u16, u8),
    Decrease(u16, u8),
    Increase(u8),
    Crash(bool),
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    ept: bool,
    ops: Vec<Op>,
}

type Held = BTreeMap<u64, u64>;

/// Boots the guest over `image`, runs ops until a crash or the end;
/// returns the region and, after a crash, what the domain held then.
fn boot(
    arena: &Arena,
    image: MemPmem,
    format: Format,
    ops: &mut impl Iterator<Item = Op>,
    before: Option<&Held>,
) -> (MemPmem, Option<Held>) {
    let mut rm = metadata_for(&RAM_HOST);
    let mut ram = heap(MemKind::Volatile, &RAM_HOST, &mut rm).unwrap();
    let base = HostPhysAddr::new(NV_HOST.start).map_or(Mfn::ZERO, Mfn::containing);
    let mut work = vec![0u8; nv_boot::work_area_bytes(&image, base).unwrap()];
    // The region starts zeroed: `Fresh` formats it without zeroing again,
    // and recovers it on every later boot.
    let (mut pool, _) = nv_boot::open(image, base, &mut work, PoolMode::Fresh).unwrap();
    let layout = GuestLayout::new(2 * MIB)
        .nvram(NV_PAGES * PAGE, Kind::Pmem)
        .build::<16>()
        .unwrap();
    let nv = layout.nvram.clone().unwrap();
    let guest = GuestNvram {
        id: DomainUuid::new(1),
        name: "fuzz",
        gfns: GuestPhysRange::from_numbers(nv.start, nv.end)
            .unwrap()
            .frames_within(),
    };
    let (dom, _) = nv_boot::attach(&mut pool, &guest).unwrap();
    let config = NestedConfig {
        format,
        pages_1g: true,
        phys_bits: 48,
        host_nxe: false,
        host_pat: 0x0007_0406_0007_0406,
    };
    let crashed;
    {
        let mut frames = NvFrames::new(&mut pool, dom);
        let mut storage = vec![BlockMapping::EMPTY; 1024];
        let mut g = GuestMemory::new(
            &config,
            &mut ram,
            Some(&mut frames),
            arena,
            &mut storage,
            Regions::from_map(&layout.map),
        )
        .unwrap();
        for r in layout.ram.iter().flatten() {
            g.back(r, MemKind::Volatile, true).unwrap();
        }
        g.attach_owned(&nv, MemKind::NonVolatile).unwrap();
        g.back_holes(&nv, MemKind::NonVolatile, true).unwrap();
        let _ = g.take_invalidation();
        let check = |g: &GuestMemory<'_, '_, '_, NvFrames<'_, '_, MemPmem>, &Arena>| {
            g.audit().unwrap();
            assert_eq!(g.footprint(), g.minimum());
            let f = g.nvram_pool_ref().unwrap();
            f.agrees(g.extents()).unwrap();
            f.pool_ref().check().unwrap();
        };
        check(&g);
        assert_eq!(g.frames(MemKind::NonVolatile), NV_PAGES, "the whole region");
        if let Some(before) = before {
            for (&gpfn, &mfn) in before {
                let now = g.tables().translate(gpfn * PAGE);
                assert_eq!(now, Some(mfn * PAGE), "guest frame {gpfn:#x} moved");
            }
        }
        let order = |o: u8| Order::new(o % 10).unwrap();
        let page = |p: u16| Gfn::new(NV_FIRST + u64::from(p) % NV_PAGES).unwrap();
        crashed = loop {
            let Some(op) = ops.next() else {
                break None;
            };
            let done = match op {
                Op::Populate(p, o) => g.populate(page(p), order(o), MemKind::NonVolatile),
                Op::Decrease(p, o) => g.decrease(page(p), order(o), MemKind::NonVolatile),
                Op::Increase(o) => g.increase(order(o), MemKind::NonVolatile).map(|_| ()),
                Op::Crash(running) => {
                    if running {
                        let f = g.nvram_pool().unwrap();
                        let d = f.dom();
                        f.pool().mark_running(d).unwrap();
                    }
                    let f = g.nvram_pool_ref().unwrap();
                    let held: Held = f
                        .pool_ref()
                        .extents(f.dom())
                        .flat_map(|e| {
                            (0..e.frames()).map(move |k| (e.gfn().get() + k, e.mfn().get() + k))
                        })
                        .collect();
                    break Some(held);
                }
            };
            if let Err(e) = done {
                assert!(!e.is_fatal(), "{op:?}: {e}");
            }
            if g.take_invalidation().is_needed() {
                g.reclaim_tables();
            }
            check(&g);
        };
    }
    pool.check().unwrap();
    (pool.into_region(), crashed)
}

/// Runs one decoded input.
pub fn run(input: Input) {
    let format = if input.ept { Format::Ept } else { Format::Npt };
    let mut ops = input.ops.into_iter().take(96);
    let mut image = MemPmem::new((NV_HOST.end - NV_HOST.start) as usize);
    let mut before: Option<Held> = None;
    // Host memory, shared by the boots: RAM is zeroed as the guest gets it,
    // NVRAM keeps what it holds, as on a machine.
    let arena = Arena::new(RAM_HOST.start..NV_HOST.end);
    for _ in 0..8 {
        let (next, crashed) = boot(&arena, image, format, &mut ops, before.as_ref());
        image = next;
        match crashed {
            Some(held) => before = Some(held),
            None => break,
        }
    }
}

/// Runs one input: decodes it as `cargo fuzz` does, then [`run`].
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
