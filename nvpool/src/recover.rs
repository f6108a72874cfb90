//! Recovery: the pool superblock, then the log (snapshot and records,
//! replayed into a fresh state), then the frees the crash interrupted.
//!
//! Recovery writes only what makes the region ready: a damaged superblock
//! copy is rewritten from the other, the log repairs itself and starts a
//! new epoch, and frames whose free was committed but whose scrub may not
//! have finished are scrubbed again and made durable. A crash during any of
//! that recovers to the same state.

use core::fmt;

use nvirt_persist_meta::{ImageError, Log, Pmem, PmemError, Recovery, Repairs};

use crate::bad::{BadFrames, BadRange, BadRangeError};
use crate::config::{Geometry, LOG_OFFSET, POOL_SUPERBLOCKS};
use crate::damage::{Damage, DamageError, Location};
use crate::error::CommitError;
use crate::format::check_log;
use crate::pool::NvPool;
use crate::replay::Rebuild;
use crate::scrub;
use crate::state::State;
use crate::superblock::{self, POOL_VERSION, PoolFaultText, SuperblockFault};
use crate::window::Window;
use crate::work::{WorkAreaError, carve};
use nvirt_persist_meta::superblock::{ChooseError, Fault};

/// What recovery found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The log's own report: checkpoint, records, where replay stopped.
    pub log: Recovery,
    /// What the log rewrote to be ready for appends.
    pub log_repairs: Repairs,
    /// Pool superblock copies rewritten from the other copy.
    pub superblock_repairs: [bool; 2],
    /// Pool records replayed after the checkpoint.
    pub records: u64,
    /// Domains that were marked running when the pool stopped.
    pub crashed: u32,
    /// Frames of interrupted frees (a decrease or destroy whose scrub may
    /// not have finished) scrubbed again and returned to the pool.
    pub scrubbed_frames: u64,
}

/// Recovery failed: the image is not a pool, or is damaged (the error
/// names what and where).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverError {
    /// Neither superblock copy has the pool's magic: the region was never
    /// formatted as a pool, or its format did not finish.
    NotAPool,
    /// Neither superblock copy is valid.
    Superblocks {
        /// Why copy 0 was rejected.
        first: SuperblockFault,
        /// Why copy 1 was rejected.
        second: SuperblockFault,
    },
    /// A superblock copy is intact but of a version this code does not
    /// read (a newer pool): nothing is repaired from the other copy.
    UnknownVersion {
        /// Which copy (0 or 1).
        copy: usize,
        /// The version it holds.
        found: u32,
    },
    /// Both copies are valid but describe different pools.
    SuperblocksDisagree,
    /// The region is smaller than the pool it holds (a truncated image).
    Truncated {
        /// Bytes the pool covers.
        region_len: u64,
        /// Bytes the region has.
        size: u64,
    },
    /// The work area is too small for this pool (see
    /// [`NvPool::probe`]).
    WorkArea(WorkAreaError),
    /// The log is not readable.
    Log(ImageError),
    /// The log's layout is not the one the pool superblock describes.
    LogGeometry {
        /// The record area the superblock describes.
        expected: u64,
        /// The record area the log has.
        found: u64,
    },
    /// The log is readable but what it says cannot be.
    Damaged(DamageError),
    /// The region refused an access.
    Pmem(PmemError),
    /// Finishing an interrupted free failed.
    Commit(CommitError),
    /// The known-bad ranges cannot be taken, or lie on the metadata
    /// (nothing was written).
    BadRange(BadRangeError),
}

