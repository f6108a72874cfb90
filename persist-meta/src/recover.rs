//! Recovery: superblocks, then the checkpoint, then every complete commit
//! group of the record chain, in order, handed to the owner.
//!
//! Records of a group are delivered only once the whole group has been
//! validated (its one CRC, its structure, its sequence number and epoch),
//! so a crash in the middle of a group commit never shows the owner half
//! a group. A group whose records fit the scan buffer (any group of one
//! record) is delivered from the buffer it was validated in; a longer one
//! is read again while it is delivered (it is already in the cache), and
//! its CRC checked again at its end.

use core::fmt;

use crate::checkpoint::{CheckpointInfo, CheckpointReader, Header as CheckpointHeader};
use crate::image::{ImageError, Superblocks};
use crate::layout::Layout;
use crate::pmem::Pmem;
use crate::record::RecordKind;
use crate::scan::{BUF, Cursor, RecordView, Scanner, StopReason};

/// The owner's side of recovery: rebuilds its state from the checkpoint
/// snapshot and the records committed after it.
pub trait Replay {
    /// Why the owner rejected what it was given (e.g. a record kind it does
    /// not know).
    type Error;

    /// Called once, first, with the active checkpoint's snapshot (empty
    /// right after format).
    fn checkpoint(&mut self, snapshot: &mut CheckpointReader<'_>) -> Result<(), Self::Error>;

    /// Called for each record of each complete commit group, in commit
    /// order.
    fn record(&mut self, record: &RecordView<'_>) -> Result<(), Self::Error>;
}

/// What a [`replay_fn`] closure is called with.
#[derive(Debug)]
pub enum Replayed<'r, 'a> {
    /// The snapshot (see [`Replay::checkpoint`]).
    Checkpoint(&'r mut CheckpointReader<'a>),
    /// A record (see [`Replay::record`]).
    Record(&'r RecordView<'a>),
}

/// A [`Replay`] made of one closure; see [`replay_fn`].
#[derive(Debug)]
pub struct ReplayFn<F>(F);

/// Makes a [`Replay`] from a closure over [`Replayed`] events.
pub fn replay_fn<F, E>(f: F) -> ReplayFn<F>
where
    F: FnMut(Replayed<'_, '_>) -> Result<(), E>,
{
    ReplayFn(f)
}

impl<F, E> Replay for ReplayFn<F>
where
    F: FnMut(Replayed<'_, '_>) -> Result<(), E>,
{
    type Error = E;
    fn checkpoint(&mut self, snapshot: &mut CheckpointReader<'_>) -> Result<(), E> {
        (self.0)(Replayed::Checkpoint(snapshot))
    }
    fn record(&mut self, record: &RecordView<'_>) -> Result<(), E> {
        (self.0)(Replayed::Record(record))
    }
}

/// Where the replayed chain ends and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    /// Offset in the region where the next record goes: right after the
    /// last complete group.
    pub append_offset: u64,
    /// Sequence number the next record gets.
    pub next_seq: u64,
    /// The chain's epoch at the end.
    pub epoch: u64,
    /// Offset of the bytes that failed validation: `append_offset`, as
    /// format 3 checks each group whole.
    pub stop_offset: u64,
    /// Why those bytes are not a group.
    pub reason: StopReason,
    /// Valid records of an incomplete last group, discarded: always 0 in
    /// format 3, whose groups are checked whole (kept for tools).
    pub discarded: u64,
}

impl End {
    /// The chain stopped at `at` (its offset relative to the area at
    /// region offset `area_start`) for `reason`: the next group goes there.
    pub(crate) const fn stopped(area_start: u64, at: Cursor, reason: StopReason) -> Self {
        Self {
            append_offset: area_start + at.pos,
            next_seq: at.seq,
            epoch: at.epoch,
            stop_offset: area_start + at.pos,
            reason,
            discarded: 0,
        }
    }
}

/// What recovery found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The region's geometry.
    pub layout: Layout,
    /// The checkpoint recovery started from.
    pub checkpoint: CheckpointInfo,
    /// Owner records replayed after it.
    pub records: u64,
    /// Commit groups replayed (epoch records included).
    pub groups: u64,
    /// Epoch records passed (one per recovery or abandoned group since the
    /// checkpoint).
    pub epoch_records: u64,
    /// Where the chain ends.
    pub end: End,
}

/// Recovery failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverError<E> {
    /// The region is not a readable log.
    Image(ImageError),
    /// The owner's [`Replay`] rejected what it was given.
    Replay(E),
}

