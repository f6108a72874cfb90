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

use nvirt_persist_meta::{Pmem, PmemError};

use crate::config::{ConfigError, Geometry, POOL_SUPERBLOCKS};

/// First bytes of a pool superblock.
pub const POOL_MAGIC: [u8; 8] = *b"NVPOOL01";
/// The superblock version this crate writes and reads.
pub const POOL_VERSION: u32 = 1;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Why a superblock copy was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperblockFault {
    /// No magic: this copy was never written (or was erased).
    Magic {
        /// The first 8 bytes, little-endian.
        found: u64,
    },
    /// The checksum does not match.
    Checksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// A version this crate does not read.
    Version {
        /// The version found.
        found: u32,
    },
    /// An intact copy describing an impossible geometry.
    Geometry(ConfigError),
    /// An intact copy whose stored metadata size disagrees with its
    /// geometry, or with non-zero reserved fields.
    Inconsistent,
    /// The region ends before this copy.
    Truncated,
}

impl fmt::Display for SuperblockFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Magic { found } => write!(f, "no pool magic (found {found:#018x})"),
            Self::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::Version { found } => write!(
                f,
                "unsupported version {found} (this build reads version {POOL_VERSION})"
            ),
            Self::Geometry(e) => write!(f, "impossible geometry: {e}"),
            Self::Inconsistent => f.write_str("fields disagree with each other"),
            Self::Truncated => f.write_str("the region ends before it"),
        }
    }
}

/// The line stored for `geo`.
pub(crate) fn encode(geo: &Geometry) -> [u8; 64] {
    let mut line = [0u8; 64];
    line[0..8].copy_from_slice(&POOL_MAGIC);
    line[8..12].copy_from_slice(&POOL_VERSION.to_le_bytes());
    line[16..24].copy_from_slice(&geo.region_len.to_le_bytes());
    line[24..32].copy_from_slice(&geo.frame_base.to_le_bytes());
    line[32..36].copy_from_slice(&geo.max_domains.to_le_bytes());
    line[36..40].copy_from_slice(&geo.max_extents.to_le_bytes());
    line[40..48].copy_from_slice(&geo.record_area.to_le_bytes());
    line[48..56].copy_from_slice(&geo.meta_len.to_le_bytes());
    let crc = CRC.checksum(&line[..56]);
    line[56..60].copy_from_slice(&crc.to_le_bytes());
    line
}

fn u32_at(line: &[u8; 64], at: usize) -> u32 {
    u32::from_le_bytes([line[at], line[at + 1], line[at + 2], line[at + 3]])
}

fn u64_at(line: &[u8; 64], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&line[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Stores copy `line` at region offset `at` and writes it back, the magic
/// last: stores to one cache line reach the medium in order, so a copy
/// either has no magic (never written) or is whole. A format a crash
/// interrupts thus leaves no pool, never a damaged one.
pub(crate) fn store<P: Pmem + ?Sized>(
    region: &mut P,
    at: u64,
    line: &[u8; 64],
) -> Result<(), PmemError> {
    region.store(at + 8, &line[8..])?;
    region.store_u64(at, u64::from_le_bytes(POOL_MAGIC))?;
    region.write_back(at, 64)
}

/// Decodes and checks one copy.
pub(crate) fn decode(line: &[u8; 64]) -> Result<Geometry, SuperblockFault> {
    if line[0..8] != POOL_MAGIC {
        return Err(SuperblockFault::Magic {
            found: u64_at(line, 0),
        });
    }
    let stored = u32_at(line, 56);
    let computed = CRC.checksum(&line[..56]);
    if stored != computed {
        return Err(SuperblockFault::Checksum { stored, computed });
    }
    let version = u32_at(line, 8);
    if version != POOL_VERSION {
        return Err(SuperblockFault::Version { found: version });
    }
    let geo = Geometry::compute(
        u64_at(line, 16),
        u64_at(line, 24),
        u32_at(line, 32),
        u32_at(line, 36),
        u64_at(line, 40),
    )
    .map_err(SuperblockFault::Geometry)?;
    if u32_at(line, 12) != 0
        || u32_at(line, 60) != 0
        || geo.meta_len != u64_at(line, 48)
        || geo.record_area != u64_at(line, 40)
    {
        return Err(SuperblockFault::Inconsistent);
    }
    Ok(geo)
}

/// Both copies as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Copies {
    pub(crate) copies: [Result<Geometry, SuperblockFault>; 2],
}

/// Reads both copies from `region`.
pub(crate) fn read<P: Pmem + ?Sized>(region: &P) -> Result<Copies, PmemError> {
    let mut copies = [Err(SuperblockFault::Truncated); 2];
    for (copy, &at) in copies.iter_mut().zip(POOL_SUPERBLOCKS.iter()) {
        if at + 64 > region.size() {
            continue;
        }
        let mut line = [0u8; 64];
        region.read(at, &mut line)?;
        *copy = decode(&line);
    }
    Ok(Copies { copies })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Mfn};

    #[test]
    fn copies_round_trip_and_damage_is_named() {
        let geo = Config::for_region(1 << 20)
            .with_frame_base(Mfn::new(0x12345).unwrap())
            .geometry(1 << 20)
            .unwrap();
        let line = encode(&geo);
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
        let crc = CRC.checksum(&v2[..56]);
        v2[56..60].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&v2), Err(SuperblockFault::Version { found: 2 }));
        let mut meta = line;
        meta[48] ^= 0x40;
        let crc = CRC.checksum(&meta[..56]);
        meta[56..60].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&meta), Err(SuperblockFault::Inconsistent));
    }
}