impl fmt::Display for RecoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotAPool => f.write_str(
                "no pool superblock: the region was never formatted as a pool (or its format did not finish)",
            ),
            Self::UnknownVersion { copy, found } => write!(
                f,
                "pool superblock copy {copy} is of version {found}, which this build does not \
                 read (supported: {POOL_VERSION}); nothing was changed"
            ),
            Self::Superblocks { first, second } => write!(
                f,
                "both pool superblocks are damaged: copy 0 at {:#x}: {}; copy 1 at {:#x}: {}",
                POOL_SUPERBLOCKS[0],
                PoolFaultText(&first),
                POOL_SUPERBLOCKS[1],
                PoolFaultText(&second)
            ),
            Self::SuperblocksDisagree => {
                f.write_str("the two pool superblocks are intact but describe different pools")
            }
            Self::Truncated { region_len, size } => write!(
                f,
                "the pool covers {region_len:#x} bytes but the region has only {size:#x} (truncated image?)"
            ),
            Self::WorkArea(e) => e.fmt(f),
            Self::Log(e) => write!(f, "log at {LOG_OFFSET:#x} (offsets relative to it): {e}"),
            Self::LogGeometry { expected, found } => write!(
                f,
                "the log's record area is {found:#x} bytes, the pool superblock says {expected:#x}"
            ),
            Self::Damaged(e) => write!(f, "damaged: {e}"),
            Self::Pmem(e) => write!(f, "region refused an access: {e}"),
            Self::Commit(e) => write!(f, "finishing interrupted frees: {e}"),
            Self::BadRange(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for RecoverError {}

impl From<PmemError> for RecoverError {
    fn from(e: PmemError) -> Self {
        Self::Pmem(e)
    }
}

/// The geometry of the pool in `region` and which superblock copy needs
/// rewriting.
pub(crate) fn read_geometry<P: Pmem + ?Sized>(
    region: &P,
) -> Result<(Geometry, [bool; 2]), RecoverError> {
    // A copy of a version this code does not know is not damage to repair
    // from the other copy: it may be a newer pool. Refuse, as the log does.
    let chosen = superblock::read(region)?.choose().map_err(|e| match e {
        ChooseError::UnsupportedVersion { copy, found } => {
            RecoverError::UnknownVersion { copy, found }
        }
        ChooseError::Disagree => RecoverError::SuperblocksDisagree,
        ChooseError::NoValidCopy {
            first: Fault::Magic { .. },
            second: Fault::Magic { .. },
        } => RecoverError::NotAPool,
        ChooseError::NoValidCopy { first, second } => RecoverError::Superblocks { first, second },
    })?;
    let geo = (chosen.body, chosen.repair);
    if geo.0.region_len > region.size() {
        return Err(RecoverError::Truncated {
            region_len: geo.0.region_len,
            size: region.size(),
        });
    }
    Ok(geo)
}

impl<'w, P: Pmem> NvPool<'w, P> {
    /// The geometry of the pool in `region`, read from its superblock
    /// without changing anything: how large a work area
    /// ([`Geometry::work_area_bytes`]) recovering it needs.
    pub fn probe(region: &P) -> Result<Geometry, RecoverError> {
        read_geometry(region).map(|(geo, _)| geo)
    }

    /// Recovers the pool in `region` after a crash, a power failure or a
    /// clean stop, keeping its volatile tables in `work`: the buddy heap
    /// (every owned extent claimed), every domain with its extents, and
    /// which domains were running. Frees the crash interrupted are scrubbed
    /// again before their frames return to the pool.
    ///
    /// Never formats, and never returns a pool smaller than the image: an
    /// image that is not a pool or is damaged is an error naming what is
    /// wrong and where.
    pub fn recover(region: P, work: &'w mut [u8]) -> Result<(Self, RecoveryReport), RecoverError> {
        Self::recover_with_bad_ranges(region, work, &[])
    }

    /// [`recover`](Self::recover), given the region's known-bad byte
    /// ranges `bad` (in any order, overlapping or not), as the platform
    /// reports them at this boot: their free frames are kept out of the
    /// pool without being written, frames a domain owns there stay its
    /// own (see [`bad_range_owners`](Self::bad_range_owners)) and are kept
    /// out once freed, and nothing in them is scrubbed. A range on the
    /// metadata is damage: refused, naming the range and what lies there,
    /// before anything is written; so is a range past the region or empty.
    /// [`bad_frames_kept_out`](Self::bad_frames_kept_out) and
    /// [`bad_frames_owned`](Self::bad_frames_owned) give the counts.
    pub fn recover_with_bad_ranges(
        region: P,
        work: &'w mut [u8],
        bad: &[BadRange],
    ) -> Result<(Self, RecoveryReport), RecoverError> {
        let (geo, bad_copies) = read_geometry(&region)?;
        let bad = BadFrames::new(&geo, region.size(), bad).map_err(RecoverError::BadRange)?;
        let tables = carve(work, &geo).map_err(RecoverError::WorkArea)?;
        let mut state = State::new(geo, tables).map_err(RecoverError::WorkArea)?;
        let window =
            Window::new(region, LOG_OFFSET, geo.log_len).map_err(|r| RecoverError::Truncated {
                region_len: geo.region_len,
                size: r.size(),
            })?;
        let mut rebuild = Rebuild::new(&mut state);
        let (log, recovery, log_repairs) =
            Log::open(window, &mut rebuild).map_err(|e| match e {
                nvirt_persist_meta::RecoverError::Image(e) => RecoverError::Log(e),
                nvirt_persist_meta::RecoverError::Replay(d) => RecoverError::Damaged(d),
            })?;
        let (records, last_free_seq) = (rebuild.records, rebuild.last_free_seq);
        check_log(&geo, &log).map_err(|_| RecoverError::LogGeometry {
            expected: geo.record_area,
            found: log.layout().record_len(),
        })?;
        let mut pool = Self {
            log,
            state,
            poisoned: false,
        };
        pool.state.set_bad(bad);
        // Durable before it is reported, whichever way recovery goes on.
        superblock::SUPERBLOCKS.repair(pool.log.pmem_mut().region_mut(), &geo, bad_copies)?;
        let mut pending_frames = 0;
        pool.state
            .for_each_pending(|_, order| pending_frames += 1u64 << order);
        let mut scrubbed_frames = 0;
        let pending = pending_frames > 0 || pool.state.destroying > 0;
        if pending && scrub::done(pool.region(), last_free_seq)? {
            // The last free's scrub finished before the stop.
            pool.state.complete_pending();
        } else if pending {
            // The scrub word the scrub writes needs a fence of its own.
            pool.scrub_pending().map_err(RecoverError::Commit)?;
            pool.log.pmem_mut().region_mut().fence();
            scrubbed_frames = pending_frames;
        }
        pool.state.check_counts().map_err(|e| {
            RecoverError::Damaged(DamageError {
                at: Location::State,
                what: Damage::Invariant(e),
            })
        })?;
        let crashed = pool.crashed().count() as u32;
        let report = RecoveryReport {
            log: recovery,
            log_repairs,
            superblock_repairs: bad_copies,
            records,
            crashed,
            scrubbed_frames,
        };
        Ok((pool, report))
    }
}
