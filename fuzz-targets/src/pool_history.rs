//! The small pool the damage and salvage targets start from, built by
//! several opens of one image, each like one `nvirt pool` command: its log
//! then holds a checkpoint and records on both sides of it, and a domain
//! that was destroyed.

use nvirt_nvpool::{Config, DomainUuid, Gfn, Mfn, NvPool};
use nvirt_persist_meta::MemPmem;

/// A pool image and what opening it needs.
pub(crate) struct History {
    pub(crate) image: Vec<u8>,
    /// Bytes of metadata at the start of the image (the damage targets'
    /// patches land there).
    pub(crate) meta: usize,
    work: Vec<u8>,
}

/// `n` as a guest frame number.
pub(crate) fn gfn(n: u64) -> Gfn {
    Gfn::new(n).expect("a small frame number")
}

impl History {
    /// A freshly formatted pool of up to 4 domains and 64 extents, with
    /// 64 frames of NVRAM.
    pub(crate) fn format() -> Self {
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
        Self {
            image: pool.into_region().into_bytes(),
            meta: meta as usize,
            work,
        }
    }

    /// Opens the image (recovering it), runs `f` and closes it again.
    pub(crate) fn open<R>(&mut self, f: impl FnOnce(&mut NvPool<'_, MemPmem>) -> R) -> R {
        let image = core::mem::take(&mut self.image);
        let (mut pool, _) =
            NvPool::recover(MemPmem::from_bytes(image), &mut self.work).expect("recover");
        let result = f(&mut pool);
        self.image = pool.into_region().into_bytes();
        result
    }

    /// Recovers a copy of the image and runs `f` on it; the image stays
    /// as it was (recovery may write, e.g. to start a new epoch).
    pub(crate) fn peek<R>(&mut self, f: impl FnOnce(&NvPool<'_, MemPmem>) -> R) -> R {
        let copy = MemPmem::from_bytes(self.image.clone());
        let (pool, _) = NvPool::recover(copy, &mut self.work).expect("recover");
        f(&pool)
    }

    /// The first three opens of both targets: vm1 is created with 16
    /// frames; vm2 with 9, then a checkpoint; vm2 is destroyed. `after`
    /// runs at the end of each.
    pub(crate) fn first_opens(&mut self, mut after: impl FnMut(&mut NvPool<'_, MemPmem>)) {
        for open in 0..3 {
            self.open(|pool| {
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
                    _ => {
                        let d = pool.find(DomainUuid::new(2)).expect("vm2");
                        pool.destroy(d).expect("destroy");
                    }
                }
                after(pool);
            });
        }
    }
}

/// Both targets' last open: vm1 grows by 3 frames.
pub(crate) fn grow_vm1(pool: &mut NvPool<'_, MemPmem>) {
    let d = pool.find(DomainUuid::new(1)).expect("vm1");
    pool.populate(d, gfn(0x40), 3).expect("populate");
}
