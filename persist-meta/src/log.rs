//! The writer: append, group commit, checkpoint. (Format and open are in
//! `open.rs`.)

use core::fmt;

use crate::checkpoint::{CheckpointInfo, CheckpointWriter, Header as CheckpointHeader};
use crate::checksum::Crc32c;
use crate::error::{AppendError, CheckpointError};
use crate::group::Group;
use crate::layout::{
    CHECKPOINT_HEADER, Layout, MAX_GENERATION, SUPERBLOCK_OFFSETS, SWITCH_WORD, encode_switch,
};
use crate::pmem::{Pmem, PmemError};
use crate::record::{
    ENTRY_HEADER, Encode, Entry, GROUP_HEADER, Header, MAX_PAYLOAD, RECORD_HEADER, RecordKind,
    entry_size, group_size,
};
use crate::scan::Cursor;

/// Sequence number of the first record after format.
pub const FIRST_SEQ: u64 = 1;

/// A committed append or group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    /// Sequence number of its first record.
    pub first_seq: u64,
    /// Records in it.
    pub records: u64,
    /// Offset of its group's header in the region.
    pub offset: u64,
    /// Bytes it occupies.
    pub len: u64,
}

/// How full the record area is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    /// Bytes used since the last checkpoint.
    pub used: u64,
    /// Bytes free.
    pub free: u64,
    /// Bytes of the whole area.
    pub capacity: u64,
}

/// A crash-consistent log of records in a persistent-memory region.
///
/// # Protocol
///
/// *Commit.* A group's records are stored back to back after the room
/// for its header, then the header (length, record count, first sequence
/// number, epoch, and one CRC over the records and the header; its CRC
/// word last), the group's cache lines are written back, and one fence
/// makes the whole group durable. Recovery delivers a group only once its
/// CRC and structure check out, so a group is all or nothing.
///
/// *Epochs.* Every record carries the writer's epoch, and recovery accepts
/// only records of the chain's current epoch. Whenever bytes may lie past
/// the append position that look like records of the current epoch — after
/// recovery (a torn group), after a group is abandoned, never otherwise —
/// the writer appends an *epoch record* raising the epoch and fences it
/// before storing anything else. Stale records then belong to an old epoch
/// and can never join the chain, even if later stores happen to complete
/// them. A record is only ever stored with an epoch that is already
/// durable, so no stale record carries a future epoch either.
///
/// *Checkpoint.* The owner's snapshot goes to the inactive slot with a new
/// generation and epoch and the current sequence number, is written back
/// and fenced; then one 8-byte store per superblock switches to it, and
/// the record area starts over. Records left from before have older
/// sequence numbers and epochs. Recovery time is bounded by the snapshot
/// plus the records since.
pub struct Log<P: Pmem> {
    pmem: P,
    layout: Layout,
    generation: u64,
    epoch: u64,
    next_seq: u64,
    /// Append position, relative to the record area.
    tail: u64,
    /// The next commit must first raise the epoch (a previous attempt to
    /// do so failed, or there was no room at recovery).
    bump_pending: bool,
    scratch: [u8; MAX_PAYLOAD],
}

impl<P: Pmem> fmt::Debug for Log<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("layout", &self.layout)
            .field("generation", &self.generation)
            .field("epoch", &self.epoch)
            .field("next_seq", &self.next_seq)
            .field("tail", &self.tail)
            .field("bump_pending", &self.bump_pending)
            .finish_non_exhaustive()
    }
}

impl<P: Pmem> Log<P> {
    /// Appends one record and commits it (one fence).
    pub fn append<E: Encode + ?Sized>(&mut self, record: &E) -> Result<Commit, AppendError> {
        let mut group = self.group();
        let record = core::slice::from_ref(&record);
        if group.takes_all(record) {
            group.push_all(record)?;
        } else {
            group.push(&record[0])?;
        }
        group.commit()
    }

    /// Appends `records` as one group and commits them with one fence: all
    /// or none survive a crash. Checks that they fit before storing any.
    pub fn append_group<E: Encode>(&mut self, records: &[E]) -> Result<Commit, AppendError> {
        let mut body = 0u64;
        for record in records {
            let len = record.encoded_len();
            if len > MAX_PAYLOAD {
                return Err(AppendError::PayloadTooLarge { len });
            }
            body = body.saturating_add(entry_size(len as u64));
        }
        let bump = if self.bump_pending { RECORD_HEADER } else { 0 };
        let needed = if records.is_empty() {
            0
        } else {
            group_size(body).map_or(u64::MAX, |n| n.saturating_add(bump))
        };
        self.check_room(needed)?;
        let mut group = self.group();
        if group.takes_all(records) {
            group.push_all(records)?;
        } else {
            for record in records {
                group.push(record)?;
            }
        }
        group.commit()
    }

