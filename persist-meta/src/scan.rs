//! Walking the record chain: the one place that decides whether bytes in
//! the record area are records.
//!
//! A commit group is accepted only if it lies inside the area, its flags
//! are possible, its CRC matches, its records fill it exactly and number
//! what its header says, its sequence number is the one after its
//! predecessor's, and its epoch is the chain's (or, for an epoch record,
//! above it). Anything else ends the chain; the reason says which check
//! failed, with the values involved. The whole group is checked before
//! its first record is handed out, so a group is all or nothing.

use core::fmt;
use core::ops::Range;

use crate::checksum::Crc32c;
use crate::image::ImageError;
use crate::pmem::{Pmem, PmemError};
use crate::record::{
    ENTRY_HEADER, Entry, GROUP_HEADER, Header, MAX_PAYLOAD, RECORD_HEADER, RecordKind, entry_size,
};

/// Bytes of the buffer a scan reads groups into: a group whose records
/// take at most this many bytes (any group of one record) is read once.
pub(crate) const BUF: usize = MAX_PAYLOAD + 64;

/// The buffer a scan reads groups into.
pub(crate) type ScanBuf = [u8; BUF];

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
    /// Offset of its entry header (its length and kind, right before its
    /// payload) in the region.
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

    /// Its group's stored (and verified) CRC-32C.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Bytes it occupies in its group: its entry header and payload (the
    /// group's header and padding are not counted).
    pub fn size(&self) -> u64 {
        entry_size(self.payload.len() as u64)
    }

    /// Rebuilds the owner's value from it.
    pub fn decode<T: crate::Decode>(&self) -> Result<T, T::Error> {
        T::decode(self.kind, self.payload)
    }
}

/// Why the record chain ends where it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Less than the smallest group's worth of the area is left.
    AreaEnd,
    /// The group header is all zero: nothing was ever written here.
    Blank,
    /// A record's payload length exceeds [`MAX_PAYLOAD`].
    Length {
        /// The length claimed.
        len: u32,
    },
    /// The group would run past the end of the area.
    Overrun {
        /// The length of the group's records claimed.
        len: u32,
        /// Bytes left in the area.
        room: u64,
    },
    /// Unknown flag bits are set in the group header.
    Flags {
        /// The flags.
        flags: u32,
    },
    /// The CRC does not match: a torn or corrupted group.
    Checksum {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The group's records do not fill its length exactly, or do not
    /// number what its header says.
    GroupIndex {
        /// The record count the header states.
        expected: u32,
        /// Records found in the group's bytes.
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
                "group with {len} bytes of records overruns the area ({room} bytes left)"
            ),
            Self::Flags { flags } => write!(f, "unknown flags {flags:#010x}"),
            Self::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): torn or corrupt"
            ),
            Self::GroupIndex { expected, found } => write!(
                f,
                "group of {expected} records holds {found} (or records that do not fill it)"
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

/// Where the chain stands: the next group's offset in the area, sequence
/// number and epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) pos: u64,
    pub(crate) seq: u64,
    pub(crate) epoch: u64,
}

/// The validated group whose records a scanner is handing out.
struct Current {
    header: Header,
    /// Region offset of its header.
    offset: u64,
    /// Whether its records are in the buffer (from offset 0).
    buffered: bool,
    /// Offset in the group's records of the next record.
    at: u64,
    /// Records handed out.
    index: u32,
    /// CRC of the records read again so far (unbuffered groups).
    crc: Crc32c,
    /// Where the chain stands after the group.
    next: Cursor,
}

/// Reads commit groups, and hands out their records one at a time.
pub(crate) struct Scanner<'p, P: Pmem + ?Sized> {
    pmem: &'p P,
    area: Range<u64>,
    /// The start of the group being read, or of the next one.
    pub(crate) cursor: Cursor,
    current: Option<Current>,
}

/// What checking a group's records found.
pub(crate) struct Walk {
    /// The group's checksum, computed.
    pub(crate) crc: u32,
    /// Records found.
    found: u64,
    /// Kind of the first record.
    first_kind: u16,
    /// A reserved kind found, other than an epoch record's alone.
    reserved: Option<u16>,
    /// An epoch record among others.
    misplaced_epoch: bool,
}