impl<E: fmt::Display> fmt::Display for RecoverError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(e) => e.fmt(f),
            Self::Replay(e) => write!(f, "replay rejected by the owner: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for RecoverError<E> {}

impl<E> From<ImageError> for RecoverError<E> {
    fn from(e: ImageError) -> Self {
        Self::Image(e)
    }
}

impl<E> From<crate::pmem::PmemError> for RecoverError<E> {
    fn from(e: crate::pmem::PmemError) -> Self {
        Self::Image(ImageError::Pmem(e))
    }
}

/// Recovers without writing anything: the state (through `replay`) and
/// where the chain ends. [`Log::open`](crate::Log::open) does this and then
/// makes the region ready for appends.
pub fn replay<P: Pmem, R: Replay>(
    pmem: &P,
    replay: &mut R,
) -> Result<Recovery, RecoverError<R::Error>> {
    recover(pmem, replay).map(|(recovery, _)| recovery)
}

/// [`replay`], also returning the superblocks as read.
pub(crate) fn recover<P: Pmem, R: Replay>(
    pmem: &P,
    replay: &mut R,
) -> Result<(Recovery, Superblocks), RecoverError<R::Error>> {
    let superblocks = Superblocks::read(pmem)?;
    let chosen = superblocks.choose()?;
    let layout = chosen.layout;
    let (header, checkpoint) = load_checkpoint(pmem, &layout, chosen.generation)?;
    let mut reader = CheckpointReader::new(pmem, checkpoint);
    replay
        .checkpoint(&mut reader)
        .map_err(RecoverError::Replay)?;
    if !reader.finish(&header)? {
        return Err(ImageError::Changed {
            offset: checkpoint.offset,
        }
        .into());
    }
    let start = Cursor {
        pos: 0,
        seq: checkpoint.next_seq,
        epoch: checkpoint.epoch,
    };
    let chain = replay_records(pmem, &layout, start, replay)?;
    let recovery = Recovery {
        layout,
        checkpoint,
        records: chain.records,
        groups: chain.groups,
        epoch_records: chain.epoch_records,
        end: chain.end,
    };
    Ok((recovery, superblocks))
}

/// Loads and verifies the checkpoint of `generation`.
pub(crate) fn load_checkpoint<P: Pmem + ?Sized>(
    pmem: &P,
    layout: &Layout,
    generation: u64,
) -> Result<(CheckpointHeader, CheckpointInfo), ImageError> {
    CheckpointHeader::load(pmem, layout, generation)?.map_err(|fault| ImageError::Checkpoint {
        generation,
        offset: layout.slot_offset(generation),
        fault,
    })
}

struct Chain {
    records: u64,
    groups: u64,
    epoch_records: u64,
    end: End,
}

fn replay_records<P: Pmem, R: Replay>(
    pmem: &P,
    layout: &Layout,
    start: Cursor,
    replay: &mut R,
) -> Result<Chain, RecoverError<R::Error>> {
    let area = layout.record_area();
    let mut scanner = Scanner::new(pmem, area.clone(), start);
    let mut buf = [0; BUF];
    let mut chain = Chain {
        records: 0,
        groups: 0,
        epoch_records: 0,
        end: End {
            append_offset: area.start,
            next_seq: start.seq,
            epoch: start.epoch,
            stop_offset: area.start,
            reason: StopReason::AreaEnd,
            discarded: 0,
        },
    };
    loop {
        // The scanner checks a whole group before handing out its first
        // record, so a failure here is always at a group's start.
        let record = match scanner.next(&mut buf)? {
            Ok(record) => record,
            Err(reason) => {
                let at = scanner.cursor;
                refuse_if_committed(pmem, &area, at, reason)?;
                chain.end = End::stopped(area.start, at, reason);
                return Ok(chain);
            }
        };
        if record.ends_group() {
            chain.groups += 1;
        }
        if record.kind() == RecordKind::EPOCH {
            chain.epoch_records += 1;
        } else {
            chain.records += 1;
            replay.record(&record).map_err(RecoverError::Replay)?;
        }
    }
}

/// An error if the group at `failed` failed its checks (`reason`) although
/// a later group proves it committed (see `committed.rs`). A stale
/// sequence number or an earlier epoch is checked too: at a true end of
/// the chain nothing beyond can testify (all of it is older), while a
/// committed group overwritten by an intact group copied from elsewhere
/// would otherwise end the chain early without a word. A blank header
/// ends the chain without a look, as in format 2: salvage reads a damaged
/// range as blank to replay the state before it.
pub(crate) fn refuse_if_committed<P: Pmem + ?Sized>(
    pmem: &P,
    area: &core::ops::Range<u64>,
    failed: Cursor,
    reason: StopReason,
) -> Result<(), ImageError> {
    if matches!(
        reason,
        StopReason::Blank | StopReason::AreaEnd | StopReason::SequenceExhausted
    ) {
        return Ok(());
    }
    match crate::committed::evidence(pmem, area, failed)? {
        Some(evidence) => Err(ImageError::Corrupt {
            offset: area.start + failed.pos,
            evidence: area.start + evidence,
            reason,
        }),
        None => Ok(()),
    }
}
