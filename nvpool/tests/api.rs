//! The pool's API: results, refusals, fences per call, addresses,
//! recovery reports and damaged images.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_nvpool::{
    CommitError, Config, CreateError, Damage, DamageError, DecreaseError, DomainError, DomainState,
    DomainUuid, Gfn, HostPhysAddr, Location, Mfn, NvPool, Order, Owner, PopulateError,
    RecoverError,
};
use nvirt_persist_meta::{Counting, ImageError, MemPmem, Pmem};

fn g(n: u64) -> Gfn {
    Gfn::new(n).unwrap()
}

/// A region with `data_mib` MiB of data frames after the metadata of
/// `config`.
fn region(config: Config, data_mib: u64) -> u64 {
    config.geometry(1 << 40).unwrap().metadata_bytes() + (data_mib << 20)
}

fn small() -> Config {
    Config::for_region(0)
        .with_max_domains(4)
        .with_max_extents(256)
        .with_record_area(0x4000)
}

#[test]
fn populate_takes_the_largest_aligned_blocks() {
    let config = small().with_max_extents(1024);
    let size = region(config, 12);
    let mut work = vec![0; config.geometry(size).unwrap().work_area_bytes()];
    let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).unwrap();
    let vm = pool.create(DomainUuid::new(1), "vm", 4096).unwrap();
    // 4 MiB at a 2 MiB-aligned guest address: two 2 MiB extents.
    let got = pool.populate(vm, g(0x200), 1024).unwrap();
    assert_eq!(
        (got.extents, got.frames, got.largest),
        (2, 1024, Order::SIZE_2M)
    );
    for e in pool.extents(vm) {
        assert_eq!(e.order(), Order::SIZE_2M);
        assert!(e.mfn().is_aligned(Order::SIZE_2M));
    }
    // 5 frames at gpfn 0x1001: orders 0, 1, 1 by guest alignment... then
    // what remains: 0x1001 (0), 0x1002 (1), 0x1004 (1).
    pool.populate(vm, g(0x1001), 5).unwrap();
    let orders: Vec<u8> = pool
        .extents_from(vm, g(0x1000))
        .map(|e| e.order().get())
        .collect();
    assert_eq!(orders, [0, 1, 1]);
    for e in pool.extents(vm) {
        assert!(e.gfn().is_aligned(e.order()) && e.mfn().is_aligned(e.order()));
        assert_eq!(pool.lookup(vm, e.gfn()), Some(e.mfn()));
        match pool.owner_of(e.mfn()) {
            Owner::Domain { gpfn, .. } => assert_eq!(gpfn, e.gfn()),
            other => panic!("{other:?}"),
        }
    }
    pool.check().unwrap();
}

