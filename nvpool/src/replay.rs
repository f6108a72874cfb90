//! Recovery's side of the log: the snapshot, then every record, applied
//! through the same state changes the live operations use, each checked
//! against the state it applies to.

use nvirt_persist_meta::{CheckpointReader, RecordView, Replay};

use crate::config::{LOG_OFFSET, MAX_DOMAINS};
use crate::damage::{Damage, DamageError, Location};
use crate::records::{
    ADD, CREATE, CREATE_HEADER, DESTROY, FLAGS, LIST_HEADER, QUOTA, REMOVE, SLOT_RECORD, get_u32,
    get_u64, split_word,
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
    let slot = || get_u32(p, 0).ok_or(bad);
    if kind == CREATE {
        let name_len = usize::from(*p.get(5).ok_or(bad)?);
        if p.len() != CREATE_HEADER + name_len || name_len > 32 {
            return Err(bad);
        }
        let raw = slot()?;
        let s = check_slot(state, raw)?;
        let flags = p[4];
        check_reserved(u64::from(p[6]) | u64::from(p[7]) << 8)?;
        if flags & !flags::KNOWN != 0 {
            return Err(Damage::Flags {
                slot: raw,
                flags: flags.into(),
            });
        }
        let name = &p[CREATE_HEADER..];
        if core::str::from_utf8(name).is_err() {
            return Err(Damage::Name { slot: raw });
        }
        let id = DomainUuid::from_bytes(p[8..24].try_into().map_err(|_| bad)?);
        if state.id_taken(id) {
            return Err(Damage::DuplicateId { id });
        }
        let quota = get_u64(p, 24).ok_or(bad)?;
        state.create(s, id, name, quota, flags);
        return Ok(());
    }
    if kind == DESTROY || kind == FLAGS || kind == QUOTA {
        if p.len() != SLOT_RECORD {
            return Err(bad);
        }
        let raw = slot()?;
        let s = live_slot(state, raw)?;
        check_reserved(get_u32(p, 4).ok_or(bad)?.into())?;
        let value = get_u64(p, 8).ok_or(bad)?;
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
        let count = get_u32(p, 4).ok_or(bad)? as usize;
        if p.len() != LIST_HEADER + count * 16 {
            return Err(bad);
        }
        let raw = slot()?;
        let s = live_slot(state, raw)?;
        for e in p[LIST_HEADER..].chunks_exact(16) {
            let (gpfn, order) = split_word(get_u64(e, 0).ok_or(bad)?);
            let mfn = get_u64(e, 8).ok_or(bad)?;
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
