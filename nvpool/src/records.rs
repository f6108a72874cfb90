//! The pool's log records: what each mutation appends, and how replay
//! reads it back. All fields little-endian.
//!
//! | kind | payload |
//! |---|---|
//! | 1 create | slot u32, flags u8, name length u8, 0 u16, id 16 B, quota u64 (frames), name |
//! | 2 destroy | slot u32, 0 u32, 0 u64 |
//! | 3 flags | slot u32, 0 u32, flags u64 |
//! | 4 quota | slot u32, 0 u32, quota u64 |
//! | 5 add | slot u32, count u32, then `count` entries: gpfn \| order << 56 u64, mfn u64 |
//! | 6 remove | slot u32, count u32, then `count` entries: gpfn \| order << 56 u64, mfn of the first frame u64 |
//!
//! Frees are two-phase without a second record: a remove or destroy puts
//! frames on the pending list, and they return to the heap when the next
//! commit group begins, because the pool starts no group before the scrub
//! of those frames is durable. For the frees of the last group, the scrub
//! word (see [`crate::scrub`]) says whether their scrub finished; if not,
//! recovery scrubs them again.

use core::mem::{offset_of, size_of};

use nvirt_persist_meta::{Encode, MAX_PAYLOAD, RecordKind, record_size};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::config::EXTENT_ENTRY;
use crate::state::State;
use crate::types::DomainUuid;
use crate::work::Node;
use nvirt_addr::Gfn;

const fn kind(n: u16) -> RecordKind {
    match RecordKind::new(n) {
        Some(k) => k,
        None => panic!("owner record kinds are below 0xff00"),
    }
}

/// A domain is created.
pub(crate) const CREATE: RecordKind = kind(1);
/// A domain is destroyed; its frames wait for their scrub.
pub(crate) const DESTROY: RecordKind = kind(2);
/// A domain's flags change.
pub(crate) const FLAGS: RecordKind = kind(3);
/// A domain's quota changes.
pub(crate) const QUOTA: RecordKind = kind(4);
/// Extents join a domain.
pub(crate) const ADD: RecordKind = kind(5);
/// Blocks of guest frames leave a domain; their frames wait for their
/// scrub.
pub(crate) const REMOVE: RecordKind = kind(6);

/// Bytes before the entries of an add or remove record.
pub(crate) const LIST_HEADER: usize = 8;
/// Entries in one add or remove record.
pub(crate) const ENTRIES_PER_RECORD: usize = (MAX_PAYLOAD - LIST_HEADER) / EXTENT_ENTRY as usize;
/// Bytes of a create record before the name.
pub(crate) const CREATE_HEADER: usize = 32;
/// Bytes of a destroy, flags or quota record.
pub(crate) const SLOT_RECORD: usize = 16;

/// The fixed part of a create record; the name follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct CreateHeader {
    pub(crate) slot: U32,
    pub(crate) flags: u8,
    pub(crate) name_len: u8,
    pub(crate) reserved: U16,
    pub(crate) id: [u8; 16],
    pub(crate) quota: U64,
}

const _: () = assert!(size_of::<CreateHeader>() == CREATE_HEADER);
const _: () = assert!(offset_of!(CreateHeader, flags) == 4);
const _: () = assert!(offset_of!(CreateHeader, name_len) == 5);
const _: () = assert!(offset_of!(CreateHeader, reserved) == 6);
const _: () = assert!(offset_of!(CreateHeader, id) == 8);
const _: () = assert!(offset_of!(CreateHeader, quota) == 24);

/// A destroy, flags or quota record.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct SlotRecord {
    pub(crate) slot: U32,
    pub(crate) reserved: U32,
    pub(crate) value: U64,
}

const _: () = assert!(size_of::<SlotRecord>() == SLOT_RECORD);
const _: () = assert!(offset_of!(SlotRecord, reserved) == 4);
const _: () = assert!(offset_of!(SlotRecord, value) == 8);

/// The start of an add or remove record; `count` entries follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct ListHeader {
    pub(crate) slot: U32,
    pub(crate) count: U32,
}

const _: () = assert!(size_of::<ListHeader>() == LIST_HEADER);
const _: () = assert!(offset_of!(ListHeader, count) == 4);

/// One entry of an add or remove record (and of a snapshot's extents).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct Entry {
    /// The guest frame number, the order in the top byte.
    pub(crate) word: U64,
    pub(crate) mfn: U64,
}

const _: () = assert!(size_of::<Entry>() as u64 == EXTENT_ENTRY);
const _: () = assert!(offset_of!(Entry, mfn) == 8);

impl Entry {
    pub(crate) fn new(gpfn: u64, order: u8, mfn: u64) -> Self {
        Self {
            word: entry_word(gpfn, order).into(),
            mfn: mfn.into(),
        }
    }

    /// The guest frame number and the order.
    pub(crate) fn block(&self) -> (u64, u8) {
        split_word(self.word.get())
    }
}

/// Copies `value`'s bytes to the start of `out`, if it has room.
fn put<T: IntoBytes + Immutable>(out: &mut [u8], at: usize, value: &T) {
    let bytes = value.as_bytes();
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Packs an entry's first word.
pub(crate) const fn entry_word(gpfn: u64, order: u8) -> u64 {
    gpfn | (order as u64) << 56
}

/// Unpacks an entry's first word.
pub(crate) const fn split_word(word: u64) -> (u64, u8) {
    (word & ((1 << 56) - 1), (word >> 56) as u8)
}

/// Bytes of log the records of a list of `n` entries take.
pub(crate) fn list_bytes(n: u64) -> u64 {
    let per = ENTRIES_PER_RECORD as u64;
    let full = n / per;
    let rest = n % per;
    let mut bytes = full.saturating_mul(record_size(LIST_HEADER + ENTRIES_PER_RECORD * 16));
    if rest > 0 {
        bytes = bytes.saturating_add(record_size(LIST_HEADER + rest as usize * 16));
    }
    bytes
}

/// A create record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Create<'a> {
    pub(crate) slot: u16,
    pub(crate) flags: u8,
    pub(crate) id: DomainUuid,
    pub(crate) quota: u64,
    pub(crate) name: &'a [u8],
}

