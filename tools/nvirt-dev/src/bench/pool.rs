//! `nvirt bench pool`: the figures of the NVRAM pool (nvirt-nvpool).
//!
//! - `fences/populate=<max> mean=<x>`: fences per populate call, over
//!   populates of every size and alignment on a pool whose small log fills
//!   up (so some commit through a checkpoint); the same for increase,
//!   decrease and destroy.
//! - `populate-64g extents=<n> metadata-bytes=<n> ms=<x>`: one populate of
//!   64 GiB of guest NVRAM, at a 1 GiB-aligned guest address and at a
//!   4 KiB-aligned one. The region (65 GiB) is simulated sparsely: its
//!   metadata area is memory, its data frames are not backed (reads give
//!   zeros, stores are counted and dropped), which is exact here because
//!   the pool touches data frames only to scrub them, and populate frees
//!   nothing (`data-stores=0` says so).
//! - `recover-1000dom-1Mi ms=<x>`: recovery of a pool with 1 000 domains
//!   and 1 Mi (1 048 576) extents of 4 KiB, from its checkpoint alone and
//!   from a checkpoint plus a record area of changes.
//! - `metadata region=<size> share=<pct>% work-area=<bytes> (<pct>%)`: the
//!   default layout's metadata and volatile work area as shares of the
//!   region.
//!
//! Times are the benchmark thread's CPU time, so that a shared machine's
//! other load does not count; the fences of the in-memory `Pmem`s cost
//! nothing, so the times are the pool's own work.

use std::process::ExitCode;

use nvirt_nvpool::{Config, DomainUuid, Gfn, NvPool};
use nvirt_persist_meta::{Counting, MemPmem, Pmem, PmemError};

use super::cpu_time::CpuInstant;

/// A region whose first `meta` bytes are memory and whose rest reads as
/// zeros and drops stores (counting them).
struct Sparse {
    meta: Vec<u8>,
    size: u64,
    data_stores: u64,
}

impl Sparse {
    fn new(size: u64, meta: u64) -> Self {
        Self {
            meta: vec![0; meta as usize],
            size,
            data_stores: 0,
        }
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), PmemError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(PmemError::OutOfBounds {
                offset,
                len,
                size: self.size,
            }),
        }
    }
}

impl Pmem for Sparse {
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        self.check(offset, buf.len() as u64)?;
        buf.fill(0);
        let start = offset as usize;
        if start < self.meta.len() {
            let end = (start + buf.len()).min(self.meta.len());
            buf[..end - start].copy_from_slice(&self.meta[start..end]);
        }
        Ok(())
    }
    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        if offset % 8 != 0 {
            return Err(PmemError::Misaligned { offset });
        }
        self.store(offset, &value.to_le_bytes())
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        self.check(offset, data.len() as u64)?;
        let start = offset as usize;
        if start + data.len() <= self.meta.len() {
            self.meta[start..start + data.len()].copy_from_slice(data);
        } else {
            self.data_stores += 1;
        }
        Ok(())
    }
    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        self.check(offset, len)
    }
    fn fence(&mut self) {}
}

fn g(n: u64) -> Result<Gfn, String> {
    Gfn::new(n).ok_or_else(|| format!("gpfn {n:#x}"))
}

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

