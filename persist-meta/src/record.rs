//! Records: the owner's payload types and the on-media commit group.
//!
//! Format version 3 stores each commit group as one header followed by its
//! records packed back to back, the whole group padded to a cache line:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | length in bytes of the group's records (everything after the header) |
//! | 4 | 4 | record count (at least 1) |
//! | 8 | 8 | sequence number of the group's first record: one more than the previous group's last |
//! | 16 | 8 | epoch: the writer's incarnation (see [`Log`](crate::Log)) |
//! | 24 | 4 | flags: all zero |
//! | 28 | 4 | checksum: CRC-32C over the group's records as stored (every byte after the header, up to its length) followed by header bytes 0..28 |
//!
//! Each record is a 4-byte entry header (payload length, 2 bytes; kind, 2
//! bytes; both little-endian) and its payload, with no padding between
//! records. Groups start at multiples of [`RECORD_ALIGN`] (64 bytes).
//!
//! The records are stored first and written back as their lines fill; the
//! header is stored at commit, word by word with the CRC word last, its
//! line written back, and one fence makes the group durable. One header
//! and one CRC per group, so a group costs its payload's lines plus about
//! one line.
//!
//! The header's sequence number tells where its group began: an intact
//! header beyond a damaged group proves that group had been committed
//! (see `committed.rs`).

use core::fmt;
use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::checksum::Crc32c;

/// Bytes of a commit group's header.
pub(crate) const GROUP_HEADER: u64 = 32;
/// Bytes of a record's entry header inside its group (length and kind).
pub(crate) const ENTRY_HEADER: u64 = 4;
/// Commit groups start at multiples of this (a cache line).
pub const RECORD_ALIGN: u64 = 64;
/// Bytes of the smallest commit: a group header and one empty record,
/// padded to [`RECORD_ALIGN`]. An epoch record takes exactly this.
pub const RECORD_HEADER: u64 = RECORD_ALIGN;
/// The largest payload of one record. Larger state belongs in a
/// checkpoint, which streams.
pub const MAX_PAYLOAD: usize = 4096;

/// The most records one commit group holds (its count field is 32 bits).
pub(crate) const MAX_GROUP: u64 = u32::MAX as u64;

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
    /// [`encoded_len`](Encode::encoded_len) bytes long. The log may call it
    /// more than once per append (once to checksum the bytes before it
    /// stores anything, once to store them): it must give the same bytes
    /// each time.
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
    #[inline]
    fn kind(&self) -> RecordKind {
        self.kind
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        self.payload.len()
    }
    #[inline]
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(self.payload);
    }
    #[inline]
    fn encoded(&self) -> Option<&[u8]> {
        Some(self.payload)
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    #[inline]
    fn kind(&self) -> RecordKind {
        (**self).kind()
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
    #[inline]
    fn encode(&self, out: &mut [u8]) {
        (**self).encode(out);
    }
    #[inline]
    fn encoded(&self) -> Option<&[u8]> {
        (**self).encoded()
    }
}

/// A commit group's header as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) count: u32,
    pub(crate) seq: u64,
    pub(crate) epoch: u64,
    pub(crate) flags: u32,
    pub(crate) crc: u32,
}

/// A group header's bytes on media.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct RawHeader {
    len: U32,
    count: U32,
    seq: U64,
    epoch: U64,
    flags: U32,
    crc: U32,
}

const _: () = assert!(size_of::<RawHeader>() as u64 == GROUP_HEADER);
const _: () = assert!(offset_of!(RawHeader, count) == 4);
const _: () = assert!(offset_of!(RawHeader, seq) == 8);
const _: () = assert!(offset_of!(RawHeader, epoch) == 16);
const _: () = assert!(offset_of!(RawHeader, flags) == 24);
const _: () = assert!(offset_of!(RawHeader, crc) == 28);

impl Header {
    /// Parses the 32 header bytes; nothing is validated yet.
    pub(crate) fn parse(bytes: &[u8; 32]) -> Self {
        let raw: RawHeader = zerocopy::transmute!(*bytes);
        Self {
            len: raw.len.get(),
            count: raw.count.get(),
            seq: raw.seq.get(),
            epoch: raw.epoch.get(),
            flags: raw.flags.get(),
            crc: raw.crc.get(),
        }
    }

    /// The header as stored.
    #[inline]
    fn raw(&self) -> RawHeader {
        RawHeader {
            len: self.len.into(),
            count: self.count.into(),
            seq: self.seq.into(),
            epoch: self.epoch.into(),
            flags: self.flags.into(),
            crc: self.crc.into(),
        }
    }

    /// The four words in store order, CRC word last.
    #[inline]
    pub(crate) fn words(&self) -> [u64; 4] {
        let words: [U64; 4] = zerocopy::transmute!(self.raw());
        words.map(U64::get)
    }

    /// The group's checksum, given `body_crc`, the running CRC-32C over
    /// its records as stored: that CRC continued over header bytes 0..28.
    #[inline]
    pub(crate) fn checksum(&self, mut body_crc: Crc32c) -> u32 {
        // Bytes 0..28 are the first three words and the low half of the
        // fourth: fed as words, they need no copy into a byte buffer.
        let [w0, w1, w2, w3] = self.words();
        body_crc.update_header([w0, w1, w2], w3 as u32);
        body_crc.value()
    }

    /// Bytes the whole group occupies; `None` if absurd.
    pub(crate) fn size(&self) -> Option<u64> {
        group_size(u64::from(self.len))
    }
}

/// A record's entry header: its payload length and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) len: u16,
    pub(crate) kind: u16,
}

