//! Walking the record chain: the one place that decides whether bytes in
//! the record area are a record.
//!
//! A record is accepted only if it lies inside the area, its length and
//! flags are possible, its CRC matches, its sequence number is the one
//! after its predecessor's, and its epoch is the chain's (or, for an epoch
//! record, above it). Anything else ends the chain; the reason says which
//! check failed, with the values involved.

use core::fmt;
use core::ops::Range;

use crate::checksum::Crc32c;
use crate::pmem::{Pmem, PmemError};
use crate::record::{FLAG_GROUP_END, Header, MAX_PAYLOAD, RECORD_HEADER, RecordKind, record_size};

/// A record that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    offset: u64,
    seq: u64,
    epoch: u64,
    kind: RecordKind,
    ends_group: bool,
    crc: u32,
    payload: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Offset of its header in the region.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Its kind.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// Its payload.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Whether it is the last record of its commit group.
    pub fn ends_group(&self) -> bool {
        self.ends_group
    }

    /// Its stored (and verified) CRC-32C.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Bytes it occupies in the record area, header and padding included.
    pub fn size(&self) -> u64 {
        record_size(self.payload.len() as u64).unwrap_or(u64::MAX)
    }

    /// Rebuilds the owner's value from it.
    pub fn decode<T: crate::Decode>(&self) -> Result<T, T::Error> {
        T::decode(self.kind, self.payload)
    }
}

/// Why the record chain ends where it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Less than a header's worth of the area is left.
    AreaEnd,
    /// The header is all zero: nothing was ever written here.
    Blank,
    /// The payload length exceeds [`MAX_PAYLOAD`].
    Length {
        /// The length claimed.
        len: u32,
    },
    /// The record would run past the end of the area.
    Overrun {
        /// The payload length claimed.
        len: u32,
        /// Bytes left in the area.
        room: u64,
    },
    /// Unknown flag bits are set.
    Flags {
        /// The flags.
        flags: u16,
    },
    /// The CRC does not match: a torn or corrupted record.
    Checksum {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The header's index in its group is not the record's position in
    /// the group being read.
    GroupIndex {
        /// The position in the group.
        expected: u32,
        /// The index stored.
        found: u32,
    },
    /// An intact record with another sequence number: left over from
    /// before a checkpoint truncated the log, or from a torn tail.
    Sequence {
        /// The number the chain needs next.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// An intact record of another epoch: written by an earlier
    /// incarnation of the writer and never committed.
    Epoch {
        /// The chain's epoch.
        expected: u64,
        /// The record's.
        found: u64,
    },
    /// An epoch record that does not raise the epoch.
    StaleEpoch {
        /// The chain's epoch.
        current: u64,
        /// The record's.
        found: u64,
    },
    /// An epoch record with a payload, inside a group, or not ending one.
    BadEpochRecord,
    /// A kind reserved for the log that it does not define.
    ReservedKind {
        /// The kind.
        kind: u16,
    },
    /// The sequence numbers are used up (after 2^64 records).
    SequenceExhausted,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::AreaEnd => write!(f, "end of the record area"),
            Self::Blank => write!(f, "blank (never written)"),
            Self::Length { len } => {
                write!(f, "payload length {len} exceeds the maximum {MAX_PAYLOAD}")
            }
            Self::Overrun { len, room } => write!(
                f,
                "record with a {len}-byte payload overruns the area ({room} bytes left)"
            ),
            Self::Flags { flags } => write!(f, "unknown flags {flags:#06x}"),
            Self::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): torn or corrupt"
            ),
            Self::GroupIndex { expected, found } => write!(
                f,
                "group index {found} where the group has {expected} records before it"
            ),
            Self::Sequence { expected, found } => write!(
                f,
                "sequence mismatch (expected {expected}, found {found}): stale record"
            ),
            Self::Epoch { expected, found } => write!(
                f,
                "epoch mismatch (expected {expected}, found {found}): uncommitted record of an earlier writer"
            ),
            Self::StaleEpoch { current, found } => write!(
                f,
                "epoch record for epoch {found} does not raise the current epoch {current}"
            ),
            Self::BadEpochRecord => write!(f, "malformed epoch record"),
            Self::ReservedKind { kind } => write!(f, "reserved record kind {kind:#06x}"),
            Self::SequenceExhausted => write!(f, "sequence numbers exhausted"),
        }
    }
}

