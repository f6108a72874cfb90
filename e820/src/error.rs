//! Error types. Each operation has its own small enum that carries the
//! offending values, so a caller can report exactly what was wrong.

use core::fmt;

/// A range that cannot be an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// `start + size` reaches or passes 2^64.
    EndOverflow {
        /// First byte.
        start: u64,
        /// Length in bytes.
        size: u64,
    },
    /// The inclusive last byte lies below `start - 1`.
    EndBeforeStart {
        /// First byte.
        start: u64,
        /// Claimed last byte.
        last: u64,
    },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::EndOverflow { start, size } => write!(
                f,
                "range at {start:#x} of size {size:#x} ends at or beyond 2^64"
            ),
            Self::EndBeforeStart { start, last } => {
                write!(f, "range ends at {last:#x}, before its start {start:#x}")
            }
        }
    }
}

/// The map has no room for the entries an operation needs.
///
/// The map is left exactly as it was before the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityError {
    /// Entries the map can hold.
    pub capacity: usize,
    /// Entries the operation would have needed (a lower bound when the
    /// operation stopped counting early).
    pub needed: usize,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory map full: {} entries needed, capacity is {}",
            self.needed, self.capacity
        )
    }
}

/// Building a map from firmware entries failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// More entries than the map's capacity, before or after sanitizing.
    Capacity(CapacityError),
    /// Entry `index` of the input (counting from 0) is not a valid range.
    Range {
        /// Position in the input.
        index: usize,
        /// What is wrong with it.
        error: RangeError,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Capacity(e) => e.fmt(f),
            Self::Range { index, error } => write!(f, "entry {index}: {error}"),
        }
    }
}

impl From<CapacityError> for MapError {
    fn from(e: CapacityError) -> Self {
        Self::Capacity(e)
    }
}

/// A binary firmware table (BIOS entries, boot params, Multiboot2 tag, PVH
/// table) that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The buffer ends before the structure does.
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// An entry size the format does not allow.
    EntrySize {
        /// The size found.
        size: usize,
    },
    /// More entries than the format allows.
    TooManyEntries {
        /// Entries claimed.
        count: usize,
        /// The format's maximum.
        max: usize,
    },
    /// A tag or header field has the wrong value.
    BadHeader {
        /// Which field.
        field: &'static str,
        /// The value found.
        found: u64,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(f, "truncated: {needed} bytes needed, {available} available")
            }
            Self::EntrySize { size } => write!(f, "unsupported entry size {size}"),
            Self::TooManyEntries { count, max } => {
                write!(f, "{count} entries, the format allows at most {max}")
            }
            Self::BadHeader { field, found } => write!(f, "bad {field}: {found:#x}"),
        }
    }
}

/// Writing a map into a binary format failed; the buffer may be partly
/// written but the map is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The format cannot hold this many entries.
    TooManyEntries {
        /// Entries in the map.
        count: usize,
        /// The format's maximum.
        max: usize,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { needed, available } => write!(
                f,
                "output buffer too small: {needed} bytes needed, {available} available"
            ),
            Self::TooManyEntries { count, max } => {
                write!(f, "{count} entries, the format holds at most {max}")
            }
        }
    }
}

/// An alignment that is not a power of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlignmentError {
    /// The alignment given.
    pub align: u64,
}

impl fmt::Display for AlignmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "alignment {:#x} is not a power of two", self.align)
    }
}

impl core::error::Error for RangeError {}
impl core::error::Error for CapacityError {}
impl core::error::Error for MapError {}
impl core::error::Error for FormatError {}
impl core::error::Error for WriteError {}
impl core::error::Error for AlignmentError {}
