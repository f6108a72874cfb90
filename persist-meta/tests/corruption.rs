//! Corrupting random bytes of a valid image: recovery returns the state
//! after a prefix of the committed operations, or a clear error — never a
//! panic, never a state that was not committed, never a read outside the
//! region (the test region refuses those, and no such error may appear).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::collections::BTreeMap;

use common::{Image, KIND, Op, State, apply, owner, payload, recover, region_len};
use nvirt_persist_meta::{ImageError, Log, MemPmem, Raw, RecoverError, replay};

/// A log with a checkpoint and records after it, and the state after
/// every operation.
fn history() -> (Vec<u8>, Vec<State>) {
    let region = MemPmem::new(region_len(8192));
    let mut log = Log::format(region, common::CHECKPOINT_CAPACITY).unwrap();
    let mut state = State::new();
    let mut states = vec![state.clone()];
    let mut ops = Vec::new();
    for id in 1..=10 {
        ops.push(Op::Append(payload(id, 10 + 17 * id as usize)));
    }
    ops.push(Op::Checkpoint);
    for id in 20..=25 {
        ops.push(Op::Group(vec![
            payload(id * 10, 30),
            payload(id * 10 + 1, 70),
        ]));
    }
    ops.push(Op::Append(payload(99, 200)));
    for op in &ops {
        apply(&mut log, &mut state, op);
        states.push(state.clone());
    }
    (log.into_pmem().into_bytes(), states)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_corruption_gives_a_prefix_or_a_clear_error() {
    let (image, states) = history();
    let used_records = 0x4000 + 8192 / 2; // generous: the log uses less
    // Bytes worth hitting: both superblocks, the active checkpoint slot
    // (generation 1: slot 1), the record area in use.
    let hot = [0..128, 0x1000..0x1080, 0x3000..0x3400, 0x4000..used_records];
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let trials = 3000;
    for trial in 0..trials {
        let mut bad = image.clone();
        for _ in 0..1 + rng.below(4) {
            let at = if rng.below(4) == 0 {
                rng.below(bad.len())
            } else {
                let range = hot[rng.below(hot.len())].clone();
                range.start + rng.below(range.len())
            };
            bad[at] ^= 1 + rng.below(255) as u8;
        }
        let mut state = State::new();
        let result = replay(&Image(&bad), &mut owner(&mut state));
        let outcome = match result {
            Ok(_) => {
                let j = states
                    .iter()
                    .rposition(|s| *s == state)
                    .unwrap_or_else(|| panic!("trial {trial}: recovered a state never committed"));
                if j == states.len() - 1 {
                    "full state".into()
                } else {
                    "prefix".into()
                }
            }
            Err(RecoverError::Image(ImageError::Pmem(e))) => {
                panic!("trial {trial}: read outside the validated layout: {e}")
            }
            Err(RecoverError::Image(e)) => format!("error: {}", kind_of(&e)),
            Err(RecoverError::Replay(e)) => {
                panic!("trial {trial}: corrupt bytes reached the owner: {e}")
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
        // Whatever recovered can be opened and continued.
        if trial % 16 == 0 {
            if let Ok(before) = recover(&bad) {
                let (mut log, state) = common::open(MemPmem::from_bytes(bad));
                assert_eq!(state, before);
                if log
                    .append(&Raw {
                        kind: KIND,
                        payload: b"after corruption",
                    })
                    .is_ok()
                {
                    let mut after = before;
                    after.push(b"after corruption".to_vec());
                    assert_eq!(recover(log.pmem().as_bytes()).unwrap(), after);
                }
            }
        }
    }
    println!("corruption: {trials} trials: {outcomes:?}");
    assert!(outcomes.get("prefix").copied().unwrap_or(0) > 0);
    assert!(outcomes.keys().any(|k| k.starts_with("error")));
}

fn kind_of(e: &ImageError) -> &'static str {
    match e {
        ImageError::NoSuperblock { .. } => "no superblock",
        ImageError::UnsupportedVersion { .. } => "unsupported version",
        ImageError::SuperblocksDisagree => "superblocks disagree",
        ImageError::NoGeneration { .. } => "no generation",
        ImageError::Checkpoint { .. } => "checkpoint invalid",
        ImageError::Changed { .. } => "changed",
        ImageError::Corrupt { .. } => "corrupt committed record",
        ImageError::Pmem(_) => "pmem",
    }
}

#[test]
fn every_single_byte_of_the_metadata_flipped() {
    // Exhaustive over the superblocks, the switch words, the active
    // checkpoint's header and the first records.
    let (image, states) = history();
    let mut checked = 0;
    for at in (0..128)
        .chain(0x1000..0x1080)
        .chain(0x3000..0x3040)
        .chain(0x4000..0x4200)
    {
        let mut bad = image.clone();
        bad[at] ^= 0x5a;
        match recover(&bad) {
            Ok(state) => assert!(states.contains(&state), "byte {at:#x}"),
            Err(e) => assert!(!e.contains("outside"), "byte {at:#x}: {e}"),
        }
        checked += 1;
    }
    println!("corruption: {checked} single-byte flips of metadata and records checked");
}

#[test]
fn truncated_images_are_rejected_cleanly() {
    let (image, states) = history();
    for len in [
        0,
        7,
        64,
        100,
        0x1000,
        0x1048,
        0x2000,
        0x3000,
        0x4000,
        image.len() - 64,
    ] {
        match recover(&image[..len]) {
            Ok(state) => assert!(states.contains(&state), "length {len}"),
            Err(e) => assert!(!e.is_empty()),
        }
    }
}

#[test]
fn a_damaged_committed_record_is_an_error_not_a_shorter_log() {
    let region = MemPmem::new(region_len(8192));
    let mut log = Log::format(region, common::CHECKPOINT_CAPACITY).unwrap();
    let mut offsets = Vec::new();
    for id in 1..=4 {
        let commit = log
            .append(&Raw {
                kind: KIND,
                payload: &payload(id, 40),
            })
            .unwrap();
        offsets.push(commit.offset);
    }
    let image = log.into_pmem().into_bytes();
    // A payload byte of any record but the last: the next one began a
    // later group (its sequence number minus its group index is past the
    // damaged one), which the writer stores only after the damaged
    // record's group was fenced.
    for i in 0..3 {
        let mut bad = image.clone();
        bad[offsets[i] as usize + 40] ^= 1;
        match replay(&Image(&bad), &mut owner(&mut State::new())) {
            Err(RecoverError::Image(ImageError::Corrupt {
                offset, evidence, ..
            })) => {
                assert_eq!(offset, offsets[i], "record {i}");
                assert_eq!(evidence, offsets[i + 1], "record {i}");
            }
            other => panic!("record {i}: {other:?}"),
        }
    }
    // The last group of the last writer can be a torn tail.
    let mut torn = image.clone();
    torn[offsets[3] as usize + 40] ^= 1;
    let state = recover(&torn).unwrap();
    assert_eq!(state.len(), 3);
}

#[test]
fn a_survey_lists_every_damaged_range_and_the_records_lost() {
    use nvirt_persist_meta::{DamagedPart, survey};
    let region = MemPmem::new(region_len(8192));
    let mut log = Log::format(region, common::CHECKPOINT_CAPACITY).unwrap();
    let mut commits = Vec::new();
    for id in 1..=5 {
        let commit = log
            .append(&Raw {
                kind: KIND,
                payload: &payload(id, 40),
            })
            .unwrap();
        commits.push(commit);
    }
    let mut image = log.into_pmem().into_bytes();
    image[commits[0].offset as usize + 40] ^= 1;
    image[commits[2].offset as usize + 40] ^= 1;
    image[0x10] ^= 1; // superblock copy 0
    let mut ranges = Vec::new();
    let mut after = Vec::new();
    let found = survey(
        &Image(&image),
        |d| ranges.push(*d),
        |r, past| after.push((r.seq(), past)),
    );
    assert_eq!(found.damaged, 3);
    assert_eq!(found.stopped, None);
    assert!(matches!(
        ranges[0].what,
        DamagedPart::Superblock { copy: 0, .. }
    ));
    for (range, lost) in ranges[1..].iter().zip([0, 2]) {
        let commit = commits[lost];
        assert_eq!(range.offset, commit.offset);
        assert_eq!(range.len, commit.len);
        match range.what {
            DamagedPart::Records {
                first_seq,
                resume_seq,
                ..
            } => {
                assert_eq!(first_seq, commit.first_seq);
                assert_eq!(resume_seq, Some(commit.first_seq + 1));
            }
            other => panic!("{other:?}"),
        }
    }
    let seqs = |c: usize| commits[c].first_seq;
    assert_eq!(
        after,
        vec![(seqs(1), true), (seqs(3), true), (seqs(4), true)]
    );
    // Recovery refuses the image, naming the first.
    assert!(recover(&image).unwrap_err().contains("damaged"));
}
