//! The writer's API: one fence per commit, errors with the values
//! involved, typed records, and random operation sequences against a
//! reference model (a plain list) with reopens in between.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{KIND, Op, State, apply, open, payload, recover, region_len, snapshot};
use nvirt_persist_meta::{
    AppendError, CheckpointError, Counting, Decode, Encode, ImageError, Log, MAX_PAYLOAD, MemPmem,
    Pmem, Raw, RecordKind, RecoverError, Replayed, SnapshotError, StopReason, replay, replay_fn,
};
use proptest::prelude::*;

fn fresh(record_area: u64) -> Log<Counting<MemPmem>> {
    let pmem = Counting::new(MemPmem::new(region_len(record_area)));
    Log::format(pmem, common::CHECKPOINT_CAPACITY).unwrap()
}

fn fences<P: Pmem>(log: &Log<Counting<P>>) -> u64 {
    log.pmem().stats().fences
}

#[test]
fn one_fence_per_commit() {
    let mut log = fresh(1 << 16);
    for len in [0, 1, 64, 256, 4096] {
        let before = fences(&log);
        let bytes = vec![7; len];
        log.append(&Raw {
            kind: KIND,
            payload: &bytes,
        })
        .unwrap();
        assert_eq!(fences(&log) - before, 1, "append of {len} bytes");
    }
    let records: Vec<Vec<u8>> = (0..8).map(|i| payload(i, 64)).collect();
    let raws: Vec<Raw<'_>> = records
        .iter()
        .map(|p| Raw {
            kind: KIND,
            payload: p,
        })
        .collect();
    let before = fences(&log);
    log.append_group(&raws).unwrap();
    assert_eq!(fences(&log) - before, 1, "group of 8");
    let before = fences(&log);
    let mut group = log.group();
    for raw in &raws {
        group.push(raw).unwrap();
    }
    group.commit().unwrap();
    assert_eq!(fences(&log) - before, 1, "built group of 8");
    let before = fences(&log);
    log.group().commit().unwrap();
    assert_eq!(fences(&log) - before, 0, "empty group");
    let before = fences(&log);
    log.checkpoint_bytes(&snapshot(&vec![b"snapshot".to_vec()]))
        .unwrap();
    assert_eq!(fences(&log) - before, 2, "checkpoint");
    // Recovery: one fence for its epoch record (and any repairs).
    let pmem = log.into_pmem();
    let (log, _) = open(Counting::new(pmem.into_inner()));
    assert_eq!(fences(&log), 1, "open");
}

#[test]
fn append_errors_carry_their_values() {
    let mut log = fresh(512);
    let big = vec![0; MAX_PAYLOAD + 1];
    assert_eq!(
        log.append(&Raw {
            kind: KIND,
            payload: &big
        }),
        Err(AppendError::PayloadTooLarge {
            len: MAX_PAYLOAD + 1
        })
    );
    assert_eq!(
        log.append(&Raw {
            kind: RecordKind::EPOCH,
            payload: b""
        }),
        Err(AppendError::ReservedKind { kind: 0xffff })
    );
    let p = vec![1; 150]; // 192 bytes a record (a group of one)
    for _ in 0..2 {
        log.append(&Raw {
            kind: KIND,
            payload: &p,
        })
        .unwrap();
    }
    let err = log
        .append(&Raw {
            kind: KIND,
            payload: &p,
        })
        .unwrap_err();
    assert_eq!(
        err,
        AppendError::LogFull {
            needed: 192,
            free: 128,
            capacity: 512
        }
    );
    assert!(err.to_string().contains("checkpoint"));
    // A group that cannot fit stores nothing.
    let before = log.space();
    let raws = [
        Raw {
            kind: KIND,
            payload: &p,
        },
        Raw {
            kind: KIND,
            payload: &p,
        },
    ];
    assert!(matches!(
        log.append_group(&raws),
        Err(AppendError::LogFull { needed: 384, .. })
    ));
    assert_eq!(log.space(), before);
    // Checkpoint and continue.
    log.checkpoint_bytes(&[]).unwrap();
    assert_eq!(log.space().used, 0);
    log.append(&Raw {
        kind: KIND,
        payload: &p,
    })
    .unwrap();
    // A group larger than the whole area never fits.
    let four: Vec<_> = (0..4)
        .map(|_| Raw {
            kind: KIND,
            payload: &p,
        })
        .collect();
    assert!(matches!(
        log.append_group(&four),
        Err(AppendError::LogFull {
            needed: 704,
            capacity: 512,
            ..
        })
    ));
}

