//! Salvage (`NvPool::salvage`) of bit-flip-damaged multi-open pools: the
//! salvaged pool passes its checks and opens with plain recovery, every
//! frame owned in the true (undamaged) state is still its domain's or in
//! `lost+found` (never free), every free frame is zeroed, a second salvage
//! changes nothing, and a crash at any point of a salvage leaves an image
//! that either salvages again to the same pool or already is it.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use common::{Op, View, apply, base_image, config, meta_config, pattern, view};
use nvirt_nvpool::{
    Gfn, LOST_FOUND_ID, NvPool, Owner, QuarantineReason, Quarantined, SalvageError, SalvageReport,
};
use nvirt_persist_meta::sim::SimPmem;
use nvirt_persist_meta::{MemPmem, Pmem};

/// Writes its id's pattern into every frame every domain owns, as running
/// guests would, so that lost allocations hold data.
fn write_all<P: Pmem>(pool: &mut NvPool<'_, P>) {
    let owned: Vec<_> = pool
        .domains()
        .flat_map(|d| pool.extents(d.dom).map(move |e| (d.dom, d.id, e)))
        .collect();
    for (dom, id, e) in owned {
        for g in e.gfn().get()..e.gfn().get() + e.frames() {
            pool.write_guest(dom, Gfn::new(g).unwrap(), 0, &pattern(id.get()))
                .unwrap();
        }
    }
    pool.persist();
}

/// A pool built by several opens (the bit-flip test's, with data), its
/// view and who owns each frame in it.
fn build() -> (Vec<u8>, View, BTreeMap<u64, u128>) {
    build_from(&[
        vec![Op::Create(1, "vm1", 32), Op::Populate(1, 0, 16)],
        vec![Op::Create(2, "vm2", 32), Op::Populate(2, 0x200, 9)],
        vec![
            Op::Create(3, "vm3", 32),
            Op::Populate(3, 0, 5),
            Op::Checkpoint,
        ],
        vec![Op::Running(3), Op::Destroy(2)],
        vec![Op::Populate(3, 0x40, 3), Op::Create(4, "vm4", 16)],
        vec![Op::Populate(4, 0x10, 6)],
    ])
}

/// A pool where a destroyed domain's slot and frames go to a new domain
/// at the same guest frames: lose the destroy, and the salvaged owner of
/// those frames is the destroyed domain while the new one's data is there.
fn build_reissued() -> (Vec<u8>, View, BTreeMap<u64, u128>) {
    build_from(&[
        vec![Op::Create(1, "vm1", 32), Op::Populate(1, 0, 8)],
        vec![Op::Create(2, "vm2", 32), Op::Populate(2, 0x100, 8)],
        vec![Op::Destroy(2)],
        vec![Op::Create(5, "vm5", 32), Op::Populate(5, 0x100, 8)],
        vec![Op::Populate(1, 0x20, 4)],
    ])
}

fn build_from(opens: &[Vec<Op>]) -> (Vec<u8>, View, BTreeMap<u64, u128>) {
    let mut image = base_image(&[]);
    let geo = NvPool::probe(&MemPmem::from_bytes(image.clone())).unwrap();
    let mut work = vec![0u8; geo.work_area_bytes()];
    for ops in opens {
        let (mut pool, _) = NvPool::recover(MemPmem::from_bytes(image), &mut work).unwrap();
        for op in ops {
            apply(&mut pool, op);
        }
        write_all(&mut pool);
        image = pool.into_region().into_bytes();
    }
    let (pool, _) = NvPool::recover(MemPmem::from_bytes(image.clone()), &mut work).unwrap();
    let owners = owners(&pool);
    (image, view(&pool), owners)
}

fn owners<P: Pmem>(pool: &NvPool<'_, P>) -> BTreeMap<u64, u128> {
    pool.geometry()
        .data_span()
        .iter()
        .filter_map(|m| match pool.owner_of(m) {
            Owner::Domain { id, .. } => Some((m.get(), id.get())),
            _ => None,
        })
        .collect()
}