impl<'p, P: Pmem + ?Sized> Scanner<'p, P> {
    /// A scanner of the record area `area` (already validated to lie in
    /// the region) starting at `cursor`.
    pub(crate) fn new(pmem: &'p P, area: Range<u64>, cursor: Cursor) -> Self {
        Self {
            pmem,
            area,
            cursor,
            current: None,
        }
    }

    /// The next record of the chain. At the start of a group, checks the
    /// whole group first: if it fails, the reason, and the cursor stays at
    /// the group. The cursor moves past a group once its last record has
    /// been handed out. `buf` must be the same buffer for every record of
    /// a group.
    pub(crate) fn next<'b>(
        &mut self,
        buf: &'b mut ScanBuf,
    ) -> Result<Result<RecordView<'b>, StopReason>, ImageError> {
        if self.current.is_none() {
            match self.open(buf)? {
                Ok(current) => self.current = Some(current),
                Err(reason) => return Ok(Err(reason)),
            }
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(Err(StopReason::AreaEnd));
        };
        let header = current.header;
        let body_start = current.offset + GROUP_HEADER;
        let changed = ImageError::Changed {
            offset: body_start + current.at,
        };
        let (entry, payload_at) = if current.buffered {
            let at = current.at as usize;
            let mut word = [0; ENTRY_HEADER as usize];
            word.copy_from_slice(&buf[at..at + ENTRY_HEADER as usize]);
            (Entry::parse(word), at + ENTRY_HEADER as usize)
        } else {
            // Read again: check that it still reads as it did.
            let mut word = [0; ENTRY_HEADER as usize];
            self.pmem.read(body_start + current.at, &mut word)?;
            let entry = Entry::parse(word);
            let end = current.at + entry_size(u64::from(entry.len));
            if usize::from(entry.len) > MAX_PAYLOAD || end > u64::from(header.len) {
                return Err(changed);
            }
            self.pmem.read(
                body_start + current.at + ENTRY_HEADER,
                &mut buf[..usize::from(entry.len)],
            )?;
            current
                .crc
                .update_record(entry.word(), &buf[..usize::from(entry.len)]);
            (entry, 0)
        };
        let offset = body_start + current.at;
        let seq = header.seq + u64::from(current.index);
        current.at += entry_size(u64::from(entry.len));
        current.index += 1;
        let last = current.index == header.count;
        if last {
            if !current.buffered
                && (current.at != u64::from(header.len)
                    || header.checksum(current.crc.clone()) != header.crc)
            {
                return Err(changed);
            }
            self.cursor = current.next;
            self.current = None;
        }
        Ok(Ok(RecordView {
            offset,
            seq,
            epoch: header.epoch,
            kind: RecordKind::from_stored(entry.kind),
            ends_group: last,
            crc: header.crc,
            payload: &buf[payload_at..payload_at + usize::from(entry.len)],
        }))
    }

    /// Checks the group at the cursor.
    fn open(&self, buf: &mut ScanBuf) -> Result<Result<Current, StopReason>, PmemError> {
        let cursor = self.cursor;
        let area_len = self.area.end - self.area.start;
        let room = area_len.saturating_sub(cursor.pos);
        if room < RECORD_HEADER {
            return Ok(Err(StopReason::AreaEnd));
        }
        let offset = self.area.start + cursor.pos;
        let mut raw = [0; GROUP_HEADER as usize];
        self.pmem.read(offset, &mut raw)?;
        if raw == [0; GROUP_HEADER as usize] {
            return Ok(Err(StopReason::Blank));
        }
        let header = Header::parse(&raw);
        let size = header.size().unwrap_or(u64::MAX);
        if size > room {
            return Ok(Err(StopReason::Overrun {
                len: header.len,
                room,
            }));
        }
        if header.flags != 0 {
            return Ok(Err(StopReason::Flags {
                flags: header.flags,
            }));
        }
        let len = u64::from(header.len);
        let buffered = len <= BUF as u64;
        if buffered {
            self.pmem
                .read(offset + GROUP_HEADER, &mut buf[..len as usize])?;
        }
        let walk = match walk(self.pmem, offset, &header, buffered, buf)? {
            Ok(walk) => walk,
            Err(reason) => return Ok(Err(reason)),
        };
        if walk.crc != header.crc {
            return Ok(Err(StopReason::Checksum {
                stored: header.crc,
                computed: walk.crc,
            }));
        }
        if header.seq != cursor.seq {
            return Ok(Err(StopReason::Sequence {
                expected: cursor.seq,
                found: header.seq,
            }));
        }
        let mut epoch = cursor.epoch;
        if walk.first_kind == RecordKind::EPOCH.raw() {
            if header.count != 1 || len != ENTRY_HEADER {
                return Ok(Err(StopReason::BadEpochRecord));
            }
            if header.epoch <= cursor.epoch {
                return Ok(Err(StopReason::StaleEpoch {
                    current: cursor.epoch,
                    found: header.epoch,
                }));
            }
            epoch = header.epoch;
        } else if walk.misplaced_epoch {
            return Ok(Err(StopReason::BadEpochRecord));
        } else if let Some(kind) = walk.reserved {
            return Ok(Err(StopReason::ReservedKind { kind }));
        } else if header.epoch != cursor.epoch {
            return Ok(Err(StopReason::Epoch {
                expected: cursor.epoch,
                found: header.epoch,
            }));
        }
        let Some(seq) = cursor.seq.checked_add(u64::from(header.count)) else {
            return Ok(Err(StopReason::SequenceExhausted));
        };
        Ok(Ok(Current {
            header,
            offset,
            buffered,
            at: 0,
            index: 0,
            crc: Crc32c::new(),
            next: Cursor {
                pos: cursor.pos + size,
                seq,
                epoch,
            },
        }))
    }
}

