//! Records: the owner's payload types and the on-media record header.
//!
//! A record is a 32-byte header followed by its payload, padded to a
//! multiple of 32 bytes so that a header never straddles a cache line:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | payload length in bytes (at most [`MAX_PAYLOAD`]) |
//! | 4 | 2 | kind |
//! | 6 | 2 | flags: bit 0 ends a commit group; the rest are zero |
//! | 8 | 8 | sequence number: one more than the previous record's |
//! | 16 | 8 | epoch: the writer's incarnation (see [`Log`](crate::Log)) |
//! | 24 | 4 | index: the record's position in its commit group, 0 for the first |
//! | 28 | 4 | CRC-32C of the payload followed by header bytes 0..28 |
//!
//! The header is stored word by word, first word first and the CRC word
//! last, after the payload.
//!
//! The index (format version 2; version 1 kept zero there) lets one intact
//! record tell where its group began: `seq - index` is the sequence number
//! of the group's first record. Recovery uses it to prove that a damaged
//! record before it had been committed (see `committed.rs`).

use core::fmt;
use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::checksum::Crc32c;

/// Bytes of a record header.
pub const RECORD_HEADER: u64 = 32;
/// Records start at multiples of this.
pub const RECORD_ALIGN: u64 = 32;
/// The largest payload of one record. Larger state belongs in a
/// checkpoint, which streams.
pub const MAX_PAYLOAD: usize = 4096;

/// The most records one commit group holds (its index field is 32 bits).
pub(crate) const MAX_GROUP: u64 = 1 << 32;

/// Flag: this record ends its commit group.
pub(crate) const FLAG_GROUP_END: u16 = 1;

/// What a record is, as the owner defines it.
///
/// Values from [`RecordKind::FIRST_RESERVED`] up belong to the log itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKind(u16);

impl RecordKind {
    /// The first kind the log reserves for itself.
    pub const FIRST_RESERVED: u16 = 0xff00;
    /// The log's own record that starts a new epoch (see [`Log`](crate::Log)).
    pub const EPOCH: Self = Self(0xffff);

    /// An owner kind; `None` for the reserved range.
    pub const fn new(raw: u16) -> Option<Self> {
        if raw < Self::FIRST_RESERVED {
            Some(Self(raw))
        } else {
            None
        }
    }

    /// Any stored kind, reserved or not.
    pub(crate) const fn from_stored(raw: u16) -> Self {
        Self(raw)
    }

    /// The kind as stored.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// Whether this kind belongs to the log rather than the owner.
    pub const fn is_reserved(self) -> bool {
        self.0 >= Self::FIRST_RESERVED
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::EPOCH {
            write!(f, "epoch")
        } else {
            write!(f, "{:#06x}", self.0)
        }
    }
}

/// A value the log can append as one record.
pub trait Encode {
    /// The record's kind.
    fn kind(&self) -> RecordKind;
    /// Bytes [`encode`](Encode::encode) writes; at most [`MAX_PAYLOAD`].
    fn encoded_len(&self) -> usize;
    /// Writes the payload into `out`, which is exactly
    /// [`encoded_len`](Encode::encoded_len) bytes long.
    fn encode(&self, out: &mut [u8]);
    /// The payload, if the value already holds it as bytes: the log then
    /// stores it from there instead of encoding it into a buffer first
    /// (one copy fewer). Used only if it is exactly
    /// [`encoded_len`](Encode::encoded_len) bytes long.
    fn encoded(&self) -> Option<&[u8]> {
        None
    }
}

/// A value rebuilt from a replayed record.
pub trait Decode: Sized {
    /// Why a payload was not accepted.
    type Error;
    /// Rebuilds the value from a record's kind and payload.
    fn decode(kind: RecordKind, payload: &[u8]) -> Result<Self, Self::Error>;
}

/// A record given as a kind and bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raw<'a> {
    /// Its kind.
    pub kind: RecordKind,
    /// Its payload.
    pub payload: &'a [u8],
}

impl Encode for Raw<'_> {
    fn kind(&self) -> RecordKind {
        self.kind
    }
    fn encoded_len(&self) -> usize {
        self.payload.len()
    }
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(self.payload);
    }
    fn encoded(&self) -> Option<&[u8]> {
        Some(self.payload)
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn kind(&self) -> RecordKind {
        (**self).kind()
    }
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
    fn encode(&self, out: &mut [u8]) {
        (**self).encode(out);
    }
    fn encoded(&self) -> Option<&[u8]> {
        (**self).encoded()
    }
}

/// A record header as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) kind: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u64,
    pub(crate) epoch: u64,
    pub(crate) index: u32,
    pub(crate) crc: u32,
}

