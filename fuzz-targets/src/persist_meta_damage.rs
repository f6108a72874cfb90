//! Damage to a log written by several opens (a checkpoint, an abandoned
//! group, an open that wrote nothing): the input is byte patches (offset
//! u16, xor) over that image. One patch (one damaged byte: CRC-32C catches
//! every such change) must recover the same state, the state before the
//! final group, or be refused, and a refusal must be listed by the survey
//! (`nvirt log check`) as a range holding the byte. More patches must
//! recover some committed state or be refused. Never a panic, never a read
//! outside the region.

use std::sync::OnceLock;

use nvirt_persist_meta::sim::{Payloads, ReadOnly};
use nvirt_persist_meta::{ImageError, Log, MemPmem, Raw, RecordKind, RecoverError, replay, survey};

type State = Vec<Vec<u8>>;

const KIND: RecordKind = match RecordKind::new(0x42) {
    Some(k) => k,
    None => unreachable!(),
};

struct Base {
    image: Vec<u8>,
    /// Every state some commit left, in order.
    states: Vec<State>,
}

fn recover(image: &[u8]) -> Result<State, RecoverError<String>> {
    let mut state = State::new();
    replay(&ReadOnly(image), &mut Payloads::new(&mut state, None))?;
    Ok(state)
}

/// Commits `payloads` as one group (or one record) and notes the state.
fn commit(log: &mut Log<MemPmem>, base: &mut Base, payloads: &[Vec<u8>]) {
    let records: Vec<Raw<'_>> = payloads
        .iter()
        .map(|p| Raw {
            kind: KIND,
            payload: p,
        })
        .collect();
    log.append_group(&records).expect("the base fits");
    let mut state = base.states.last().cloned().unwrap_or_default();
    state.extend(payloads.iter().cloned());
    base.states.push(state);
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let log = Log::format(MemPmem::new(0x2000 + 0x2000 + 2048), 1000).expect("format");
        let mut base = Base {
            image: log.into_pmem().into_bytes(),
            states: vec![State::new()],
        };
        let p = |id: u8, len: usize| vec![id; len];
        for open in 0..5u8 {
            let mut state = State::new();
            let (mut log, _, _) = Log::open(
                MemPmem::from_bytes(std::mem::take(&mut base.image)),
                &mut Payloads::new(&mut state, None),
            )
            .expect("open");
            match open {
                0 => {
                    commit(&mut log, &mut base, &[p(1, 40)]);
                    commit(&mut log, &mut base, &[p(2, 20), p(3, 70)]);
                }
                1 => {
                    commit(&mut log, &mut base, &[p(4, 8), p(5, 30), p(6, 4)]);
                    let snapshot = Payloads::snapshot(base.states.last().expect("a state"));
                    log.checkpoint_bytes(&snapshot).expect("checkpoint");
                    commit(&mut log, &mut base, &[p(7, 50)]);
                }
                2 => {
                    let mut group = log.group();
                    group
                        .push(&Raw {
                            kind: KIND,
                            payload: &p(99, 60),
                        })
                        .expect("push");
                    drop(group);
                    commit(&mut log, &mut base, &[p(8, 12)]);
                }
                3 => {}
                _ => {
                    commit(&mut log, &mut base, &[p(9, 33)]);
                    commit(&mut log, &mut base, &[p(10, 16), p(11, 90)]);
                }
            }
            base.image = log.into_pmem().into_bytes();
        }
        base
    })
}

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let base = base();
    let mut image = base.image.clone();
    let mut damaged = Vec::new();
    for patch in data.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % image.len();
        image[at] ^= patch[2];
        if image[at] != base.image[at] && !damaged.contains(&at) {
            damaged.push(at);
        }
    }
    let mut ranges = Vec::new();
    let found = survey(&ReadOnly(&image), |d| ranges.push(*d), |_, _| {});
    let states = &base.states;
    let (last, before_last) = (&states[states.len() - 1], &states[states.len() - 2]);
    match recover(&image) {
        Err(RecoverError::Image(ImageError::Pmem(e))) => panic!("read outside the layout: {e}"),
        Err(e) => {
            if let [at] = damaged[..] {
                let listed = ranges
                    .iter()
                    .any(|d| (d.offset..d.offset + d.len).contains(&(at as u64)));
                assert!(
                    listed || found.stopped.is_some(),
                    "refused ({e}) but the survey does not list byte {at:#x}: {ranges:?}"
                );
            }
        }
        Ok(state) if damaged.len() <= 1 => assert!(
            &state == last || &state == before_last,
            "one damaged byte recovered a state other than the last two"
        ),
        Ok(state) => assert!(states.contains(&state), "recovered a state never committed"),
    }
}
