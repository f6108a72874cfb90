//! The NV pool at boot: recover the pool the NVRAM region holds (or format
//! it when it holds none, or when told to), then find each configured
//! guest's domain by its stable id, or create it with its NVRAM.
//!
//! A region that holds a damaged pool is never formatted over unless the
//! operator asks (`nvpool=format`): the error names what is damaged and
//! the hypervisor stops. A pool whose frame base is not the region's host
//! frame number (the NVDIMM moved) is refused the same way, since its
//! machine frame numbers would not be host frame numbers.
//!
//! What a guest gets at boot (see `README.md`, "NVRAM across crashes"): a
//! domain found keeps every extent at its guest frames (the caller maps
//! them again), and guest frames of its NVRAM region it had given back are
//! backed again with fresh, zeroed frames, so the guest's memory map —
//! one NVRAM entry for the whole region — is true at every boot. A new
//! domain gets the whole region, largest blocks first.

use core::fmt;
use nvirt_addr::GfnRange;

use nvirt_nvpool::{
    Config, ConfigError, CreateError, Dom, DomainError, DomainState, DomainUuid, FormatError, Gfn,
    Mfn, NvPool, PopulateError, RecoverError, RecoveryReport,
};
use nvirt_persist_meta::Pmem;

use crate::config::PoolMode;

/// How the pool was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// The region held a pool; this is what recovery found and did.
    Recovered(RecoveryReport),
    /// The region held no pool and was formatted.
    FormattedEmpty,
    /// The region was formatted because the operator asked
    /// (`nvpool=format`), whatever it held.
    FormattedOnRequest,
}

/// Why the pool could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The region holds a pool that cannot be recovered; it is not
    /// formatted over (recovery may have made its own crash-safe repairs).
    Damaged(RecoverError),
    /// The pool was laid out for a region at another host address.
    FrameBase {
        /// The pool's first frame number.
        pool: Mfn,
        /// The region's first host frame number.
        region: Mfn,
    },
    /// The region cannot hold a pool.
    Config(ConfigError),
    /// Formatting failed.
    Format(FormatError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Damaged(e) => write!(
                f,
                "the NVRAM holds a damaged pool, not formatted over ({e}); boot with nvpool=format to erase it"
            ),
            Self::FrameBase { pool, region } => write!(
                f,
                "the pool was made for NVRAM at host frame {pool:#x}, this region starts at {region:#x}; \
                 boot with nvpool=format to erase it"
            ),
            Self::Config(e) => write!(f, "the NVRAM region cannot hold a pool: {e}"),
            Self::Format(e) => write!(f, "formatting the pool: {e}"),
        }
    }
}

impl core::error::Error for OpenError {}

/// Most extents a pool made by the hypervisor tracks.
pub const MAX_POOL_EXTENTS: u32 = 8192;

/// The layout a new pool gets in a region of `bytes` at host frame
/// `base_pfn`: the pool's defaults, but room for one extent per frame up
/// to [`MAX_POOL_EXTENTS`] (the guest's map holds at most 4096), since a
/// balloon driver can leave a guest's NVRAM in single pages.
#[must_use]
pub fn config_for(bytes: u64, base_pfn: Mfn) -> Config {
    let config = Config::for_region(bytes).with_frame_base(base_pfn);
    let default = config.geometry(bytes).map_or(0, |g| g.max_extents());
    let frames = u32::try_from(bytes / 4096).unwrap_or(u32::MAX);
    config.with_max_extents(frames.min(MAX_POOL_EXTENTS).max(default).max(1))
}

/// Bytes of work area opening the pool in `region` needs: enough for the
/// pool it holds and for a new one.
pub fn work_area_bytes<P: Pmem>(region: &P, base_pfn: Mfn) -> Result<usize, OpenError> {
    let size = region.size();
    let fresh = config_for(size, base_pfn)
        .geometry(size)
        .map_err(OpenError::Config)?
        .work_area_bytes();
    let held = NvPool::probe(region).map_or(0, |g| g.work_area_bytes());
    Ok(fresh.max(held))
}

/// Opens the pool in `region` (host frame `base_pfn` on) as `mode` says:
/// recovers it, or formats the region if it holds no pool (without zeroing
/// its data frames under [`PoolMode::Fresh`]) or the mode is
/// [`PoolMode::Format`].
pub fn open<'w, P: Pmem>(
    region: P,
    base_pfn: Mfn,
    work: &'w mut [u8],
    mode: PoolMode,
) -> Result<(NvPool<'w, P>, Opened), OpenError> {
    let size = region.size();
    let config = match mode {
        PoolMode::Fresh => config_for(size, base_pfn).assume_zeroed(),
        PoolMode::Recover | PoolMode::Format => config_for(size, base_pfn),
    };
    let fresh = |region, work, how| {
        NvPool::format(region, config, work)
            .map(|pool| (pool, how))
            .map_err(OpenError::Format)
    };
    if mode == PoolMode::Format {
        return fresh(region, work, Opened::FormattedOnRequest);
    }
    match NvPool::probe(&region) {
        Ok(geo) if geo.frame_base() != base_pfn => Err(OpenError::FrameBase {
            pool: geo.frame_base(),
            region: base_pfn,
        }),
        Ok(_) => match NvPool::recover(region, work) {
            Ok((pool, report)) => Ok((pool, Opened::Recovered(report))),
            Err(e) => Err(OpenError::Damaged(e)),
        },
        Err(RecoverError::NotAPool) => fresh(region, work, Opened::FormattedEmpty),
        Err(e) => Err(OpenError::Damaged(e)),
    }
}