impl Entry {
    /// The four bytes as stored, as a little-endian word.
    #[inline]
    pub(crate) fn word(self) -> u32 {
        u32::from(self.len) | u32::from(self.kind) << 16
    }

    /// Parses the four stored bytes.
    #[inline]
    pub(crate) fn parse(bytes: [u8; 4]) -> Self {
        let word = u32::from_le_bytes(bytes);
        Self {
            len: word as u16,
            kind: (word >> 16) as u16,
        }
    }
}

/// Bytes a group whose records take `body` bytes occupies; `None` if
/// absurd.
#[inline]
pub(crate) fn group_size(body: u64) -> Option<u64> {
    let end = body.checked_add(GROUP_HEADER)?;
    Some(end.checked_add(RECORD_ALIGN - 1)? / RECORD_ALIGN * RECORD_ALIGN)
}

/// Bytes a record with a `len`-byte payload takes inside its group.
#[inline]
pub(crate) fn entry_size(len: u64) -> u64 {
    ENTRY_HEADER + len
}

/// Bytes a group of one record with a `len`-byte payload occupies, an
/// upper bound on what the record adds to any group; `None` if absurd.
pub(crate) fn record_size(len: u64) -> Option<u64> {
    group_size(len.checked_add(ENTRY_HEADER)?)
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
            count: 3,
            seq: 0x0102_0304_0506_0708,
            epoch: 9,
            flags: 0,
            crc: 0xdead_beef,
        };
        let mut bytes = [0; 32];
        for (i, w) in header.words().iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        assert_eq!(Header::parse(&bytes), header);
        assert_eq!(bytes[..8], [77, 0, 0, 0, 3, 0, 0, 0]);
        let crc_a = header.checksum(Crc32c::new());
        let crc_b = Header { seq: 1, ..header }.checksum(Crc32c::new());
        assert_ne!(crc_a, crc_b);
        // The stored CRC itself is not covered.
        assert_eq!(crc_a, Header { crc: 0, ..header }.checksum(Crc32c::new()));
        let entry = Entry {
            len: 0x0102,
            kind: 0x0304,
        };
        assert_eq!(entry.word().to_le_bytes(), [2, 1, 4, 3]);
        assert_eq!(Entry::parse(entry.word().to_le_bytes()), entry);
    }

    /// The group checksum of `body` (records as stored) under `header`.
    fn group_crc(header: &Header, body: &[u8]) -> u32 {
        let mut crc = Crc32c::new();
        let mut at = 0;
        while at < body.len() {
            let entry = Entry::parse(body[at..at + 4].try_into().unwrap());
            let end = at + 4 + usize::from(entry.len);
            crc.update_record(entry.word(), &body[at + 4..end]);
            at = end;
        }
        header.checksum(crc)
    }

    #[test]
    fn equal_flips_at_any_two_places_of_a_group_change_its_checksum() {
        // Records of 107 and 20 bytes, then one of 300 (longer than a
        // 256-byte piece): a checksum of per-piece checksums missed one
        // pattern flipped in two records at offsets 4 bytes apart from
        // their ends (the fuzzer's find). The checksum is linear, so a pair
        // of flips cancels exactly when the two flips alone change it
        // alike: every flip's change must be distinct, and none zero.
        let mut body = Vec::new();
        for (len, fill) in [(107u16, 11u8), (20, 139), (300, 7)] {
            let entry = Entry { len, kind: 0x42 };
            body.extend_from_slice(&entry.word().to_le_bytes());
            body.extend((0..len).map(|i| fill ^ (i as u8)));
        }
        let header = Header {
            len: body.len() as u32,
            count: 3,
            seq: 15,
            epoch: 1,
            flags: 0,
            crc: 0,
        };
        let clean = group_crc(&header, &body);
        for pattern in [0x94u8, 0x01, 0xff] {
            let mut seen = std::collections::HashMap::new();
            let mut flipped = body.clone();
            let entries = [0, 111, 135];
            for at in 0..body.len() {
                if entries.iter().any(|&e| (e..e + 2).contains(&at)) {
                    continue; // a length: the walk rejects the group anyway
                }
                flipped[at] ^= pattern;
                let delta = group_crc(&header, &flipped) ^ clean;
                flipped[at] ^= pattern;
                assert_ne!(delta, 0, "byte {at} ^ {pattern:#x} undetected");
                if let Some(other) = seen.insert(delta, at) {
                    panic!("bytes {other} and {at} ^ {pattern:#x} cancel out");
                }
            }
            // The header's own bytes too (the stored CRC excepted).
            let mut bytes = [0u8; 32];
            for (i, w) in header.words().iter().enumerate() {
                bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
            }
            for at in 0..28 {
                bytes[at] ^= pattern;
                let changed = Header::parse(&bytes);
                bytes[at] ^= pattern;
                if changed.len != header.len {
                    continue; // the group's extent moves: checked by the walk
                }
                let delta = group_crc(&changed, &body) ^ clean;
                assert_ne!(delta, 0, "header byte {at} ^ {pattern:#x} undetected");
                if let Some(other) = seen.insert(delta, body.len() + at) {
                    panic!("byte {other} and header byte {at} ^ {pattern:#x} cancel out");
                }
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(record_size(0), Some(64));
        assert_eq!(record_size(28), Some(64));
        assert_eq!(record_size(29), Some(128));
        assert_eq!(record_size(64), Some(128));
        assert_eq!(record_size(4096), Some(4160));
        assert_eq!(record_size(u64::MAX), None);
        // Eight 64-byte records: 544 bytes of entries, 9 lines in all.
        assert_eq!(group_size(8 * entry_size(64)), Some(576));
        assert_eq!(group_size(u64::MAX), None);
    }
}
