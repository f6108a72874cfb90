//! Damage to a pool built by several opens (each like one `nvirt pool`
//! command): the input is byte patches (offset u16 into the metadata, xor)
//! over that image. One damaged byte must recover the same pool, the pool
//! before the final group, or be refused, and a refusal must be listed by
//! the survey (`nvirt pool check`) as a range holding the byte. More
//! patches must give a pool that passes its invariant check or a typed
//! error. Never a panic, never a read outside the region.

use std::sync::OnceLock;

use nvirt_nvpool::{Config, DomainUuid, Gfn, Mfn, NvPool, PoolDamage, RecoverError, survey};
use nvirt_persist_meta::{ImageError, MemPmem};

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

fn gfn(n: u64) -> Gfn {
    Gfn::new(n).expect("a small frame number")
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let config = Config::for_region(0)
            .with_max_domains(4)
            .with_max_extents(64)
            .with_record_area(0x2000)
            .with_frame_base(Mfn::new(0x201).expect("a frame"));
        let meta = config.geometry(1 << 30).expect("geometry").metadata_bytes();
        let size = meta + 64 * 4096;
        let geo = config.geometry(size).expect("geometry");
        let mut work = vec![0u8; geo.work_area_bytes()];
        let pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).expect("format");
        let mut image = pool.into_region().into_bytes();
        let mut before_last = View::new();
        for open in 0..4 {
            let (mut pool, _) =
                NvPool::recover(MemPmem::from_bytes(image), &mut work).expect("recover");
            let dom = |pool: &NvPool<'_, MemPmem>, id| pool.find(DomainUuid::new(id));
            match open {
                0 => {
                    let d = pool.create(DomainUuid::new(1), "vm1", 32).expect("create");
                    pool.populate(d, gfn(0), 16).expect("populate");
                }
                1 => {
                    let d = pool.create(DomainUuid::new(2), "vm2", 32).expect("create");
                    pool.populate(d, gfn(0x200), 9).expect("populate");
                    pool.checkpoint().expect("checkpoint");
                }
                2 => {
                    let d = dom(&pool, 2).expect("vm2");
                    pool.destroy(d).expect("destroy");
                }
                _ => {
                    let d = dom(&pool, 1).expect("vm1");
                    before_last = view(&pool);
                    pool.populate(d, gfn(0x40), 3).expect("populate");
                }
            }
            image = pool.into_region().into_bytes();
        }
        let (pool, _) =
            NvPool::recover(MemPmem::from_bytes(image.clone()), &mut work).expect("recover");
        let last = view(&pool);
        Base {
            image,
            meta: meta as usize,
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
