//! Checkpoint slots: the owner's snapshot, streamed in and out.
//!
//! A slot is a 64-byte header followed by the snapshot bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `NVCKPT01` |
//! | 8 | 8 | generation (its parity is the slot) |
//! | 16 | 8 | epoch of the records that follow it |
//! | 24 | 8 | sequence number of the first record that follows it |
//! | 32 | 8 | snapshot length in bytes |
//! | 40 | 4 | zero |
//! | 44 | 4 | CRC-32C of the snapshot followed by header bytes 0..44 |
//! | 48 | 16 | unused |
//!
//! The snapshot is written first, then the header words, CRC last; the
//! whole slot is written back and fenced before any superblock names it.

use core::fmt;
use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::checksum::Crc32c;
use crate::layout::{CHECKPOINT_HEADER, Layout};
use crate::pmem::{Pmem, PmemError};

/// First bytes of a checkpoint slot header.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"NVCKPT01";

/// What a valid checkpoint header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Its generation.
    pub generation: u64,
    /// Offset of its slot in the region.
    pub offset: u64,
    /// Epoch of the records that follow it.
    pub epoch: u64,
    /// Sequence number of the first record that follows it.
    pub next_seq: u64,
    /// Snapshot bytes.
    pub len: u64,
}

/// Why a checkpoint slot is not a valid checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointFault {
    /// The magic is missing (found is the first 8 bytes, little-endian).
    Magic {
        /// What was there.
        found: u64,
    },
    /// The slot holds another generation than the superblock names.
    Generation {
        /// The superblock's generation.
        expected: u64,
        /// The slot's.
        found: u64,
    },
    /// The snapshot length exceeds the slot.
    Length {
        /// The length claimed.
        len: u64,
        /// The slot's capacity.
        capacity: u64,
    },
    /// A reserved field is not zero.
    Reserved {
        /// Its value.
        value: u32,
    },
    /// The CRC-32C does not match.
    Checksum {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
}

impl fmt::Display for CheckpointFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Magic { found } => write!(f, "bad magic {found:#018x}"),
            Self::Generation { expected, found } => write!(
                f,
                "slot holds generation {found}, the superblock names {expected}"
            ),
            Self::Length { len, capacity } => write!(
                f,
                "snapshot length {len:#x} exceeds the slot capacity {capacity:#x}"
            ),
            Self::Reserved { value } => write!(f, "reserved field is {value:#x}, not zero"),
            Self::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        }
    }
}

impl core::error::Error for CheckpointFault {}

/// A checkpoint header as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) generation: u64,
    pub(crate) epoch: u64,
    pub(crate) next_seq: u64,
    pub(crate) len: u64,
    pub(crate) reserved: u32,
    pub(crate) crc: u32,
}

/// A checkpoint header's first 48 bytes on media (the rest of its cache
/// line is zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct RawHeader {
    magic: [u8; 8],
    generation: U64,
    epoch: U64,
    next_seq: U64,
    len: U64,
    reserved: U32,
    crc: U32,
}

const _: () = assert!(size_of::<RawHeader>() == 48);
const _: () = assert!(size_of::<RawHeader>() as u64 <= CHECKPOINT_HEADER);
const _: () = assert!(offset_of!(RawHeader, generation) == 8);
const _: () = assert!(offset_of!(RawHeader, epoch) == 16);
const _: () = assert!(offset_of!(RawHeader, next_seq) == 24);
const _: () = assert!(offset_of!(RawHeader, len) == 32);
const _: () = assert!(offset_of!(RawHeader, reserved) == 40);
const _: () = assert!(offset_of!(RawHeader, crc) == 44);
/// Header bytes the CRC covers (after the snapshot).
const CHECKED: usize = offset_of!(RawHeader, crc);

impl Header {
    fn raw(&self) -> RawHeader {
        RawHeader {
            magic: CHECKPOINT_MAGIC,
            generation: self.generation.into(),
            epoch: self.epoch.into(),
            next_seq: self.next_seq.into(),
            len: self.len.into(),
            reserved: self.reserved.into(),
            crc: self.crc.into(),
        }
    }

    /// The six header words in store order, CRC word last.
    pub(crate) fn words(&self) -> [u64; 6] {
        let words: [U64; 6] = zerocopy::transmute!(self.raw());
        words.map(U64::get)
    }

    /// The CRC over the snapshot (whose running CRC is `data`) and header
    /// bytes 0..44.
    pub(crate) fn checksum(&self, mut data: Crc32c) -> u32 {
        data.update(&self.raw().as_bytes()[..CHECKED]);
        data.value()
    }