/// Fences per call of each operation, over many calls.
fn fences(quick: bool) -> Result<(), String> {
    let config = Config::for_region(0)
        .with_max_domains(8)
        .with_max_extents(1 << 16)
        .with_record_area(0x4000);
    let size = config
        .geometry(1 << 40)
        .map_err(|e| e.to_string())?
        .metadata_bytes()
        + (256 << 20);
    let geo = config.geometry(size).map_err(|e| e.to_string())?;
    let mut work = vec![0u8; geo.work_area_bytes()];
    let pmem = Counting::new(MemPmem::new(size as usize));
    let mut pool =
        NvPool::format(pmem, config.assume_zeroed(), &mut work).map_err(|e| e.to_string())?;
    let calls: u64 = if quick { 2_000 } else { 20_000 };
    let mut stats = [(0u64, 0u64, 0u64); 4];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut domains = Vec::new();
    for i in 0..calls {
        if domains.len() < 4 {
            let id = DomainUuid::new(u128::from(i) + 1);
            domains.push(
                pool.create(id, "bench", 1 << 20)
                    .map_err(|e| e.to_string())?,
            );
        }
        let d = domains[(next() % domains.len() as u64) as usize];
        let before = pool.region().stats().fences;
        // Refused calls (overlaps, quotas) commit nothing and do not count.
        let which = match next() % 10 {
            0..=5 => {
                let gpfn = next() % (1 << 24);
                let frames = 1 + next() % 700;
                if pool.populate(d, g(gpfn)?, frames).is_err() {
                    continue;
                }
                0
            }
            6 | 7 => {
                let list: Vec<Gfn> = (0..1 + next() % 40)
                    .map(|_| g((next() % (1 << 24)) & !3))
                    .collect::<Result<_, _>>()?;
                if pool.increase_reservation(d, &list, 2).is_err() {
                    continue;
                }
                1
            }
            8 => {
                let owned: Vec<Gfn> = pool.extents(d).take(30).map(|e| e.gfn()).collect();
                if pool.decrease_reservation(d, &owned, 0).is_err() {
                    continue;
                }
                2
            }
            _ => {
                if next() % 8 != 0 {
                    continue;
                }
                pool.destroy(d).map_err(|e| e.to_string())?;
                domains.retain(|&x| x != d);
                3
            }
        };
        let f = pool.region().stats().fences - before;
        let s = &mut stats[which];
        s.0 += 1;
        s.1 += f;
        s.2 = s.2.max(f);
    }
    let generation = pool.stats().checkpoint_generation;
    for (name, (n, total, max)) in ["populate", "increase", "decrease", "destroy"]
        .iter()
        .zip(stats)
    {
        println!(
            "fences/{name}={max} mean={:.3} calls={n}",
            total as f64 / n.max(1) as f64
        );
    }
    eprintln!("nvirt bench pool: {generation} automatic checkpoints during the fence count");
    Ok(())
}

/// One populate of 64 GiB on a sparse 65 GiB region.
fn populate_64g(gpfn: u64, label: &str) -> Result<(), String> {
    let size: u64 = 65 << 30;
    let config = Config::for_region(size).assume_zeroed();
    let geo = config.geometry(size).map_err(|e| e.to_string())?;
    let mut work = vec![0u8; geo.work_area_bytes()];
    let region = Counting::new(Sparse::new(size, geo.metadata_bytes()));
    let mut pool = NvPool::format(region, config, &mut work).map_err(|e| e.to_string())?;
    let d = pool
        .create(DomainUuid::new(64), "big", 64 << 18)
        .map_err(|e| e.to_string())?;
    let log_before = pool.stats().log.used;
    let fences_before = pool.region().stats().fences;
    let bytes_before = pool.region().stats().bytes_stored;
    let start = CpuInstant::now();
    let got = pool
        .populate(d, g(gpfn)?, 64 << 18)
        .map_err(|e| e.to_string())?;
    let ns = start.elapsed_ns();
    let stats = pool.region().stats();
    let log_bytes = pool.stats().log.used.saturating_sub(log_before);
    println!(
        "populate-64g{label} extents={} metadata-bytes={} ms={:.3} fences={} largest-order={} data-stores={}",
        got.extents,
        log_bytes,
        ms(ns),
        stats.fences - fences_before,
        got.largest.get(),
        pool.region().inner().data_stores
    );
    eprintln!(
        "nvirt bench pool: populate-64g{label}: {} bytes stored in all (records, headers)",
        stats.bytes_stored - bytes_before
    );
    Ok(())
}

