//! The pool's geometry, computed by `const fn` from the region size and a
//! [`Config`]: where the metadata ends and the data frames begin, and how
//! much volatile memory (the work area) the pool needs.
//!
//! The region, in address order:
//!
//! | offset | what |
//! |---|---|
//! | `0x0000` | pool superblock 0: magic, version, geometry, CRC (written once, at format) |
//! | `0x0800` | the scrub word: the log sequence number up to which frees are scrubbed |
//! | `0x1000` | pool superblock 1, an identical copy |
//! | `0x2000` | the log (persist-meta): its two superblocks, two checkpoint slots, the record area |
//! | `meta_len` | data frames, up to the region's last whole 4 KiB |
//!
//! A checkpoint slot holds the largest snapshot the limits allow (a 64-byte
//! header, [`DOMAIN_RECORD`] bytes per domain, [`EXTENT_ENTRY`] bytes per
//! extent), so a checkpoint never fails for room.

use core::fmt;

use nvirt_addr::{Mfn, MfnRange, Order, PAGE_SIZE};
use nvirt_buddy::metadata_bytes as heap_bytes;

use crate::work::{DOMAIN_SLOT_BYTES, NODE_BYTES};

/// Offsets of the two pool superblock copies.
pub const POOL_SUPERBLOCKS: [u64; 2] = [0, 0x1000];
/// Offset of the scrub word (its own cache line; see `scrub.rs`).
pub const SCRUB_WORD: u64 = 0x800;
/// Offset of the log inside the region.
pub const LOG_OFFSET: u64 = 0x2000;
/// Bytes the log keeps before its checkpoint slots (its superblocks).
const LOG_HEADER: u64 = 0x2000;
/// Bytes of a checkpoint slot's header (persist-meta's).
const SLOT_HEADER: u64 = 64;
/// Bytes of the snapshot header.
pub const SNAPSHOT_HEADER: u64 = 64;
/// Bytes of a domain in a snapshot.
pub const DOMAIN_RECORD: u64 = 80;
/// Bytes of an extent in a snapshot or record.
pub const EXTENT_ENTRY: u64 = 16;
/// The smallest record area: room for a full record and an epoch record.
pub const MIN_RECORD_AREA: u64 = 0x2000;
/// The most domains a pool can have (slot numbers are 16 bits, one value
/// reserved).
pub const MAX_DOMAINS: u32 = 0xfffe;
/// The most extents a pool can track.
pub const MAX_EXTENTS: u32 = 1 << 30;

const PAGE: u64 = 4096;

const fn round_up(value: u64, to: u64) -> Option<u64> {
    match value.checked_add(to - 1) {
        Some(v) => Some(v / to * to),
        None => None,
    }
}

const fn clamp(v: u64, lo: u64, hi: u64) -> u64 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// How a pool is laid out: limits and options chosen at format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    frame_base: u64,
    max_domains: u32,
    max_extents: u32,
    record_area: u64,
    zero_data: bool,
}

impl Config {
    /// The defaults for a region of `region_bytes`: frame base 0; one
    /// domain per 1 MiB of region (16 to 4096); one extent per 16 frames
    /// (at least 64); a record area half a checkpoint slot (at least
    /// 64 KiB); data frames zeroed at format.
    #[must_use]
    pub const fn for_region(region_bytes: u64) -> Self {
        let frames = region_bytes / PAGE_SIZE;
        let max_domains = clamp(frames / 256, 16, 4096) as u32;
        let max_extents = clamp(frames / 16, 64, MAX_EXTENTS as u64) as u32;
        let capacity = snapshot_capacity(max_domains, max_extents);
        let record_area = match round_up(capacity / 2, PAGE) {
            Some(r) if r > 0x1_0000 => r,
            _ => 0x1_0000,
        };
        Self {
            frame_base: 0,
            max_domains,
            max_extents,
            record_area,
            zero_data: true,
        }
    }

    /// Numbers the region's frames from `mfn`: the region's first 4 KiB is
    /// machine frame `mfn`. A hypervisor passes the frame of the region's
    /// host-physical address, so that the pool's alignment is the host's.
    #[must_use]
    pub const fn with_frame_base(mut self, mfn: Mfn) -> Self {
        self.frame_base = mfn.get();
        self
    }

    /// At most `n` domains.
    #[must_use]
    pub const fn with_max_domains(mut self, n: u32) -> Self {
        self.max_domains = n;
        self
    }

    /// At most `n` extents in all domains together.
    #[must_use]
    pub const fn with_max_extents(mut self, n: u32) -> Self {
        self.max_extents = n;
        self
    }

    /// A record area of `bytes` (rounded up to 4 KiB): more means fewer
    /// checkpoints, less means faster recovery.
    #[must_use]
    pub const fn with_record_area(mut self, bytes: u64) -> Self {
        self.record_area = bytes;
        self
    }

    /// Skip zeroing the data frames at format: only for regions known to
    /// be zero (a fresh file, a new device), or for measurements on a
    /// region whose data frames are not backed.
    #[must_use]
    pub const fn assume_zeroed(mut self) -> Self {
        self.zero_data = false;
        self
    }

