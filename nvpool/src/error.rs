//! Errors of the pool's operations: one small enum per operation, each
//! variant carrying the offending values. A refused operation leaves the
//! pool exactly as it was.

use core::fmt;

use nvirt_addr::Order;
use nvirt_persist_meta::{AppendError, CheckpointError, PmemError, SnapshotError};

use crate::types::{DomainUuid, Extent};
use nvirt_addr::Gfn;

/// Making a change durable failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitError {
    /// The region refused a store (it is smaller than the pool's geometry
    /// says, or the `Pmem` is read-only).
    Pmem(PmemError),
    /// The change needs more log than the whole record area: split it.
    LogTooSmall {
        /// Bytes of log it needs.
        needed: u64,
        /// Bytes of the record area.
        capacity: u64,
    },
    /// Sequence numbers, epochs or checkpoint generations are used up.
    Exhausted,
    /// An earlier commit failed half-way; the pool refuses changes until it
    /// is recovered again.
    Poisoned,
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Pmem(e) => write!(f, "region refused a store: {e}"),
            Self::LogTooSmall { needed, capacity } => write!(
                f,
                "the change needs {needed} bytes of log, more than the whole record area of {capacity}"
            ),
            Self::Exhausted => f.write_str("log sequence numbers, epochs or generations exhausted"),
            Self::Poisoned => f.write_str("an earlier commit failed half-way: recover the pool"),
        }
    }
}

impl core::error::Error for CommitError {}

impl From<PmemError> for CommitError {
    fn from(e: PmemError) -> Self {
        Self::Pmem(e)
    }
}

impl From<AppendError> for CommitError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Pmem(e) => Self::Pmem(e),
            AppendError::LogFull {
                needed, capacity, ..
            } => Self::LogTooSmall { needed, capacity },
            AppendError::PayloadTooLarge { .. }
            | AppendError::ReservedKind { .. }
            | AppendError::GroupTooLong { .. }
            | AppendError::SequenceExhausted
            | AppendError::EpochExhausted => Self::Exhausted,
        }
    }
}

impl From<CheckpointError<SnapshotError>> for CommitError {
    fn from(e: CheckpointError<SnapshotError>) -> Self {
        match e {
            CheckpointError::Pmem(e) | CheckpointError::Snapshot(SnapshotError::Pmem(e)) => {
                Self::Pmem(e)
            }
            CheckpointError::TooLarge { capacity }
            | CheckpointError::Snapshot(SnapshotError::Full { capacity, .. }) => {
                Self::LogTooSmall {
                    needed: capacity + 1,
                    capacity,
                }
            }
            CheckpointError::GenerationExhausted | CheckpointError::EpochExhausted => {
                Self::Exhausted
            }
        }
    }
}