    /// Starts a commit group: push records, then commit them with one
    /// fence. Dropping the group without committing abandons it (nothing of
    /// it survives; the log stays usable).
    pub fn group(&mut self) -> Group<'_, P> {
        Group::new(self)
    }

    /// Writes a checkpoint: `snapshot` streams the owner's state (as of
    /// every record committed so far) into the inactive slot; once it is
    /// durable, the superblocks switch to it and the record area starts
    /// over. Two fences. On error the previous checkpoint stays in force.
    pub fn checkpoint<F, E>(&mut self, snapshot: F) -> Result<CheckpointInfo, CheckpointError<E>>
    where
        F: FnOnce(&mut CheckpointWriter<'_, P>) -> Result<(), E>,
    {
        let generation = self
            .generation
            .checked_add(1)
            .filter(|&g| g <= MAX_GENERATION)
            .ok_or(CheckpointError::GenerationExhausted)?;
        let epoch = self
            .epoch
            .checked_add(1)
            .ok_or(CheckpointError::EpochExhausted)?;
        let offset = self.layout.slot_offset(generation);
        let capacity = self.layout.checkpoint_capacity();
        let mut writer =
            CheckpointWriter::new(&mut self.pmem, offset + CHECKPOINT_HEADER, capacity);
        let written = snapshot(&mut writer);
        let (len, crc, overflowed) = writer.finish();
        if overflowed {
            return Err(CheckpointError::TooLarge { capacity });
        }
        written.map_err(CheckpointError::Snapshot)?;
        let mut header = CheckpointHeader {
            generation,
            epoch,
            next_seq: self.next_seq,
            len,
            reserved: 0,
            crc: 0,
        };
        header.crc = header.checksum(crc);
        store_words(&mut self.pmem, offset, &header.words())?;
        self.pmem.write_back(offset, CHECKPOINT_HEADER + len)?;
        self.pmem.fence();
        let switch = encode_switch(generation);
        for at in SUPERBLOCK_OFFSETS {
            self.pmem.store_u64(at + SWITCH_WORD, switch)?;
            self.pmem.write_back(at + SWITCH_WORD, 8)?;
        }
        self.pmem.fence();
        self.generation = generation;
        self.epoch = epoch;
        self.tail = 0;
        self.bump_pending = false;
        Ok(CheckpointInfo {
            generation,
            offset,
            epoch,
            next_seq: self.next_seq,
            len,
        })
    }

    /// [`checkpoint`](Self::checkpoint) with the snapshot given as bytes.
    pub fn checkpoint_bytes(
        &mut self,
        snapshot: &[u8],
    ) -> Result<CheckpointInfo, CheckpointError<crate::SnapshotError>> {
        self.checkpoint(|w| w.write(snapshot))
    }

    /// How full the record area is.
    pub fn space(&self) -> Space {
        let capacity = self.layout.record_len();
        Space {
            used: self.tail,
            free: capacity - self.tail,
            capacity,
        }
    }

    /// The region's geometry.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Generation of the active checkpoint.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The region.
    pub fn pmem(&self) -> &P {
        &self.pmem
    }

    /// Gives the region back.
    pub fn into_pmem(self) -> P {
        self.pmem
    }

    /// The region, mutably: for an owner whose `Pmem` is a window onto a
    /// larger region and who stores outside the log through it (e.g. a pool
    /// scrubbing its data frames, ordered by the log's fences). Storing
    /// inside the log's [`layout`](Self::layout) through it corrupts the
    /// log; recovery then refuses the damaged parts.
    pub fn pmem_mut(&mut self) -> &mut P {
        &mut self.pmem
    }

    // ---- crate-internal pieces used by `Group` and `open` ----

    /// A log in the given state (from format or recovery); `bump_pending`
    /// if the epoch must be raised before the next record.
    pub(crate) fn from_parts(
        pmem: P,
        layout: Layout,
        generation: u64,
        end: Cursor,
        bump_pending: bool,
    ) -> Self {
        Self {
            pmem,
            layout,
            generation,
            epoch: end.epoch,
            next_seq: end.seq,
            tail: end.pos,
            bump_pending,
            scratch: [0; MAX_PAYLOAD],
        }
    }

    pub(crate) fn area_start(&self) -> u64 {
        self.layout.record_area().start
    }

    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    pub(crate) fn bump_pending(&self) -> bool {
        self.bump_pending
    }

    /// Fails with `LogFull` unless `needed` bytes fit at the tail.
    pub(crate) fn check_room(&self, needed: u64) -> Result<(), AppendError> {
        let space = self.space();
        if needed > space.free {
            return Err(AppendError::LogFull {
                needed,
                free: space.free,
                capacity: space.capacity,
            });
        }
        Ok(())
    }

    /// The region and the payload scratch buffer, borrowed together.
    pub(crate) fn parts(&mut self) -> (&mut P, &mut [u8; MAX_PAYLOAD]) {
        (&mut self.pmem, &mut self.scratch)
    }

    /// Stores a header at `pos` (relative to the area), words in order.
    pub(crate) fn store_header(&mut self, pos: u64, header: &Header) -> Result<(), PmemError> {
        let at = self.area_start() + pos;
        store_words(&mut self.pmem, at, &header.words())
    }

    /// Makes the group at `start` ending at `end` durable and moves the
    /// tail past it: writes back its header line and its lines from `from`
    /// (those in between the group wrote back already) and fences.
    pub(crate) fn commit_range(
        &mut self,
        start: u64,
        from: u64,
        end: u64,
        seq: u64,
    ) -> Result<(), PmemError> {
        let area = self.area_start();
        if from <= start + GROUP_LINE {
            self.pmem.write_back(area + start, end - start)?;
        } else {
            self.pmem.write_back(area + start, GROUP_LINE)?;
            self.pmem.write_back(area + from, end - from)?;
        }
        self.pmem.fence();
        self.tail = end;
        self.next_seq = seq;
        Ok(())
    }

    /// Raises the epoch now, with its own fence: before the first record
    /// after an abandoned group (or a failed earlier attempt).
    pub(crate) fn raise_epoch(&mut self) -> Result<(), AppendError> {
        self.bump_pending = true;
        let epoch = self.store_epoch_record()?;
        self.pmem.fence();
        self.finish_epoch_record(epoch);
        Ok(())
    }

    /// Stores and writes back (no fence) an epoch record at the tail,
    /// raising the epoch; returns the new epoch.
    pub(crate) fn store_epoch_record(&mut self) -> Result<u64, AppendError> {
        let epoch = self.fresh_epoch()?;
        self.next_seq
            .checked_add(1)
            .ok_or(AppendError::SequenceExhausted)?;
        self.check_room(RECORD_HEADER)?;
        let entry = Entry {
            len: 0,
            kind: RecordKind::EPOCH.raw(),
        };
        let mut crc = Crc32c::new();
        crc.update_record(entry.word(), &[]);
        let mut header = Header {
            len: ENTRY_HEADER as u32,
            count: 1,
            seq: self.next_seq,
            epoch,
            flags: 0,
            crc: 0,
        };
        header.crc = header.checksum(crc);
        let at = self.area_start() + self.tail;
        self.pmem
            .store_u64(at + GROUP_HEADER, u64::from(entry.word()))?;
        self.store_header(self.tail, &header)?;
        self.pmem.write_back(at, RECORD_HEADER)?;
        Ok(epoch)
    }

    /// The epoch an epoch record at the tail raises to: one more than the
    /// current, unless the bytes right after it hold a header the chain
    /// would then accept. The writer never leaves such a header there (it
    /// stores records only with an epoch that is already durable), but a
    /// damaged image might; choosing past it means nothing beyond the
    /// epoch record can join the chain, so the state `open` reports is
    /// exactly what a later recovery finds.
    fn fresh_epoch(&self) -> Result<u64, AppendError> {
        let mut epoch = self
            .epoch
            .checked_add(1)
            .ok_or(AppendError::EpochExhausted)?;
        let next = self.tail + RECORD_HEADER;
        if self.layout.record_len() - self.tail >= 2 * RECORD_HEADER {
            let mut raw = [0; (GROUP_HEADER + ENTRY_HEADER) as usize];
            self.pmem.read(self.area_start() + next, &mut raw)?;
            let mut head = [0; GROUP_HEADER as usize];
            head.copy_from_slice(&raw[..GROUP_HEADER as usize]);
            let stale = Header::parse(&head);
            let mut first = [0; ENTRY_HEADER as usize];
            first.copy_from_slice(&raw[GROUP_HEADER as usize..]);
            let first = Entry::parse(first);
            if Some(stale.seq) == self.next_seq.checked_add(1) {
                if first.kind == RecordKind::EPOCH.raw() {
                    epoch = epoch.max(stale.epoch);
                } else if stale.epoch == epoch {
                    epoch = epoch.checked_add(1).ok_or(AppendError::EpochExhausted)?;
                }
            }
        }
        // Nor may any intact record further on share the new epoch: it
        // could join the chain later, or pass for proof that a record the
        // chain stops at had been committed (see `committed`).
        let area = self.layout.record_area();
        if let Some(high) = crate::committed::highest_epoch_beyond(&self.pmem, &area, next, epoch)?
        {
            epoch = high.checked_add(1).ok_or(AppendError::EpochExhausted)?;
        }
        Ok(epoch)
    }

    /// Accounts for an epoch record once its fence has returned.
    pub(crate) fn finish_epoch_record(&mut self, epoch: u64) {
        self.tail += RECORD_HEADER;
        self.next_seq += 1;
        self.epoch = epoch;
        self.bump_pending = false;
    }
}

/// Bytes of a group's first line, which holds its header.
const GROUP_LINE: u64 = crate::pmem::CACHE_LINE;

/// Stores `words` at `at` in order, one failure-atomic store each.
pub(crate) fn store_words<P: Pmem>(pmem: &mut P, at: u64, words: &[u64]) -> Result<(), PmemError> {
    for (i, &word) in words.iter().enumerate() {
        pmem.store_u64(at + 8 * i as u64, word)?;
    }
    Ok(())
}
