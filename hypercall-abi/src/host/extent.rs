//! The reservation commands, the extents a handler sees, and what can go
//! wrong with one extent.

use core::fmt;

use crate::errno::Errno;
use crate::host::memory::{Access, AccessError};
use crate::numbers::Command;
use crate::types::{ExtentOrder, XenPfn};
use nvirt_addr::Gfn;

/// The three reservation commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReservationOp {
    /// `XENMEM_increase_reservation`: allocate; the array, if not null,
    /// receives a frame per extent.
    Increase,
    /// `XENMEM_decrease_reservation`: release the extents the array names.
    Decrease,
    /// `XENMEM_populate_physmap`: back the frames the array names; the
    /// hypervisor may write a frame back per extent.
    Populate,
}

impl ReservationOp {
    /// The command number's command.
    #[must_use]
    pub const fn command(self) -> Command {
        match self {
            Self::Increase => Command::IncreaseReservation,
            Self::Decrease => Command::DecreaseReservation,
            Self::Populate => Command::PopulatePhysmap,
        }
    }

    /// The operation of a reservation command.
    #[must_use]
    pub const fn from_command(command: Command) -> Option<Self> {
        match command {
            Command::IncreaseReservation => Some(Self::Increase),
            Command::DecreaseReservation => Some(Self::Decrease),
            Command::PopulatePhysmap => Some(Self::Populate),
            _ => None,
        }
    }

    /// How the operation uses the extent array (Xen's IN/OUT comments in
    /// `memory.h`).
    #[must_use]
    pub const fn array_access(self) -> Access {
        match self {
            Self::Increase => Access::Write,
            Self::Decrease => Access::Read,
            Self::Populate => Access::ReadWrite,
        }
    }
}

/// One extent handed to [`Reservation::run`](crate::host::Reservation::run)'s handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtentRequest {
    pub(crate) index: u64,
    pub(crate) gpfn: Option<Gfn>,
}

impl ExtentRequest {
    /// The extent's position in the guest's array.
    #[must_use]
    pub const fn index(&self) -> u64 {
        self.index
    }

    /// The guest's frame for it — validated, so typed: aligned to the
    /// order, inside the guest's frame range. `None` for
    /// increase_reservation, whose array is output only.
    #[must_use]
    pub const fn gfn(&self) -> Option<Gfn> {
        self.gpfn
    }
}

/// A per-extent access that cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentError {
    /// The index lies outside this entry's batch (a handler bug).
    NotInBatch {
        /// The index asked for.
        index: u64,
        /// The batch's first extent.
        start: u64,
        /// One past the batch's last extent.
        end: u64,
    },
    /// increase_reservation's array is output only (a handler bug).
    NotReadable {
        /// The index asked for.
        index: u64,
    },
    /// decrease_reservation's array is input only (a handler bug).
    NotWritable {
        /// The index asked for.
        index: u64,
    },
    /// The slot cannot be accessed (guest memory changed since decoding).
    Memory {
        /// The index.
        index: u64,
        /// Why.
        error: AccessError,
    },
    /// The frame is not aligned to the extent order.
    Misaligned {
        /// The index.
        index: u64,
        /// The frame found.
        gpfn: XenPfn,
        /// The order.
        order: ExtentOrder,
    },
    /// A frame for a 32-bit caller's array that does not fit its 4-byte
    /// slot.
    FrameTooWide {
        /// The index.
        index: u64,
        /// The frame.
        gpfn: XenPfn,
    },
    /// The extent reaches past the guest's frame limit.
    OutOfRange {
        /// The index.
        index: u64,
        /// The frame found.
        gpfn: XenPfn,
        /// The exclusive limit.
        limit: XenPfn,
    },
}

impl ExtentError {
    /// The error number the guest's count stops with.
    #[must_use]
    pub const fn errno(&self) -> Errno {
        match self {
            Self::Memory { .. } => Errno::Fault,
            _ => Errno::Inval,
        }
    }
}

impl fmt::Display for ExtentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInBatch { index, start, end } => {
                write!(
                    f,
                    "extent {index} outside this entry's batch {start}..{end}"
                )
            }
            Self::NotReadable { index } => write!(f, "extent {index}: the array is output only"),
            Self::NotWritable { index } => write!(f, "extent {index}: the array is input only"),
            Self::Memory { index, error } => write!(f, "extent {index}: {error}"),
            Self::Misaligned { index, gpfn, order } => {
                write!(f, "extent {index}: {gpfn} is not aligned to {order}")
            }
            Self::FrameTooWide { index, gpfn } => {
                write!(
                    f,
                    "extent {index}: {gpfn} does not fit a 32-bit caller's slot"
                )
            }
            Self::OutOfRange { index, gpfn, limit } => write!(
                f,
                "extent {index}: {gpfn} reaches beyond the guest's frames (limit {limit})"
            ),
        }
    }
}

impl core::error::Error for ExtentError {}