    /// Whether format zeroes the data frames.
    #[must_use]
    pub const fn zeroes_data(&self) -> bool {
        self.zero_data
    }

    /// The geometry of a pool with this configuration in a region of
    /// `region_bytes`.
    pub const fn geometry(&self, region_bytes: u64) -> Result<Geometry, ConfigError> {
        Geometry::compute(
            region_bytes,
            self.frame_base,
            self.max_domains,
            self.max_extents,
            self.record_area,
        )
    }
}

/// The largest snapshot of a pool with these limits.
const fn snapshot_capacity(max_domains: u32, max_extents: u32) -> u64 {
    SNAPSHOT_HEADER + max_domains as u64 * DOMAIN_RECORD + max_extents as u64 * EXTENT_ENTRY
}

/// Bytes of metadata at the start of a region of `region_bytes` with the
/// default [`Config`]; 0 if the region cannot hold a pool.
#[must_use]
pub const fn metadata_bytes(region_bytes: u64) -> u64 {
    match Config::for_region(region_bytes).geometry(region_bytes) {
        Ok(g) => g.meta_len,
        Err(_) => 0,
    }
}

/// Bytes of work area a pool in a region of `region_bytes` with the default
/// [`Config`] needs; 0 if the region cannot hold a pool.
#[must_use]
pub const fn work_area_bytes(region_bytes: u64) -> usize {
    match Config::for_region(region_bytes).geometry(region_bytes) {
        Ok(g) => g.work_area_bytes(),
        Err(_) => 0,
    }
}

/// Where everything of a pool lives, and its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub(crate) region_len: u64,
    pub(crate) frame_base: u64,
    pub(crate) max_domains: u32,
    pub(crate) max_extents: u32,
    pub(crate) record_area: u64,
    pub(crate) checkpoint_capacity: u64,
    pub(crate) log_len: u64,
    pub(crate) meta_len: u64,
}

impl Geometry {
    /// Computes and checks a geometry.
    pub(crate) const fn compute(
        region_len: u64,
        frame_base: u64,
        max_domains: u32,
        max_extents: u32,
        record_area: u64,
    ) -> Result<Self, ConfigError> {
        if max_domains == 0 || max_domains > MAX_DOMAINS {
            return Err(ConfigError::Domains { n: max_domains });
        }
        if max_extents == 0 || max_extents > MAX_EXTENTS {
            return Err(ConfigError::Extents { n: max_extents });
        }
        let record_area = match round_up(record_area, PAGE) {
            Some(r) if r >= MIN_RECORD_AREA && r <= 1 << 40 => r,
            _ => return Err(ConfigError::RecordArea { bytes: record_area }),
        };
        let checkpoint_capacity = snapshot_capacity(max_domains, max_extents);
        let slot_len = match round_up(checkpoint_capacity + SLOT_HEADER, PAGE) {
            Some(s) => s,
            None => return Err(ConfigError::Extents { n: max_extents }),
        };
        let log_len = LOG_HEADER + 2 * slot_len + record_area;
        let meta_len = LOG_OFFSET + log_len;
        let needed = meta_len + PAGE_SIZE;
        if region_len < needed {
            return Err(ConfigError::RegionTooSmall {
                size: region_len,
                needed,
            });
        }
        let frames = region_len / PAGE_SIZE;
        match frame_base.checked_add(frames) {
            Some(end) if end < Mfn::LIMIT => {}
            _ => return Err(ConfigError::FrameBase { frame_base, frames }),
        }
        Ok(Self {
            region_len,
            frame_base,
            max_domains,
            max_extents,
            record_area,
            checkpoint_capacity,
            log_len,
            meta_len,
        })
    }

    /// Bytes of the region the pool covers (its whole frames are used).
    #[must_use]
    pub const fn region_len(&self) -> u64 {
        self.region_len
    }

    /// The machine frame of the region's first byte.
    #[must_use]
    pub const fn frame_base(&self) -> Mfn {
        match Mfn::new(self.frame_base) {
            Some(mfn) => mfn,
            // `Config::geometry` checked the base and the region's end.
            None => Mfn::MAX,
        }
    }

    /// The most domains.
    #[must_use]
    pub const fn max_domains(&self) -> u32 {
        self.max_domains
    }

    /// The most extents, in all domains together.
    #[must_use]
    pub const fn max_extents(&self) -> u32 {
        self.max_extents
    }

    /// Bytes of the log's record area.
    #[must_use]
    pub const fn record_area(&self) -> u64 {
        self.record_area
    }

    /// The largest snapshot a checkpoint holds.
    #[must_use]
    pub const fn checkpoint_capacity(&self) -> u64 {
        self.checkpoint_capacity
    }

    /// Bytes of the log (from [`LOG_OFFSET`]).
    #[must_use]
    pub const fn log_len(&self) -> u64 {
        self.log_len
    }

    /// Bytes of metadata at the start of the region; the data frames
    /// follow.
    #[must_use]
    pub const fn metadata_bytes(&self) -> u64 {
        self.meta_len
    }