/// A configured guest's NVRAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestNvram<'a> {
    /// Its stable id.
    pub id: DomainUuid,
    /// Its name.
    pub name: &'a str,
    /// The guest frames of its NVRAM region (its quota is their count).
    pub gfns: GfnRange,
}

impl GuestNvram<'_> {
    fn frames(&self) -> u64 {
        self.gfns.len()
    }
}

/// What [`attach`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new domain, its region populated.
    Created {
        /// Extents it got.
        extents: u32,
    },
    /// The domain was in the pool.
    Found {
        /// Its state when found (before the guest is marked running).
        state: DomainState,
        /// Frames it owns.
        frames: u64,
        /// Its extents.
        extents: u64,
    },
}

/// Why a guest's domain could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// Creating it failed.
    Create(CreateError),
    /// Populating its region failed.
    Populate(PopulateError),
    /// Its quota could not be set to its region.
    Quota(DomainError),
    /// It owns NVRAM outside its configured region (the configuration
    /// changed since it was created).
    Outside {
        /// The first guest frame outside.
        gpfn: Gfn,
        /// The region.
        region: GfnRange,
    },
    /// It is being imported and is not whole.
    Incomplete,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create(e) => write!(f, "creating the domain: {e}"),
            Self::Populate(e) => write!(f, "populating the domain's NVRAM: {e}"),
            Self::Quota(e) => write!(f, "setting the domain's quota: {e}"),
            Self::Outside { gpfn, region } => write!(
                f,
                "the domain owns guest frame {gpfn:#x}, outside its configured NVRAM frames \
                 {:#x}..{:#x}: boot it with the configuration it was made with \
                 (or erase the pool with nvpool=format)",
                region.start(),
                region.end()
            ),
            Self::Incomplete => {
                f.write_str("the domain is being imported (`nvirt pool import`) and not whole")
            }
        }
    }
}

impl core::error::Error for AttachError {}

/// Finds `guest`'s domain by id, checks its extents lie in its region and
/// sets its quota to the region; or creates it and populates the whole
/// region (one commit).
pub fn attach<P: Pmem>(
    pool: &mut NvPool<'_, P>,
    guest: &GuestNvram<'_>,
) -> Result<(Dom, Attached), AttachError> {
    attach_with(pool, guest, true)
}

/// As [`attach`], but a new domain starts empty: its frames come on the
/// guest's first touch (thin provisioning).
pub fn attach_thin<P: Pmem>(
    pool: &mut NvPool<'_, P>,
    guest: &GuestNvram<'_>,
) -> Result<(Dom, Attached), AttachError> {
    attach_with(pool, guest, false)
}

fn attach_with<P: Pmem>(
    pool: &mut NvPool<'_, P>,
    guest: &GuestNvram<'_>,
    populate: bool,
) -> Result<(Dom, Attached), AttachError> {
    let region = guest.gfns;
    if let Some(dom) = pool.find(guest.id) {
        if let Some(e) = pool
            .extents(dom)
            .find(|e| !region.contains_range(e.mapping().guest()))
        {
            let g = e.gfn();
            return Err(AttachError::Outside {
                gpfn: if g < region.start() {
                    g
                } else {
                    g.max(region.end())
                },
                region,
            });
        }
        let Some(info) = pool.domain(dom) else {
            return Err(AttachError::Quota(DomainError::UnknownDomain));
        };
        let (state, frames, extents, quota) = (info.state, info.frames, info.extents, info.quota);
        if state == DomainState::Incomplete {
            return Err(AttachError::Incomplete);
        }
        if quota != guest.frames() {
            pool.set_quota(dom, guest.frames())
                .map_err(AttachError::Quota)?;
        }
        return Ok((
            dom,
            Attached::Found {
                state,
                frames,
                extents,
            },
        ));
    }
    let dom = pool
        .create(guest.id, guest.name, guest.frames())
        .map_err(AttachError::Create)?;
    if !populate {
        return Ok((dom, Attached::Created { extents: 0 }));
    }
    match pool.populate(dom, region.start(), guest.frames()) {
        Ok(done) => Ok((
            dom,
            Attached::Created {
                extents: done.extents,
            },
        )),
        Err(e) => {
            // Leave no empty domain behind for the next boot to find.
            let _ = pool.destroy(dom);
            Err(AttachError::Populate(e))
        }
    }
}

#[cfg(test)]
#[path = "nv_boot_tests.rs"]
mod tests;
