//! Sequences of balloon operations and raw `memory_op` calls on a guest of
//! 4 MiB of RAM and 2 MiB of NVRAM over buddy heaps in a buffer, checked
//! after every step against a model of which guest frame is backed by
//! which kind and what byte it holds. Shared by the property tests and the
//! `hv_balloon` fuzz target; every violation panics.
//!
//! After every step: the nested tables translate exactly what the
//! physical-to-machine map records ([`GuestMemory::audit`]); they hold the
//! minimal leaves and tables for it; every frame is accounted for (heap
//! free frames + guest frames + table frames are constant, per kind);
//! every backed page holds the byte the model says (fresh pages zero); a
//! decrease that succeeded asked for an invalidation; nothing the guest
//! asks for breaks the hypervisor's state.

use std::collections::BTreeMap;
use std::ops::Range;
use std::vec::Vec;

use nvirt_addr::Gfn;
use nvirt_buddy::{MemKind, Order};
use nvirt_e820::{GuestLayout, GuestMap, Kind};
use nvirt_hypercall_abi::host::{Caller, Limits, Registers};
use nvirt_hypercall_abi::{DomId, E820Entry, XenPfn};

use super::model::{Guest, Model, TAG, agree, expect_decrease, expect_populate, order_of};
use super::{Arena, heap, metadata_for};
use crate::guest_memory::{GuestMemory, MemoryError, PAGE};
use crate::memory_op::{Addressing, GuestInfo, e820_of, serve};
use crate::nested::{Format, NestedConfig};
use crate::p2m::{BlockMapping, P2mError};
use crate::regions::Regions;

/// Host RAM of the volatile heap: 8 MiB at 4 MiB.
const RAM_HOST: Range<u64> = 0x40_0000..0xc0_0000;
/// Host NVRAM: 4 MiB at 12 MiB.
const NV_HOST: Range<u64> = 0xc0_0000..0x100_0000;
/// The guest's NVRAM starts at 4 GiB.
const NV_FIRST: u64 = (1 << 32) / PAGE;

/// One step.
#[derive(Clone, Debug)]
pub enum BalloonOp {
    /// `populate_physmap` of one extent.
    Populate {
        /// Guest frame (taken modulo the guest's address space).
        gpfn: u64,
        /// Extent order (modulo 11: up to 4 MiB).
        order: u8,
        /// NVRAM rather than RAM.
        nvram: bool,
    },
    /// `decrease_reservation` of one extent.
    Decrease {
        /// Guest frame.
        gpfn: u64,
        /// Extent order.
        order: u8,
        /// NVRAM.
        nvram: bool,
    },
    /// `increase_reservation` of one extent.
    Increase {
        /// Extent order.
        order: u8,
        /// NVRAM.
        nvram: bool,
    },
    /// Writes the page's model byte.
    Write {
        /// Guest frame.
        gpfn: u64,
        /// The byte.
        byte: u8,
    },
    /// A well-formed reservation call (populate, decrease or increase of
    /// `gpfns.len()` extents), its structure and array placed in guest
    /// memory, re-entered until done; its answer must be what the model
    /// predicts extent by extent (Xen's partial success included).
    Reservation {
        /// 0 increase, 1 decrease, else populate.
        cmd: u8,
        /// The extents' frames (aimed like the others).
        gpfns: Vec<u64>,
        /// Extent order.
        order: u8,
        /// NVRAM.
        nvram: bool,
    },
    /// A raw `memory_op`: `bytes` written to guest-physical `at` first.
    Hypercall {
        /// RDI: the command word.
        cmd: u64,
        /// RSI: the argument's address; an odd value means `at`'s.
        arg: u64,
        /// Bytes to place in guest memory first.
        bytes: Vec<u8>,
        /// Where.
        at: u64,
    },
}

fn layout() -> GuestMap<16> {
    GuestLayout::new(4 << 20)
        .nvram(2 << 20, Kind::Pmem)
        .build()
        .unwrap_or_else(|e| panic!("layout: {e}"))
}