#[test]
fn full_group_builder_is_abandoned_and_the_log_stays_usable() {
    let mut log = fresh(512);
    let p = vec![3; 120]; // three fit in one group, not four
    let mut group = log.group();
    group
        .push(&Raw {
            kind: KIND,
            payload: &p,
        })
        .unwrap();
    group
        .push(&Raw {
            kind: KIND,
            payload: &p,
        })
        .unwrap();
    group
        .push(&Raw {
            kind: KIND,
            payload: &p,
        })
        .unwrap();
    let err = group
        .push(&Raw {
            kind: KIND,
            payload: &p,
        })
        .unwrap_err();
    assert_eq!(
        err,
        AppendError::LogFull {
            needed: 576,
            free: 512,
            capacity: 512
        }
    );
    drop(group);
    // The abandon raised the epoch with an epoch record.
    assert_eq!(log.epoch(), 1);
    assert_eq!(log.space().used, 64);
    let bytes = log.pmem().inner().as_bytes().to_vec();
    assert_eq!(recover(&bytes).unwrap(), State::new());
    log.checkpoint_bytes(&[]).unwrap();
    log.append(&Raw {
        kind: KIND,
        payload: &p,
    })
    .unwrap();
    let bytes = log.pmem().inner().as_bytes().to_vec();
    assert_eq!(recover(&bytes).unwrap(), vec![p]);
}

/// A region whose byte-range stores fail while `failing` is set, as a
/// medium error would make them.
struct Failing {
    inner: MemPmem,
    failing: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Pmem for Failing {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), nvirt_persist_meta::PmemError> {
        self.inner.read(offset, buf)
    }
    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), nvirt_persist_meta::PmemError> {
        self.inner.store_u64(offset, value)
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), nvirt_persist_meta::PmemError> {
        if self.failing.get() {
            return Err(nvirt_persist_meta::PmemError::OutOfBounds {
                offset,
                len: data.len() as u64,
                size: 0,
            });
        }
        self.inner.store(offset, data)
    }
    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), nvirt_persist_meta::PmemError> {
        self.inner.write_back(offset, len)
    }
    fn fence(&mut self) {
        self.inner.fence();
    }
}

#[test]
fn a_group_commits_whole_after_a_failed_push() {
    let failing = std::rc::Rc::new(std::cell::Cell::new(false));
    let pmem = Failing {
        inner: MemPmem::new(region_len(1 << 12)),
        failing: failing.clone(),
    };
    let mut log = Log::format(pmem, common::CHECKPOINT_CAPACITY).unwrap();
    let first = payload(1, 40);
    let mut group = log.group();
    group
        .push(&Raw {
            kind: KIND,
            payload: &first,
        })
        .unwrap();
    failing.set(true);
    let second = payload(2, 40);
    assert!(
        group
            .push(&Raw {
                kind: KIND,
                payload: &second,
            })
            .is_err()
    );
    failing.set(false);
    assert_eq!(group.len(), 1);
    group.commit().unwrap();
    let bytes = log.pmem().inner.as_bytes().to_vec();
    assert_eq!(recover(&bytes).unwrap(), vec![first]);
}

#[test]
fn checkpoint_errors_leave_the_old_checkpoint_in_force() {
    let mut log = fresh(4096);
    log.append(&Raw {
        kind: KIND,
        payload: b"kept",
    })
    .unwrap();
    let capacity = log.layout().checkpoint_capacity();
    let too_big = vec![0; capacity as usize + 1];
    assert_eq!(
        log.checkpoint_bytes(&too_big),
        Err(CheckpointError::TooLarge { capacity })
    );
    let failed: Result<_, CheckpointError<&str>> = log.checkpoint(|w| {
        w.write(b"partial").map_err(|_| "write")?;
        Err("owner gave up")
    });
    assert_eq!(failed, Err(CheckpointError::Snapshot("owner gave up")));
    assert_eq!(log.generation(), 0);
    let bytes = log.pmem().inner().as_bytes().to_vec();
    assert_eq!(recover(&bytes).unwrap(), vec![b"kept".to_vec()]);
    // A snapshot written in pieces.
    let info = log
        .checkpoint(|w| {
            for piece in snapshot(&vec![b"kept".to_vec()]).chunks(3) {
                w.write(piece)?;
            }
            Ok::<(), SnapshotError>(())
        })
        .unwrap();
    assert_eq!(info.generation, 1);
    let bytes = log.pmem().inner().as_bytes().to_vec();
    assert_eq!(recover(&bytes).unwrap(), vec![b"kept".to_vec()]);
}

