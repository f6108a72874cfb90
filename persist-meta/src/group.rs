//! Commit groups: several records made durable by one fence.
//!
//! Each pushed record (entry header and payload) is stored at once, right
//! after the previous one, and folded into the group's running CRC; lines
//! that fill up are written back as they do. The group header waits for
//! the commit, because only then are the group's length and record count
//! known; the CRC covers the records first, so the header is decided last
//! without re-reading anything. A whole group given at once
//! ([`Log::append_group`]) is checksummed first, from the owner's bytes,
//! while the previous commit's write-backs drain; then its lines are
//! stored and written back as one stream.

use core::fmt;
use core::ops::Range;

use crate::checksum::Crc32c;
use crate::error::AppendError;
use crate::log::{Commit, Log};
use crate::pmem::{CACHE_LINE, Pmem, PmemError};
use crate::record::{
    ENTRY_HEADER, Encode, Entry, GROUP_HEADER, Header, MAX_GROUP, MAX_PAYLOAD, RECORD_HEADER,
    entry_size, group_size, record_size,
};

/// Records being appended as one commit group (see [`Log::group`]).
///
/// Dropping it without [`commit`](Group::commit) abandons the group: none
/// of its records survives a crash, and the log raises its epoch (with a
/// fence of its own) so that the abandoned bytes can never be mistaken for
/// records later.
pub struct Group<'a, P: Pmem> {
    log: &'a mut Log<P>,
    /// Offset of the group's header, relative to the area.
    start: u64,
    /// Bytes of records pushed so far.
    body: u64,
    first_seq: u64,
    records: u64,
    crc: Crc32c,
    /// Region offset up to which the group's lines after its header line
    /// are written back (a line boundary).
    written_back: u64,
    finished: bool,
}

