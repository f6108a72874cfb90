//! A dual-copy checksummed superblock, for any owner's static geometry.
//!
//! A superblock says where everything else in a region lives, so it must
//! be readable before anything else is, after any crash and despite a
//! damaged media block. This module keeps it in two identical 64-byte
//! copies (callers place them a page apart, because NVDIMMs report media
//! errors per 256 B–4 KiB block). Each copy is one cache line:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic: the owner's [`Body::MAGIC`] |
//! | 8 | 4 | version: the owner's [`Body::VERSION`], little-endian |
//! | 12 | 4 | zero |
//! | 16 | 40 | the owner's body ([`Body::Raw`]) |
//! | 56 | 4 | CRC-32C of bytes 0..56, little-endian |
//! | 60 | 4 | zero |
//!
//! Writing a copy stores bytes 8..64 first and the magic last. Stores to
//! one cache line reach the medium in program order (the x86 persistence
//! model, see [`crate::pmem`]), so a crash leaves each copy either without
//! its magic (never written) or whole; and because [`DualSuperblock::repair`]
//! rewrites only copies whose partner is valid, and fences before it
//! returns, a crash at any point of a repair keeps at least one valid copy.
//! ([`DualSuperblock::repair_unfenced`] leaves that fence to an owner that
//! shares it with writes of its own.)
//!
//! Reading ([`DualSuperblock::read`]) checks each copy on its own: magic,
//! checksum, version, the reserved fields, then the owner's own checks of
//! its body. [`Copies::choose`] then decides: an intact copy of an unknown
//! version stops everything (it may be a newer format, which must not be
//! repaired over); where both copies are valid and differ, the one with
//! the higher [`Body::sequence`] is the newest, and equal sequences with
//! different bodies are an error; a damaged copy is named so that the
//! owner can [`repair`](DualSuperblock::repair) it, explicitly.
//!
//! ```
//! use nvirt_persist_meta::MemPmem;
//! use nvirt_persist_meta::pmem::Pmem;
//! use nvirt_persist_meta::superblock::{Body, DualSuperblock, Fault};
//! use zerocopy::little_endian::U64;
//! use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
//!
//! /// An owner's geometry: where its table starts and how long it is.
//! #[derive(Clone, Copy, Debug, PartialEq, Eq)]
//! struct Geometry { table: u64, len: u64 }
//!
//! /// Its 40 bytes on media.
//! #[repr(C)]
//! #[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
//! struct RawGeometry { table: U64, len: U64, zero: [U64; 3] }
//!
//! impl Body for Geometry {
//!     const MAGIC: [u8; 8] = *b"EXAMPLE1";
//!     const VERSION: u32 = 1;
//!     type Raw = RawGeometry;
//!     type Error = &'static str;
//!     fn to_raw(&self) -> RawGeometry {
//!         RawGeometry { table: self.table.into(), len: self.len.into(), zero: [U64::ZERO; 3] }
//!     }
//!     fn from_raw(raw: &RawGeometry, region_size: u64) -> Result<Self, &'static str> {
//!         let (table, len) = (raw.table.get(), raw.len.get());
//!         match table.checked_add(len) {
//!             Some(end) if end <= region_size => Ok(Self { table, len }),
//!             _ => Err("table beyond the region"),
//!         }
//!     }
//! }
//!
//! let superblock = DualSuperblock::new([0, 0x1000]);
//! let mut region = MemPmem::new(0x4000);
//! let geometry = Geometry { table: 0x2000, len: 0x800 };
//! superblock.format(&mut region, &geometry)?;
//!
//! // A media error hits copy 0; the other copy still holds the geometry.
//! region.store(0x10, &[0xff; 8])?;
//! let copies = superblock.read::<Geometry, _>(&region)?;
//! assert!(matches!(copies.copies[0], Err(Fault::Checksum { .. })));
//! let chosen = copies.choose().expect("one copy is valid");
//! assert_eq!(chosen.body, geometry);
//! assert_eq!(chosen.repair, [true, false]);
//!
//! // Repair is explicit, and fenced before it returns.
//! superblock.repair(&mut region, &chosen.body, chosen.repair)?;
//! assert_eq!(superblock.read::<Geometry, _>(&region)?.choose().unwrap().repair, [false; 2]);
//! # Ok::<(), nvirt_persist_meta::PmemError>(())
//! ```

use core::fmt;
use core::mem::{offset_of, size_of};

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::checksum::crc32c;
use crate::pmem::{CACHE_LINE, Pmem, PmemError};

