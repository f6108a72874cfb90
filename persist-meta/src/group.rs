//! Commit groups: several records made durable by one fence.
//!
//! Each pushed record's payload is stored at once; its header waits until
//! the next push or the commit, because only then is it known whether the
//! record ends the group. The CRC covers the payload first, so the header
//! fields can be decided last without re-reading the payload.

use core::fmt;
use core::ops::Range;

use crate::checksum::Crc32c;
use crate::error::AppendError;
use crate::log::{Commit, Log};
use crate::pmem::{CACHE_LINE, Pmem, PmemError};
use crate::record::{
    Encode, FLAG_GROUP_END, Header, MAX_GROUP, MAX_PAYLOAD, RECORD_HEADER, record_size,
};

/// A record whose payload is stored and whose header is not yet.
#[derive(Clone, Debug)]
struct Pending {
    pos: u64,
    len: u32,
    kind: u16,
    seq: u64,
    index: u32,
    crc: Crc32c,
}

/// Records being appended as one commit group (see [`Log::group`]).
///
/// Dropping it without [`commit`](Group::commit) abandons the group: none
/// of its records survives a crash, and the log raises its epoch (with a
/// fence of its own) so that the abandoned bytes can never be mistaken for
/// records later.
pub struct Group<'a, P: Pmem> {
    log: &'a mut Log<P>,
    start: u64,
    end: u64,
    first_seq: u64,
    seq: u64,
    records: u64,
    pending: Option<Pending>,
    /// Region offset up to which the group's lines are written back (a
    /// line boundary), but for `header_line`.
    written_back: u64,
    /// A line below `written_back` that waits for the pending header.
    header_line: Option<u64>,
    finished: bool,
}

impl<P: Pmem> fmt::Debug for Group<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("first_seq", &self.first_seq)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl<'a, P: Pmem> Group<'a, P> {
    pub(crate) fn new(log: &'a mut Log<P>) -> Self {
        let (tail, seq) = (log.tail(), log.next_seq());
        let written_back = line_floor(log.area_start() + tail);
        Self {
            log,
            start: tail,
            end: tail,
            first_seq: seq,
            seq,
            records: 0,
            pending: None,
            written_back,
            header_line: None,
            finished: false,
        }
    }

    /// Stores `record` as the group's next record. On error `record` is
    /// not part of the group (its payload may lie beyond the group's end,
    /// where nothing reads it) and the records pushed before remain in it.
    pub fn push<E: Encode + ?Sized>(&mut self, record: &E) -> Result<(), AppendError> {
        let kind = record.kind();
        if kind.is_reserved() {
            return Err(AppendError::ReservedKind { kind: kind.raw() });
        }
        let len = record.encoded_len();
        if len > MAX_PAYLOAD {
            return Err(AppendError::PayloadTooLarge { len });
        }
        if self.records >= MAX_GROUP {
            return Err(AppendError::GroupTooLong {
                records: self.records,
            });
        }
        let size = record_size(len as u64).unwrap_or(u64::MAX);
        if self.records == 0 && self.log.bump_pending() {
            // Needs the epoch record and this record to fit.
            self.log.check_room(RECORD_HEADER.saturating_add(size))?;
            self.log.raise_epoch()?;
            self.start = self.log.tail();
            self.end = self.start;
            self.first_seq = self.log.next_seq();
            self.seq = self.first_seq;
            self.written_back = line_floor(self.log.area_start() + self.start);
        }
        let used = self.end - self.start;
        self.log
            .check_room(used.saturating_add(size))
            .map_err(|e| match e {
                AppendError::LogFull { free, capacity, .. } => AppendError::LogFull {
                    needed: used.saturating_add(size),
                    free,
                    capacity,
                },
                e => e,
            })?;
        let next_seq = self
            .seq
            .checked_add(1)
            .ok_or(AppendError::SequenceExhausted)?;
        let area = self.log.area_start();
        let pos = area + self.end;
        let (pmem, scratch) = self.log.parts();
        // A record that already holds its payload as bytes is stored from
        // there: one copy fewer.
        let payload: &[u8] = match record.encoded() {
            Some(bytes) if bytes.len() == len => bytes,
            _ => {
                let out = &mut scratch[..len];
                record.encode(out);
                out
            }
        };
        // Lines that lie wholly inside this payload are final once stored:
        // they are written back at once, so that they travel while the CRC
        // is computed and later records are stored, and the commit's fence
        // waits for less.
        let interior = line_floor(pos) + CACHE_LINE..line_floor(pos + size);
        let crc = store_payload(pmem, pos + RECORD_HEADER, payload, interior.clone())?;
        // Only now the previous record's header, without the group's end
        // mark: had the payload store failed, the group would still end at
        // that record, so a commit after the failed push stays whole.
        self.store_pending_header(0)?;
        // Every line from the group's unwritten part up to this record's
        // header line is now final too; the header line waits for its
        // header, and the last line for whatever follows.
        self.write_back_upto(line_floor(pos))?;
        if !interior.is_empty() {
            self.header_line = Some(line_floor(pos));
            self.written_back = interior.end;
        }
        self.pending = Some(Pending {
            pos: self.end,
            len: len as u32,
            kind: kind.raw(),
            seq: self.seq,
            // Below MAX_GROUP, checked above.
            index: self.records as u32,
            crc,
        });
        self.end += size;
        self.seq = next_seq;
        self.records += 1;
        Ok(())
    }

