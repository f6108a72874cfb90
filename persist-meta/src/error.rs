//! Errors of the writing operations. Each carries the values involved.

use core::fmt;

use crate::layout::LayoutError;
use crate::pmem::PmemError;
use crate::record::MAX_PAYLOAD;

/// Formatting a region failed; nothing valid was left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The region cannot hold the requested layout.
    Layout(LayoutError),
    /// The region refused a store.
    Pmem(PmemError),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(e) => e.fmt(f),
            Self::Pmem(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for FormatError {}

impl From<LayoutError> for FormatError {
    fn from(e: LayoutError) -> Self {
        Self::Layout(e)
    }
}

impl From<PmemError> for FormatError {
    fn from(e: PmemError) -> Self {
        Self::Pmem(e)
    }
}

/// An append or group commit failed. Nothing of it is committed; the log
/// remains usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// The record area has no room: checkpoint (which empties it) and
    /// retry. If `needed` exceeds the whole area, no checkpoint helps.
    LogFull {
        /// Bytes the commit needs.
        needed: u64,
        /// Bytes free at the append position.
        free: u64,
        /// Bytes of the whole record area.
        capacity: u64,
    },
    /// A payload longer than [`MAX_PAYLOAD`].
    PayloadTooLarge {
        /// Its length.
        len: usize,
    },
    /// A record kind from the range the log reserves.
    ReservedKind {
        /// The kind.
        kind: u16,
    },
    /// A commit group already holds the most records one can (2^32).
    GroupTooLong {
        /// Records in it.
        records: u64,
    },
    /// Sequence numbers are used up (after 2^64 records).
    SequenceExhausted,
    /// Epochs are used up (after 2^64 recoveries and checkpoints).
    EpochExhausted,
    /// The region refused a store.
    Pmem(PmemError),
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::LogFull {
                needed,
                free,
                capacity,
            } => write!(
                f,
                "log full: {needed} bytes needed, {free} free of {capacity}; checkpoint to continue"
            ),
            Self::PayloadTooLarge { len } => write!(
                f,
                "payload of {len} bytes exceeds the record maximum {MAX_PAYLOAD}"
            ),
            Self::ReservedKind { kind } => {
                write!(f, "record kind {kind:#06x} is reserved for the log")
            }
            Self::GroupTooLong { records } => write!(
                f,
                "commit group of {records} records is full; commit it and start another"
            ),
            Self::SequenceExhausted => write!(f, "sequence numbers exhausted"),
            Self::EpochExhausted => write!(f, "epochs exhausted"),
            Self::Pmem(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for AppendError {}

impl From<PmemError> for AppendError {
    fn from(e: PmemError) -> Self {
        Self::Pmem(e)
    }
}

/// A checkpoint failed. The previous checkpoint and every committed record
/// remain in force; the log remains usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointError<E> {
    /// The snapshot did not fit in a checkpoint slot.
    TooLarge {
        /// The slot's capacity in bytes.
        capacity: u64,
    },
    /// The owner's snapshot writer failed.
    Snapshot(E),
    /// Checkpoint generations are used up (after 2^40 checkpoints).
    GenerationExhausted,
    /// Epochs are used up.
    EpochExhausted,
    /// The region refused a store.
    Pmem(PmemError),
}

impl<E: fmt::Display> fmt::Display for CheckpointError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { capacity } => write!(
                f,
                "snapshot exceeds the checkpoint capacity of {capacity} bytes"
            ),
            Self::Snapshot(e) => write!(f, "snapshot writer failed: {e}"),
            Self::GenerationExhausted => write!(f, "checkpoint generations exhausted"),
            Self::EpochExhausted => write!(f, "epochs exhausted"),
            Self::Pmem(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for CheckpointError<E> {}

impl<E> From<PmemError> for CheckpointError<E> {
    fn from(e: PmemError) -> Self {
        Self::Pmem(e)
    }
}