/// Guest frames the operations aim at: a little beyond the map, so
/// refusals happen too.
/// Guest frame `n` (every frame [`aim`] picks is one).
fn gfn(n: u64) -> Gfn {
    Gfn::new(n).unwrap_or(Gfn::MAX)
}

fn aim(gpfn: u64) -> u64 {
    // Half the time RAM frames (0..0x480), else NVRAM frames and beyond.
    if gpfn & 1 == 0 {
        (gpfn >> 1) % 0x480
    } else {
        NV_FIRST + (gpfn >> 1) % 0x280
    }
}

fn kind(nvram: bool) -> MemKind {
    if nvram {
        MemKind::NonVolatile
    } else {
        MemKind::Volatile
    }
}

/// Runs `ops` on a fresh guest in `format`, checking after every step.
pub fn run(format: Format, ops: &[BalloonOp]) {
    let arena = Arena::new(RAM_HOST.start..NV_HOST.end);
    let (mut rm, mut nm) = (metadata_for(&RAM_HOST), metadata_for(&NV_HOST));
    let (Some(mut ram), Some(mut nv)) = (
        heap(MemKind::Volatile, &RAM_HOST, &mut rm),
        heap(MemKind::NonVolatile, &NV_HOST, &mut nm),
    ) else {
        panic!("heaps over the buffer");
    };
    let (ram_total, nv_total) = (ram.free_frames(), nv.free_frames());
    let mut storage = vec![BlockMapping::EMPTY; 1024];
    let layout = layout();
    let regions = Regions::from_map(&layout.map);
    let config = NestedConfig {
        format,
        pages_1g: true,
        phys_bits: 48,
        host_nxe: true,
        host_pat: 0x0007_0406_0007_0406,
    };
    let mut g = GuestMemory::new(
        &config,
        &mut ram,
        Some(&mut nv),
        &arena,
        &mut storage,
        regions.clone(),
    )
    .unwrap_or_else(|e| panic!("tables: {e}"));
    for r in layout.ram.iter().flatten() {
        g.back(r, MemKind::Volatile, true)
            .unwrap_or_else(|e| panic!("RAM: {e}"));
    }
    if let Some(nv) = &layout.nvram {
        g.back(nv, MemKind::NonVolatile, false)
            .unwrap_or_else(|e| panic!("NVRAM: {e}"));
    }
    let mut e820 = [E820Entry::default(); 16];
    let n = e820_of(&layout.map, &mut e820);
    let Some(caller) = Caller::kernel(DomId::new(1)) else {
        panic!("domain 1 is ordinary");
    };
    let info = GuestInfo {
        caller,
        addressing: Addressing::Physical,
        limits: Limits::new(XenPfn::new(layout.map.end() / PAGE))
            .batch(3.try_into().unwrap_or(core::num::NonZeroU32::MIN)),
        e820: &e820[..n],
        max_pages: 3 * 512,
        max_ram_page: RAM_HOST.end / PAGE,
    };
    let mut model = Model::default();
    model.sync_from(&g);

    for op in ops.iter().take(256) {
        step(&mut g, &mut model, &regions, &info, op);
        let _ = g.take_invalidation();
        g.reclaim_tables();
        model.check(&g);
        g.audit().unwrap_or_else(|e| panic!("after {op:?}: {e}"));
        assert_eq!(g.footprint(), g.minimum(), "minimal after {op:?}");
        let tables = g.footprint().tables;
        let ram_used = g.frames(MemKind::Volatile) + tables;
        assert_eq!(
            g.heap().free_frames() + ram_used,
            ram_total,
            "RAM frames accounted for"
        );
        let nv_free = g.nvram_free();
        assert_eq!(
            nv_free + g.frames(MemKind::NonVolatile),
            nv_total,
            "NVRAM frames accounted for"
        );
    }
}