/// A record header's bytes on media.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct RawHeader {
    len: U32,
    kind: U16,
    flags: U16,
    seq: U64,
    epoch: U64,
    index: U32,
    crc: U32,
}

const _: () = assert!(size_of::<RawHeader>() as u64 == RECORD_HEADER);
const _: () = assert!(offset_of!(RawHeader, kind) == 4);
const _: () = assert!(offset_of!(RawHeader, flags) == 6);
const _: () = assert!(offset_of!(RawHeader, seq) == 8);
const _: () = assert!(offset_of!(RawHeader, epoch) == 16);
const _: () = assert!(offset_of!(RawHeader, index) == 24);
const _: () = assert!(offset_of!(RawHeader, crc) == 28);

impl Header {
    /// Parses the 32 header bytes; nothing is validated yet.
    pub(crate) fn parse(bytes: &[u8; 32]) -> Self {
        let raw: RawHeader = zerocopy::transmute!(*bytes);
        Self {
            len: raw.len.get(),
            kind: raw.kind.get(),
            flags: raw.flags.get(),
            seq: raw.seq.get(),
            epoch: raw.epoch.get(),
            index: raw.index.get(),
            crc: raw.crc.get(),
        }
    }

    /// The header as stored.
    #[inline]
    fn raw(&self) -> RawHeader {
        RawHeader {
            len: self.len.into(),
            kind: self.kind.into(),
            flags: self.flags.into(),
            seq: self.seq.into(),
            epoch: self.epoch.into(),
            index: self.index.into(),
            crc: self.crc.into(),
        }
    }

    /// The four words in store order, CRC word last.
    #[inline]
    pub(crate) fn words(&self) -> [u64; 4] {
        let words: [U64; 4] = zerocopy::transmute!(self.raw());
        words.map(U64::get)
    }

    /// The CRC of a header over a payload whose own running CRC is
    /// `payload_crc`: the payload first, then header bytes 0..28.
    #[inline]
    pub(crate) fn checksum(&self, mut payload_crc: Crc32c) -> u32 {
        // Bytes 0..28 are the first three words and the low half of the
        // fourth: fed as words, they need no copy into a byte buffer.
        let [w0, w1, w2, w3] = self.words();
        payload_crc.update_u64(w0);
        payload_crc.update_u64(w1);
        payload_crc.update_u64(w2);
        payload_crc.update_u32(w3 as u32);
        payload_crc.value()
    }

    /// Sequence number of the first record of this record's group.
    pub(crate) fn group_first_seq(&self) -> u64 {
        self.seq.saturating_sub(u64::from(self.index))
    }

    /// Whether this header ends a commit group.
    pub(crate) fn ends_group(&self) -> bool {
        self.flags & FLAG_GROUP_END != 0
    }
}

/// Bytes a record with a `len`-byte payload occupies; `None` if absurd.
pub(crate) fn record_size(len: u64) -> Option<u64> {
    let padded = len.checked_add(RECORD_ALIGN - 1)? / RECORD_ALIGN * RECORD_ALIGN;
    padded.checked_add(RECORD_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(RecordKind::new(7).map(RecordKind::raw), Some(7));
        assert_eq!(RecordKind::new(0xff00), None);
        assert!(RecordKind::EPOCH.is_reserved());
        assert_eq!(RecordKind::EPOCH.to_string(), "epoch");
        assert_eq!(RecordKind::new(0x12).unwrap().to_string(), "0x0012");
    }

    #[test]
    fn header_round_trip() {
        let header = Header {
            len: 77,
            kind: 0x1234,
            flags: FLAG_GROUP_END,
            seq: 0x0102_0304_0506_0708,
            epoch: 9,
            index: 3,
            crc: 0xdead_beef,
        };
        let mut bytes = [0; 32];
        for (i, w) in header.words().iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        assert_eq!(Header::parse(&bytes), header);
        assert!(header.ends_group());
        let crc_a = header.checksum(Crc32c::new());
        let crc_b = Header { seq: 1, ..header }.checksum(Crc32c::new());
        assert_ne!(crc_a, crc_b);
        // The stored CRC itself is not covered.
        assert_eq!(crc_a, Header { crc: 0, ..header }.checksum(Crc32c::new()));
    }

    #[test]
    fn sizes() {
        assert_eq!(record_size(0), Some(32));
        assert_eq!(record_size(1), Some(64));
        assert_eq!(record_size(32), Some(64));
        assert_eq!(record_size(64), Some(96));
        assert_eq!(record_size(4096), Some(4128));
        assert_eq!(record_size(u64::MAX), None);
    }
}