/// Recovery of 1 000 domains with 1 Mi extents of 4 KiB.
fn recover_1mi(runs: usize) -> Result<(), String> {
    const DOMAINS: u64 = 1000;
    const EXTENTS: u64 = 1 << 20;
    let size: u64 = 64 << 30;
    let config = Config::for_region(size)
        .with_max_extents(EXTENTS as u32 + 4096)
        .assume_zeroed();
    let geo = config.geometry(size).map_err(|e| e.to_string())?;
    let mut work = vec![0u8; geo.work_area_bytes()];
    let mut pool = NvPool::format(Sparse::new(size, geo.metadata_bytes()), config, &mut work)
        .map_err(|e| e.to_string())?;
    for d in 0..DOMAINS {
        let n = EXTENTS / DOMAINS + u64::from(d < EXTENTS % DOMAINS);
        let dom = pool
            .create(DomainUuid::new(u128::from(d) << 64 | 0x5eed), "vm", 1 << 20)
            .map_err(|e| e.to_string())?;
        // Every other guest frame: extents that can never merge.
        let list: Vec<Gfn> = (0..n)
            .map(|i| g(0x10_0000 + 2 * i))
            .collect::<Result<_, _>>()?;
        pool.increase_reservation(dom, &list, 0)
            .map_err(|e| e.to_string())?;
    }
    let s = pool.stats();
    if u64::from(s.extents) != EXTENTS || s.domains != DOMAINS as u32 {
        return Err(format!(
            "built {} extents in {} domains",
            s.extents, s.domains
        ));
    }
    // Fill the record area with changes after the last checkpoint (flag
    // changes, 64 bytes each): the longest replay recovery can face.
    let doms: Vec<_> = pool.domains().map(|d| d.dom).collect();
    let mut k = 0;
    while pool.stats().log.free > 1024 {
        let dom = doms[k % doms.len()];
        if (k / doms.len()) % 2 == 0 {
            pool.mark_running(dom).map_err(|e| e.to_string())?;
        } else {
            pool.mark_shut_down(dom).map_err(|e| e.to_string())?;
        }
        k += 1;
    }
    let with_log = pool.stats().log.used;
    eprintln!(
        "nvirt bench pool: 1 000 domains, {} extents; {} checkpoints while building; work area {} MiB, metadata {} MiB",
        s.extents,
        s.checkpoint_generation,
        geo.work_area_bytes() >> 20,
        geo.metadata_bytes() >> 20
    );
    let mut region = pool.into_region();
    for source in ["checkpoint+log", "checkpoint"] {
        let mut best = f64::INFINITY;
        let mut records = 0;
        for _ in 0..runs {
            let start = CpuInstant::now();
            let (pool, report) = NvPool::recover(region, &mut work).map_err(|e| e.to_string())?;
            best = best.min(start.elapsed_ns());
            records = report.records;
            if u64::from(pool.stats().extents) != EXTENTS {
                return Err("recovery lost extents".into());
            }
            region = pool.into_region();
        }
        println!(
            "recover-1000dom-1Mi ms={:.1} source={source} records={records} log-bytes={}",
            ms(best),
            if source == "checkpoint" { 0 } else { with_log }
        );
        if source == "checkpoint+log" {
            let (mut pool, _) = NvPool::recover(region, &mut work).map_err(|e| e.to_string())?;
            pool.checkpoint().map_err(|e| e.to_string())?;
            region = pool.into_region();
        }
    }
    Ok(())
}

fn metadata_share() {
    for (label, size) in [("1G", 1u64 << 30), ("64G", 64 << 30), ("1T", 1 << 40)] {
        let meta = nvirt_nvpool::metadata_bytes(size);
        let work = nvirt_nvpool::work_area_bytes(size) as u64;
        println!(
            "metadata region={label} bytes={meta} share={:.4}% work-area={work} ({:.4}% of the region)",
            meta as f64 * 100.0 / size as f64,
            work as f64 * 100.0 / size as f64
        );
    }
}

pub(crate) fn run(quick: bool) -> Result<ExitCode, String> {
    eprintln!(
        "nvirt bench pool: {} run; times in thread CPU time",
        if quick { "quick" } else { "full" }
    );
    fences(quick)?;
    populate_64g(0x10_0000, "")?;
    populate_64g(0x10_0001, "-unaligned")?;
    recover_1mi(if quick { 1 } else { 5 })?;
    metadata_share();
    Ok(ExitCode::SUCCESS)
}
