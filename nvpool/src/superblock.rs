//! The pool superblock: the geometry, so that recovery knows where the log
//! is before reading it. Written once at format (last, so that a region
//! whose format did not finish has none), in two copies a page apart; a
//! damaged copy is rewritten from the other at recovery.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `NVPOOL01` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | zero |
//! | 16 | 8 | region length in bytes |
//! | 24 | 8 | frame base (machine frame of the region's first byte) |
//! | 32 | 4 | domain limit |
//! | 36 | 4 | extent limit |
//! | 40 | 8 | record area bytes |
//! | 48 | 8 | metadata bytes (derived from the above; a cross-check) |
//! | 56 | 4 | CRC-32C of bytes 0..56 |
//! | 60 | 4 | zero |

use core::fmt;
use core::mem::{offset_of, size_of};

use nvirt_persist_meta::superblock::{BODY_LEN, Body, Copies, DualSuperblock, Fault};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::config::{ConfigError, Geometry, POOL_SUPERBLOCKS};

/// First bytes of a pool superblock.
pub const POOL_MAGIC: [u8; 8] = *b"NVPOOL01";
/// The superblock version this crate writes and reads.
pub const POOL_VERSION: u32 = 1;

/// The pool's two superblock copies.
pub(crate) const SUPERBLOCKS: DualSuperblock = DualSuperblock::new(POOL_SUPERBLOCKS);

/// Why a superblock copy was rejected: the shared superblock code's
/// [`Fault`], with [`PoolGeometryError`] for an intact copy whose geometry
/// cannot be.
pub type SuperblockFault = Fault<PoolGeometryError>;

/// Why an intact superblock copy's geometry was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolGeometryError {
    /// A geometry no configuration makes.
    Impossible(ConfigError),
    /// The stored metadata size or record area disagrees with the rest.
    Inconsistent,
}

impl fmt::Display for PoolGeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Shown after the shared fault's "bad geometry: ".
            Self::Impossible(e) => e.fmt(f),
            Self::Inconsistent => f.write_str("fields disagree with each other"),
        }
    }
}

impl core::error::Error for PoolGeometryError {}

/// A rejected pool superblock copy in the pool's own words, as `nvirt pool
/// inspect` has printed them since the pool's first version (the shared
/// superblock code words them for the log).
pub(crate) struct PoolFaultText<'a>(pub(crate) &'a SuperblockFault);

impl fmt::Display for PoolFaultText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Fault::Magic { found } => write!(f, "no pool magic (found {found:#018x})"),
            Fault::Version { found, .. } => write!(
                f,
                "unsupported version {found} (this build reads version {POOL_VERSION})"
            ),
            Fault::Body(PoolGeometryError::Impossible(e)) => write!(f, "impossible geometry: {e}"),
            Fault::Body(PoolGeometryError::Inconsistent) | Fault::Reserved { .. } => {
                f.write_str("fields disagree with each other")
            }
            Fault::Truncated { .. } => f.write_str("the region ends before it"),
            checksum @ Fault::Checksum { .. } => checksum.fmt(f),
        }
    }
}

/// The pool's geometry as stored (bytes 16..56 of a superblock copy).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RawGeometry {
    region_len: U64,
    frame_base: U64,
    max_domains: U32,
    max_extents: U32,
    record_area: U64,
    /// Derived from the above; a cross-check.
    meta_len: U64,
}

const _: () = assert!(size_of::<RawGeometry>() == BODY_LEN);
const _: () = assert!(offset_of!(RawGeometry, frame_base) == 24 - 16);
const _: () = assert!(offset_of!(RawGeometry, max_domains) == 32 - 16);
const _: () = assert!(offset_of!(RawGeometry, max_extents) == 36 - 16);
const _: () = assert!(offset_of!(RawGeometry, record_area) == 40 - 16);
const _: () = assert!(offset_of!(RawGeometry, meta_len) == 48 - 16);

impl Body for Geometry {
    const MAGIC: [u8; 8] = POOL_MAGIC;
    const VERSION: u32 = POOL_VERSION;
    type Raw = RawGeometry;
    type Error = PoolGeometryError;

    fn to_raw(&self) -> RawGeometry {
        RawGeometry {
            region_len: self.region_len.into(),
            frame_base: self.frame_base.into(),
            max_domains: self.max_domains.into(),
            max_extents: self.max_extents.into(),
            record_area: self.record_area.into(),
            meta_len: self.meta_len.into(),
        }
    }

