//! Salvage of a damaged pool built by several opens (guests' data in every
//! owned frame): the input is byte patches (offset u16 into the metadata,
//! xor) over that image. Salvage never panics nor reads outside the
//! region; when it salvages, the result recovers, passes its invariant
//! check, has every free frame zeroed, salvages again to "unchanged"; and
//! with one damaged byte, every frame owned in the undamaged pool is still
//! its domain's or in `lost+found`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use nvirt_nvpool::{DomainUuid, LOST_FOUND_ID, NvPool, Owner, SalvageError, SalvageReport};
use nvirt_persist_meta::{ImageError, MemPmem, Pmem};

use crate::pool_history::{History, gfn, grow_vm1};

struct Base {
    image: Vec<u8>,
    meta: usize,
    /// Who owns each frame in the undamaged pool.
    owners: BTreeMap<u64, u128>,
}

/// Writes its domain's id into every owned frame.
fn write_all(pool: &mut NvPool<'_, MemPmem>) {
    let owned: Vec<_> = pool
        .domains()
        .flat_map(|d| pool.extents(d.dom).map(move |e| (d.dom, d.id, e)))
        .collect();
    for (dom, id, e) in owned {
        for g in e.gfn().get()..e.gfn().get() + e.frames() {
            let data = id.get().to_le_bytes();
            pool.write_guest(dom, gfn(g), 8, &data).expect("write");
        }
    }
    pool.persist();
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut history = History::format();
        history.first_opens(write_all);
        history.open(|pool| {
            let d = pool.create(DomainUuid::new(3), "vm3", 32).expect("create");
            pool.populate(d, gfn(0x10), 12).expect("populate");
            write_all(pool);
        });
        history.open(|pool| {
            grow_vm1(pool);
            write_all(pool);
        });
        let owners = history.peek(|pool| {
            pool.geometry()
                .data_span()
                .iter()
                .filter_map(|m| match pool.owner_of(m) {
                    Owner::Domain { id, .. } => Some((m.get(), id.get())),
                    _ => None,
                })
                .collect()
        });
        Base {
            image: history.image,
            meta: history.meta,
            owners,
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
    let mut mem = MemPmem::from_bytes(image);
    let geo = match NvPool::probe(&mem) {
        Ok(geo) => geo,
        Err(_) => return,
    };
    let mut work = vec![0u8; geo.work_area_bytes()];
    let report = match NvPool::salvage(&mut mem, &mut work, &[], |_| {}) {
        Err(SalvageError::Pmem(e) | SalvageError::Log(ImageError::Pmem(e))) => {
            panic!("read outside the region: {e}")
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
        Ok((_, report)) => report,
    };
    let SalvageReport::Salvaged(_) = report else {
        return;
    };
    let salvaged = mem.into_bytes();
    let mut again = MemPmem::from_bytes(salvaged.clone());
    let (_, report) = NvPool::salvage(&mut again, &mut work, &[], |_| {}).expect("re-salvage");
    assert_eq!(
        report,
        SalvageReport::Unchanged,
        "a salvaged pool salvages again"
    );
    let (pool, _) =
        NvPool::recover(MemPmem::from_bytes(salvaged), &mut work).expect("salvaged recovers");
    pool.check()
        .expect("a salvaged pool passes its invariant check");
    let mut frame = vec![0u8; 4096];
    for m in pool.geometry().data_span().iter() {
        let owner = pool.owner_of(m);
        if owner == Owner::Free {
            let offset = pool.region_offset(m).expect("a data frame");
            pool.region().read(offset, &mut frame).expect("read");
            assert!(frame.iter().all(|&b| b == 0), "{m} is free but written");
        }
        if damaged.len() > 1 {
            continue;
        }
        if let Some(&id) = base.owners.get(&m.get()) {
            let kept = matches!(owner, Owner::Domain { id: now, .. }
                if now.get() == id || now == LOST_FOUND_ID);
            assert!(kept, "{m} of domain {id} is {owner:?} after salvage");
        }
    }
}
