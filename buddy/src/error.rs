//! Error types: one small enum per operation, each variant carrying the
//! offending values. A failed operation leaves the heap exactly as it was.

use core::fmt;

use crate::MfnRange;
use crate::range::Constraints;
use crate::{Block, MemKind, Mfn, Order};

/// A frame range as every buddy error has always named one:
/// `frames 0x10..0x20`.
struct Frames(MfnRange);

impl fmt::Display for Frames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frames {:#x}..{:#x}", self.0.start(), self.0.end())
    }
}

/// The metadata buffer given to [`crate::Heap::new`] cannot hold the heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewError {
    /// The span holds no frame.
    EmptySpan,
    /// The buffer (its 8-byte-aligned part) is smaller than
    /// [`crate::metadata_bytes`].
    TooSmall {
        /// Bytes the layout needs.
        needed: usize,
        /// Usable bytes given.
        available: usize,
    },
}

impl fmt::Display for NewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::EmptySpan => f.write_str("the heap's span holds no frame"),
            Self::TooSmall { needed, available } => write!(
                f,
                "metadata buffer too small: {needed} bytes needed, {available} usable"
            ),
        }
    }
}

/// A block argument that no heap could accept, whatever its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The order is above the heap's largest.
    OrderTooLarge {
        /// The order given.
        order: Order,
        /// The heap's largest order.
        max: Order,
    },
    /// The frame is not aligned to the order.
    Misaligned {
        /// The frame given.
        pfn: Mfn,
        /// The order given.
        order: Order,
    },
    /// Some frame of the block lies outside the heap's span.
    OutsideSpan {
        /// The frame given.
        pfn: Mfn,
        /// The order given.
        order: Order,
        /// The heap's span.
        span: MfnRange,
    },
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OrderTooLarge { order, max } => {
                write!(f, "{order} is above the heap's largest, {max}")
            }
            Self::Misaligned { pfn, order } => {
                write!(f, "frame {pfn:#x} is not aligned to {order}")
            }
            Self::OutsideSpan { pfn, order, span } => {
                write!(
                    f,
                    "block of {order} at frame {pfn:#x} is not inside the heap's {}",
                    Frames(span)
                )
            }
        }
    }
}

/// [`crate::Heap::add`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// The range is not inside the heap's span.
    OutsideSpan {
        /// The range given.
        range: MfnRange,
        /// The heap's span.
        span: MfnRange,
    },
    /// A frame of the range is already managed (free or allocated).
    AlreadyManaged {
        /// The first such frame.
        pfn: Mfn,
    },
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutsideSpan { range, span } => {
                write!(
                    f,
                    "{} is not inside the heap's {}",
                    Frames(range),
                    Frames(span)
                )
            }
            Self::AlreadyManaged { pfn } => write!(f, "frame {pfn:#x} is already in the heap"),
        }
    }
}

/// An allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The order is above the heap's largest.
    OrderTooLarge {
        /// The order asked for.
        order: Order,
        /// The heap's largest order.
        max: Order,
    },
    /// No free block of the order (or, for `alloc_at_most`, of any order)
    /// satisfies the constraints.
    OutOfMemory {
        /// The order asked for.
        order: Order,
        /// The constraints given.
        constraints: Constraints,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OrderTooLarge { order, max } => {
                write!(f, "{order} is above the heap's largest, {max}")
            }
            Self::OutOfMemory { order, constraints } => write!(
                f,
                "no free block of {order} below frame {:#x}",
                constraints.limit()
            ),
        }
    }
}

/// [`crate::Heap::free`] refused a block; nothing was freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The block is not valid for this heap.
    Invalid(BlockError),
    /// The first frame is not managed by the heap (never added, or
    /// reserved).
    NotManaged {
        /// The frame.
        pfn: Mfn,
    },
    /// The first frame is free already: a double free.
    AlreadyFree {
        /// The frame.
        pfn: Mfn,
    },
    /// The first frame lies inside an allocated block but does not start it.
    NotBlockStart {
        /// The frame.
        pfn: Mfn,
    },
    /// An allocated block starts at the frame, but of another order.
    WrongOrder {
        /// The block given.
        block: Block,
        /// The order of the allocated block.
        allocated: Order,
    },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Invalid(e) => e.fmt(f),
            Self::NotManaged { pfn } => write!(f, "frame {pfn:#x} is not managed by the heap"),
            Self::AlreadyFree { pfn } => write!(f, "frame {pfn:#x} is already free (double free)"),
            Self::NotBlockStart { pfn } => {
                write!(
                    f,
                    "frame {pfn:#x} is inside an allocated block but does not start it"
                )
            }
            Self::WrongOrder { block, allocated } => write!(
                f,
                "{block} freed, but the block allocated at its start is of {allocated}"
            ),
        }
    }
}

