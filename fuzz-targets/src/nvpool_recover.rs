//! Recovery of arbitrary pool images never panics, never loops, never
//! reads outside the region, and gives either a pool that passes its full
//! invariant check (and recovers again to the same pool) or a typed error.
//! Four kinds of input, by the first byte:
//!
//! 0. raw bytes as the image, optionally with a valid pool's superblocks
//!    (and log superblocks and checkpoint) laid over them;
//! 1. a valid image (domains, extents, a checkpoint, records after it)
//!    with byte patches (offset, xor) applied;
//! 2. a valid image with forged records (correct CRCs, fuzzed kinds and
//!    payloads) at its append position: every check replay makes after
//!    the checksum;
//! 3. a valid image whose active checkpoint is replaced by a valid
//!    checkpoint holding fuzzed snapshot bytes: every check of the
//!    snapshot loader.

use std::sync::OnceLock;

use nvirt_nvpool::config::LOG_OFFSET;
use nvirt_nvpool::{Config, DomainUuid, Gfn, Mfn, NvPool, RecoverError, Window};
use nvirt_persist_meta::sim::forge_record;
use nvirt_persist_meta::{ImageError, Log, MemPmem, replay_fn};

struct Base {
    image: Vec<u8>,
    append_offset: u64,
    next_seq: u64,
    epoch: u64,
}

fn config() -> Config {
    Config::for_region(0)
        .with_max_domains(4)
        .with_max_extents(64)
        .with_record_area(0x2000)
        .with_frame_base(Mfn::new(0x201).unwrap())
}

/// A valid image: three domains, extents, data, a checkpoint, records.
fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let config = config();
        let size = config.geometry(1 << 30).unwrap().metadata_bytes() + 48 * 4096;
        let mut work = vec![0u8; config.geometry(size).unwrap().work_area_bytes()];
        let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).unwrap();
        let g = |n| Gfn::new(n).unwrap();
        let a = pool.create(DomainUuid::new(1), "a", 40).unwrap();
        let b = pool.create(DomainUuid::new(2), "b", 40).unwrap();
        pool.populate(a, g(0x11), 9).unwrap();
        pool.mark_running(a).unwrap();
        pool.checkpoint().unwrap();
        pool.populate(b, g(0), 16).unwrap();
        pool.increase_reservation(a, &[g(0x40), g(0x44)], 2)
            .unwrap();
        pool.decrease_reservation(b, &[g(4)], 1).unwrap();
        let c = pool.create(DomainUuid::new(3), "c", 4).unwrap();
        pool.populate(c, g(7), 1).unwrap();
        pool.destroy(c).unwrap();
        let image = pool.into_region().into_bytes();
        let window = Window::new(
            MemPmem::from_bytes(image.clone()),
            LOG_OFFSET,
            size - LOG_OFFSET,
        )
        .unwrap_or_else(|_| panic!("window"));
        let recovery = nvirt_persist_meta::replay(
            &window,
            &mut replay_fn(|_| Ok::<(), std::convert::Infallible>(())),
        )
        .unwrap();
        Base {
            image,
            append_offset: LOG_OFFSET + recovery.end.append_offset,
            next_seq: recovery.end.next_seq,
            epoch: recovery.end.epoch,
        }
    })
}

/// Recovers `image`; a recovered pool must pass every check and recover
/// again to the same pool.
fn check(image: Vec<u8>) {
    let pmem = MemPmem::from_bytes(image);
    let Ok(geo) = NvPool::probe(&pmem) else {
        let mut work = vec![0u8; 64];
        let _ = NvPool::recover(pmem, &mut work);
        return;
    };
    if geo.work_area_bytes() > 64 << 20 {
        return;
    }
    let mut work = vec![0u8; geo.work_area_bytes()];
    match NvPool::recover(pmem, &mut work) {
        Err(RecoverError::Log(ImageError::Pmem(e)) | RecoverError::Pmem(e)) => {
            panic!("read outside the layout: {e}")
        }
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok((pool, _)) => {
            if let Err(e) = pool.check() {
                panic!("recovered a pool that breaks an invariant: {e}");
            }
            let domains: Vec<_> = pool
                .domains()
                .map(|d| (d.id, d.quota, pool.extents(d.dom).collect::<Vec<_>>()))
                .collect();
            let image = pool.into_region();
            let (again, report) = NvPool::recover(image, &mut work).expect("recovers again");
            let domains_again: Vec<_> = again
                .domains()
                .map(|d| (d.id, d.quota, again.extents(d.dom).collect::<Vec<_>>()))
                .collect();
            assert_eq!(domains, domains_again);
            assert_eq!(report.scrubbed_frames, 0);
        }
    }
}

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let base = base();
    match mode % 4 {
        0 => {
            let mut image = rest.to_vec();
            if mode & 0x10 != 0 && image.len() <= base.image.len() {
                image.resize(base.image.len(), 0);
                let keep = if mode & 0x20 != 0 { 0x8000 } else { 0x2000 };
                image[..keep].copy_from_slice(&base.image[..keep]);
            }
            check(image);
        }
        1 => {
            let mut image = base.image.clone();
            for patch in rest.chunks_exact(4) {
                let at =
                    u32::from_le_bytes([patch[0], patch[1], patch[2], 0]) as usize % image.len();
                image[at] ^= patch[3];
            }
            check(image);
        }
        2 => {
            // Records from the input: kind, flags, a length, then payload.
            let mut image = base.image.clone();
            let mut at = base.append_offset as usize;
            let mut seq = base.next_seq;
            let mut input = rest;
            while input.len() >= 3 {
                let kind = u16::from(input[0] % 9);
                let flags = u16::from(input[1] & 1);
                let len = (usize::from(input[2]) * 4).min(input.len() - 3);
                let payload = &input[3..3 + len];
                input = &input[3 + len..];
                let record = forge_record(kind, flags, seq, base.epoch, payload);
                if at + record.len() > image.len() {
                    break;
                }
                image[at..at + record.len()].copy_from_slice(&record);
                at += record.len();
                seq += 1;
            }
            check(image);
        }
        _ => {
            // A valid checkpoint of fuzzed snapshot bytes: the snapshot
            // header and domain entries often come from the input whole.
            let size = base.image.len() as u64;
            let region = MemPmem::from_bytes(base.image.clone());
            let Ok(window) = Window::new(region, LOG_OFFSET, size - LOG_OFFSET) else {
                return;
            };
            let mut snapshot = Vec::new();
            if mode & 0x10 != 0 {
                snapshot.extend_from_slice(b"NVPSNAP1");
            }
            snapshot.extend_from_slice(rest);
            let Ok((mut log, _, _)) = Log::open(
                window,
                &mut replay_fn(|_| Ok::<(), std::convert::Infallible>(())),
            ) else {
                return;
            };
            if log.checkpoint_bytes(&snapshot).is_err() {
                return;
            }
            check(log.into_pmem().into_region().into_bytes());
        }
    }
}