fn step(
    g: &mut Guest<'_, '_, '_>,
    model: &mut Model,
    regions: &Regions,
    info: &GuestInfo<'_>,
    op: &BalloonOp,
) {
    match *op {
        BalloonOp::Populate { gpfn, order, nvram } => {
            let (gpfn, order, kind) = (aim(gpfn), order_of(order), kind(nvram));
            let expected = expect_populate(model, regions, gpfn, order, kind);
            let got = g.populate(gfn(gpfn), order, kind);
            agree(&got, &expected, "populate", gpfn, order, kind);
            if got.is_ok() {
                model.back(gpfn, order, kind);
            }
        }
        BalloonOp::Decrease { gpfn, order, nvram } => {
            let (gpfn, order, kind) = (aim(gpfn), order_of(order), kind(nvram));
            let expected = expect_decrease(model, regions, gpfn, order, kind);
            let got = g.decrease(gfn(gpfn), order, kind);
            agree(&got, &expected, "decrease", gpfn, order, kind);
            if got.is_ok() {
                assert!(
                    g.take_invalidation().is_needed(),
                    "a removal asks for an invalidation"
                );
                model.unback(gpfn, order);
            }
        }
        BalloonOp::Increase { order, nvram } => {
            let (order, kind) = (order_of(order), kind(nvram));
            let hole = model.hole(regions, order, kind);
            let got = g.increase(order, kind);
            match (&got, hole) {
                (Err(MemoryError::Map(P2mError::Full { .. })), Some(_)) => {}
                (got, Some(h)) => {
                    assert_eq!(got.map(Gfn::get), Ok(h), "increase order {order} {kind}")
                }
                (got, None) => assert_eq!(*got, Err(MemoryError::NoMemory { kind })),
            }
            if let Ok(at) = got {
                model.back(at.get(), order, kind);
            }
        }
        BalloonOp::Reservation {
            cmd,
            ref gpfns,
            order,
            nvram,
        } => reservation(
            g,
            model,
            regions,
            info,
            cmd,
            gpfns,
            order_of(order),
            kind(nvram),
        ),
        BalloonOp::Write { gpfn, byte } => {
            let gpfn = aim(gpfn);
            let wrote = g.write(gpfn * PAGE + TAG, &[byte]);
            assert_eq!(wrote.is_ok(), model.frames.contains_key(&gpfn));
            if let Some(w) = model.frames.get_mut(&gpfn) {
                w.1 = byte;
            }
        }
        BalloonOp::Hypercall {
            cmd,
            arg,
            ref bytes,
            at,
        } => {
            let at = aim(at >> 12) * PAGE + at % PAGE;
            let arg = if arg & 1 == 1 { at } else { arg };
            let _ = g.write(at, &bytes[..bytes.len().min(256)]);
            let before: BTreeMap<u64, MemKind> = g
                .extents()
                .iter()
                .flat_map(|e| e.gfns().iter().map(move |f| (f.get(), e.kind())))
                .collect();
            let regs = Registers {
                rax: 12,
                rdi: cmd,
                rsi: arg,
                ..Registers::default()
            };
            if let Err(e) = serve(g, &regs, info) {
                panic!("{regs:x?} broke the hypervisor: {e}");
            }
            // New frames are fresh; the rest is whatever the guest and the
            // hypervisor's answer wrote.
            model.sync_from(g);
            for (f, w) in &model.frames {
                if !before.contains_key(f) {
                    assert_eq!(w.1, 0, "frame {f:#x} populated by {regs:x?} is zeroed");
                }
            }
        }
    }
}

/// Where a reservation call's structure goes, and its array after it.
const SCRATCH: u64 = 0x8_0000;

