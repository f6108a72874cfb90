//! Damage to a pool built by several opens (each like one `nvirt pool`
//! command): the input is byte patches (offset u16 into the metadata, xor)
//! over that image. One damaged byte must recover the same pool, the pool
//! before the final group, or be refused, and a refusal must be listed by
//! the survey (`nvirt pool check`) as a range holding the byte. More
//! patches must give a pool that passes its invariant check or a typed
//! error. Never a panic, never a read outside the region.

use std::sync::OnceLock;

use nvirt_nvpool::{NvPool, PoolDamage, RecoverError, survey};
use nvirt_persist_meta::{ImageError, MemPmem};

use crate::pool_history::{History, grow_vm1};

/// A pool as compared: each domain's id and (gpfn, mfn, order) extents.
type View = Vec<(u128, Vec<(u64, u64, u8)>)>;

struct Base {
    image: Vec<u8>,
    meta: usize,
    last: View,
    before_last: View,
}

fn view(pool: &NvPool<'_, MemPmem>) -> View {
    let mut v: View = pool
        .domains()
        .map(|d| {
            let extents = pool
                .extents(d.dom)
                .map(|e| (e.gfn().get(), e.mfn().get(), e.order().get()))
                .collect();
            (d.id.get(), extents)
        })
        .collect();
    v.sort();
    v
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut history = History::format();
        history.first_opens(|_| {});
        let before_last = history.open(|pool| {
            let before = view(pool);
            grow_vm1(pool);
            before
        });
        let last = history.peek(view);
        Base {
            image: history.image,
            meta: history.meta,
            last,
            before_last,
        }
    })
}

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let base = base();
    let mut image = base.image.clone();
    let mut damaged = Vec::new();
    for patch in data.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % base.meta;
        image[at] ^= patch[2];
        if image[at] != base.image[at] && !damaged.contains(&at) {
            damaged.push(at);
        }
    }
    let mut ranges = Vec::new();
    let found = survey(&MemPmem::from_bytes(image.clone()), |d| {
        if let PoolDamage::Superblock { offset, .. } = d {
            ranges.push(*offset..offset + 64);
        } else if let PoolDamage::Log(d) = d {
            ranges.push(d.offset..d.offset + d.len);
        }
    });
    let stopped = found.log.is_none_or(|l| l.stopped.is_some());
    let pmem = MemPmem::from_bytes(image);
    let geo = match NvPool::probe(&pmem) {
        Ok(geo) => geo,
        Err(_) => return,
    };
    let mut work = vec![0u8; geo.work_area_bytes()];
    match NvPool::recover(pmem, &mut work) {
        Err(RecoverError::Log(ImageError::Pmem(e)) | RecoverError::Pmem(e)) => {
            panic!("read outside the region: {e}")
        }
        Err(e) => {
            if let [at] = damaged[..] {
                let listed = ranges.iter().any(|r| r.contains(&(at as u64)));
                // Damage the log cannot see (a record that is intact but
                // impossible for the pool) is named by recovery itself.
                let named = matches!(e, RecoverError::Damaged(_));
                assert!(
                    listed || stopped || named,
                    "refused ({e}) but the survey does not list byte {at:#x}: {ranges:?}"
                );
            }
        }
        Ok((pool, _)) => {
            pool.check()
                .expect("a recovered pool passes its invariant check");
            if damaged.len() <= 1 {
                let v = view(&pool);
                assert!(
                    v == base.last || v == base.before_last,
                    "one damaged byte recovered another pool"
                );
            }
        }
    }
}
