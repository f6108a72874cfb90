//! The peer of `nvirt bench log`: an undo-log transaction in the style of
//! PMDK's `libpmemobj` (`pmemobj_tx_add_range` then in-place stores),
//! written here over the same `Pmem` so both sides run the same
//! instructions on the same memory.
//!
//! One transaction updates some objects in place:
//!
//! 1. copy each object's old bytes into the undo log, store the entry
//!    count, write back, **fence** (the log must be durable before the
//!    data changes);
//! 2. store the new bytes in place, write back, **fence** (the data must be
//!    durable before the log is discarded);
//! 3. clear the entry count, write back, **fence** (the commit point).
//!
//! Three fences per transaction, whatever its size. Recovery (not
//! benchmarked) would copy back the entries of a non-zero count.
//!
//! `nvirt bench log` (tools/nvirt-dev) compiles this file too (`#[path]`);
//! its tests live there, in `bench/log.rs`, since a bench without the test
//! harness would not run them.

use nvirt_persist_meta::{CACHE_LINE, Pmem, PmemError};

/// Bytes of an undo entry's header: target offset and length.
const ENTRY_HEADER: u64 = 16;

/// An undo log over a region: the entry count, then entries, from
/// `log_offset`; objects live elsewhere in the same region.
pub(crate) struct UndoLog<P: Pmem> {
    pmem: P,
    log_offset: u64,
    log_len: u64,
    scratch: Vec<u8>,
}

impl<P: Pmem> UndoLog<P> {
    /// An undo log of `log_len` bytes at `log_offset` (line aligned).
    pub(crate) fn new(pmem: P, log_offset: u64, log_len: u64) -> Self {
        Self {
            pmem,
            log_offset,
            log_len,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn pmem(&self) -> &P {
        &self.pmem
    }

    /// Updates each `(offset, bytes)` in place, crash-atomically.
    pub(crate) fn commit(&mut self, updates: &[(u64, &[u8])]) -> Result<(), String> {
        self.commit_inner(updates).map_err(|e| e.to_string())
    }

    fn commit_inner(&mut self, updates: &[(u64, &[u8])]) -> Result<(), PmemError> {
        // 1. Log the old values.
        let entries = self.log_offset + CACHE_LINE;
        let mut at = entries;
        for &(offset, bytes) in updates {
            let len = bytes.len() as u64;
            if at + ENTRY_HEADER + len > self.log_offset + self.log_len {
                return Err(PmemError::OutOfBounds {
                    offset: at,
                    len,
                    size: self.log_len,
                });
            }
            self.scratch.resize(bytes.len(), 0);
            self.pmem.read(offset, &mut self.scratch)?;
            self.pmem.store_u64(at, offset)?;
            self.pmem.store_u64(at + 8, len)?;
            self.pmem.store(at + ENTRY_HEADER, &self.scratch)?;
            at += (ENTRY_HEADER + len).next_multiple_of(8);
        }
        self.pmem.store_u64(self.log_offset, updates.len() as u64)?;
        self.pmem
            .write_back(self.log_offset, at - self.log_offset)?;
        self.pmem.fence();
        // 2. Write the new values in place.
        for &(offset, bytes) in updates {
            self.pmem.store(offset, bytes)?;
            self.pmem.write_back(offset, bytes.len() as u64)?;
        }
        self.pmem.fence();
        // 3. Discard the log: the commit point.
        self.pmem.store_u64(self.log_offset, 0)?;
        self.pmem.write_back(self.log_offset, 8)?;
        self.pmem.fence();
        Ok(())
    }
}