#[test]
fn refusals_leave_the_pool_unchanged() {
    let config = small();
    let size = region(config, 1);
    let mut work = vec![0; config.geometry(size).unwrap().work_area_bytes()];
    let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).unwrap();
    let a = pool.create(DomainUuid::new(1), "a", 64).unwrap();
    assert_eq!(
        pool.create(DomainUuid::new(1), "again", 1),
        Err(CreateError::DuplicateId {
            id: DomainUuid::new(1)
        })
    );
    assert_eq!(
        pool.create(DomainUuid::new(2), &"x".repeat(33), 1),
        Err(CreateError::NameTooLong { len: 33 })
    );
    for id in 2..5 {
        pool.create(DomainUuid::new(id), "b", 8).unwrap();
    }
    assert_eq!(
        pool.create(DomainUuid::new(9), "c", 8),
        Err(CreateError::DomainsFull { max: 4 })
    );
    pool.populate(a, g(0x10), 16).unwrap();
    let before: Vec<_> = pool.extents(a).collect();
    let stats = pool.stats();
    assert!(matches!(
        pool.populate(a, g(0x18), 4),
        Err(PopulateError::Overlap { .. })
    ));
    // A run's end is itself a frame number, so the last frame of the
    // guest space can be in no extent (not read back as frame 0).
    assert_eq!(
        pool.populate(a, Gfn::MAX, 1),
        Err(PopulateError::GpfnRange {
            gpfn: Gfn::MAX,
            frames: 1
        })
    );
    assert!(matches!(
        pool.increase_reservation(a, &[Gfn::MAX], 0),
        Err(PopulateError::GpfnRange { .. })
    ));
    assert!(matches!(
        pool.populate(a, g(0x100), 60),
        Err(PopulateError::Quota {
            frames: 60,
            owned: 16,
            quota: 64
        })
    ));
    assert_eq!(
        pool.increase_reservation(a, &[g(0x40), g(0x42)], 2),
        Err(PopulateError::Misaligned {
            gpfn: g(0x42),
            order: Order::new(2).unwrap()
        })
    );
    assert_eq!(
        pool.increase_reservation(a, &[g(0x40), g(0x44), g(0x40)], 2),
        Err(PopulateError::Duplicate { gpfn: g(0x40) })
    );
    assert_eq!(
        pool.increase_reservation(a, &[g(0x40)], 19),
        Err(PopulateError::OrderTooLarge { order: 19 })
    );
    assert_eq!(
        pool.decrease_reservation(a, &[g(0x20)], 0),
        Err(DecreaseError::NotPopulated { gpfn: g(0x20) })
    );
    assert_eq!(
        pool.decrease_reservation(a, &[g(0x10), g(0x10)], 0),
        Err(DecreaseError::Duplicate { gpfn: g(0x10) })
    );
    assert_eq!(
        pool.decrease_reservation(a, &[g(0)], 5),
        Err(DecreaseError::NotPopulated { gpfn: g(0) })
    );
    assert_eq!(
        pool.decrease_reservation(a, &[g(0x14)], 3),
        Err(DecreaseError::Misaligned {
            gpfn: g(0x14),
            order: Order::new(3).unwrap()
        })
    );
    assert_eq!(pool.extents(a).collect::<Vec<_>>(), before);
    assert_eq!(pool.stats(), stats);
    // A handle kept past destroy is refused, even once the slot is reused.
    pool.destroy(a).unwrap();
    assert_eq!(pool.destroy(a), Err(DomainError::UnknownDomain));
    let again = pool.create(DomainUuid::new(7), "new", 8).unwrap();
    assert_eq!(again.slot(), a.slot());
    assert_eq!(pool.mark_running(a), Err(DomainError::UnknownDomain));
    assert!(matches!(
        pool.populate(a, g(0), 1),
        Err(PopulateError::UnknownDomain)
    ));
    assert_eq!(pool.extents(a).count(), 0);
    pool.check().unwrap();
}

#[test]
fn fences_per_call_are_constant() {
    let config = small().with_max_extents(4096).with_record_area(0x40000);
    let size = region(config, 16);
    let mut work = vec![0; config.geometry(size).unwrap().work_area_bytes()];
    let pmem = Counting::new(MemPmem::new(size as usize));
    let mut pool = NvPool::format(pmem, config, &mut work).unwrap();
    let fences = |pool: &NvPool<'_, Counting<MemPmem>>| pool.region().stats().fences;
    let measure = |pool: &mut NvPool<'_, Counting<MemPmem>>,
                   what: &str,
                   expect: u64,
                   op: &mut dyn FnMut(&mut NvPool<'_, Counting<MemPmem>>)| {
        let before = fences(pool);
        op(pool);
        assert_eq!(fences(pool) - before, expect, "{what}");
    };
    let vm = pool.create(DomainUuid::new(1), "vm", 1 << 20).unwrap();
    measure(&mut pool, "create", 1, &mut |p| {
        p.create(DomainUuid::new(2), "other", 10).unwrap();
    });
    // 3000 frames at an odd guest frame: many extents, one fence.
    measure(&mut pool, "populate", 1, &mut |p| {
        let got = p.populate(vm, g(0x1_0001), 3000).unwrap();
        assert!(got.extents > 10);
    });
    let gpfns: Vec<Gfn> = (0..300).map(|i| g(0x8_0000 + 2 * i)).collect();
    measure(&mut pool, "increase of 300 extents", 1, &mut |p| {
        p.increase_reservation(vm, &gpfns, 0).unwrap();
    });
    measure(&mut pool, "mark running", 1, &mut |p| {
        p.mark_running(vm).unwrap()
    });
    measure(&mut pool, "mark running again", 0, &mut |p| {
        p.mark_running(vm).unwrap()
    });
    measure(&mut pool, "decrease of 300 blocks", 2, &mut |p| {
        assert_eq!(p.decrease_reservation(vm, &gpfns, 0).unwrap(), 300);
    });
    measure(&mut pool, "destroy of 3000 frames", 2, &mut |p| {
        p.destroy(vm).unwrap()
    });
    measure(&mut pool, "checkpoint", 2, &mut |p| p.checkpoint().unwrap());
    pool.check().unwrap();
}