/// Where the chain stands: the next record's offset in the area, sequence
/// number and epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) pos: u64,
    pub(crate) seq: u64,
    pub(crate) epoch: u64,
}

/// Reads records one at a time from a cursor.
pub(crate) struct Scanner<'p, P: Pmem + ?Sized> {
    pmem: &'p P,
    area: Range<u64>,
    pub(crate) cursor: Cursor,
}

impl<'p, P: Pmem + ?Sized> Scanner<'p, P> {
    /// A scanner of the record area `area` (already validated to lie in
    /// the region) starting at `cursor`.
    pub(crate) fn new(pmem: &'p P, area: Range<u64>, cursor: Cursor) -> Self {
        Self { pmem, area, cursor }
    }

    /// Validates the record at the cursor and, if it is one, moves past it.
    /// `index` is how many earlier records of its group were read.
    pub(crate) fn next<'b>(
        &mut self,
        buf: &'b mut [u8; MAX_PAYLOAD],
        index: u64,
    ) -> Result<Result<RecordView<'b>, StopReason>, PmemError> {
        let in_group = index > 0;
        let cursor = self.cursor;
        let area_len = self.area.end - self.area.start;
        let room = area_len.saturating_sub(cursor.pos);
        if room < RECORD_HEADER {
            return Ok(Err(StopReason::AreaEnd));
        }
        let offset = self.area.start + cursor.pos;
        let mut raw = [0; RECORD_HEADER as usize];
        self.pmem.read(offset, &mut raw)?;
        if raw == [0; RECORD_HEADER as usize] {
            return Ok(Err(StopReason::Blank));
        }
        let header = Header::parse(&raw);
        let len = header.len;
        if len as usize > MAX_PAYLOAD {
            return Ok(Err(StopReason::Length { len }));
        }
        let size = record_size(u64::from(len)).unwrap_or(u64::MAX);
        if size > room {
            return Ok(Err(StopReason::Overrun { len, room }));
        }
        if header.flags & !FLAG_GROUP_END != 0 {
            return Ok(Err(StopReason::Flags {
                flags: header.flags,
            }));
        }
        let payload = &mut buf[..len as usize];
        self.pmem.read(offset + RECORD_HEADER, payload)?;
        let mut crc = Crc32c::new();
        crc.update(payload);
        let computed = header.checksum(crc);
        if computed != header.crc {
            return Ok(Err(StopReason::Checksum {
                stored: header.crc,
                computed,
            }));
        }
        if u64::from(header.index) != index {
            return Ok(Err(StopReason::GroupIndex {
                expected: u32::try_from(index).unwrap_or(u32::MAX),
                found: header.index,
            }));
        }
        if header.seq != cursor.seq {
            return Ok(Err(StopReason::Sequence {
                expected: cursor.seq,
                found: header.seq,
            }));
        }
        let kind = RecordKind::from_stored(header.kind);
        let mut epoch = cursor.epoch;
        if kind == RecordKind::EPOCH {
            if len != 0 || !header.ends_group() || in_group {
                return Ok(Err(StopReason::BadEpochRecord));
            }
            if header.epoch <= cursor.epoch {
                return Ok(Err(StopReason::StaleEpoch {
                    current: cursor.epoch,
                    found: header.epoch,
                }));
            }
            epoch = header.epoch;
        } else if kind.is_reserved() {
            return Ok(Err(StopReason::ReservedKind { kind: header.kind }));
        } else if header.epoch != cursor.epoch {
            return Ok(Err(StopReason::Epoch {
                expected: cursor.epoch,
                found: header.epoch,
            }));
        }
        let Some(seq) = cursor.seq.checked_add(1) else {
            return Ok(Err(StopReason::SequenceExhausted));
        };
        self.cursor = Cursor {
            pos: cursor.pos + size,
            seq,
            epoch,
        };
        Ok(Ok(RecordView {
            offset,
            seq: header.seq,
            epoch: header.epoch,
            kind,
            ends_group: header.ends_group(),
            crc: header.crc,
            payload: &buf[..len as usize],
        }))
    }
}