    /// The region's size is checked later, as
    /// [`RecoverError::Truncated`](crate::RecoverError::Truncated).
    fn from_raw(raw: &RawGeometry, _region_size: u64) -> Result<Self, PoolGeometryError> {
        let geo = Geometry::compute(
            raw.region_len.get(),
            raw.frame_base.get(),
            raw.max_domains.get(),
            raw.max_extents.get(),
            raw.record_area.get(),
        )
        .map_err(PoolGeometryError::Impossible)?;
        if geo.meta_len != raw.meta_len.get() || geo.record_area != raw.record_area.get() {
            return Err(PoolGeometryError::Inconsistent);
        }
        Ok(geo)
    }
}

/// Reads both copies from `region`.
pub(crate) fn read<P: nvirt_persist_meta::Pmem + ?Sized>(
    region: &P,
) -> Result<Copies<Geometry>, nvirt_persist_meta::PmemError> {
    SUPERBLOCKS.read(region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Mfn};
    use nvirt_persist_meta::superblock::{decode, encode};

    fn reseal(mut line: [u8; 64]) -> [u8; 64] {
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&line[..56]);
        line[56..60].copy_from_slice(&crc.to_le_bytes());
        line
    }

    #[test]
    fn copies_round_trip_and_damage_is_named() {
        let decode = |line: &[u8; 64]| decode::<Geometry>(line, 1 << 20);
        let geo = Config::for_region(1 << 20)
            .with_frame_base(Mfn::new(0x12345).unwrap())
            .geometry(1 << 20)
            .unwrap();
        let line: [u8; 64] = zerocopy::transmute!(encode(&geo));
        assert_eq!(decode(&line), Ok(geo));
        let mut bad = line;
        bad[20] ^= 1;
        assert!(matches!(
            decode(&bad),
            Err(SuperblockFault::Checksum { .. })
        ));
        let mut blank = line;
        blank[0] = 0;
        assert!(matches!(decode(&blank), Err(SuperblockFault::Magic { .. })));
        let mut v2 = line;
        v2[8] = 2;
        assert_eq!(
            decode(&reseal(v2)),
            Err(SuperblockFault::Version {
                found: 2,
                expected: POOL_VERSION
            })
        );
        let mut meta = line;
        meta[48] ^= 0x40;
        assert_eq!(
            decode(&reseal(meta)),
            Err(SuperblockFault::Body(PoolGeometryError::Inconsistent))
        );
        let mut reserved = line;
        reserved[13] = 1;
        assert_eq!(
            decode(&reseal(reserved)),
            Err(SuperblockFault::Reserved { value: 1 << 8 })
        );
    }

    #[test]
    fn the_bytes_are_those_of_version_1() {
        let geo = Config::for_region(1 << 20)
            .with_frame_base(Mfn::new(0x12345).unwrap())
            .geometry(1 << 20)
            .unwrap();
        let line: [u8; 64] = zerocopy::transmute!(encode(&geo));
        assert_eq!(&line[..8], b"NVPOOL01");
        assert_eq!(line[8..16], [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(line[16..24], geo.region_len.to_le_bytes());
        assert_eq!(line[24..32], 0x12345u64.to_le_bytes());
        assert_eq!(line[32..36], geo.max_domains.to_le_bytes());
        assert_eq!(line[36..40], geo.max_extents.to_le_bytes());
        assert_eq!(line[40..48], geo.record_area.to_le_bytes());
        assert_eq!(line[48..56], geo.meta_len.to_le_bytes());
        assert_eq!(reseal(line), line);
        assert_eq!(line[60..64], [0; 4]);
    }

    #[test]
    fn faults_keep_the_pools_wording() {
        let text = |fault: SuperblockFault| PoolFaultText(&fault).to_string();
        assert_eq!(
            text(Fault::Magic { found: 0 }),
            "no pool magic (found 0x0000000000000000)"
        );
        assert_eq!(
            text(Fault::Version {
                found: 7,
                expected: POOL_VERSION
            }),
            "unsupported version 7 (this build reads version 1)"
        );
        assert_eq!(
            text(Fault::Reserved { value: 1 }),
            "fields disagree with each other"
        );
        assert_eq!(
            text(Fault::Body(PoolGeometryError::Inconsistent)),
            "fields disagree with each other"
        );
        assert_eq!(
            text(Fault::Truncated { size: 4096 }),
            "the region ends before it"
        );
        assert!(
            text(Fault::Checksum {
                stored: 1,
                computed: 2
            })
            .starts_with("checksum mismatch")
        );
    }
}
