//! The checkpoint snapshot: the whole pool, streamed.
//!
//! | bytes | what |
//! |---|---|
//! | 64 | header: magic `NVPSNAP1`, domains u32, 0 u32, extents u64, owned frames u64, data frames u64, zeros |
//! | 80 per domain | slot u32, flags u8, name length u8, 0 u16, id 16 B, quota u64, frames u64, extents u64, name 32 B |
//! | 16 per extent | after its domain, by guest frame: gpfn \| order << 56 u64, mfn u64 |
//!
//! An empty snapshot (the log's state right after format) is an empty
//! pool. Loading claims each extent's frames in the heap and builds each
//! domain's tree in one pass from the sorted extents, so recovery costs one
//! claim and one index insertion per extent.

use core::mem::{offset_of, size_of};

use nvirt_persist_meta::{CheckpointReader, CheckpointWriter, Pmem, SnapshotError};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::avl::{self, InOrder};
use crate::config::{DOMAIN_RECORD, EXTENT_ENTRY, SNAPSHOT_HEADER};
use crate::damage::{Damage, DamageError, Location};
use crate::records::Entry;
use crate::state::{State, flags};
use crate::types::DomainUuid;
use crate::work::slot_state;

/// First bytes of a snapshot.
pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"NVPSNAP1";

/// A snapshot's header.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct Header {
    magic: [u8; 8],
    domains: U32,
    reserved: U32,
    extents: U64,
    owned_frames: U64,
    data_frames: U64,
    zero: [u8; 24],
}

const _: () = assert!(size_of::<Header>() as u64 == SNAPSHOT_HEADER);
const _: () = assert!(offset_of!(Header, domains) == 8);
const _: () = assert!(offset_of!(Header, reserved) == 12);
const _: () = assert!(offset_of!(Header, extents) == 16);
const _: () = assert!(offset_of!(Header, owned_frames) == 24);
const _: () = assert!(offset_of!(Header, data_frames) == 32);
const _: () = assert!(offset_of!(Header, zero) == 40);

/// A domain's record; its extents follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct DomainRecord {
    slot: U32,
    flags: u8,
    name_len: u8,
    reserved: U16,
    id: [u8; 16],
    quota: U64,
    frames: U64,
    extents: U64,
    name: [u8; 32],
}

const _: () = assert!(size_of::<DomainRecord>() as u64 == DOMAIN_RECORD);
const _: () = assert!(offset_of!(DomainRecord, flags) == 4);
const _: () = assert!(offset_of!(DomainRecord, name_len) == 5);
const _: () = assert!(offset_of!(DomainRecord, reserved) == 6);
const _: () = assert!(offset_of!(DomainRecord, id) == 8);
const _: () = assert!(offset_of!(DomainRecord, quota) == 24);
const _: () = assert!(offset_of!(DomainRecord, frames) == 32);
const _: () = assert!(offset_of!(DomainRecord, extents) == 40);
const _: () = assert!(offset_of!(DomainRecord, name) == 48);

/// Bytes buffered before each store into the slot.
const CHUNK: usize = 4096;

struct Buffered<'a, 'p, P: Pmem> {
    out: &'a mut CheckpointWriter<'p, P>,
    buf: [u8; CHUNK],
    len: usize,
}

impl<P: Pmem> Buffered<'_, '_, P> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        if self.len + bytes.len() > CHUNK {
            self.flush()?;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        if self.len > 0 {
            self.out.write(&self.buf[..self.len])?;
            self.len = 0;
        }
        Ok(())
    }
}

/// Streams the live domains and their extents into `out`.
pub(crate) fn write<P: Pmem>(
    state: &State<'_>,
    out: &mut CheckpointWriter<'_, P>,
) -> Result<(), SnapshotError> {
    let mut w = Buffered {
        out,
        buf: [0; CHUNK],
        len: 0,
    };
    let header = Header {
        magic: SNAPSHOT_MAGIC,
        domains: state.live_domains.into(),
        reserved: U32::ZERO,
        extents: u64::from(state.used_nodes).into(),
        owned_frames: state.owned_frames.into(),
        data_frames: state.geo.data_frames().into(),
        zero: [0; 24],
    };
    w.put(header.as_bytes())?;
    for (s, slot) in state.domains.iter().enumerate() {
        if slot.state != slot_state::LIVE {
            continue;
        }
        let d = DomainRecord {
            slot: (s as u32).into(),
            flags: slot.flags,
            name_len: slot.name_len,
            reserved: U16::ZERO,
            id: slot.id,
            quota: slot.quota.into(),
            frames: slot.frames.into(),
            extents: slot.extents.into(),
            name: slot.name,
        };
        w.put(d.as_bytes())?;
        let mut it = InOrder::from(state.nodes, slot.root, 0);
        while let Some(i) = it.next(state.nodes) {
            let node = &state.nodes[i as usize];
            w.put(Entry::new(node.gpfn, node.order, node.mfn).as_bytes())?;
        }
    }
    w.flush()
}

