//! Every damaged range of a pool image and what it affects, without
//! writing anything (`nvirt pool check`): the pool superblocks, then the
//! log's own survey ([`nvirt_persist_meta::survey`]), with each record
//! written on top of lost ones described in the pool's terms (which
//! domain slot, which extents), since what they did now stands on
//! operations that are gone.

use core::fmt;

use nvirt_persist_meta::{Damaged, DamagedPart, Pmem, PmemError, RecordKind, RecordView, Survey};
use zerocopy::FromBytes;

use crate::config::{LOG_OFFSET, POOL_SUPERBLOCKS};
use crate::records::{
    ADD, CREATE, CreateHeader, DESTROY, Entry, FLAGS, ListHeader, QUOTA, REMOVE, SLOT_RECORD,
    SlotRecord,
};
use crate::superblock::{self, PoolFaultText, SuperblockFault};
use crate::types::DomainUuid;

/// A damaged range of a pool image, or a record it affects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolDamage<'a> {
    /// A pool superblock copy (the other copy can replace it).
    Superblock {
        /// Region offset of the copy.
        offset: u64,
        /// Which copy.
        copy: usize,
        /// Why it was rejected.
        fault: SuperblockFault,
    },
    /// A damaged range of the log (offsets are region offsets).
    Log(Damaged),
    /// An intact record written after lost ones: what it did rests on
    /// them.
    Affected {
        /// Its sequence number.
        seq: u64,
        /// Its region offset.
        offset: u64,
        /// What it says.
        record: PoolRecord<'a>,
    },
}

impl fmt::Display for PoolDamage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Superblock {
                offset,
                copy,
                fault,
            } => write!(
                f,
                "damaged offset={offset:#x} len=64: pool superblock copy {copy}: {} (the other copy can replace it)",
                PoolFaultText(fault)
            ),
            Self::Log(d) => write!(
                f,
                "damaged offset={:#x} len={}: {}",
                d.offset, d.len, d.what
            ),
            Self::Affected {
                seq,
                offset,
                record,
            } => write!(
                f,
                "  affected record seq={seq} offset={offset:#x}: {record}"
            ),
        }
    }
}

/// A pool record, as far as its payload can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolRecord<'a> {
    kind: RecordKind,
    payload: &'a [u8],
}

impl<'a> PoolRecord<'a> {
    /// The record of `kind` with `payload`.
    pub fn new(kind: RecordKind, payload: &'a [u8]) -> Self {
        Self { kind, payload }
    }

    /// The domain slot it names, if it names one.
    pub fn slot(&self) -> Option<u32> {
        let slot = self.payload.get(..4)?;
        let known = [CREATE, DESTROY, FLAGS, QUOTA, ADD, REMOVE].contains(&self.kind);
        known.then(|| u32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]))
    }
}

impl fmt::Display for PoolRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.payload;
        let kind = self.kind;
        if kind == CREATE {
            if let Ok((h, name)) = CreateHeader::read_from_prefix(p) {
                let name = name.get(..usize::from(h.name_len)).unwrap_or(name);
                let id = DomainUuid::new(u128::from_le_bytes(h.id));
                return write!(
                    f,
                    "create domain slot={} id={id} name={} quota={}",
                    h.slot.get(),
                    name.escape_ascii(),
                    h.quota.get()
                );
            }
        } else if [DESTROY, FLAGS, QUOTA].contains(&kind) && p.len() == SLOT_RECORD {
            if let Ok(r) = SlotRecord::read_from_bytes(p) {
                let what = match kind {
                    k if k == DESTROY => "destroy",
                    k if k == FLAGS => "flags",
                    _ => "quota",
                };
                return write!(
                    f,
                    "{what} domain slot={} value={:#x}",
                    r.slot.get(),
                    r.value.get()
                );
            }
        } else if kind == ADD || kind == REMOVE {
            if let Ok((h, rest)) = ListHeader::read_from_prefix(p) {
                let what = if kind == ADD { "add to" } else { "remove from" };
                write!(f, "{what} domain slot={} extents:", h.slot.get())?;
                for e in rest.chunks_exact(16).take(h.count.get() as usize) {
                    if let Ok(e) = Entry::read_from_bytes(e) {
                        let (gpfn, order) = e.block();
                        write!(f, " gpfn={gpfn:#x} mfn={:#x} order={order}", e.mfn.get())?;
                    }
                }
                return Ok(());
            }
        }
        write!(f, "kind {kind} ({} bytes)", p.len())
    }
}

/// What [`survey`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSurvey {
    /// Damaged ranges (affected records not counted).
    pub damaged: u64,
    /// The log's survey; `None` if no pool superblock was readable.
    pub log: Option<Survey>,
}

/// Lists every damaged range of the pool in `region`, and every record
/// written on top of lost ones, through `on`. Never writes.
pub fn survey<P: Pmem + ?Sized>(region: &P, mut on: impl FnMut(&PoolDamage<'_>)) -> PoolSurvey {
    let mut out = PoolSurvey {
        damaged: 0,
        log: None,
    };
    let Ok(copies) = superblock::read(region) else {
        return out;
    };
    for (copy, found) in copies.copies.iter().enumerate() {
        if let Err(fault) = found {
            out.damaged += 1;
            on(&PoolDamage::Superblock {
                offset: POOL_SUPERBLOCKS[copy],
                copy,
                fault: *fault,
            });
        }
    }
    let Ok(chosen) = copies.choose() else {
        return out;
    };
    let log_len = chosen.body.log_len;
    if LOG_OFFSET.saturating_add(log_len) > region.size() {
        return out;
    }
    let window = LogView {
        region,
        len: log_len,
    };
    let mut damaged = 0;
    // Both callbacks report through `on`, one at a time.
    let on = core::cell::RefCell::new(on);
    let log = nvirt_persist_meta::survey(
        &window,
        |d| {
            damaged += 1;
            let mut d = Damaged {
                offset: d.offset + LOG_OFFSET,
                ..*d
            };
            if let DamagedPart::Records { failed_offset, .. } = &mut d.what {
                *failed_offset += LOG_OFFSET;
            }
            (on.borrow_mut())(&PoolDamage::Log(d));
        },
        |r: &RecordView<'_>, past| {
            if past && r.kind() != RecordKind::EPOCH {
                (on.borrow_mut())(&PoolDamage::Affected {
                    seq: r.seq(),
                    offset: r.offset() + LOG_OFFSET,
                    record: PoolRecord::new(r.kind(), r.payload()),
                });
            }
        },
    );
    out.damaged += damaged;
    out.log = Some(log);
    out
}

/// The log's part of the region, read-only: a survey never writes.
pub(crate) struct LogView<'r, P: ?Sized> {
    pub(crate) region: &'r P,
    pub(crate) len: u64,
}

impl<P: Pmem + ?Sized> Pmem for LogView<'_, P> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(PmemError::OutOfBounds {
                offset,
                len,
                size: self.len,
            });
        }
        self.region.read(LOG_OFFSET + offset, buf)
    }
    fn store_u64(&mut self, offset: u64, _: u64) -> Result<(), PmemError> {
        Err(self.refused(offset, 8))
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        Err(self.refused(offset, data.len() as u64))
    }
    fn write_back(&mut self, _: u64, _: u64) -> Result<(), PmemError> {
        Ok(())
    }
    fn fence(&mut self) {}
}

impl<P: ?Sized> LogView<'_, P> {
    /// A store is refused as out of bounds: nothing may be written.
    fn refused(&self, offset: u64, len: u64) -> PmemError {
        PmemError::OutOfBounds {
            offset,
            len,
            size: 0,
        }
    }
}