    /// Records pushed so far.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Makes the group durable: writes its last header (marking the end of
    /// the group), writes back its lines, one fence. An empty group commits
    /// nothing and does not fence.
    pub fn commit(mut self) -> Result<Commit, AppendError> {
        let commit = Commit {
            first_seq: self.first_seq,
            records: self.records,
            offset: self.log.area_start() + self.start,
            len: self.end - self.start,
        };
        if self.records > 0 {
            self.store_pending_header(FLAG_GROUP_END)?;
            let from = self.written_back - self.log.area_start();
            self.log.commit_range(from, self.end, self.seq)?;
        }
        self.finished = true;
        Ok(commit)
    }

    /// Abandons the group (the same as dropping it).
    pub fn abandon(self) {}

    /// Stores the pending record's header; the record stays pending if
    /// the store fails.
    fn store_pending_header(&mut self, flags: u16) -> Result<(), PmemError> {
        let Some(p) = self.pending.clone() else {
            return Ok(());
        };
        let mut header = Header {
            len: p.len,
            kind: p.kind,
            flags,
            seq: p.seq,
            epoch: self.log.epoch(),
            index: p.index,
            crc: 0,
        };
        header.crc = header.checksum(p.crc);
        self.log.store_header(p.pos, &header)?;
        self.pending = None;
        if let Some(line) = self.header_line.take() {
            self.log.pmem_mut().write_back(line, CACHE_LINE)?;
        }
        Ok(())
    }

    /// Writes back the group's lines from `written_back` up to `limit` (a
    /// line boundary), which must all be final.
    fn write_back_upto(&mut self, limit: u64) -> Result<(), PmemError> {
        if limit > self.written_back {
            self.log
                .pmem_mut()
                .write_back(self.written_back, limit - self.written_back)?;
            self.written_back = limit;
        }
        Ok(())
    }
}

/// Bytes of payload stored between two steps of its CRC.
const SLICE: u64 = 1024;

/// Stores `payload` at `at` a slice at a time, writes back the lines of
/// `interior` as each slice completes them, and computes its CRC: each
/// slice's CRC then runs while the stores and write-backs before it drain,
/// instead of after the whole payload.
fn store_payload<P: Pmem>(
    pmem: &mut P,
    at: u64,
    payload: &[u8],
    interior: Range<u64>,
) -> Result<Crc32c, PmemError> {
    let mut crc = Crc32c::new();
    let mut written_back = interior.start;
    let mut done = 0;
    while done < payload.len() {
        // Slices end on line boundaries (but the last).
        let next = (line_floor(at + done as u64) + SLICE - at).min(payload.len() as u64) as usize;
        let slice = &payload[done..next];
        pmem.store(at + done as u64, slice)?;
        let upto = line_floor(at + next as u64).min(interior.end);
        if upto > written_back {
            pmem.write_back(written_back, upto - written_back)?;
            written_back = upto;
        }
        crc.update(slice);
        done = next;
    }
    // The payload's last line may end in padding, complete all the same.
    if interior.end > written_back {
        pmem.write_back(written_back, interior.end - written_back)?;
    }
    Ok(crc)
}

/// The start of the cache line holding region offset `offset`.
fn line_floor(offset: u64) -> u64 {
    offset / CACHE_LINE * CACHE_LINE
}

impl<P: Pmem> Drop for Group<'_, P> {
    fn drop(&mut self) {
        if !self.finished && self.records > 0 {
            // The abandoned records start at the tail; the epoch record
            // overwrites the first header. If even that fails, the log
            // retries before its next record.
            let _ = self.log.raise_epoch();
        }
    }
}