/// Reads a snapshot into the empty `state`.
pub(crate) fn load(state: &mut State<'_>, r: &mut CheckpointReader<'_>) -> Result<(), DamageError> {
    if r.is_empty() {
        return Ok(());
    }
    let at = |r: &CheckpointReader<'_>| Location::Snapshot {
        pos: r.len() - r.remaining(),
    };
    let damage = |r: &CheckpointReader<'_>, what| DamageError { at: at(r), what };
    let mut bytes = [0u8; SNAPSHOT_HEADER as usize];
    r.read_exact(&mut bytes)
        .map_err(|_| damage(r, Damage::Truncated))?;
    let header: Header = zerocopy::transmute!(bytes);
    if header.magic != SNAPSHOT_MAGIC {
        return Err(damage(
            r,
            Damage::SnapshotMagic {
                found: u64::from_le_bytes(header.magic),
            },
        ));
    }
    let domains = header.domains.get();
    let (extents, owned, data_frames) = (
        header.extents.get(),
        header.owned_frames.get(),
        header.data_frames.get(),
    );
    let reserved =
        u64::from(header.reserved.get()) | header.zero.iter().fold(0, |a, &b| a | u64::from(b));
    if reserved != 0 {
        return Err(damage(r, Damage::Reserved { value: reserved }));
    }
    if data_frames != state.geo.data_frames() {
        return Err(damage(
            r,
            Damage::Count {
                what: "data frames",
                stored: data_frames,
                found: state.geo.data_frames(),
            },
        ));
    }
    for _ in 0..domains {
        load_domain(state, r)?;
    }
    let counts = [
        ("domains", u64::from(domains), u64::from(state.live_domains)),
        ("extents", extents, u64::from(state.used_nodes)),
        ("owned frames", owned, state.owned_frames),
        ("snapshot bytes left", 0, r.remaining()),
    ];
    for (what, stored, found) in counts {
        if stored != found {
            return Err(damage(
                r,
                Damage::Count {
                    what,
                    stored,
                    found,
                },
            ));
        }
    }
    Ok(())
}

fn load_domain(state: &mut State<'_>, r: &mut CheckpointReader<'_>) -> Result<(), DamageError> {
    let pos = |r: &CheckpointReader<'_>| Location::Snapshot {
        pos: r.len() - r.remaining(),
    };
    let mut bytes = [0u8; DOMAIN_RECORD as usize];
    let start = pos(r);
    let damage = |what| DamageError { at: start, what };
    r.read_exact(&mut bytes)
        .map_err(|_| damage(Damage::Truncated))?;
    let d: DomainRecord = zerocopy::transmute!(bytes);
    let raw_slot = d.slot.get();
    let (flags, name_len) = (d.flags, d.name_len);
    let id = DomainUuid::from_bytes(d.id);
    let quota = d.quota.get();
    let (frames, extents) = (d.frames.get(), d.extents.get());
    let name = &d.name[..];
    let s = check_slot(state, raw_slot).map_err(damage)?;
    if d.reserved.get() != 0 {
        return Err(damage(Damage::Reserved {
            value: d.reserved.get().into(),
        }));
    }
    if flags & !flags::KNOWN != 0 {
        return Err(damage(Damage::Flags {
            slot: raw_slot,
            flags: flags.into(),
        }));
    }
    let valid_name = usize::from(name_len) <= name.len()
        && core::str::from_utf8(&name[..usize::from(name_len).min(32)]).is_ok()
        && name[usize::from(name_len).min(32)..]
            .iter()
            .all(|&b| b == 0);
    if !valid_name {
        return Err(damage(Damage::Name { slot: raw_slot }));
    }
    if state.id_taken(id) {
        return Err(damage(Damage::DuplicateId { id }));
    }
    let max_extents = u64::from(state.free_nodes());
    if extents > max_extents {
        return Err(damage(Damage::Capacity { what: "extents" }));
    }
    state.create(s, id, &name[..usize::from(name_len)], quota, flags);
    let first = state.next_fresh();
    let mut prev_end = 0u64;
    let mut chunk = [0u8; 4096];
    let mut left = extents;
    while left > 0 {
        let n = left.min(chunk.len() as u64 / EXTENT_ENTRY) as usize;
        let at = pos(r);
        let bytes = &mut chunk[..n * EXTENT_ENTRY as usize];
        r.read_exact(bytes).map_err(|_| DamageError {
            at,
            what: Damage::Truncated,
        })?;
        for (k, e) in bytes.chunks_exact(EXTENT_ENTRY as usize).enumerate() {
            let at = match at {
                Location::Snapshot { pos } => Location::Snapshot {
                    pos: pos + k as u64 * EXTENT_ENTRY,
                },
                other => other,
            };
            let fail = |what| DamageError { at, what };
            let entry = Entry::read_from_bytes(e).unwrap_or(Entry::new(0, 0, 0));
            let (gpfn, order) = entry.block();
            let mfn = entry.mfn.get();
            if gpfn < prev_end {
                return Err(fail(Damage::GuestOverlap {
                    slot: raw_slot,
                    gpfn,
                }));
            }
            let i = state.claim_extent(s, gpfn, mfn, order).map_err(fail)?;
            if i != first + (extents - left) as u32 + k as u32 {
                return Err(fail(Damage::Capacity { what: "extents" }));
            }
            prev_end = state.nodes[i as usize].gpfn_end();
            state.note_loaded(s, i);
        }
        left -= n as u64;
    }
    let end = first + extents as u32;
    let root = avl::build(state.nodes, first, end);
    state.domains[usize::from(s)].root = root;
    let slot = &state.domains[usize::from(s)];
    if slot.frames != frames {
        return Err(damage(Damage::Count {
            what: "domain frames",
            stored: frames,
            found: slot.frames,
        }));
    }
    if slot.frames > slot.quota {
        return Err(damage(Damage::Quota {
            slot: raw_slot,
            frames: slot.frames,
            quota: slot.quota,
        }));
    }
    Ok(())
}

/// The slot number `raw` as a free slot of `state`.
pub(crate) fn check_slot(state: &State<'_>, raw: u32) -> Result<u16, Damage> {
    let max = state.geo.max_domains;
    if raw >= max {
        return Err(Damage::Slot { slot: raw, max });
    }
    let s = raw as u16;
    match state.slot(s) {
        Some(slot) if slot.state == slot_state::FREE => Ok(s),
        _ => Err(Damage::SlotInUse { slot: raw }),
    }
}