/// [`NvPool::create`](crate::NvPool::create) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The name is longer than 32 bytes.
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// A domain with this id exists.
    DuplicateId {
        /// The id.
        id: DomainUuid,
    },
    /// Every domain slot is in use.
    DomainsFull {
        /// The limit.
        max: u32,
    },
    /// The change could not be made durable.
    Commit(CommitError),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NameTooLong { len } => {
                write!(f, "domain name of {len} bytes is longer than 32")
            }
            Self::DuplicateId { id } => write!(f, "a domain with id {id} exists"),
            Self::DomainsFull { max } => write!(f, "all {max} domain slots are in use"),
            Self::Commit(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for CreateError {}

/// An operation on one domain (destroy, mark running or shut down, set its
/// quota, read or write its frames) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// The handle names no domain (destroyed, or from another pool).
    UnknownDomain,
    /// A quota below what the domain owns.
    QuotaBelowUsage {
        /// Frames owned.
        frames: u64,
        /// The quota asked for.
        quota: u64,
    },
    /// The domain owns no frame at this guest frame.
    NotPopulated {
        /// The guest frame.
        gpfn: Gfn,
    },
    /// An access that does not stay inside one 4096-byte frame.
    FrameBounds {
        /// Its offset in the frame.
        offset: usize,
        /// Its length.
        len: usize,
    },
    /// The change could not be made durable (or the region refused a data
    /// access).
    Commit(CommitError),
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownDomain => f.write_str("no such domain"),
            Self::QuotaBelowUsage { frames, quota } => write!(
                f,
                "quota of {quota} frames is below the {frames} frames the domain owns"
            ),
            Self::NotPopulated { gpfn } => write!(f, "the domain owns nothing at gpfn {gpfn:#x}"),
            Self::FrameBounds { offset, len } => write!(
                f,
                "access of {len} bytes at offset {offset} does not stay inside a 4096-byte frame"
            ),
            Self::Commit(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for DomainError {}

/// [`NvPool::populate`](crate::NvPool::populate) or
/// [`NvPool::increase_reservation`](crate::NvPool::increase_reservation)
/// refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopulateError {
    /// The handle names no domain.
    UnknownDomain,
    /// The guest frames run past the largest guest frame number.
    GpfnRange {
        /// The first guest frame.
        gpfn: Gfn,
        /// Frames asked for.
        frames: u64,
    },
    /// An extent order above 1 GiB.
    OrderTooLarge {
        /// The order.
        order: u8,
    },
    /// A guest frame not aligned to the extent order.
    Misaligned {
        /// The guest frame.
        gpfn: Gfn,
        /// The order.
        order: Order,
    },
    /// The domain already has frames there.
    Overlap {
        /// The first guest frame asked for.
        gpfn: Gfn,
        /// The domain's extent in the way.
        existing: Extent,
    },
    /// The same guest frame twice in one request.
    Duplicate {
        /// The guest frame.
        gpfn: Gfn,
    },
    /// The domain's quota does not allow it.
    Quota {
        /// Frames asked for.
        frames: u64,
        /// Frames the domain owns.
        owned: u64,
        /// Its quota.
        quota: u64,
    },
    /// Not enough free frames (of the order asked for, for an increase).
    OutOfMemory {
        /// Frames asked for.
        frames: u64,
        /// Free frames in the pool.
        free: u64,
    },
    /// The pool's extent limit is reached.
    ExtentsFull {
        /// The limit.
        max: u32,
    },
    /// The change could not be made durable.
    Commit(CommitError),
}

impl fmt::Display for PopulateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownDomain => f.write_str("no such domain"),
            Self::GpfnRange { gpfn, frames } => {
                write!(
                    f,
                    "{frames} frames at gpfn {gpfn:#x} run past the largest guest frame"
                )
            }
            Self::OrderTooLarge { order } => write!(f, "extent order {order} is above 18 (1 GiB)"),
            Self::Misaligned { gpfn, order } => {
                write!(f, "gpfn {gpfn:#x} is not aligned to {order}")
            }
            Self::Overlap { gpfn, existing } => {
                write!(
                    f,
                    "frames at gpfn {gpfn:#x} overlap the domain's extent {existing}"
                )
            }
            Self::Duplicate { gpfn } => write!(f, "gpfn {gpfn:#x} appears twice in the request"),
            Self::Quota {
                frames,
                owned,
                quota,
            } => write!(
                f,
                "{frames} more frames exceed the quota: {owned} owned of {quota}"
            ),
            Self::OutOfMemory { frames, free } => {
                write!(f, "{frames} frames asked for, the pool has {free} free")
            }
            Self::ExtentsFull { max } => write!(f, "the pool's {max} extents are all in use"),
            Self::Commit(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for PopulateError {}

/// [`NvPool::decrease_reservation`](crate::NvPool::decrease_reservation)
/// refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecreaseError {
    /// The handle names no domain.
    UnknownDomain,
    /// An extent order above 1 GiB.
    OrderTooLarge {
        /// The order.
        order: u8,
    },
    /// A guest frame not aligned to the extent order.
    Misaligned {
        /// The guest frame.
        gpfn: Gfn,
        /// The order.
        order: Order,
    },
    /// The domain does not own every frame of a block: a double free, or a
    /// frame never populated.
    NotPopulated {
        /// The first guest frame it does not own.
        gpfn: Gfn,
    },
    /// The same guest frame twice in one request.
    Duplicate {
        /// The guest frame.
        gpfn: Gfn,
    },
    /// More blocks than one request may free.
    BatchTooLarge {
        /// Blocks asked for.
        n: usize,
        /// The most per request.
        max: usize,
    },
    /// Splitting the extents around the freed blocks could need more
    /// extents than the pool has left.
    ExtentsFull {
        /// Extents the splits could need.
        needed: u64,
        /// Extents left.
        free: u32,
    },
    /// The change could not be made durable.
    Commit(CommitError),
}

impl fmt::Display for DecreaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownDomain => f.write_str("no such domain"),
            Self::OrderTooLarge { order } => write!(f, "extent order {order} is above 18 (1 GiB)"),
            Self::Misaligned { gpfn, order } => {
                write!(f, "gpfn {gpfn:#x} is not aligned to {order}")
            }
            Self::NotPopulated { gpfn } => {
                write!(f, "the domain does not own gpfn {gpfn:#x} (double free?)")
            }
            Self::Duplicate { gpfn } => write!(f, "gpfn {gpfn:#x} appears twice in the request"),
            Self::BatchTooLarge { n, max } => {
                write!(f, "{n} blocks in one request, at most {max} allowed")
            }
            Self::ExtentsFull { needed, free } => write!(
                f,
                "splitting extents could need {needed} more extents, {free} are left"
            ),
            Self::Commit(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for DecreaseError {}