#[test]
fn a_full_log_commits_through_a_checkpoint() {
    let config = small().with_max_extents(2048).with_record_area(0x2000);
    let size = region(config, 8);
    let mut work = vec![0; config.geometry(size).unwrap().work_area_bytes()];
    let mut pool = NvPool::format(
        Counting::new(MemPmem::new(size as usize)),
        config,
        &mut work,
    )
    .unwrap();
    let vm = pool.create(DomainUuid::new(1), "vm", 1 << 20).unwrap();
    let mut max_fences = 0;
    for i in 0..400 {
        let before = pool.region().stats().fences;
        pool.populate(vm, g(i * 4 + 1), 3).unwrap();
        max_fences = max_fences.max(pool.region().stats().fences - before);
    }
    assert_eq!(max_fences, 2);
    let generation = pool.stats().checkpoint_generation;
    assert!(generation >= 3, "{generation}");
    // 1000 extents at once: more than the record area holds.
    let many: Vec<Gfn> = (0..400).map(|i| g(0x10_0000 + i)).collect();
    let before = pool.region().stats().fences;
    pool.increase_reservation(vm, &many, 0).unwrap();
    assert_eq!(pool.region().stats().fences - before, 2);
    let expected: Vec<_> = pool.extents(vm).collect();
    let (pool, report) = NvPool::recover(pool.into_region(), &mut work).unwrap();
    let vm = pool.find(DomainUuid::new(1)).unwrap();
    assert_eq!(pool.extents(vm).collect::<Vec<_>>(), expected);
    assert!(report.log.checkpoint.generation > generation);
    pool.check().unwrap();
}

#[test]
fn recovery_reports_crashed_domains_and_addresses_translate() {
    let config = small().with_frame_base(Mfn::new(0x10_0000).unwrap());
    let size = region(config, 2);
    let mut work = vec![0; config.geometry(size).unwrap().work_area_bytes()];
    let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).unwrap();
    let a = pool.create(DomainUuid::new(0xa), "a", 100).unwrap();
    let b = pool.create(DomainUuid::new(0xb), "b", 100).unwrap();
    let c = pool.create(DomainUuid::new(0xc), "c", 100).unwrap();
    for d in [a, b, c] {
        pool.populate(d, g(0), 8).unwrap();
        pool.mark_running(d).unwrap();
    }
    pool.mark_shut_down(b).unwrap();
    pool.write_guest(a, g(3), 100, b"survives").unwrap();
    pool.persist();
    assert_eq!(pool.domain(a).unwrap().state, DomainState::Running);
    let (mut pool, report) = NvPool::recover(pool.into_region(), &mut work).unwrap();
    assert_eq!(report.crashed, 2);
    let crashed: Vec<&str> = pool.crashed().map(|d| d.name).collect();
    assert_eq!(crashed, ["a", "c"]);
    let a = pool.find(DomainUuid::new(0xa)).unwrap();
    let mut buf = [0; 8];
    pool.read_guest(a, g(3), 100, &mut buf).unwrap();
    assert_eq!(&buf, b"survives");
    assert_eq!(
        pool.read_guest(a, g(3), 4090, &mut buf),
        Err(DomainError::FrameBounds {
            offset: 4090,
            len: 8
        })
    );
    pool.mark_running(a).unwrap();
    assert_eq!(pool.domain(a).unwrap().state, DomainState::Running);
    assert_eq!(pool.crashed().count(), 1);
    // Machine frames are numbered from the frame base.
    let mfn = pool.lookup(a, g(3)).unwrap();
    let base = HostPhysAddr::new(0x40_0000_0000).unwrap();
    let addr = pool.host_addr(mfn, base).unwrap();
    assert_eq!(addr.get(), base.get() + ((mfn.get() - 0x10_0000) << 12));
    assert_eq!(pool.mfn_at(addr, base), Some(mfn));
    assert_eq!(pool.owner_of(Mfn::new(0x10_0000).unwrap()), Owner::NotData);
    assert_eq!(pool.host_addr(Mfn::new(5).unwrap(), base), None);
}