impl Encode for Create<'_> {
    fn kind(&self) -> RecordKind {
        CREATE
    }
    fn encoded_len(&self) -> usize {
        CREATE_HEADER + self.name.len()
    }
    fn encode(&self, out: &mut [u8]) {
        let header = CreateHeader {
            slot: u32::from(self.slot).into(),
            flags: self.flags,
            name_len: self.name.len() as u8,
            reserved: U16::ZERO,
            id: self.id.to_bytes(),
            quota: self.quota.into(),
        };
        put(out, 0, &header);
        if let Some(dst) = out.get_mut(CREATE_HEADER..) {
            dst.copy_from_slice(self.name);
        }
    }
}

/// A destroy, flags or quota record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotValue {
    pub(crate) kind: RecordKind,
    pub(crate) slot: u16,
    pub(crate) value: u64,
}

impl Encode for SlotValue {
    fn kind(&self) -> RecordKind {
        self.kind
    }
    fn encoded_len(&self) -> usize {
        SLOT_RECORD
    }
    fn encode(&self, out: &mut [u8]) {
        let record = SlotRecord {
            slot: u32::from(self.slot).into(),
            reserved: U32::ZERO,
            value: self.value.into(),
        };
        put(out, 0, &record);
    }
}

/// An add record of up to [`ENTRIES_PER_RECORD`] nodes of a plan, from
/// node `first` along the `link` chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AddList<'a> {
    pub(crate) slot: u16,
    pub(crate) nodes: &'a [Node],
    pub(crate) first: u32,
    pub(crate) count: usize,
}

impl Encode for AddList<'_> {
    fn kind(&self) -> RecordKind {
        ADD
    }
    fn encoded_len(&self) -> usize {
        LIST_HEADER + self.count * 16
    }
    fn encode(&self, out: &mut [u8]) {
        let header = ListHeader {
            slot: u32::from(self.slot).into(),
            count: (self.count as u32).into(),
        };
        put(out, 0, &header);
        let mut i = self.first;
        for n in 0..self.count {
            let Some(node) = self.nodes.get(i as usize) else {
                break;
            };
            let entry = Entry::new(node.gpfn, node.order, node.mfn);
            put(out, LIST_HEADER + n * size_of::<Entry>(), &entry);
            i = node.link;
        }
    }
}

/// A remove record: blocks of `2^order` guest frames at `gpfns`, each with
/// the machine frame that backs its first frame (looked up in `state`,
/// which the blocks have been checked against).
#[derive(Clone, Copy)]
pub(crate) struct RemoveList<'a, 'w> {
    pub(crate) slot: u16,
    pub(crate) order: u8,
    pub(crate) gpfns: &'a [Gfn],
    pub(crate) state: &'a State<'w>,
}

impl Encode for RemoveList<'_, '_> {
    fn kind(&self) -> RecordKind {
        REMOVE
    }
    fn encoded_len(&self) -> usize {
        LIST_HEADER + self.gpfns.len() * 16
    }
    fn encode(&self, out: &mut [u8]) {
        let header = ListHeader {
            slot: u32::from(self.slot).into(),
            count: (self.gpfns.len() as u32).into(),
        };
        put(out, 0, &header);
        for (n, gpfn) in self.gpfns.iter().enumerate() {
            let mfn = self
                .state
                .check_block(self.slot, gpfn.get(), self.order)
                .map_or(0, |(mfn, _)| mfn);
            let entry = Entry::new(gpfn.get(), self.order, mfn);
            put(out, LIST_HEADER + n * size_of::<Entry>(), &entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_lists_are_sized() {
        assert_eq!(
            split_word(entry_word(0xab_cdef_0123, 18)),
            (0xab_cdef_0123, 18)
        );
        assert_eq!(ENTRIES_PER_RECORD, 255);
        assert_eq!(list_bytes(0), 0);
        assert_eq!(list_bytes(1), record_size(24));
        assert_eq!(list_bytes(256), record_size(4088) + record_size(24));
        let c = Create {
            slot: 3,
            flags: 2,
            id: DomainUuid::new(7),
            quota: 99,
            name: b"vm",
        };
        let mut out = vec![0xee; c.encoded_len()];
        c.encode(&mut out);
        // The bytes of the layout in the module documentation.
        assert_eq!(out[..4], 3u32.to_le_bytes());
        assert_eq!(out[4..8], [2, 2, 0, 0]);
        assert_eq!(out[8..24], DomainUuid::new(7).to_bytes());
        assert_eq!(out[24..32], 99u64.to_le_bytes());
        assert_eq!(&out[32..], b"vm");
        let (header, name) = CreateHeader::read_from_prefix(&out).unwrap();
        assert_eq!(
            (header.slot.get(), header.quota.get(), name),
            (3, 99, &b"vm"[..])
        );
        let v = SlotValue {
            kind: QUOTA,
            slot: 2,
            value: 0x1234,
        };
        let mut out = vec![0xee; v.encoded_len()];
        v.encode(&mut out);
        assert_eq!(out[..8], [2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(out[8..], 0x1234u64.to_le_bytes());
        let entry = Entry::new(0x55, 3, 0x8000);
        assert_eq!(entry.as_bytes()[..8], (0x55u64 | 3 << 56).to_le_bytes());
        assert_eq!(entry.block(), (0x55, 3));
    }
}