/// Bytes of one superblock copy.
pub const SUPERBLOCK_LEN: u64 = 64;
/// Bytes of the owner's body in a copy.
pub const BODY_LEN: usize = 40;
/// Bytes the checksum covers (everything before it).
const CHECKED_LEN: usize = offset_of!(Line, crc);

/// One superblock copy as stored.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Line {
    /// The owner's magic.
    pub magic: [u8; 8],
    /// The owner's format version.
    pub version: U32,
    /// Zero.
    pub reserved: U32,
    /// The owner's body.
    pub body: [u8; BODY_LEN],
    /// CRC-32C of the bytes before it.
    pub crc: U32,
    /// Zero.
    pub reserved_tail: U32,
}

const _: () = assert!(size_of::<Line>() as u64 == SUPERBLOCK_LEN);
const _: () = assert!(SUPERBLOCK_LEN == CACHE_LINE);
const _: () = assert!(offset_of!(Line, version) == 8);
const _: () = assert!(offset_of!(Line, reserved) == 12);
const _: () = assert!(offset_of!(Line, body) == 16);
const _: () = assert!(offset_of!(Line, crc) == 56);
const _: () = assert!(offset_of!(Line, reserved_tail) == 60);

/// What an owner keeps in a superblock.
pub trait Body: Sized {
    /// The first 8 bytes of every copy.
    const MAGIC: [u8; 8];
    /// The format version this code writes and reads.
    const VERSION: u32;
    /// The body as stored: exactly [`BODY_LEN`] bytes, little-endian.
    type Raw: FromBytes + IntoBytes + KnownLayout + Immutable;
    /// Why an intact copy's body was rejected.
    type Error;
    /// The body as it is stored.
    fn to_raw(&self) -> Self::Raw;
    /// Checks a body read from a region of `region_size` bytes.
    fn from_raw(raw: &Self::Raw, region_size: u64) -> Result<Self, Self::Error>;
    /// Which of two valid, different copies is newer: the higher wins. A
    /// superblock that is written once (a geometry) keeps the default, so
    /// two different copies are an error.
    fn sequence(&self) -> u64 {
        0
    }
}

/// Why one copy was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault<E> {
    /// The first 8 bytes are not the magic (shown as a little-endian
    /// integer): never written, erased, or another format.
    Magic {
        /// What was there.
        found: u64,
    },
    /// The CRC-32C does not match.
    Checksum {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// An intact copy of a version this code does not read.
    Version {
        /// The version found.
        found: u32,
        /// The version this code reads.
        expected: u32,
    },
    /// An intact copy with non-zero reserved fields (bytes 12..16 in the
    /// low half, 60..64 in the high half).
    Reserved {
        /// Their value.
        value: u64,
    },
    /// An intact copy whose body (the owner's geometry) the owner rejects.
    Body(E),
    /// The region ends before this copy.
    Truncated {
        /// Bytes in the region.
        size: u64,
    },
}

impl<E: fmt::Display> fmt::Display for Fault<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Magic { found } => write!(f, "bad magic {found:#018x}"),
            Self::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::Version { found, expected } => write!(
                f,
                "unsupported format version {found} (this build reads version {expected})"
            ),
            // The log's wording since its first version (`nvirt log
            // inspect` prints it; scripts may match it).
            Self::Reserved { value } => {
                write!(f, "bad geometry: impossible reserved field {value:#x}")
            }
            Self::Body(e) => write!(f, "bad geometry: {e}"),
            Self::Truncated { size } => {
                write!(f, "the {size:#x}-byte region ends before this copy")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for Fault<E> {}

/// The copy of `body`.
pub fn encode<B: Body>(body: &B) -> Line {
    const { assert!(size_of::<B::Raw>() == BODY_LEN) };
    let mut line = Line {
        magic: B::MAGIC,
        version: B::VERSION.into(),
        reserved: U32::ZERO,
        body: [0; BODY_LEN],
        crc: U32::ZERO,
        reserved_tail: U32::ZERO,
    };
    line.body.copy_from_slice(body.to_raw().as_bytes());
    line.crc = crc32c(&line.as_bytes()[..CHECKED_LEN]).into();
    line
}

/// Decodes and checks one copy read from a region of `region_size` bytes.
pub fn decode<B: Body>(bytes: &[u8; 64], region_size: u64) -> Result<B, Fault<B::Error>> {
    const { assert!(size_of::<B::Raw>() == BODY_LEN) };
    let line: Line = zerocopy::transmute!(*bytes);
    if line.magic != B::MAGIC {
        return Err(Fault::Magic {
            found: u64::from_le_bytes(line.magic),
        });
    }
    let stored = line.crc.get();
    let computed = crc32c(&bytes[..CHECKED_LEN]);
    if stored != computed {
        return Err(Fault::Checksum { stored, computed });
    }
    if line.version.get() != B::VERSION {
        return Err(Fault::Version {
            found: line.version.get(),
            expected: B::VERSION,
        });
    }
    let reserved = u64::from(line.reserved.get()) | u64::from(line.reserved_tail.get()) << 32;
    if reserved != 0 {
        return Err(Fault::Reserved { value: reserved });
    }
    // Cannot fail: the body's size is asserted above.
    let raw =
        B::Raw::read_from_bytes(&line.body).map_err(|_| Fault::Truncated { size: region_size })?;
    B::from_raw(&raw, region_size).map_err(Fault::Body)
}

/// Two superblock copies at fixed offsets of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DualSuperblock {
    offsets: [u64; 2],
}