#[test]
fn damaged_and_foreign_images_are_named_errors() {
    let config = small();
    let size = region(config, 1);
    let mut work = vec![0; config.geometry(size).unwrap().work_area_bytes()];
    // Not a pool at all.
    assert_eq!(
        NvPool::recover(MemPmem::new(size as usize), &mut work).err(),
        Some(RecoverError::NotAPool)
    );
    let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).unwrap();
    let vm = pool.create(DomainUuid::new(1), "vm", 100).unwrap();
    pool.populate(vm, g(0), 20).unwrap();
    let image = pool.into_region().into_bytes();
    // One superblock copy damaged: repaired from the other.
    let mut one = image.clone();
    one[0x1010] ^= 1;
    let (pool, report) = NvPool::recover(MemPmem::from_bytes(one), &mut work).unwrap();
    assert_eq!(report.superblock_repairs, [false, true]);
    let repaired = pool.into_region().into_bytes();
    assert!(repaired[0x1000..0x1040] == image[0x1000..0x1040]);
    // One copy intact but of an unknown (newer) version: refused, and the
    // other copy is not written over it.
    let mut newer = image.clone();
    newer[0x1008..0x100c].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&newer[0x1000..0x1038]);
    newer[0x1038..0x103c].copy_from_slice(&crc.to_le_bytes());
    let mut region = MemPmem::from_bytes(newer.clone());
    assert!(matches!(
        NvPool::recover(&mut region, &mut work),
        Err(RecoverError::UnknownVersion { copy: 1, found: 2 })
    ));
    assert!(region.as_bytes() == &newer[..]);
    // Both damaged.
    let mut both = image.clone();
    both[0x10] ^= 1;
    both[0x1010] ^= 1;
    assert!(matches!(
        NvPool::recover(MemPmem::from_bytes(both), &mut work),
        Err(RecoverError::Superblocks { .. })
    ));
    // A truncated image.
    let short = image[..image.len() - 4096].to_vec();
    assert!(matches!(
        NvPool::recover(MemPmem::from_bytes(short), &mut work),
        Err(RecoverError::Truncated { .. })
    ));
    // A work area too small.
    let need = NvPool::probe(&MemPmem::from_bytes(image.clone()))
        .unwrap()
        .work_area_bytes();
    let mut tiny = vec![0; need - 1];
    assert!(matches!(
        NvPool::recover(MemPmem::from_bytes(image.clone()), &mut tiny),
        Err(RecoverError::WorkArea(_))
    ));
    // A damaged record of the final group is a torn tail (its CRC fails):
    // recovery gives the state before it. A damaged record that a later
    // one proves committed is an error naming it. Never a different state.
    let end = NvPool::recover(MemPmem::from_bytes(image.clone()), &mut work)
        .unwrap()
        .1
        .log
        .end;
    let records = (0x2000 + end.append_offset) as usize;
    let mut torn = 0;
    for at in records - 128..records {
        let mut bad = image.clone();
        bad[at] ^= 0x40;
        match NvPool::recover(MemPmem::from_bytes(bad), &mut work) {
            Ok((pool, _)) => {
                pool.check().unwrap();
                let frames = pool
                    .find(DomainUuid::new(1))
                    .map_or(0, |d| pool.domain(d).unwrap().frames);
                assert!(pool.find(DomainUuid::new(1)).is_some(), "byte {at:#x}");
                torn += usize::from(frames == 0);
                assert!(frames == 0 || frames == 20, "{frames}");
            }
            Err(RecoverError::Log(ImageError::Corrupt { offset, .. })) => {
                assert!(offset + 0x2000 <= at as u64, "byte {at:#x}")
            }
            Err(e) => panic!("byte {at:#x}: {e}"),
        }
    }
    assert!(torn > 0);
    // A record with a valid CRC that says something impossible is named.
    let mut payload = vec![0u8; 24];
    payload[4] = 1;
    payload[8..16].copy_from_slice(&0x1000u64.to_le_bytes());
    payload[16..24].copy_from_slice(&0xdead_0000u64.to_le_bytes());
    let forged = nvirt_persist_meta::sim::forge_record(5, 1, end.next_seq, end.epoch, &payload);
    let mut bad = image.clone();
    bad[records..records + forged.len()].copy_from_slice(&forged);
    match NvPool::recover(MemPmem::from_bytes(bad), &mut work) {
        Err(RecoverError::Damaged(DamageError {
            at: Location::Record { seq, .. },
            what:
                Damage::OutsidePool {
                    mfn: 0xdead_0000,
                    order: 0,
                },
        })) => assert_eq!(seq, end.next_seq),
        other => panic!("{other:?}"),
    }
    // A damaged checkpoint is a log error naming it.
    let mut pool = NvPool::recover(MemPmem::from_bytes(image.clone()), &mut work)
        .unwrap()
        .0;
    pool.checkpoint().unwrap();
    let generation = pool.stats().checkpoint_generation;
    let mut bad = pool.into_region().into_bytes();
    let slot = 0x4000 + (generation as usize & 1) * 0x2000;
    bad[slot + 64 + 10] ^= 1;
    let e = NvPool::recover(MemPmem::from_bytes(bad), &mut work).unwrap_err();
    assert!(e.to_string().contains("checkpoint"), "{e}");
}