impl<P: Pmem> fmt::Debug for Group<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("start", &self.start)
            .field("body", &self.body)
            .field("first_seq", &self.first_seq)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl<'a, P: Pmem> Group<'a, P> {
    pub(crate) fn new(log: &'a mut Log<P>) -> Self {
        let (tail, seq) = (log.tail(), log.next_seq());
        // The header line is written back at commit, after the header.
        let written_back = log.area_start() + tail + CACHE_LINE;
        Self {
            log,
            start: tail,
            body: 0,
            first_seq: seq,
            records: 0,
            crc: Crc32c::new(),
            written_back,
            finished: false,
        }
    }

    /// Stores `record` as the group's next record. On error `record` is
    /// not part of the group (its bytes may lie beyond the group's end,
    /// where nothing reads them) and the records pushed before remain in
    /// it.
    pub fn push<E: Encode + ?Sized>(&mut self, record: &E) -> Result<(), AppendError> {
        let kind = record.kind();
        if kind.is_reserved() {
            return Err(AppendError::ReservedKind { kind: kind.raw() });
        }
        let len = record.encoded_len();
        if len > MAX_PAYLOAD {
            return Err(AppendError::PayloadTooLarge { len });
        }
        let body = self.body + entry_size(len as u64);
        if self.records >= MAX_GROUP || body > u64::from(u32::MAX) {
            return Err(AppendError::GroupTooLong {
                records: self.records,
            });
        }
        if self.records == 0 && self.log.bump_pending() {
            // Needs the epoch record and this record to fit.
            let size = record_size(len as u64).unwrap_or(u64::MAX);
            self.log.check_room(RECORD_HEADER.saturating_add(size))?;
            self.raise_epoch_first()?;
        }
        self.log.check_room(group_size(body).unwrap_or(u64::MAX))?;
        self.first_seq
            .checked_add(self.records + 1)
            .ok_or(AppendError::SequenceExhausted)?;
        let area = self.log.area_start();
        let at = area + self.start + GROUP_HEADER + self.body;
        let entry = Entry {
            len: len as u16,
            kind: kind.raw(),
        };
        let (pmem, scratch) = self.log.parts();
        pmem.store(at, &entry.word().to_le_bytes())?;
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
        if (len as u64) < SLICE {
            // Short records are written back at commit, in one call.
            pmem.store(at + ENTRY_HEADER, payload)?;
        } else {
            // Lines this record completes (but the header's) are final once
            // stored: they are written back at once, so that they travel
            // while later slices and records are stored, and the commit's
            // fence waits for less.
            let done = line_floor(at + ENTRY_HEADER + len as u64);
            store_payload(pmem, at + ENTRY_HEADER, payload, self.written_back..done)?;
            self.written_back = self.written_back.max(done);
        }
        self.crc.update_record(entry.word(), payload);
        self.body = body;
        self.records += 1;
        Ok(())
    }

    /// Whether [`push_all`](Self::push_all) takes `records`: this group
    /// is empty and every record holds its payload as bytes (so that the
    /// checksum can be computed from the owner's bytes).
    #[inline]
    pub(crate) fn takes_all<E: Encode>(&self, records: &[E]) -> bool {
        self.records == 0
            && records.iter().all(|r| {
                let len = r.encoded_len();
                len <= MAX_PAYLOAD && r.encoded().is_some_and(|b| b.len() == len)
            })
    }

    /// Stores `records` as the whole of this empty group (which
    /// [`takes_all`](Self::takes_all) accepted) and starts writing back
    /// every line of it but the header's. The checksum comes first, from
    /// the owner's bytes: the CPU computes it while the previous commit's
    /// write-backs drain (a fence holds back later stores, not loads and
    /// arithmetic), and the stores then run back to back. The checks that
    /// do not depend on the stores are made once, for all, before the
    /// first. The caller has checked that the group (and an epoch record,
    /// if one is pending) fits.
    #[inline]
    pub(crate) fn push_all<E: Encode>(&mut self, records: &[E]) -> Result<(), AppendError> {
        let mut body = 0u64;
        for record in records {
            let kind = record.kind();
            if kind.is_reserved() {
                return Err(AppendError::ReservedKind { kind: kind.raw() });
            }
            body += entry_size(record.encoded_len() as u64);
        }
        let count = records.len() as u64;
        if self.records != 0 || count > MAX_GROUP || body > u64::from(u32::MAX) {
            return Err(AppendError::GroupTooLong {
                records: self.records,
            });
        }
        if count == 0 {
            return Ok(());
        }
        if self.log.bump_pending() {
            self.raise_epoch_first()?;
        }
        self.log.check_room(group_size(body).unwrap_or(u64::MAX))?;
        self.first_seq
            .checked_add(count)
            .ok_or(AppendError::SequenceExhausted)?;
        let mut crc = Crc32c::new();
        crc.update_records(entries(records));
        self.crc = crc;
        let mut at = self.log.area_start() + self.start + GROUP_HEADER;
        let mut written_back = self.written_back;
        let (pmem, _) = self.log.parts();
        for (entry, payload) in entries(records) {
            pmem.store(at, &entry.to_le_bytes())?;
            let end = at + ENTRY_HEADER + payload.len() as u64;
            if (payload.len() as u64) < SLICE {
                pmem.store(at + ENTRY_HEADER, payload)?;
            } else {
                let done = line_floor(end);
                store_payload(pmem, at + ENTRY_HEADER, payload, written_back..done)?;
                written_back = written_back.max(done);
            }
            at = end;
        }
        // The last line is final too: nothing else is stored in a group's
        // padding.
        let last = at.next_multiple_of(CACHE_LINE);
        if last > written_back {
            pmem.write_back(written_back, last - written_back)?;
            written_back = last;
        }
        self.written_back = written_back;
        self.body = body;
        self.records = count;
        Ok(())
    }

    /// Raises the log's epoch before the group's first record (after an
    /// abandoned group); the group then starts after the epoch record.
    fn raise_epoch_first(&mut self) -> Result<(), AppendError> {
        self.log.raise_epoch()?;
        self.start = self.log.tail();
        self.first_seq = self.log.next_seq();
        self.written_back = self.log.area_start() + self.start + CACHE_LINE;
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

    /// Makes the group durable: stores its header, writes back its lines,
    /// one fence. An empty group commits nothing and does not fence.
    pub fn commit(mut self) -> Result<Commit, AppendError> {
        let size = group_size(self.body).unwrap_or(u64::MAX);
        let commit = Commit {
            first_seq: self.first_seq,
            records: self.records,
            offset: self.log.area_start() + self.start,
            len: if self.records > 0 { size } else { 0 },
        };
        if self.records > 0 {
            let mut header = Header {
                // Both below u32::MAX, checked by `push`.
                len: self.body as u32,
                count: self.records as u32,
                seq: self.first_seq,
                epoch: self.log.epoch(),
                flags: 0,
                crc: 0,
            };
            header.crc = header.checksum(self.crc.clone());
            self.log.store_header(self.start, &header)?;
            let from = self.written_back - self.log.area_start();
            let end = self.start + size;
            self.log
                .commit_range(self.start, from, end, self.first_seq + self.records)?;
        }
        self.finished = true;
        Ok(commit)
    }

    /// Abandons the group (the same as dropping it).
    pub fn abandon(self) {}
}

/// Each record's entry header word and payload, for records that hold
/// their payloads as bytes ([`Group::takes_all`]).
fn entries<E: Encode>(records: &[E]) -> impl Iterator<Item = (u32, &[u8])> + Clone {
    records.iter().map(|record| {
        let payload = record.encoded().unwrap_or_default();
        let entry = Entry {
            len: payload.len() as u16,
            kind: record.kind().raw(),
        };
        (entry.word(), payload)
    })
}

/// Bytes of a long payload stored between two write-backs of the lines
/// they complete (24 lines), so that the first lines travel while the
/// rest are stored. Shorter payloads are written back once, after them.
const SLICE: u64 = 1536;

/// Stores `payload` at `at` a slice at a time, and writes back the lines
/// of `complete` as each slice completes them.
fn store_payload<P: Pmem>(
    pmem: &mut P,
    at: u64,
    payload: &[u8],
    complete: Range<u64>,
) -> Result<(), PmemError> {
    let mut written_back = complete.start;
    let mut done = 0;
    while done < payload.len() {
        // Slices end on line boundaries (but the last).
        let next = (line_floor(at + done as u64) + SLICE - at).min(payload.len() as u64) as usize;
        pmem.store(at + done as u64, &payload[done..next])?;
        let upto = line_floor(at + next as u64).min(complete.end);
        if upto > written_back {
            pmem.write_back(written_back, upto - written_back)?;
            written_back = upto;
        }
        done = next;
    }
    Ok(())
}

/// The start of the cache line holding region offset `offset`.
fn line_floor(offset: u64) -> u64 {
    offset / CACHE_LINE * CACHE_LINE
}

impl<P: Pmem> Drop for Group<'_, P> {
    fn drop(&mut self) {
        if !self.finished && self.records > 0 {
            // The abandoned records start at the tail; the epoch record
            // takes its place. If even that fails, the log retries before
            // its next record.
            let _ = self.log.raise_epoch();
        }
    }
}