/// Salvages `image`: the salvaged image, the report and the quarantined
/// runs.
fn salvage(image: &[u8]) -> Result<(Vec<u8>, SalvageReport, Vec<Quarantined>), SalvageError> {
    let mut mem = MemPmem::from_bytes(image.to_vec());
    let geo = NvPool::probe(&mem).unwrap();
    let mut work = vec![0u8; geo.work_area_bytes()];
    let mut runs = Vec::new();
    let (_, report) = NvPool::salvage(&mut mem, &mut work, &[], |q| runs.push(*q))?;
    Ok((mem.into_bytes(), report, runs))
}

/// Recovers a salvaged image and checks it: invariants, free frames
/// zeroed, `lost+found` extents at guest frame = machine frame, and every
/// frame `truth` gives a domain still that domain's or in `lost+found`.
fn check_salvaged(image: &[u8], truth: &BTreeMap<u64, u128>) -> Result<View, String> {
    let mem = MemPmem::from_bytes(image.to_vec());
    let geo = NvPool::probe(&mem).unwrap();
    let mut work = vec![0u8; geo.work_area_bytes()];
    let (pool, _) = NvPool::recover(mem, &mut work).map_err(|e| format!("recover: {e}"))?;
    pool.check().map_err(|e| format!("check: {e}"))?;
    let mut frame = vec![0u8; 4096];
    for m in pool.geometry().data_span().iter() {
        let owner = pool.owner_of(m);
        if owner == Owner::Free {
            pool.region()
                .read(pool.region_offset(m).unwrap(), &mut frame)
                .unwrap();
            if frame.iter().any(|&b| b != 0) {
                return Err(format!("{m} is free but holds data"));
            }
        }
        if let Owner::Domain { id, gpfn, .. } = owner {
            if id == LOST_FOUND_ID && gpfn.get() != m.get() {
                return Err(format!("{m} is in lost+found at guest frame {gpfn}"));
            }
        }
        if let Some(&want) = truth.get(&m.get()) {
            match owner {
                Owner::Domain { id, .. } if id.get() == want || id == LOST_FOUND_ID => {}
                other => return Err(format!("{m} of domain {want} is now {other:?}")),
            }
        }
    }
    Ok(view(&pool))
}

/// The flips of `image`'s metadata to try: every bit of every non-zero
/// byte of the log (its records, checkpoints and superblocks), bits 0, 3
/// and 6 elsewhere in every 97th byte.
fn flips(image: &[u8]) -> Vec<(usize, u8)> {
    let meta = config()
        .geometry(image.len() as u64)
        .unwrap()
        .metadata_bytes() as usize;
    let mut out = Vec::new();
    for (at, &byte) in image[..meta].iter().enumerate() {
        if byte != 0 {
            out.extend((0..8).map(|b| (at, b)));
        } else if at % 97 == 0 {
            out.extend([0, 3, 6].map(|b| (at, b)));
        }
    }
    out
}

#[test]
fn salvage_keeps_every_owned_frame_with_its_domain_or_in_lost_and_found() {
    salvage_flips("six opens", build());
}

#[test]
fn salvage_of_a_reissued_slot_keeps_the_new_domains_frames() {
    salvage_flips("a reissued slot", build_reissued());
}