#[test]
fn poisoned_pools_refuse_changes() {
    // A region that refuses stores beyond the metadata makes the scrub of
    // a destroy fail after its commit: the pool must refuse changes.
    struct Fragile(MemPmem, u64);
    impl Pmem for Fragile {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), nvirt_persist_meta::PmemError> {
            self.0.read(offset, buf)
        }
        fn store_u64(
            &mut self,
            offset: u64,
            value: u64,
        ) -> Result<(), nvirt_persist_meta::PmemError> {
            self.0.store_u64(offset, value)
        }
        fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), nvirt_persist_meta::PmemError> {
            if offset >= self.1 {
                return Err(nvirt_persist_meta::PmemError::OutOfBounds {
                    offset,
                    len: data.len() as u64,
                    size: self.1,
                });
            }
            self.0.store(offset, data)
        }
        fn write_back(
            &mut self,
            offset: u64,
            len: u64,
        ) -> Result<(), nvirt_persist_meta::PmemError> {
            self.0.write_back(offset, len)
        }
        fn fence(&mut self) {}
    }
    let config = small().assume_zeroed();
    let size = region(config, 1);
    let meta = config.geometry(size).unwrap().metadata_bytes();
    let mut work = vec![0; config.geometry(size).unwrap().work_area_bytes()];
    let mut pool = NvPool::format(
        Fragile(MemPmem::new(size as usize), meta),
        config,
        &mut work,
    )
    .unwrap();
    let vm = pool.create(DomainUuid::new(1), "vm", 100).unwrap();
    pool.populate(vm, g(0), 4).unwrap();
    assert!(matches!(
        pool.destroy(vm),
        Err(DomainError::Commit(CommitError::Pmem(_)))
    ));
    assert_eq!(
        pool.create(DomainUuid::new(2), "x", 1),
        Err(CreateError::Commit(CommitError::Poisoned))
    );
    // Recovery redoes the scrub (here on a region that accepts it).
    let Fragile(image, _) = pool.into_region();
    let (pool, report) = NvPool::recover(image, &mut work).unwrap();
    assert_eq!(report.scrubbed_frames, 4);
    assert_eq!(pool.domains().count(), 0);
    pool.check().unwrap();
}

#[test]
fn a_damaged_committed_record_is_refused_not_dropped() {
    let config = small();
    let size = region(config, 1);
    let mut work = vec![0; config.geometry(size).unwrap().work_area_bytes()];
    let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).unwrap();
    let a = pool.create(DomainUuid::new(0xa), "a", 100).unwrap();
    pool.populate(a, g(0), 8).unwrap();
    pool.write_guest(a, g(3), 0, b"secret of a").unwrap();
    pool.persist();
    let b = pool.create(DomainUuid::new(0xb), "b", 100).unwrap();
    pool.populate(b, g(0), 4).unwrap();
    let image = pool.into_region().into_bytes();
    // The log's records, at their offsets in the region.
    let log = &image[0x2000..];
    let mut records = Vec::new();
    let _ = nvirt_persist_meta::inspect(&MemPmem::from_bytes(log.to_vec()), |r| {
        records.push((r.offset(), r.payload().len()));
    });
    assert!(records.len() >= 4, "{records:?}");
    // Damage the payload of a's populate: recovering without it would give
    // a's frames (and its data) to the next domain that asks.
    let (offset, len) = records[1];
    assert!(len > 0);
    let mut bad = image.clone();
    bad[0x2000 + offset as usize + 32] ^= 1;
    let err = NvPool::recover(MemPmem::from_bytes(bad), &mut work).err();
    assert!(
        matches!(err, Some(RecoverError::Log(ImageError::Corrupt { .. }))),
        "{err:?}"
    );
    assert!(err.unwrap().to_string().contains("damaged"));
}