#[allow(clippy::too_many_arguments, reason = "one call's every parameter")]
fn reservation(
    g: &mut Guest<'_, '_, '_>,
    model: &mut Model,
    regions: &Regions,
    info: &GuestInfo<'_>,
    cmd: u8,
    gpfns: &[u64],
    order: Order,
    kind: MemKind,
) {
    use nvirt_hypercall_abi::NVIRT_MEMF_NVRAM;
    use nvirt_hypercall_abi::host::Resume;

    use crate::memory_op::errno_of;

    let command = match cmd % 3 {
        0 => 0u64,
        1 => 1,
        _ => 6,
    };
    let gpfns: Vec<u64> = gpfns.iter().take(16).map(|&f| aim(f)).collect();
    let flags = if kind == MemKind::NonVolatile {
        NVIRT_MEMF_NVRAM
    } else {
        0
    };
    let array = SCRATCH + 64;
    // `xen_memory_reservation`: extent_start, nr_extents, extent_order,
    // mem_flags, domid (DOMID_SELF), padding to 32 bytes.
    let mut bytes: Vec<u8> = Vec::new();
    bytes.extend_from_slice(&array.to_le_bytes());
    bytes.extend_from_slice(&(gpfns.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&u32::from(order.get()).to_le_bytes());
    bytes.extend_from_slice(&flags.to_le_bytes());
    bytes.extend_from_slice(&DomId::SELF.raw().to_le_bytes());
    bytes.resize(64, 0);
    for f in &gpfns {
        bytes.extend_from_slice(&f.to_le_bytes());
    }
    if g.write(SCRATCH, &bytes).is_err() {
        // The scratch pages were given back: the call would fault; skip.
        return;
    }
    // The model, extent by extent, until the first refusal.
    let limit = info.limits.gpfn_limit().raw();
    let mut expected: Result<u64, MemoryError> = Ok(gpfns.len() as u64);
    let mut placed = Vec::new();
    for (i, &f) in gpfns.iter().enumerate() {
        let step = match command {
            0 => model
                .hole(regions, order, kind)
                .ok_or(MemoryError::NoMemory { kind }),
            _ if f % order.frames() != 0 || f + order.frames() > limit => {
                Err(MemoryError::OutsideRegion {
                    gpfn: f,
                    frames: 0,
                    kind,
                })
            }
            1 => expect_decrease(model, regions, f, order, kind).map(|()| f),
            _ => expect_populate(model, regions, f, order, kind).map(|()| f),
        };
        match step {
            Ok(at) => {
                if command == 1 {
                    model.unback(at, order);
                    // Giving back the page holding the call's own array
                    // ends the call after this extent.
                    if (at..at + order.frames()).contains(&(SCRATCH / PAGE)) {
                        expected = Ok(i as u64 + 1);
                        break;
                    }
                } else {
                    model.back(at, order, kind);
                    placed.push(at);
                }
            }
            Err(e) => {
                expected = if i == 0 { Err(e) } else { Ok(i as u64) };
                break;
            }
        }
    }
    let mut regs = Registers {
        rax: 12,
        rdi: command,
        rsi: SCRATCH,
        ..Registers::default()
    };
    let mut entries = 0;
    let rax = loop {
        entries += 1;
        assert!(entries < 64, "the call ends");
        let served = serve(g, &regs, info).unwrap_or_else(|e| panic!("broke the hypervisor: {e}"));
        match served.outcome.apply(&mut regs) {
            Resume::Next => break regs.rax,
            Resume::Again => {}
            Resume::Inject(f) => panic!("a kernel call faulted: {f}"),
        }
    };
    match expected {
        Ok(n) => assert_eq!(
            rax, n,
            "reservation {command} of {gpfns:x?} order {order} {kind}"
        ),
        Err(e) => assert_eq!(
            rax,
            errno_of(&e).to_return(),
            "reservation {command} of {gpfns:x?}: expected {e}"
        ),
    }
    if command == 0 {
        // increase_reservation wrote the frames it chose.
        let mut out = vec![0u8; 8 * placed.len()];
        if g.read(array, &mut out).is_ok() {
            for (chunk, at) in out.chunks_exact(8).zip(&placed) {
                let mut w = [0u8; 8];
                w.copy_from_slice(chunk);
                assert_eq!(u64::from_le_bytes(w), *at, "increase wrote its frame");
            }
        }
    }
}

impl Guest<'_, '_, '_> {
    /// Free frames of the NVRAM pool.
    fn nvram_free(&self) -> u64 {
        self.nvram.as_ref().map_or(0, |p| p.free_frames())
    }
}