    /// Reads and checks the header of `generation`'s slot, then the CRC of
    /// its snapshot. Reads nothing outside the slot.
    pub(crate) fn load<P: Pmem + ?Sized>(
        pmem: &P,
        layout: &Layout,
        generation: u64,
    ) -> Result<Result<(Self, CheckpointInfo), CheckpointFault>, PmemError> {
        let offset = layout.slot_offset(generation);
        let mut bytes = [0; size_of::<RawHeader>()];
        pmem.read(offset, &mut bytes)?;
        let raw: RawHeader = zerocopy::transmute!(bytes);
        if raw.magic != CHECKPOINT_MAGIC {
            return Ok(Err(CheckpointFault::Magic {
                found: u64::from_le_bytes(raw.magic),
            }));
        }
        let header = Self {
            generation: raw.generation.get(),
            epoch: raw.epoch.get(),
            next_seq: raw.next_seq.get(),
            len: raw.len.get(),
            reserved: raw.reserved.get(),
            crc: raw.crc.get(),
        };
        let capacity = layout.checkpoint_capacity();
        if header.len > capacity {
            return Ok(Err(CheckpointFault::Length {
                len: header.len,
                capacity,
            }));
        }
        let mut crc = Crc32c::new();
        let data = offset + CHECKPOINT_HEADER;
        let mut chunk = [0; 2048];
        let mut done = 0;
        while done < header.len {
            let n = (header.len - done).min(chunk.len() as u64) as usize;
            pmem.read(data + done, &mut chunk[..n])?;
            crc.update(&chunk[..n]);
            done += n as u64;
        }
        let computed = header.checksum(crc);
        if computed != header.crc {
            return Ok(Err(CheckpointFault::Checksum {
                stored: header.crc,
                computed,
            }));
        }
        if header.reserved != 0 {
            return Ok(Err(CheckpointFault::Reserved {
                value: header.reserved,
            }));
        }
        if header.generation != generation {
            return Ok(Err(CheckpointFault::Generation {
                expected: generation,
                found: header.generation,
            }));
        }
        let info = CheckpointInfo {
            generation,
            offset,
            epoch: header.epoch,
            next_seq: header.next_seq,
            len: header.len,
        };
        Ok(Ok((header, info)))
    }
}

/// A snapshot write that did not fit or did not reach the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The snapshot would exceed the slot.
    Full {
        /// The slot's capacity in bytes.
        capacity: u64,
        /// The length the write would have reached.
        wanted: u64,
    },
    /// The region refused the store.
    Pmem(PmemError),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Full { capacity, wanted } => write!(
                f,
                "snapshot of {wanted:#x} bytes exceeds the checkpoint capacity {capacity:#x}"
            ),
            Self::Pmem(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for SnapshotError {}

/// Streams the owner's snapshot into the inactive checkpoint slot (see
/// [`Log::checkpoint`](crate::Log::checkpoint)).
#[derive(Debug)]
pub struct CheckpointWriter<'a, P: Pmem> {
    pmem: &'a mut P,
    data: u64,
    capacity: u64,
    len: u64,
    crc: Crc32c,
    overflowed: bool,
}

impl<'a, P: Pmem> CheckpointWriter<'a, P> {
    pub(crate) fn new(pmem: &'a mut P, data: u64, capacity: u64) -> Self {
        Self {
            pmem,
            data,
            capacity,
            len: 0,
            crc: Crc32c::new(),
            overflowed: false,
        }
    }

    /// Appends `bytes` to the snapshot.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let wanted = self.len.saturating_add(bytes.len() as u64);
        if wanted > self.capacity {
            self.overflowed = true;
            return Err(SnapshotError::Full {
                capacity: self.capacity,
                wanted,
            });
        }
        self.pmem
            .store(self.data + self.len, bytes)
            .map_err(SnapshotError::Pmem)?;
        self.crc.update(bytes);
        self.len = wanted;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most the snapshot can hold.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn finish(self) -> (u64, Crc32c, bool) {
        (self.len, self.crc, self.overflowed)
    }
}

/// A read past the end of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotReadError {
    /// Fewer bytes remain than were asked for.
    Short {
        /// Bytes asked for.
        wanted: u64,
        /// Bytes left.
        remaining: u64,
    },
    /// The region refused the read.
    Pmem(PmemError),
}

impl fmt::Display for SnapshotReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Short { wanted, remaining } => write!(
                f,
                "snapshot ends: {wanted} bytes wanted, {remaining} remain"
            ),
            Self::Pmem(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for SnapshotReadError {}

/// Streams the snapshot of the active checkpoint to the owner during
/// recovery. Its CRC was verified before the owner sees a byte; the bytes
/// the owner reads are checked again when the owner is done.
pub struct CheckpointReader<'a> {
    pmem: &'a dyn Pmem,
    info: CheckpointInfo,
    pos: u64,
    crc: Crc32c,
}

impl fmt::Debug for CheckpointReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointReader")
            .field("info", &self.info)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<'a> CheckpointReader<'a> {
    pub(crate) fn new(pmem: &'a dyn Pmem, info: CheckpointInfo) -> Self {
        Self {
            pmem,
            info,
            pos: 0,
            crc: Crc32c::new(),
        }
    }

    /// The checkpoint's header.
    pub fn info(&self) -> &CheckpointInfo {
        &self.info
    }

    /// Snapshot bytes in all.
    pub fn len(&self) -> u64 {
        self.info.len
    }

    /// Whether the snapshot is empty (as after format).
    pub fn is_empty(&self) -> bool {
        self.info.len == 0
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.info.len - self.pos
    }

    /// Reads up to `buf.len()` bytes; returns how many (0 at the end).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, SnapshotReadError> {
        self.read_raw(buf).map_err(SnapshotReadError::Pmem)
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> Result<usize, PmemError> {
        let n = self.remaining().min(buf.len() as u64) as usize;
        let (head, _) = buf.split_at_mut(n);
        self.pmem
            .read(self.info.offset + CHECKPOINT_HEADER + self.pos, head)?;
        self.crc.update(head);
        self.pos += n as u64;
        Ok(n)
    }

    /// Reads exactly `buf.len()` bytes.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotReadError> {
        if (buf.len() as u64) > self.remaining() {
            return Err(SnapshotReadError::Short {
                wanted: buf.len() as u64,
                remaining: self.remaining(),
            });
        }
        self.read(buf).map(|_| ())
    }

    /// Reads the rest and returns whether the whole snapshot still has the
    /// CRC the header names (`header`).
    pub(crate) fn finish(mut self, header: &Header) -> Result<bool, PmemError> {
        let mut chunk = [0; 512];
        while self.remaining() > 0 {
            self.read_raw(&mut chunk)?;
        }
        Ok(header.checksum(self.crc) == header.crc)
    }
}
