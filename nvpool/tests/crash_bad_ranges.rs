//! Crash-state enumeration with known-bad ranges: a domain owning a bad
//! frame is destroyed (its scrub skips the frame), another domain takes
//! the freed frames; every crash image, recovered with the same bad list,
//! is a state the run went through, has every free frame zeroed, never
//! gives the bad frame to anyone else, and never wrote it.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Op, View, apply, base_image, pattern, report, scrub_config, view};
use nvirt_nvpool::{BadRange, DomainUuid, Gfn, Mfn, NvPool, Owner};
use nvirt_persist_meta::sim::{Scenario, SimPmem, Subject};
use nvirt_persist_meta::{MemPmem, Pmem};

struct Subjected<'w>(NvPool<'w, SimPmem>);

impl Subject for Subjected<'_> {
    type State = View;
    fn sim(&self) -> &SimPmem {
        self.0.region()
    }
    fn state(&self) -> View {
        view(&self.0)
    }
}

/// Recovers `image` with `bad`, checks it, and returns its view.
fn recover_checked(image: &[u8], bad: &[BadRange], bad_mfn: Mfn) -> Result<View, String> {
    let pmem = MemPmem::from_bytes(image.to_vec());
    let geo = NvPool::probe(&pmem).map_err(|e| format!("probe: {e}"))?;
    let mut work = vec![0u8; geo.work_area_bytes()];
    let (pool, _) = NvPool::recover_with_bad_ranges(pmem, &mut work, bad)
        .map_err(|e| format!("recover: {e}"))?;
    pool.check().map_err(|e| format!("invariant: {e}"))?;
    let mut frame = vec![0u8; 4096];
    for mfn in pool.geometry().data_span().iter() {
        let offset = pool.region_offset(mfn).unwrap();
        pool.region().read(offset, &mut frame).unwrap();
        match pool.owner_of(mfn) {
            Owner::Free if frame.iter().any(|&b| b != 0) => {
                return Err(format!("free {mfn} not scrubbed"));
            }
            Owner::Bad if mfn != bad_mfn && frame.iter().any(|&b| b != 0) => {
                return Err(format!("bad free frame {mfn} was written"));
            }
            Owner::Domain { id, .. } if mfn == bad_mfn && id.get() != 1 => {
                return Err(format!("bad {mfn} handed to domain {id}"));
            }
            Owner::Free | Owner::Bad | Owner::Domain { .. } => {}
            other => return Err(format!("{mfn} is {other:?}")),
        }
    }
    // Domain 1's data in the bad frame is never scrubbed away.
    pool.region()
        .read(pool.region_offset(bad_mfn).unwrap(), &mut frame)
        .unwrap();
    if frame[..16] != pattern(1) {
        return Err(format!("bad {bad_mfn} was written: {:x?}", &frame[..16]));
    }
    Ok(view(&pool))
}

#[test]
fn destroying_an_owner_of_a_bad_frame_never_writes_nor_reuses_it() {
    let setup = vec![
        Op::Create(1, "a", 64),
        Op::Create(2, "b", 64),
        Op::Populate(1, 0x10, 12),
        Op::Populate(2, 0, 6),
        Op::Write(1, 0x10),
        Op::Write(1, 0x1b),
        Op::Write(2, 0x5),
        Op::Running(1),
    ];
    let image = base_image(&setup);
    // The frame behind domain 1's guest frame 0x1b, and a free frame.
    let (bad_mfn, free_mfn, offsets) = {
        let pmem = MemPmem::from_bytes(image.clone());
        let mut work = vec![0u8; NvPool::probe(&pmem).unwrap().work_area_bytes()];
        let (pool, _) = NvPool::recover(pmem, &mut work).unwrap();
        let a = pool.find(DomainUuid::new(1)).unwrap();
        let bad = pool.lookup(a, Gfn::new(0x1b).unwrap()).unwrap();
        let free = pool
            .geometry()
            .data_span()
            .iter()
            .rev()
            .find(|&m| pool.owner_of(m) == Owner::Free)
            .unwrap();
        let off = |m| pool.region_offset(m).unwrap();
        (bad, free, [off(bad), off(free)])
    };
    let bad = [
        BadRange::new(offsets[0] + 8, offsets[0] + 9).unwrap(),
        BadRange::new(offsets[1], offsets[1] + 4096).unwrap(),
    ];
    let ops = vec![
        Op::Destroy(1),
        Op::Create(3, "c", 64),
        Op::Populate(3, 0x10, 12),
        Op::Write(3, 0x12),
        Op::Destroy(2),
    ];
    let sim = SimPmem::from_image(image.clone());
    let before = recover_checked(&image, &bad, bad_mfn).unwrap();
    let mut work = vec![0u8; NvPool::probe(&sim).unwrap().work_area_bytes()];
    let work = &mut work[..];
    let mut scenario = Scenario::open(sim, before, move |sim| {
        NvPool::recover_with_bad_ranges(sim, work, &bad).map(|(pool, _)| Subjected(pool))
    })
    .unwrap();
    for op in &ops {
        scenario.run(|pool| apply(&mut pool.0, op));
    }
    let run = scenario.finish();
    {
        let pool = &run.subject.0;
        assert_eq!(pool.owner_of(bad_mfn), Owner::Bad);
        assert_eq!(pool.owner_of(free_mfn), Owner::Bad);
        assert_eq!(pool.stats().bad_frames, 2);
    }
    let stats = run
        .check_crashes(
            &scrub_config(),
            |image| recover_checked(image, &bad, bad_mfn),
            |_, _, _| Ok(()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    report("destroy of a bad frame's owner, and reuse", &stats);
    assert!(stats.points > 100);
}