/// Walks the records of the group whose header (`header`) lies at region
/// offset `offset`: their lengths must fill the group exactly and number
/// what the header says. Computes the group's checksum on the way. With
/// `buffered`, the group's records are in `buf` already; otherwise they are
/// read into it one at a time. The caller has checked that the group lies
/// inside the region.
pub(crate) fn walk<P: Pmem + ?Sized>(
    pmem: &P,
    offset: u64,
    header: &Header,
    buffered: bool,
    buf: &mut ScanBuf,
) -> Result<Result<Walk, StopReason>, PmemError> {
    let len = u64::from(header.len);
    let mut walk = Walk {
        found: 0,
        first_kind: 0,
        reserved: None,
        misplaced_epoch: false,
        crc: 0,
    };
    let mut group = Crc32c::new();
    let mut at = 0;
    let mismatch = |found: u64| StopReason::GroupIndex {
        expected: header.count,
        found: u32::try_from(found).unwrap_or(u32::MAX),
    };
    while at < len {
        if at + ENTRY_HEADER > len {
            return Ok(Err(mismatch(walk.found)));
        }
        let mut word = [0; ENTRY_HEADER as usize];
        if buffered {
            word.copy_from_slice(&buf[at as usize..(at + ENTRY_HEADER) as usize]);
        } else {
            pmem.read(offset + GROUP_HEADER + at, &mut word)?;
        }
        let entry = Entry::parse(word);
        if usize::from(entry.len) > MAX_PAYLOAD {
            return Ok(Err(StopReason::Length {
                len: u32::from(entry.len),
            }));
        }
        let payload_at = at + ENTRY_HEADER;
        at += entry_size(u64::from(entry.len));
        if at > len {
            return Ok(Err(mismatch(walk.found)));
        }
        let payload = if buffered {
            &buf[payload_at as usize..at as usize]
        } else {
            let payload = &mut buf[..usize::from(entry.len)];
            pmem.read(offset + GROUP_HEADER + payload_at, payload)?;
            &*payload
        };
        group.update_record(entry.word(), payload);
        if walk.found == 0 {
            walk.first_kind = entry.kind;
        } else if entry.kind == RecordKind::EPOCH.raw() {
            walk.misplaced_epoch = true;
        }
        if entry.kind != RecordKind::EPOCH.raw()
            && RecordKind::from_stored(entry.kind).is_reserved()
            && walk.reserved.is_none()
        {
            walk.reserved = Some(entry.kind);
        }
        walk.found += 1;
    }
    if walk.first_kind == RecordKind::EPOCH.raw() && walk.found > 1 {
        walk.misplaced_epoch = true;
    }
    if walk.found == 0 || walk.found != u64::from(header.count) {
        return Ok(Err(mismatch(walk.found)));
    }
    walk.crc = header.checksum(group);
    Ok(Ok(walk))
}