#[test]
fn bad_images_are_errors_never_formatted_over() {
    let region = region_len(4096);
    // Blank.
    let blank = vec![0; region];
    let err = recover(&blank).unwrap_err();
    assert!(err.contains("no valid superblock"), "{err}");
    // Both superblocks of the old version 1, whose records carry no group
    // index: a typed error that says so.
    let log = fresh(4096);
    let mut old = log.into_pmem().into_inner().into_bytes();
    for sb in [0, 0x1000] {
        old[sb + 8] = 1;
        let crc = crc32c_of(&old[sb..sb + 56]);
        old[sb + 56..sb + 60].copy_from_slice(&crc.to_le_bytes());
    }
    let mut state = State::new();
    let result = replay(&common::Image(&old), &mut common::owner(&mut state));
    let Err(RecoverError::Image(e @ ImageError::UnsupportedVersion { copy: 0, found: 1 })) = result
    else {
        panic!("{result:?}");
    };
    assert!(e.to_string().contains("format version 1"), "{e}");
    // Both superblocks of version 2, with a header and a CRC per record:
    // a typed error that says so.
    let log = fresh(4096);
    let mut old = log.into_pmem().into_inner().into_bytes();
    for sb in [0, 0x1000] {
        old[sb + 8] = 2;
        let crc = crc32c_of(&old[sb..sb + 56]);
        old[sb + 56..sb + 60].copy_from_slice(&crc.to_le_bytes());
    }
    let mut state = State::new();
    let result = replay(&common::Image(&old), &mut common::owner(&mut state));
    let Err(RecoverError::Image(e @ ImageError::UnsupportedVersion { copy: 0, found: 2 })) = result
    else {
        panic!("{result:?}");
    };
    assert!(e.to_string().contains("format version 2"), "{e}");
    assert!(e.to_string().contains("per record"), "{e}");
    // Both superblocks of a newer version (CRC fixed up).
    let log = fresh(4096);
    let mut image = log.into_pmem().into_inner().into_bytes();
    for sb in [0, 0x1000] {
        image[sb + 8] = 4;
        let crc = crc32c_of(&image[sb..sb + 56]);
        image[sb + 56..sb + 60].copy_from_slice(&crc.to_le_bytes());
    }
    let mut state = State::new();
    let result = replay(&common::Image(&image), &mut common::owner(&mut state));
    assert!(matches!(
        result,
        Err(RecoverError::Image(ImageError::UnsupportedVersion {
            copy: 0,
            found: 4
        }))
    ));
    // `open` refuses as well, and leaves the bytes alone.
    let mut state = State::new();
    let before = image.clone();
    let opened = Log::open(MemPmem::from_bytes(image), &mut common::owner(&mut state));
    assert!(opened.is_err());
    // Too small to format.
    assert!(Log::format(MemPmem::new(0x4000), 100).is_err());
    assert_eq!(before.len(), region);
}

/// CRC-32C, bit by bit, to forge test images independently of the crate.
fn crc32c_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An owner record type, as the NVRAM pool defines its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PoolRecord {
    Extent {
        domain: u16,
        gpfn: u64,
        mfn: u64,
        order: u8,
    },
    Destroy {
        domain: u16,
    },
}

const EXTENT: RecordKind = match RecordKind::new(1) {
    Some(k) => k,
    None => unreachable!(),
};
const DESTROY: RecordKind = match RecordKind::new(2) {
    Some(k) => k,
    None => unreachable!(),
};

impl Encode for PoolRecord {
    fn kind(&self) -> RecordKind {
        match self {
            Self::Extent { .. } => EXTENT,
            Self::Destroy { .. } => DESTROY,
        }
    }
    fn encoded_len(&self) -> usize {
        match self {
            Self::Extent { .. } => 19,
            Self::Destroy { .. } => 2,
        }
    }
    fn encode(&self, out: &mut [u8]) {
        match *self {
            Self::Extent {
                domain,
                gpfn,
                mfn,
                order,
            } => {
                out[0..2].copy_from_slice(&domain.to_le_bytes());
                out[2..10].copy_from_slice(&gpfn.to_le_bytes());
                out[10..18].copy_from_slice(&mfn.to_le_bytes());
                out[18] = order;
            }
            Self::Destroy { domain } => out.copy_from_slice(&domain.to_le_bytes()),
        }
    }
}

