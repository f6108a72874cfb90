//! Recovery of arbitrary region images never panics, never loops, never
//! reads outside the region, and never yields a state that was not
//! committed. Three kinds of input, by the first byte:
//!
//! 0. raw bytes as the image (optionally with a valid image's superblocks,
//!    or superblocks and checkpoint, laid over them, to get past the CRCs);
//! 1. a valid image with byte patches (offset, xor) applied;
//! 2. a valid image with forged records (correct CRCs, fuzzed header
//!    fields) written at its append position, which probes every check
//!    recovery makes after the checksum.

use std::sync::OnceLock;

use nvirt_persist_meta::sim::{Payloads, ReadOnly, forge_record};
use nvirt_persist_meta::{
    ImageError, Log, MemPmem, Pmem, Raw, RecordKind, RecoverError, inspect, replay,
};

type State = Vec<Vec<u8>>;

const KIND: RecordKind = match RecordKind::new(0x42) {
    Some(k) => k,
    None => unreachable!(),
};

/// Recovers like an owner would; `Err` is any clear error.
fn recover_state<P: Pmem>(
    pmem: &P,
) -> Result<(State, nvirt_persist_meta::Recovery), RecoverError<String>> {
    let mut state = State::new();
    let recovery = replay(pmem, &mut Payloads::new(&mut state, None))?;
    Ok((state, recovery))
}

struct Base {
    image: Vec<u8>,
    states: Vec<State>,
    append_offset: u64,
    next_seq: u64,
    epoch: u64,
}

/// A valid image: records, a checkpoint, more records and groups.
fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut log = Log::format(MemPmem::new(0x2000 + 0x2000 + 4096), 1000).unwrap();
        let mut state = State::new();
        let mut states = vec![state.clone()];
        for i in 0..12u8 {
            let p = vec![i; 8 + 9 * usize::from(i)];
            if i == 5 {
                log.checkpoint_bytes(&Payloads::snapshot(&state)).unwrap();
            }
            if i % 3 == 2 {
                let q = vec![i ^ 0x80; 20];
                log.append_group(&[
                    Raw {
                        kind: KIND,
                        payload: &p,
                    },
                    Raw {
                        kind: KIND,
                        payload: &q,
                    },
                ])
                .unwrap();
                state.push(p);
                state.push(q);
            } else {
                log.append(&Raw {
                    kind: KIND,
                    payload: &p,
                })
                .unwrap();
                state.push(p);
            }
            states.push(state.clone());
        }
        let image = log.into_pmem().into_bytes();
        let (_, recovery) = recover_state(&ReadOnly(&image)).unwrap();
        Base {
            image,
            states,
            append_offset: recovery.end.append_offset,
            next_seq: recovery.end.next_seq,
            epoch: recovery.end.epoch,
        }
    })
}

/// Recovers `image` read-only and through `Log::open`, with the checks.
fn check(image: &[u8], committed: Option<&[State]>) {
    let _ = inspect(&ReadOnly(image), |_| {});
    match recover_state(&ReadOnly(image)) {
        Err(RecoverError::Image(ImageError::Pmem(e))) => panic!("read outside the layout: {e}"),
        Err(_) => {}
        Ok((state, _)) => {
            if let Some(states) = committed {
                assert!(
                    states.iter().any(|s| s == &state)
                        || states.last().is_some_and(|last| state.starts_with(last)),
                    "recovered a state never committed"
                );
            }
            // What recovers read-only also opens, and reopens the same.
            let mut again = State::new();
            let opened = Log::open(
                MemPmem::from_bytes(image.to_vec()),
                &mut Payloads::new(&mut again, None),
            );
            let (log, _, _) = opened.expect("a recoverable image opens");
            assert_eq!(again, state, "open replays what read-only recovery does");
            let (reopened, _) = recover_state(log.pmem()).expect("an opened image recovers");
            assert_eq!(reopened, state);
        }
    }
}

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let base = base();
    match mode % 3 {
        0 => {
            let mut image = rest.to_vec();
            if mode & 0x10 != 0 && image.len() <= base.image.len() {
                // Valid superblocks (and maybe checkpoint) over fuzz bytes.
                image.resize(base.image.len(), 0);
                let keep = if mode & 0x20 != 0 { 0x4000 } else { 0x2000 };
                image[..keep].copy_from_slice(&base.image[..keep]);
            }
            check(&image, None);
        }
        1 => {
            let mut image = base.image.clone();
            for patch in rest.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % image.len();
                image[at] ^= patch[2];
            }
            check(&image, Some(&base.states));
        }
        _ => {
            // Forged records: each from 8 bytes of input: deltas to the
            // expected sequence number and epoch, kind, flags, length.
            let mut image = base.image.clone();
            let mut at = base.append_offset as usize;
            let (mut seq, epoch) = (base.next_seq, base.epoch);
            for spec in rest.chunks_exact(8) {
                let seq_delta = i64::from(spec[0] as i8 % 3);
                let epoch_delta = i64::from(spec[1] as i8 % 3);
                let kind = match spec[2] % 4 {
                    0 => RecordKind::EPOCH.raw(),
                    1 => 0xff00 | u16::from(spec[3]),
                    _ => u16::from(spec[3]),
                };
                let flags = u16::from(spec[4] % 4);
                let len = usize::from(spec[5]) % 80;
                let payload = vec![spec[6]; len];
                let record = forge_record(
                    kind,
                    flags,
                    seq.wrapping_add_signed(seq_delta),
                    epoch.wrapping_add_signed(epoch_delta),
                    &payload,
                );
                if at + record.len() > image.len() {
                    break;
                }
                image[at..at + record.len()].copy_from_slice(&record);
                at += record.len();
                seq += 1;
                if spec[7] & 1 != 0 {
                    at += 32; // leave a gap
                }
            }
            check(&image, Some(&base.states));
        }
    }
}