    /// Frames of the region (its whole 4 KiB pages).
    #[must_use]
    pub const fn region_frames(&self) -> u64 {
        self.region_len / PAGE_SIZE
    }

    /// Data frames: the frames domains get.
    #[must_use]
    pub const fn data_frames(&self) -> u64 {
        self.region_frames() - self.meta_len / PAGE_SIZE
    }

    /// The data frames as buddy frame numbers.
    #[must_use]
    pub const fn data_span(&self) -> MfnRange {
        let start = self.frame_base + self.meta_len / PAGE_SIZE;
        match MfnRange::from_numbers(start, self.frame_base + self.region_frames()) {
            Some(r) => r,
            None => EMPTY_RANGE,
        }
    }

    /// Slots of the domain-id hash of the work area: a power of two at
    /// least twice the extents.
    pub(crate) const fn hash_slots(&self) -> usize {
        let n = (self.max_extents as u64 * 2).next_power_of_two();
        n as usize
    }

    /// Bytes of volatile work area the pool needs: the domain table, the
    /// extent nodes, the machine-frame index and the buddy heap's bitmaps
    /// (plus 8 bytes of alignment slack).
    #[must_use]
    pub const fn work_area_bytes(&self) -> usize {
        let domains = self.max_domains as usize * DOMAIN_SLOT_BYTES;
        let nodes = self.max_extents as usize * NODE_BYTES;
        let hash = (self.hash_slots() * 4).next_multiple_of(8);
        8 + domains + nodes + hash + heap_bytes(self.data_span(), Order::MAX)
    }
}

/// The empty range at frame 0 (`MfnRange::default` is not `const`);
/// evaluated at compile time.
const EMPTY_RANGE: MfnRange = match MfnRange::from_numbers(0, 0) {
    Some(r) => r,
    None => panic!("frame 0 is a frame number"),
};

/// A configuration that cannot be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The domain limit is 0 or above [`MAX_DOMAINS`].
    Domains {
        /// The limit given.
        n: u32,
    },
    /// The extent limit is 0 or above [`MAX_EXTENTS`].
    Extents {
        /// The limit given.
        n: u32,
    },
    /// The record area is below [`MIN_RECORD_AREA`] or absurdly large.
    RecordArea {
        /// The size given.
        bytes: u64,
    },
    /// The region cannot hold the metadata and one data frame.
    RegionTooSmall {
        /// Bytes of the region.
        size: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// The region's frames would run past the largest frame number.
    FrameBase {
        /// The frame base given.
        frame_base: u64,
        /// Frames of the region.
        frames: u64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Domains { n } => {
                write!(f, "domain limit {n} is not in 1..={MAX_DOMAINS}")
            }
            Self::Extents { n } => {
                write!(f, "extent limit {n} is not in 1..={MAX_EXTENTS}")
            }
            Self::RecordArea { bytes } => write!(
                f,
                "record area of {bytes:#x} bytes is not between {MIN_RECORD_AREA:#x} and 1 TiB"
            ),
            Self::RegionTooSmall { size, needed } => write!(
                f,
                "region of {size:#x} bytes is too small: the metadata and one data frame need {needed:#x}"
            ),
            Self::FrameBase { frame_base, frames } => write!(
                f,
                "frame base {frame_base:#x} plus {frames:#x} frames passes the largest frame number"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_scale_with_the_region() {
        let g = Config::for_region(64 << 30).geometry(64 << 30).unwrap();
        assert_eq!(g.max_domains(), 4096);
        assert_eq!(g.max_extents(), 1 << 20);
        assert_eq!(g.metadata_bytes() % 4096, 0);
        // Under 0.1 % of the region.
        assert!(g.metadata_bytes() * 1000 < 64 << 30, "{g:?}");
        assert_eq!(metadata_bytes(64 << 30), g.metadata_bytes());
        let small = Config::for_region(1 << 20).geometry(1 << 20).unwrap();
        assert_eq!(small.max_domains(), 16);
        assert_eq!(small.max_extents(), 64);
        assert!(small.data_frames() > 0);
        assert_eq!(small.data_span().len() + small.metadata_bytes() / 4096, 256);
    }

    #[test]
    fn impossible_configs_are_errors() {
        let c = Config::for_region(1 << 20);
        assert!(matches!(
            c.geometry(0x10000),
            Err(ConfigError::RegionTooSmall { .. })
        ));
        assert_eq!(
            c.with_max_domains(0).geometry(1 << 20),
            Err(ConfigError::Domains { n: 0 })
        );
        assert_eq!(
            c.with_max_extents(MAX_EXTENTS + 1).geometry(1 << 20),
            Err(ConfigError::Extents { n: MAX_EXTENTS + 1 })
        );
        assert!(matches!(
            c.with_record_area(100).geometry(1 << 20),
            Err(ConfigError::RecordArea { .. })
        ));
        assert!(matches!(
            c.with_frame_base(Mfn::new(Mfn::LIMIT - 10).unwrap())
                .geometry(1 << 20),
            Err(ConfigError::FrameBase { .. })
        ));
        assert_eq!(work_area_bytes(100), 0);
        assert_eq!(metadata_bytes(100), 0);
    }
}