impl Decode for PoolRecord {
    type Error = String;
    fn decode(kind: RecordKind, p: &[u8]) -> Result<Self, String> {
        let u64_at = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().unwrap());
        match (kind, p.len()) {
            (EXTENT, 19) => Ok(Self::Extent {
                domain: u16::from_le_bytes([p[0], p[1]]),
                gpfn: u64_at(2),
                mfn: u64_at(10),
                order: p[18],
            }),
            (DESTROY, 2) => Ok(Self::Destroy {
                domain: u16::from_le_bytes([p[0], p[1]]),
            }),
            _ => Err(format!("unknown record {kind} of {} bytes", p.len())),
        }
    }
}

#[test]
fn typed_records_round_trip() {
    let mut log = Log::format(MemPmem::new(region_len(4096)), 1000).unwrap();
    let records = [
        PoolRecord::Extent {
            domain: 1,
            gpfn: 0x100,
            mfn: 0x8000,
            order: 9,
        },
        PoolRecord::Extent {
            domain: 1,
            gpfn: 0x300,
            mfn: 0x8200,
            order: 0,
        },
        PoolRecord::Destroy { domain: 7 },
    ];
    log.append_group(&records[..2]).unwrap();
    log.append(&records[2]).unwrap();
    let mut seen = Vec::new();
    let (_, recovery, repairs) = Log::open(
        log.into_pmem(),
        &mut replay_fn(|event| match event {
            Replayed::Checkpoint(reader) => {
                assert!(reader.is_empty());
                Ok(())
            }
            Replayed::Record(r) => {
                seen.push(r.decode::<PoolRecord>()?);
                Ok::<(), String>(())
            }
        }),
    )
    .unwrap();
    assert_eq!(seen, records);
    assert_eq!(recovery.records, 3);
    assert_eq!(recovery.groups, 2);
    assert_eq!(recovery.end.reason, StopReason::Blank);
    assert!(repairs.epoch_record);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random operations, with clean reopens, against a plain list.
    #[test]
    fn random_operations_match_the_model(
        ops in prop::collection::vec(
            prop_oneof![
                4 => (1usize..300).prop_map(|n| (0u8, vec![n])),
                3 => prop::collection::vec(1usize..200, 1..9).prop_map(|v| (1u8, v)),
                1 => Just((2u8, vec![])),
                1 => prop::collection::vec(1usize..100, 1..4).prop_map(|v| (3u8, v)),
                1 => Just((4u8, vec![])),
            ],
            1..60,
        )
    ) {
        let mut log = Log::format(MemPmem::new(region_len(2048)), common::CHECKPOINT_CAPACITY).unwrap();
        let mut model = State::new();
        let mut id = 0u32;
        let mut next = |len: usize| { id += 1; payload(id, len) };
        for (what, lens) in ops {
            let op = match what {
                0 => Op::Append(next(lens[0])),
                1 => Op::Group(lens.iter().map(|&n| next(n)).collect()),
                2 => Op::Checkpoint,
                3 => Op::Abandon(lens.iter().map(|&n| next(n)).collect()),
                _ => {
                    let (again, state) = open(log.into_pmem());
                    prop_assert_eq!(&state, &model);
                    log = again;
                    continue;
                }
            };
            if (snapshot(&model).len() + 8 * 202) as u64 > log.layout().checkpoint_capacity() {
                break; // the model outgrew the test's checkpoint slot
            }
            apply(&mut log, &mut model, &op);
        }
        prop_assert_eq!(recover(log.pmem().as_bytes()).unwrap(), model);
    }
}

#[test]
fn a_log_recovered_full_checkpoints_before_appending() {
    let mut log = Log::format(MemPmem::new(region_len(512)), common::CHECKPOINT_CAPACITY).unwrap();
    let mut state = State::new();
    for id in 0..8 {
        let p = payload(id, 28); // 64 bytes a record: exactly full
        log.append(&Raw {
            kind: KIND,
            payload: &p,
        })
        .unwrap();
        state.push(p);
    }
    assert_eq!(log.space().free, 0);
    let mut recovered = State::new();
    let (mut log, recovery, repairs) =
        Log::open(log.into_pmem(), &mut common::owner(&mut recovered)).unwrap();
    assert_eq!(recovered, state);
    assert_eq!(recovery.end.reason, StopReason::AreaEnd);
    assert!(!repairs.epoch_record, "no room for the epoch record");
    let p = payload(99, 8);
    assert!(matches!(
        log.append(&Raw {
            kind: KIND,
            payload: &p
        }),
        Err(AppendError::LogFull { free: 0, .. })
    ));
    log.checkpoint_bytes(&snapshot(&state)).unwrap();
    log.append(&Raw {
        kind: KIND,
        payload: &p,
    })
    .unwrap();
    state.push(p);
    assert_eq!(recover(log.pmem().as_bytes()).unwrap(), state);
}
