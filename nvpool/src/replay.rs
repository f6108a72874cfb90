//! Recovery's side of the log: the snapshot, then every record, applied
//! through the same state changes the live operations use, each checked
//! against the state it applies to.

use core::mem::size_of;

use nvirt_persist_meta::{CheckpointReader, RecordView, Replay};
use zerocopy::FromBytes;

use crate::config::{LOG_OFFSET, MAX_DOMAINS};
use crate::damage::{Damage, DamageError, Location};
use crate::records::{
    ADD, CREATE, CreateHeader, DESTROY, Entry, FLAGS, ListHeader, QUOTA, REMOVE, SlotRecord,
};
use crate::snapshot::{self, check_slot};
use crate::state::{State, flags};
use crate::types::DomainUuid;
use crate::work::slot_state;

/// Rebuilds a pool's state from its log.
pub(crate) struct Rebuild<'s, 'w> {
    pub(crate) state: &'s mut State<'w>,
    /// The last record replayed did not end its group.
    in_group: bool,
    pub(crate) records: u64,
    /// Sequence number of the last record that freed frames.
    pub(crate) last_free_seq: u64,
}

impl<'s, 'w> Rebuild<'s, 'w> {
    pub(crate) fn new(state: &'s mut State<'w>) -> Self {
        Self {
            state,
            in_group: false,
            records: 0,
            last_free_seq: 0,
        }
    }
}

impl Replay for Rebuild<'_, '_> {
    type Error = DamageError;

    fn checkpoint(&mut self, snapshot: &mut CheckpointReader<'_>) -> Result<(), DamageError> {
        snapshot::load(self.state, snapshot)
    }

    fn record(&mut self, record: &RecordView<'_>) -> Result<(), DamageError> {
        if !self.in_group {
            // A group starts only once the frees of every earlier group
            // are scrubbed and durable.
            self.state.complete_pending();
        }
        apply(self.state, record).map_err(|what| DamageError {
            at: Location::Record {
                seq: record.seq(),
                offset: LOG_OFFSET + record.offset(),
            },
            what,
        })?;
        if record.kind() == REMOVE || record.kind() == DESTROY {
            self.last_free_seq = record.seq();
        }
        self.in_group = !record.ends_group();
        self.records += 1;
        Ok(())
    }
}

/// The live slot a record names.
fn live_slot(state: &State<'_>, raw: u32) -> Result<u16, Damage> {
    let max = state.geo.max_domains;
    if raw >= max || raw > MAX_DOMAINS {
        return Err(Damage::Slot { slot: raw, max });
    }
    match state.slot(raw as u16) {
        Some(slot) if slot.state == slot_state::LIVE => Ok(raw as u16),
        _ => Err(Damage::SlotFree { slot: raw }),
    }
}

fn apply(state: &mut State<'_>, record: &RecordView<'_>) -> Result<(), Damage> {
    let p = record.payload();
    let kind = record.kind();
    let bad = Damage::Payload {
        kind: kind.raw(),
        len: p.len(),
    };
    if kind == CREATE {
        let (header, name) = CreateHeader::read_from_prefix(p).map_err(|_| bad)?;
        let name_len = usize::from(header.name_len);
        if name.len() != name_len || name_len > 32 {
            return Err(bad);
        }
        let raw = header.slot.get();
        let s = check_slot(state, raw)?;
        let flags = header.flags;
        check_reserved(header.reserved.get().into())?;
        if flags & !flags::KNOWN != 0 {
            return Err(Damage::Flags {
                slot: raw,
                flags: flags.into(),
            });
        }
        if core::str::from_utf8(name).is_err() {
            return Err(Damage::Name { slot: raw });
        }
        let id = DomainUuid::from_bytes(header.id);
        if state.id_taken(id) {
            return Err(Damage::DuplicateId { id });
        }
        state.create(s, id, name, header.quota.get(), flags);
        return Ok(());
    }
    if kind == DESTROY || kind == FLAGS || kind == QUOTA {
        let record = SlotRecord::read_from_bytes(p).map_err(|_| bad)?;
        let raw = record.slot.get();
        let s = live_slot(state, raw)?;
        check_reserved(record.reserved.get().into())?;
        let value = record.value.get();
        if kind == DESTROY {
            check_reserved(value)?;
            state.begin_destroy(s);
        } else if kind == FLAGS {
            if value & !u64::from(flags::KNOWN) != 0 {
                return Err(Damage::Flags {
                    slot: raw,
                    flags: value,
                });
            }
            state.domains[usize::from(s)].flags = value as u8;
        } else {
            let frames = state.domains[usize::from(s)].frames;
            if value < frames {
                return Err(Damage::Quota {
                    slot: raw,
                    frames,
                    quota: value,
                });
            }
            state.domains[usize::from(s)].quota = value;
        }
        return Ok(());
    }
    if kind == ADD || kind == REMOVE {
        let (header, entries) = ListHeader::read_from_prefix(p).map_err(|_| bad)?;
        let count = header.count.get() as usize;
        if entries.len() != count * size_of::<Entry>() {
            return Err(bad);
        }
        let raw = header.slot.get();
        let s = live_slot(state, raw)?;
        for e in entries.chunks_exact(size_of::<Entry>()) {
            let entry = Entry::read_from_bytes(e).map_err(|_| bad)?;
            let (gpfn, order) = entry.block();
            let mfn = entry.mfn.get();
            if kind == ADD {
                state.add_extent(s, gpfn, mfn, order)?;
            } else {
                state.remove_block(s, gpfn, order, mfn)?;
            }
        }
        return Ok(());
    }
    Err(Damage::UnknownKind { kind: kind.raw() })
}

fn check_reserved(value: u64) -> Result<(), Damage> {
    if value == 0 {
        Ok(())
    } else {
        Err(Damage::Reserved { value })
    }
}