fn salvage_flips(what: &str, (image, truth_view, truth): (Vec<u8>, View, BTreeMap<u64, u128>)) {
    let (mut unchanged, mut salvaged, mut refused) = (0u64, 0u64, 0u64);
    let mut quarantined = 0u64;
    let mut lost_reasons = [0u64; 3];
    let mut refusals = BTreeMap::new();
    let mut damaged = image.clone();
    for (at, bit) in flips(&image) {
        damaged[at] ^= 1 << bit;
        match salvage(&damaged) {
            Ok((_, SalvageReport::Unchanged, runs)) => {
                assert!(runs.is_empty());
                unchanged += 1;
            }
            Ok((out, SalvageReport::Salvaged(r), runs)) => {
                salvaged += 1;
                quarantined += r.quarantined_frames;
                for q in &runs {
                    let i = match q.why {
                        QuarantineReason::LaterRecord { .. } => 0,
                        QuarantineReason::Written => 1,
                        QuarantineReason::Moved { .. } => 2,
                    };
                    lost_reasons[i] += q.frames.len();
                }
                let ran: u64 = runs.iter().map(|q| q.frames.len()).sum();
                assert_eq!(ran, r.quarantined_frames, "byte {at:#x} bit {bit}");
                let v = check_salvaged(&out, &truth)
                    .unwrap_or_else(|e| panic!("byte {at:#x} bit {bit}: {e}"));
                assert_ne!(
                    v, truth_view,
                    "byte {at:#x} bit {bit}: salvage changed nothing"
                );
                // Salvaging the salvaged pool changes nothing.
                let (again, report, _) = salvage(&out).unwrap();
                assert_eq!(report, SalvageReport::Unchanged, "byte {at:#x} bit {bit}");
                assert!(again == out);
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                let kind = format!("{e:?}");
                let kind: String = kind.split([' ', '{']).next().unwrap_or_default().into();
                *refusals.entry(kind).or_insert(0u64) += 1;
                refused += 1;
            }
        }
        damaged[at] = image[at];
    }
    println!(
        "salvage of {} bit flips ({what}): unchanged {unchanged}, salvaged {salvaged} (quarantined \
         {quarantined} frames: {} named by dropped records, {} written, {} moved), refused \
         {refused} {refusals:?}",
        unchanged + salvaged + refused,
        lost_reasons[0],
        lost_reasons[1],
        lost_reasons[2],
    );
    assert!(salvaged > 0 && unchanged > 0);
}

/// A flip that loses a committed record early in the last record area.
fn damaged_image(image: &[u8]) -> Vec<u8> {
    for (at, bit) in flips(image) {
        let mut damaged = image.to_vec();
        damaged[at] ^= 1 << bit;
        if let Ok((_, SalvageReport::Salvaged(r), _)) = salvage(&damaged) {
            if r.dropped_records >= 2 && r.quarantined_frames > 0 {
                return damaged;
            }
        }
    }
    panic!("no flip loses records with frames to quarantine");
}

#[test]
fn a_crash_during_salvage_leaves_the_damaged_pool_or_the_salvaged_one() {
    let (image, _, truth) = build();
    let damaged = damaged_image(&image);
    let (salvaged, _, _) = salvage(&damaged).unwrap();
    let expected = check_salvaged(&salvaged, &truth).unwrap();
    let mut sim = SimPmem::from_image(damaged.clone());
    let geo = NvPool::probe(&sim).unwrap();
    let mut work = vec![0u8; geo.work_area_bytes()];
    NvPool::salvage(&mut sim, &mut work, &[], |_| {}).unwrap();
    assert!(sim.image() == &salvaged[..]);
    let (mut before, mut after) = (0u64, 0u64);
    let config = meta_config();
    let stats = sim.crash_images(0..sim.point() + 1, &config, |crash| {
        let got = match salvage(crash.image) {
            Ok((out, SalvageReport::Salvaged(_), _)) => {
                before += 1;
                check_salvaged(&out, &truth)
            }
            Ok((_, SalvageReport::Unchanged, _)) => {
                after += 1;
                check_salvaged(crash.image, &truth)
            }
            Err(e) => Err(format!("salvage: {e}")),
        };
        match got {
            Ok(v) if v == expected => ControlFlow::Continue(()),
            Ok(v) => panic!("crash point {}: another pool {v:?}", crash.point),
            Err(e) => panic!("crash point {}: {e}", crash.point),
        }
    });
    println!(
        "crash images of a salvage: {} points, {} images: {before} still damaged (salvaged \
         again to the same pool), {after} salvaged",
        stats.points, stats.images
    );
    assert!(before > 0 && after > 0);
}

#[test]
fn an_undamaged_pool_is_left_alone() {
    let (image, _, _) = build();
    let (out, report, runs) = salvage(&image).unwrap();
    assert_eq!(report, SalvageReport::Unchanged);
    assert!(runs.is_empty() && out == image);
}
