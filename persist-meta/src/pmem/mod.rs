//! The persistent-memory abstraction the log writes through.
//!
//! A [`Pmem`] is one region of byte-addressable memory whose contents
//! survive power loss once written back from the CPU caches and ordered by a
//! fence. The model follows x86 (Intel SDM Vol. 1 §11.4.6 and the
//! "persistent memory programming" notes of Vol. 2 for CLWB/CLFLUSHOPT):
//!
//! - an aligned 8-byte store is failure-atomic: after a crash the word holds
//!   either its old or its new value, never a mix;
//! - nothing is durable until its cache line has been written back
//!   ([`Pmem::write_back`]) and a fence ([`Pmem::fence`]) has ordered that
//!   write-back; until then any line may or may not have reached the medium;
//! - stores to the same cache line reach the medium in program order.
//!
//! Implementations: [`X86Pmem`] (CLWB, CLFLUSHOPT or
//! CLFLUSH and SFENCE over a raw region), `MemPmem` (plain
//! memory, feature `alloc`), `SimPmem` (records every
//! store, write-back and fence and enumerates crash images, feature `std`),
//! and [`Counting`], which counts the operations of any other.

mod counting;
#[cfg(feature = "alloc")]
mod mem;
#[cfg(target_arch = "x86_64")]
mod x86;

use core::fmt;
use core::ops::Range;

pub use counting::{Counting, PmemStats};
#[cfg(feature = "alloc")]
pub use mem::MemPmem;
#[cfg(target_arch = "x86_64")]
pub use x86::{FlushInstruction, X86Pmem, X86PmemError};

/// Bytes in a cache line: the unit of write-back and of persistence
/// ordering.
pub const CACHE_LINE: u64 = 64;

/// Bytes in the failure-atomic unit: an aligned 8-byte word.
pub const WORD: u64 = 8;

/// One cache line of memory, aligned to its size: a safe way to obtain a
/// region whose offsets map onto whole lines (`vec![CacheLine::ZERO; n]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct CacheLine(pub [u8; 64]);

impl CacheLine {
    /// A line of zero bytes.
    pub const ZERO: Self = Self([0; 64]);
}

/// An access a [`Pmem`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmemError {
    /// `[offset, offset + len)` does not lie inside the region.
    OutOfBounds {
        /// First byte of the access.
        offset: u64,
        /// Bytes accessed.
        len: u64,
        /// Size of the region.
        size: u64,
    },
    /// An 8-byte store at an offset that is not a multiple of 8, so it would
    /// not be failure-atomic.
    Misaligned {
        /// The offset.
        offset: u64,
    },
}

impl fmt::Display for PmemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfBounds { offset, len, size } => write!(
                f,
                "access of {len:#x} bytes at {offset:#x} lies outside the {size:#x}-byte region"
            ),
            Self::Misaligned { offset } => {
                write!(f, "8-byte store at {offset:#x} is not 8-byte aligned")
            }
        }
    }
}

impl core::error::Error for PmemError {}

/// A region of persistent memory.
///
/// Offsets are relative to the start of the region, which implementations
/// place on a cache-line boundary so that offset arithmetic on lines holds.
/// Every method checks its range; none panics.
pub trait Pmem {
    /// Size of the region in bytes.
    fn size(&self) -> u64;

    /// Copies `buf.len()` bytes at `offset` into `buf`: what the program
    /// last stored there (or what survived, right after a crash).
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError>;

    /// Stores `value` (little-endian) at the 8-byte aligned `offset` with a
    /// single failure-atomic store.
    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError>;

    /// Stores `data` at `offset`. Not failure-atomic: any 8-byte word of it
    /// may or may not survive a crash until written back and fenced.
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError>;

    /// Starts writing back every cache line that `[offset, offset + len)`
    /// touches. Durable only after the next [`fence`](Pmem::fence).
    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError>;

    /// Orders all earlier write-backs: when it returns, they are durable.
    fn fence(&mut self);

    /// Reads the little-endian 8-byte word at `offset`.
    fn read_u64(&self, offset: u64) -> Result<u64, PmemError> {
        let mut word = [0; 8];
        self.read(offset, &mut word)?;
        Ok(u64::from_le_bytes(word))
    }
}

impl<P: Pmem + ?Sized> Pmem for &mut P {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        (**self).read(offset, buf)
    }
    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        (**self).store_u64(offset, value)
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        (**self).store(offset, data)
    }
    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        (**self).write_back(offset, len)
    }
    fn fence(&mut self) {
        (**self).fence();
    }
}

/// Checks that `[offset, offset + len)` lies inside a region of `size`
/// bytes and returns it as a `usize` range.
#[inline]
pub(crate) fn checked_range(offset: u64, len: u64, size: u64) -> Result<Range<usize>, PmemError> {
    let out = PmemError::OutOfBounds { offset, len, size };
    let end = offset.checked_add(len).ok_or(out)?;
    if end > size {
        return Err(out);
    }
    let start = usize::try_from(offset).map_err(|_| out)?;
    let end = usize::try_from(end).map_err(|_| out)?;
    Ok(start..end)
}

/// Checks an 8-byte store: aligned and inside the region.
#[inline]
pub(crate) fn checked_word(offset: u64, size: u64) -> Result<Range<usize>, PmemError> {
    if offset % WORD != 0 {
        return Err(PmemError::Misaligned { offset });
    }
    checked_range(offset, WORD, size)
}

/// The cache lines `[offset, offset + len)` touches, as a range of line
/// numbers; empty when `len` is 0. The range must already be checked.
#[inline]
pub(crate) fn line_numbers(offset: u64, len: u64) -> Range<u64> {
    if len == 0 {
        return 0..0;
    }
    let first = offset / CACHE_LINE;
    // `offset + len` was checked against the region size by the caller.
    let last = offset.saturating_add(len - 1) / CACHE_LINE;
    first..last + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert_eq!(checked_range(0, 8, 8), Ok(0..8));
        assert!(checked_range(1, 8, 8).is_err());
        assert!(checked_range(u64::MAX, 2, u64::MAX).is_err());
        assert_eq!(checked_range(8, 0, 8), Ok(8..8));
        assert_eq!(
            checked_word(4, 64),
            Err(PmemError::Misaligned { offset: 4 })
        );
        assert!(checked_word(64, 64).is_err());
    }

    #[test]
    fn lines_cover_the_range() {
        assert_eq!(line_numbers(0, 0), 0..0);
        assert_eq!(line_numbers(0, 1), 0..1);
        assert_eq!(line_numbers(63, 2), 0..2);
        assert_eq!(line_numbers(64, 64), 1..2);
        assert_eq!(line_numbers(100, 200), 1..5);
    }
}
