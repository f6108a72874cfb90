//! The NV pool on the machine's NVRAM (`nvirt-nvpool` over persist-meta's
//! x86 `Pmem`): opened at boot — recovered, or formatted if the NVRAM holds
//! no pool or `nvpool=format` says so — and the configured guest's domain
//! found again by its stable id, or created with its NVRAM region.

use crate::config::Config;
use crate::heaps;
use crate::host_memory::{FREE_CAPACITY, HostMemory, PAGE};
use crate::nv_boot::{self, Attached, GuestNvram, Opened};
use crate::ranges::{HexRange, RangeSet};
use nvirt_addr::{GfnRange, GuestPhysRange};
use nvirt_buddy::MemKind;
use nvirt_e820::GuestMap;
use nvirt_nvpool::{Dom, DomainUuid, HostPhysAddr, Mfn, NvPool};
use nvirt_persist_meta::X86Pmem;

use super::boot_failure::BootFailure;
use super::console::hvprintln;
use super::hypervisor::Size;
use super::mem::{host_bytes_mut, nvram_region};

/// The hypervisor's NV pool.
pub(crate) type Pool = NvPool<'static, X86Pmem<'static>>;

/// Opens the NV pool on the largest NVRAM range, its work area carved out
/// of `free` (the RAM the volatile heap is about to get); `None` if the
/// machine has no NVRAM. Fails if the NVRAM holds a damaged pool (and
/// `nvpool=format` was not given).
pub(crate) fn open_pool(
    host: &HostMemory,
    free: &mut RangeSet<FREE_CAPACITY>,
    config: &Config,
) -> Result<Option<Pool>, BootFailure> {
    let Some(region) = host.nvram.iter().max_by_key(|r| r.end - r.start) else {
        return Ok(None);
    };
    for other in host.nvram.iter().filter(|r| *r != region) {
        hvprintln!(
            "NVRAM {} left unused: the NV pool lives on the largest range",
            HexRange(other)
        );
    }
    // SAFETY: an NVRAM range of the host map, clipped to the identity map,
    // given to no heap (only the NV pool takes NVRAM), taken once.
    let Some(pmem) = (unsafe { nvram_region(&region) }) else {
        return Err(BootFailure::NvramUnaddressable(region));
    };
    let Some(base_pfn) = HostPhysAddr::new(region.start).map(Mfn::containing) else {
        return Err(BootFailure::NvramBeyondPhysical(region));
    };
    let bytes = nv_boot::work_area_bytes(&pmem, base_pfn)
        .map_err(|e| BootFailure::PoolGeometry(region.clone(), e))?;
    let work_range =
        heaps::carve(free, bytes, MemKind::NonVolatile).map_err(BootFailure::PoolWorkArea)?;
    // SAFETY: carved out of the free RAM the volatile heap gets, so no
    // allocator hands it out; used for the pool alone.
    let Some(work) = (unsafe { host_bytes_mut(&work_range) }) else {
        return Err(BootFailure::PoolWorkAreaUnreachable(work_range));
    };
    hvprintln!(
        "nvpool: NVRAM {} ({}), write-back by {}, work area {} at {}",
        HexRange(region.clone()),
        Size(region.end - region.start),
        pmem.flush_instruction().name(),
        Size(bytes as u64),
        HexRange(work_range)
    );
    let (pool, opened) = nv_boot::open(pmem, base_pfn, work, config.pool)
        .map_err(|e| BootFailure::PoolOpen(region, e))?;
    report(&pool, &opened);
    pool.check().map_err(BootFailure::PoolCheck)?;
    hvprintln!("nvpool: consistency check: clean");
    Ok(Some(pool))
}

fn report(pool: &Pool, opened: &Opened) {
    let stats = pool.stats();
    match opened {
        Opened::FormattedEmpty => {
            hvprintln!("nvpool: the NVRAM held no pool: formatted a new one");
        }
        Opened::FormattedOnRequest => {
            hvprintln!("nvpool: formatted a new pool, erasing the NVRAM (nvpool=format)");
        }
        Opened::Recovered(r) => {
            hvprintln!(
                "nvpool: recovered: domains={} crashed={} records={} checkpoint={} reclaimed={} superblock_repairs={}",
                stats.domains,
                r.crashed,
                r.records,
                stats.checkpoint_generation,
                r.scrubbed_frames,
                r.superblock_repairs.iter().filter(|&&b| b).count()
            );
            for d in pool.domains() {
                hvprintln!(
                    "nvpool:   domain {} {:?} (id {:#034x}): {}, {} in {} extents, quota {}",
                    d.dom.slot(),
                    d.name,
                    d.id.get(),
                    d.state,
                    Size(d.frames * PAGE),
                    d.extents,
                    Size(d.quota.saturating_mul(PAGE))
                );
            }
            if r.scrubbed_frames > 0 {
                hvprintln!(
                    "nvpool:   {} frames whose free a crash interrupted were scrubbed again and returned to the pool",
                    r.scrubbed_frames
                );
            }
        }
    }
    hvprintln!(
        "nvpool: {} data frames, {} free, {} owned; metadata {}",
        stats.data_frames,
        stats.free_frames,
        stats.owned_frames,
        Size(stats.metadata_bytes)
    );
}

/// Finds the configured guest's domain by its id, or creates it with its
/// NVRAM region; `None` if the guest has no NVRAM.
pub(crate) fn attach_guest<const N: usize>(
    pool: &mut Pool,
    id: u128,
    name: &str,
    layout: &GuestMap<N>,
    thin: bool,
) -> Result<Option<Dom>, BootFailure> {
    let Some(gpa) = layout.nvram.clone() else {
        return Ok(None);
    };
    let guest = GuestNvram {
        id: DomainUuid::new(id),
        name,
        gfns: guest_frames(&gpa),
    };
    let attached = if thin {
        nv_boot::attach_thin(pool, &guest)
    } else {
        nv_boot::attach(pool, &guest)
    };
    match attached {
        Ok((dom, Attached::Created { extents })) => {
            hvprintln!(
                "nvpool: new domain {name:?} (id {id:#034x}): {} of NVRAM at guest {} in {extents} extents",
                Size(gpa.end - gpa.start),
                HexRange(gpa)
            );
            Ok(Some(dom))
        }
        Ok((
            dom,
            Attached::Found {
                state,
                frames,
                extents,
            },
        )) => {
            hvprintln!(
                "nvpool: domain {name:?} (id {id:#034x}) found, {state}: {} in {extents} extents, re-attached at the same guest frames",
                Size(frames * PAGE)
            );
            Ok(Some(dom))
        }
        Err(e) => Err(BootFailure::Attach(e)),
    }
}

/// The guest frames of the guest's NVRAM range (page aligned by the guest
/// layout); none if it lies beyond the guest-physical space.
fn guest_frames(gpa: &core::ops::Range<u64>) -> GfnRange {
    GuestPhysRange::from_numbers(gpa.start, gpa.end).map_or(GfnRange::EMPTY, |r| r.frames_within())
}