impl From<BlockError> for FreeError {
    fn from(e: BlockError) -> Self {
        Self::Invalid(e)
    }
}

/// [`crate::Heap::claim`] or [`crate::Heap::claim_range`] refused; nothing
/// was claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// The block is not valid for this heap.
    Invalid(BlockError),
    /// The range is not inside the heap's span.
    OutsideSpan {
        /// The range given.
        range: MfnRange,
        /// The heap's span.
        span: MfnRange,
    },
    /// A frame is not managed by the heap.
    NotManaged {
        /// The first such frame.
        pfn: Mfn,
    },
    /// A frame is allocated.
    NotFree {
        /// The first such frame.
        pfn: Mfn,
    },
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Invalid(e) => e.fmt(f),
            Self::OutsideSpan { range, span } => {
                write!(
                    f,
                    "{} is not inside the heap's {}",
                    Frames(range),
                    Frames(span)
                )
            }
            Self::NotManaged { pfn } => write!(f, "frame {pfn:#x} is not managed by the heap"),
            Self::NotFree { pfn } => write!(f, "frame {pfn:#x} is not free"),
        }
    }
}

impl From<BlockError> for ClaimError {
    fn from(e: BlockError) -> Self {
        Self::Invalid(e)
    }
}

/// [`crate::Heap::reserve`] refused; nothing was reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// The range is not inside the heap's span.
    OutsideSpan {
        /// The range given.
        range: MfnRange,
        /// The heap's span.
        span: MfnRange,
    },
    /// A frame of the range is allocated.
    Allocated {
        /// The first such frame.
        pfn: Mfn,
    },
}

impl fmt::Display for ReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutsideSpan { range, span } => {
                write!(
                    f,
                    "{} is not inside the heap's {}",
                    Frames(range),
                    Frames(span)
                )
            }
            Self::Allocated { pfn } => write!(f, "frame {pfn:#x} is allocated"),
        }
    }
}

/// [`crate::Heap::free_range`] refused; nothing was freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeRangeError {
    /// The range is not inside the heap's span.
    OutsideSpan {
        /// The range given.
        range: MfnRange,
        /// The heap's span.
        span: MfnRange,
    },
    /// One of the range's aligned blocks is not an allocated block.
    Block {
        /// The block.
        block: Block,
        /// Why it cannot be freed.
        error: FreeError,
    },
}

impl fmt::Display for FreeRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutsideSpan { range, span } => {
                write!(
                    f,
                    "{} is not inside the heap's {}",
                    Frames(range),
                    Frames(span)
                )
            }
            Self::Block { block, error } => write!(f, "{block}: {error}"),
        }
    }
}

/// A frame is managed by neither heap of a [`crate::Heaps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownFrame {
    /// The frame.
    pub pfn: Mfn,
}

impl fmt::Display for UnknownFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is managed by neither heap", self.pfn)
    }
}

/// [`crate::Heaps::add`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapsAddError {
    /// The heap of the kind refused the range.
    Add(AddError),
    /// A frame of the range is managed by the heap of the other kind.
    OtherKind {
        /// The first such frame.
        pfn: Mfn,
        /// The kind of the heap that manages it.
        kind: MemKind,
    },
}

impl fmt::Display for HeapsAddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Add(e) => e.fmt(f),
            Self::OtherKind { pfn, kind } => write!(f, "frame {pfn:#x} is in the {kind} heap"),
        }
    }
}

impl From<AddError> for HeapsAddError {
    fn from(e: AddError) -> Self {
        Self::Add(e)
    }
}

impl core::error::Error for NewError {}
impl core::error::Error for BlockError {}
impl core::error::Error for AddError {}
impl core::error::Error for AllocError {}
impl core::error::Error for FreeError {}
impl core::error::Error for ClaimError {}
impl core::error::Error for ReserveError {}
impl core::error::Error for FreeRangeError {}
impl core::error::Error for UnknownFrame {}
impl core::error::Error for HeapsAddError {}