/// Both copies as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copies<B: Body> {
    /// Each copy: its body, or why it was rejected.
    pub copies: [Result<B, Fault<B::Error>>; 2],
}

/// What [`Copies::choose`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chosen<B> {
    /// The newest valid body.
    pub body: B,
    /// Which copies are damaged or older and need
    /// [`repair`](DualSuperblock::repair).
    pub repair: [bool; 2],
}

/// Why no copy was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChooseError<E> {
    /// Neither copy is valid.
    NoValidCopy {
        /// Why copy 0 was rejected.
        first: Fault<E>,
        /// Why copy 1 was rejected.
        second: Fault<E>,
    },
    /// A copy is intact but of a version this code does not read (maybe a
    /// newer format): nothing may be repaired from the other copy.
    UnsupportedVersion {
        /// Which copy (0 or 1).
        copy: usize,
        /// Its version.
        found: u32,
    },
    /// Both copies are valid, of the same sequence, and different.
    Disagree,
}

impl<E: fmt::Display> fmt::Display for ChooseError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoValidCopy { first, second } => {
                write!(f, "no valid superblock: copy 0: {first}; copy 1: {second}")
            }
            Self::UnsupportedVersion { copy, found } => write!(
                f,
                "superblock copy {copy} has unsupported format version {found}"
            ),
            Self::Disagree => f.write_str("both superblocks are intact but say different things"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for ChooseError<E> {}

impl<B: Body + Clone + PartialEq> Copies<B>
where
    B::Error: Clone,
{
    /// The newest valid body and which copies to repair, or why there is
    /// none.
    pub fn choose(&self) -> Result<Chosen<B>, ChooseError<B::Error>> {
        for (copy, c) in self.copies.iter().enumerate() {
            if let Err(Fault::Version { found, .. }) = *c {
                return Err(ChooseError::UnsupportedVersion { copy, found });
            }
        }
        match &self.copies {
            [Ok(a), Ok(b)] if a == b => Ok(Chosen {
                body: a.clone(),
                repair: [false; 2],
            }),
            [Ok(a), Ok(b)] => match a.sequence().cmp(&b.sequence()) {
                core::cmp::Ordering::Greater => Ok(Chosen {
                    body: a.clone(),
                    repair: [false, true],
                }),
                core::cmp::Ordering::Less => Ok(Chosen {
                    body: b.clone(),
                    repair: [true, false],
                }),
                core::cmp::Ordering::Equal => Err(ChooseError::Disagree),
            },
            [Ok(a), Err(_)] => Ok(Chosen {
                body: a.clone(),
                repair: [false, true],
            }),
            [Err(_), Ok(b)] => Ok(Chosen {
                body: b.clone(),
                repair: [true, false],
            }),
            [Err(first), Err(second)] => Err(ChooseError::NoValidCopy {
                first: first.clone(),
                second: second.clone(),
            }),
        }
    }
}

impl DualSuperblock {
    /// Copies at `offsets` (each a multiple of 64).
    pub const fn new(offsets: [u64; 2]) -> Self {
        Self { offsets }
    }

    /// The copies' offsets.
    pub const fn offsets(&self) -> [u64; 2] {
        self.offsets
    }

    /// Reads and checks both copies. Never reads outside the region: a
    /// copy the region ends before is [`Fault::Truncated`].
    pub fn read<B: Body, P: Pmem + ?Sized>(&self, pmem: &P) -> Result<Copies<B>, PmemError> {
        let size = pmem.size();
        let read = |at: u64| -> Result<Result<B, Fault<B::Error>>, PmemError> {
            match at.checked_add(SUPERBLOCK_LEN) {
                Some(end) if end <= size => {
                    let mut line = [0; 64];
                    pmem.read(at, &mut line)?;
                    Ok(decode(&line, size))
                }
                _ => Ok(Err(Fault::Truncated { size })),
            }
        };
        Ok(Copies {
            copies: [read(self.offsets[0])?, read(self.offsets[1])?],
        })
    }

    /// Stores zeros over both copies and writes them back, unfenced: the
    /// first step of a format, so that a crash before the new copies are
    /// durable leaves no superblock naming half-written areas.
    pub fn erase<P: Pmem + ?Sized>(&self, pmem: &mut P) -> Result<(), PmemError> {
        for at in self.offsets {
            pmem.store(at, &[0; SUPERBLOCK_LEN as usize])?;
            pmem.write_back(at, SUPERBLOCK_LEN)?;
        }
        Ok(())
    }

    /// Writes both copies of `body` (each magic last) and fences: the last
    /// step of a format, after everything the body names is durable.
    pub fn format<B: Body, P: Pmem + ?Sized>(
        &self,
        pmem: &mut P,
        body: &B,
    ) -> Result<(), PmemError> {
        self.store_unfenced(pmem, body, [true; 2])?;
        pmem.fence();
        Ok(())
    }

    /// Rewrites the copies marked in `which` with `body` and fences before
    /// returning, if any was marked; returns whether it wrote. Call it only
    /// with a body [`Copies::choose`] returned and the copies it marked, so
    /// that the copy it was read from stays untouched until the other is
    /// durable.
    pub fn repair<B: Body, P: Pmem + ?Sized>(
        &self,
        pmem: &mut P,
        body: &B,
        which: [bool; 2],
    ) -> Result<bool, PmemError> {
        let wrote = self.repair_unfenced(pmem, body, which)?;
        if wrote {
            pmem.fence();
        }
        Ok(wrote)
    }

    /// [`repair`](Self::repair) without its fence, for an owner that
    /// shares one fence between the repair and writes of its own (the log
    /// does, with its epoch record): the rewritten copies are durable only
    /// after the owner's next fence, and the owner must not report the
    /// repair, nor write anything that depends on it, before then.
    pub fn repair_unfenced<B: Body, P: Pmem + ?Sized>(
        &self,
        pmem: &mut P,
        body: &B,
        which: [bool; 2],
    ) -> Result<bool, PmemError> {
        if which == [false; 2] {
            return Ok(false);
        }
        self.store_unfenced(pmem, body, which)?;
        Ok(true)
    }

    fn store_unfenced<B: Body, P: Pmem + ?Sized>(
        &self,
        pmem: &mut P,
        body: &B,
        which: [bool; 2],
    ) -> Result<(), PmemError> {
        let line = encode(body);
        let bytes = line.as_bytes();
        for (&at, _) in self.offsets.iter().zip(which).filter(|(_, w)| *w) {
            // The magic last: see the module documentation.
            pmem.store(at + 8, &bytes[8..])?;
            pmem.store_u64(at, u64::from_le_bytes(line.magic))?;
            pmem.write_back(at, SUPERBLOCK_LEN)?;
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::pmem::MemPmem;
    use zerocopy::little_endian::U64;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Versioned {
        seq: u64,
        value: u64,
    }

    #[repr(C)]
    #[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
    struct RawVersioned {
        seq: U64,
        value: U64,
        zero: [U64; 3],
    }

    impl Body for Versioned {
        const MAGIC: [u8; 8] = *b"TESTSB01";
        const VERSION: u32 = 3;
        type Raw = RawVersioned;
        type Error = u64;
        fn to_raw(&self) -> RawVersioned {
            RawVersioned {
                seq: self.seq.into(),
                value: self.value.into(),
                zero: [U64::ZERO; 3],
            }
        }
        fn from_raw(raw: &RawVersioned, _: u64) -> Result<Self, u64> {
            if raw.value.get() == u64::MAX {
                return Err(raw.value.get());
            }
            Ok(Self {
                seq: raw.seq.get(),
                value: raw.value.get(),
            })
        }
        fn sequence(&self) -> u64 {
            self.seq
        }
    }

    const SB: DualSuperblock = DualSuperblock::new([0, 0x1000]);

    fn body(seq: u64, value: u64) -> Versioned {
        Versioned { seq, value }
    }

    #[test]
    fn round_trip_and_each_fault_is_named() {
        let line = encode(&body(1, 7));
        let bytes: [u8; 64] = line.as_bytes().try_into().unwrap();
        assert_eq!(decode::<Versioned>(&bytes, 0), Ok(body(1, 7)));
        let mut bad = bytes;
        bad[20] ^= 1;
        assert!(matches!(
            decode::<Versioned>(&bad, 0),
            Err(Fault::Checksum { .. })
        ));
        let mut blank = bytes;
        blank[0] = 0;
        assert!(matches!(
            decode::<Versioned>(&blank, 0),
            Err(Fault::Magic { .. })
        ));
        let reseal = |mut b: [u8; 64]| {
            let crc = crc32c(&b[..56]);
            b[56..60].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut v4 = bytes;
        v4[8] = 4;
        assert_eq!(
            decode::<Versioned>(&reseal(v4), 0),
            Err(Fault::Version {
                found: 4,
                expected: 3
            })
        );
        let mut reserved = bytes;
        reserved[60] = 1;
        assert_eq!(
            decode::<Versioned>(&reseal(reserved), 0),
            Err(Fault::Reserved { value: 1 << 32 })
        );
        let line = encode(&body(1, u64::MAX));
        let bytes: [u8; 64] = line.as_bytes().try_into().unwrap();
        assert_eq!(decode::<Versioned>(&bytes, 0), Err(Fault::Body(u64::MAX)));
    }

    #[test]
    fn the_newest_valid_copy_wins_and_the_other_is_marked() {
        let mut region = MemPmem::new(0x2000);
        SB.format(&mut region, &body(5, 1)).unwrap();
        let copies = SB.read::<Versioned, _>(&region).unwrap();
        assert_eq!(
            copies.choose(),
            Ok(Chosen {
                body: body(5, 1),
                repair: [false; 2]
            })
        );
        // A newer copy 1 (as a writer that updates copy by copy leaves it).
        SB.repair(&mut region, &body(6, 2), [false, true]).unwrap();
        let chosen = SB.read::<Versioned, _>(&region).unwrap().choose().unwrap();
        assert_eq!((chosen.body, chosen.repair), (body(6, 2), [true, false]));
        // Same sequence, different bodies: no guess.
        SB.repair(&mut region, &body(6, 3), [true, false]).unwrap();
        assert_eq!(
            SB.read::<Versioned, _>(&region).unwrap().choose(),
            Err(ChooseError::Disagree)
        );
    }

    #[test]
    fn unknown_versions_and_short_regions_are_refused() {
        let mut region = MemPmem::new(0x2000);
        SB.format(&mut region, &body(1, 1)).unwrap();
        region.store(8, &[9]).unwrap();
        let mut line = [0; 64];
        region.read(0, &mut line).unwrap();
        let crc = crc32c(&line[..56]);
        region.store(56, &crc.to_le_bytes()).unwrap();
        assert_eq!(
            SB.read::<Versioned, _>(&region).unwrap().choose(),
            Err(ChooseError::UnsupportedVersion { copy: 0, found: 9 })
        );
        let short = MemPmem::new(0x1020);
        let copies = SB.read::<Versioned, _>(&short).unwrap();
        assert_eq!(copies.copies[1], Err(Fault::Truncated { size: 0x1020 }));
        assert!(matches!(
            copies.choose(),
            Err(ChooseError::NoValidCopy { .. })
        ));
        assert!(
            ChooseError::<u64>::Disagree
                .to_string()
                .contains("different")
        );
    }

    #[test]
    fn an_interrupted_repair_keeps_a_valid_copy() {
        use crate::sim::{CrashConfig, SimPmem};
        use std::ops::ControlFlow;
        let mut region = MemPmem::new(0x2000);
        SB.format(&mut region, &body(1, 1)).unwrap();
        let mut image = region.into_bytes();
        image[0x1010] ^= 0xff;
        let mut sim = SimPmem::from_image(image);
        let chosen = SB.read::<Versioned, _>(&sim).unwrap().choose().unwrap();
        assert_eq!(chosen.repair, [false, true]);
        SB.repair(&mut sim, &chosen.body, chosen.repair).unwrap();
        let stats = sim.crash_images(0..usize::MAX, &CrashConfig::default(), |crash| {
            let image = MemPmem::from_bytes(crash.image.to_vec());
            let chosen = SB.read::<Versioned, _>(&image).unwrap().choose();
            assert_eq!(chosen.map(|c| c.body), Ok(body(1, 1)));
            ControlFlow::Continue(())
        });
        assert!(stats.images > 2);
    }
}
