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

use nvirt_persist_meta::{Encode, MAX_PAYLOAD, RecordKind, record_size};

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

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    if let Some(dst) = out.get_mut(at..at + 4) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

fn put_u64(out: &mut [u8], at: usize, v: u64) {
    if let Some(dst) = out.get_mut(at..at + 8) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// Reads the u32 at `at`, if the payload holds it.
pub(crate) fn get_u32(p: &[u8], at: usize) -> Option<u32> {
    let b = p.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the u64 at `at`, if the payload holds it.
pub(crate) fn get_u64(p: &[u8], at: usize) -> Option<u64> {
    let b = p.get(at..at.checked_add(8)?)?;
    let mut w = [0; 8];
    w.copy_from_slice(b);
    Some(u64::from_le_bytes(w))
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
        out.fill(0);
        put_u32(out, 0, self.slot.into());
        out[4] = self.flags;
        out[5] = self.name.len() as u8;
        if let Some(dst) = out.get_mut(8..24) {
            dst.copy_from_slice(&self.id.to_bytes());
        }
        put_u64(out, 24, self.quota);
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
        out.fill(0);
        put_u32(out, 0, self.slot.into());
        put_u64(out, 8, self.value);
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
        put_u32(out, 0, self.slot.into());
        put_u32(out, 4, self.count as u32);
        let mut i = self.first;
        for n in 0..self.count {
            let Some(node) = self.nodes.get(i as usize) else {
                break;
            };
            let at = LIST_HEADER + n * 16;
            put_u64(out, at, entry_word(node.gpfn, node.order));
            put_u64(out, at + 8, node.mfn);
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
        put_u32(out, 0, self.slot.into());
        put_u32(out, 4, self.gpfns.len() as u32);
        for (n, gpfn) in self.gpfns.iter().enumerate() {
            let mfn = self
                .state
                .check_block(self.slot, gpfn.get(), self.order)
                .map_or(0, |(mfn, _)| mfn);
            let at = LIST_HEADER + n * 16;
            put_u64(out, at, entry_word(gpfn.get(), self.order));
            put_u64(out, at + 8, mfn);
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
        assert_eq!(get_u32(&out, 0), Some(3));
        assert_eq!((out[4], out[5]), (2, 2));
        assert_eq!(get_u64(&out, 24), Some(99));
        assert_eq!(&out[32..], b"vm");
        assert_eq!(get_u64(&out, 30), None);
    }
}
