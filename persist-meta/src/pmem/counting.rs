//! A [`Pmem`] wrapper that counts what passes through it: how benchmarks
//! and tests prove "one fence per commit".

use super::{Pmem, PmemError, line_numbers};

/// Operation counts of a [`Counting`] wrapper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmemStats {
    /// 8-byte failure-atomic stores.
    pub word_stores: u64,
    /// Byte-range stores.
    pub byte_stores: u64,
    /// Bytes stored by both kinds of store.
    pub bytes_stored: u64,
    /// Calls to `write_back`.
    pub write_backs: u64,
    /// Cache lines those calls covered.
    pub lines_written_back: u64,
    /// Fences.
    pub fences: u64,
}

/// Wraps a [`Pmem`] and counts its stores, write-backs and fences.
///
/// Only successful operations are counted.
#[derive(Debug)]
pub struct Counting<P> {
    inner: P,
    stats: PmemStats,
}

impl<P: Pmem> Counting<P> {
    /// Wraps `inner` with all counts at zero.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            stats: PmemStats::default(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> PmemStats {
        self.stats
    }

    /// Sets every count back to zero.
    pub fn reset(&mut self) {
        self.stats = PmemStats::default();
    }

    /// The wrapped region.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Unwraps the region.
    pub fn into_inner(self) -> P {
        self.inner
    }
}

impl<P: Pmem> Pmem for Counting<P> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        self.inner.read(offset, buf)
    }

    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        self.inner.store_u64(offset, value)?;
        self.stats.word_stores += 1;
        self.stats.bytes_stored += 8;
        Ok(())
    }

    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        self.inner.store(offset, data)?;
        self.stats.byte_stores += 1;
        self.stats.bytes_stored += data.len() as u64;
        Ok(())
    }

    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        self.inner.write_back(offset, len)?;
        let lines = line_numbers(offset, len);
        self.stats.write_backs += 1;
        self.stats.lines_written_back += lines.end - lines.start;
        Ok(())
    }

    fn fence(&mut self) {
        self.inner.fence();
        self.stats.fences += 1;
    }
}
