//! Making a region a pool.

use core::fmt;

use nvirt_addr::PAGE_SIZE;
use nvirt_persist_meta::{Log, Pmem, PmemError};

use crate::bad::{BadFrames, BadRange, BadRangeError};
use crate::config::{Config, ConfigError, Geometry, LOG_OFFSET, SCRUB_WORD};
use crate::pool::NvPool;
use crate::state::State;
use crate::superblock;
use crate::window::Window;
use crate::work::{WorkAreaError, carve};

/// Zeros for clearing.
static ZEROS: [u8; 16384] = [0; 16384];

/// Formatting failed; the region holds no pool (a pool it held before is
/// gone once format has started writing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The configuration does not fit the region.
    Config(ConfigError),
    /// The work area is too small.
    WorkArea(WorkAreaError),
    /// The log could not be formatted.
    Log(nvirt_persist_meta::FormatError),
    /// The log's layout is not the one the geometry computed (a bug).
    LogGeometry {
        /// The record area the geometry computed.
        expected: u64,
        /// The record area the log made.
        found: u64,
    },
    /// The region refused a store.
    Pmem(PmemError),
    /// The known-bad ranges cannot be taken (nothing was written).
    BadRange(BadRangeError),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Config(e) => e.fmt(f),
            Self::WorkArea(e) => e.fmt(f),
            Self::Log(e) => write!(f, "formatting the log: {e}"),
            Self::LogGeometry { expected, found } => write!(
                f,
                "the log's record area is {found:#x} bytes, the geometry says {expected:#x}"
            ),
            Self::Pmem(e) => write!(f, "region refused a store: {e}"),
            Self::BadRange(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for FormatError {}

impl From<PmemError> for FormatError {
    fn from(e: PmemError) -> Self {
        Self::Pmem(e)
    }
}

/// Stores zeros over `offset .. offset + len` and writes them back.
pub(crate) fn clear<P: Pmem>(region: &mut P, offset: u64, len: u64) -> Result<(), PmemError> {
    let mut at = offset;
    let end = offset.saturating_add(len);
    while at < end {
        let n = (end - at).min(ZEROS.len() as u64);
        region.store(at, &ZEROS[..n as usize])?;
        at += n;
    }
    region.write_back(offset, len)
}

impl<'w, P: Pmem> NvPool<'w, P> {
    /// Makes `region` an empty pool laid out by `config`, keeping its
    /// volatile tables in `work` (at least
    /// [`Geometry::work_area_bytes`] bytes). Destroys whatever the region
    /// held: the data frames are zeroed unless the configuration
    /// [assumes they are](Config::assume_zeroed).
    ///
    /// A crash during format leaves a region that
    /// [`recover`](Self::recover) rejects as not a pool, or the empty pool.
    pub fn format(region: P, config: Config, work: &'w mut [u8]) -> Result<Self, FormatError> {
        Self::format_with_bad_ranges(region, config, work, &[])
    }

    /// [`format`](Self::format), avoiding the known-bad byte ranges `bad`
    /// of the region (in any order, overlapping or not): their frames are
    /// never zeroed nor handed out. A range on the metadata, past the
    /// region, or empty is refused before anything is written; more than
    /// [`MAX_BAD_RANGES`](crate::MAX_BAD_RANGES) separate runs of frames
    /// too.
    pub fn format_with_bad_ranges(
        mut region: P,
        config: Config,
        work: &'w mut [u8],
        bad: &[BadRange],
    ) -> Result<Self, FormatError> {
        let geo = config
            .geometry(region.size())
            .map_err(FormatError::Config)?;
        let bad = BadFrames::new(&geo, region.size(), bad).map_err(FormatError::BadRange)?;
        let tables = carve(work, &geo).map_err(FormatError::WorkArea)?;
        // No superblock first, so that an interrupted format is no pool.
        superblock::SUPERBLOCKS.erase(&mut region)?;
        clear(&mut region, SCRUB_WORD, 8)?;
        region.fence();
        if config.zeroes_data() {
            let mut result = Ok(());
            bad.good_parts(geo.data_span(), |good| {
                if result.is_ok() {
                    let offset = (good.start().get() - geo.frame_base) * PAGE_SIZE;
                    result = clear(&mut region, offset, good.len() * PAGE_SIZE);
                }
            });
            result?;
        }
        let window = Window::new(region, LOG_OFFSET, geo.log_len).map_err(|r| {
            FormatError::Pmem(PmemError::OutOfBounds {
                offset: LOG_OFFSET,
                len: geo.log_len,
                size: r.size(),
            })
        })?;
        // The log's first fence also makes the zeroed data durable.
        let mut log = Log::format(window, geo.checkpoint_capacity).map_err(FormatError::Log)?;
        check_log(&geo, &log)?;
        superblock::SUPERBLOCKS.format(log.pmem_mut().region_mut(), &geo)?;
        let mut state = State::new(geo, tables).map_err(FormatError::WorkArea)?;
        state.set_bad(bad);
        Ok(Self {
            log,
            state,
            poisoned: false,
        })
    }
}

/// Checks that the log's layout is the geometry's.
pub(crate) fn check_log<P: Pmem>(geo: &Geometry, log: &Log<P>) -> Result<(), FormatError> {
    let layout = log.layout();
    if layout.record_len() != geo.record_area
        || layout.checkpoint_capacity() < geo.checkpoint_capacity
    {
        return Err(FormatError::LogGeometry {
            expected: geo.record_area,
            found: layout.record_len(),
        });
    }
    Ok(())
}
