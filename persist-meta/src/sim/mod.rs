//! A crash simulator: a [`Pmem`] that records every store, write-back and
//! fence, and enumerates the images a crash could leave.
//!
//! The model is x86's (see [`crate::pmem`]), at 8-byte word granularity:
//!
//! - a store is durable once a write-back of its line issued after it has
//!   been followed by a fence;
//! - every other store may or may not have reached the medium, except that
//!   the stores to one cache line reach it in program order: per line, the
//!   survivors among its not-yet-durable stores are a *prefix* of them.
//!
//! So at a crash point where lines `L1 … Ln` have `k1 … kn` pending stores,
//! the possible images are the `(k1 + 1) × … × (kn + 1)` combinations of
//! prefixes. [`SimPmem::crash_images`] visits all of them where that
//! product is at most [`CrashConfig::exhaustive_limit`], and a seeded random
//! sample of [`CrashConfig::samples`] otherwise, at every crash point of a
//! chosen range of the trace (a crash point is "after the first `p`
//! events").
//!
//! Byte-range stores are split into word stores in ascending address order;
//! a partial word is stored as the whole word with its other bytes
//! unchanged.
//!
//! On top of the simulator, [`Scenario`] and [`Trace`] are the crash-test
//! harness that this crate's tests, nvpool's tests and the fuzz targets
//! share: see [`harness`] ([`Scenario`], [`Recorded`],
//! [`check_recovery_crashes`], [`ReadOnly`], [`Payloads`], [`PayloadLog`]).

mod crash;
pub mod harness;
mod trace;

use std::ops::ControlFlow;
use std::vec::Vec;

pub use crash::{Crash, CrashConfig, CrashStats};
pub use harness::{
    PayloadLog, Payloads, ReadOnly, Recorded, Scenario, Subject, check_recovery_crashes,
};
pub use trace::{Trace, report_line};

use crate::checksum::Crc32c;
use crate::pmem::{CACHE_LINE, Pmem, PmemError, WORD, checked_range, checked_word, line_numbers};
use crate::record::{Entry, Header, RECORD_ALIGN};

/// One recorded operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An 8-byte word store.
    Store {
        /// Word number (offset / 8).
        word: u64,
        /// The word's new value, little-endian.
        value: u64,
    },
    /// A write-back of cache lines `first .. end` (line numbers).
    WriteBack {
        /// First line.
        first: u64,
        /// One past the last line.
        end: u64,
    },
    /// A fence.
    Fence,
}

/// A [`Pmem`] that records its history and enumerates crash images.
#[derive(Clone, Debug)]
pub struct SimPmem {
    size: u64,
    /// What the program sees (every store applied), padded to whole lines.
    current: Vec<u8>,
    /// The durable image when recording started.
    initial: Vec<u8>,
    events: Vec<Event>,
}

fn padded(mut bytes: Vec<u8>) -> Vec<u8> {
    let line = CACHE_LINE as usize;
    bytes.resize(bytes.len().div_ceil(line) * line, 0);
    bytes
}

impl SimPmem {
    /// A zeroed region of `size` bytes, all durable.
    pub fn new(size: usize) -> Self {
        Self::from_image(std::vec![0; size])
    }

    /// A region holding `image`, all durable (e.g. a crash image, to
    /// simulate a crash during recovery).
    pub fn from_image(image: Vec<u8>) -> Self {
        let size = image.len() as u64;
        let current = padded(image);
        Self {
            size,
            initial: current.clone(),
            current,
            events: Vec::new(),
        }
    }

    /// Everything recorded so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Events recorded so far: a crash point, for marking where operations
    /// begin and end.
    pub fn point(&self) -> usize {
        self.events.len()
    }

    /// What the program sees now.
    pub fn image(&self) -> &[u8] {
        self.current.get(..self.size as usize).unwrap_or(&[])
    }

    /// Visits crash images at every crash point in `points` (clamped to
    /// `0 ..= self.point()`); stops early if `visit` breaks.
    pub fn crash_images(
        &self,
        points: std::ops::Range<usize>,
        config: &CrashConfig,
        visit: impl FnMut(&Crash<'_>) -> ControlFlow<()>,
    ) -> CrashStats {
        crash::enumerate(
            &self.initial,
            &self.events,
            self.size as usize,
            points,
            config,
            visit,
        )
    }

    /// One random crash image at crash point `point` (clamped), chosen by
    /// `seed`.
    pub fn random_crash_image(&self, point: usize, seed: u64) -> Vec<u8> {
        let point = point.min(self.point());
        let config = CrashConfig {
            exhaustive_limit: 0,
            samples: 1,
            seed,
        };
        let mut image = Vec::new();
        self.crash_images(point..point + 1, &config, |crash| {
            image = crash.image.to_vec();
            ControlFlow::Break(())
        });
        image
    }

    fn store_word(&mut self, word: u64, value: u64) {
        let at = (word * WORD) as usize;
        if let Some(dst) = self.current.get_mut(at..at + WORD as usize) {
            dst.copy_from_slice(&value.to_le_bytes());
        }
        self.events.push(Event::Store { word, value });
    }
}

impl Pmem for SimPmem {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        let range = checked_range(offset, buf.len() as u64, self.size)?;
        if let Some(src) = self.current.get(range) {
            buf.copy_from_slice(src);
        }
        Ok(())
    }

    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        checked_word(offset, self.size)?;
        self.store_word(offset / WORD, value);
        Ok(())
    }

    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        let range = checked_range(offset, data.len() as u64, self.size)?;
        let mut at = range.start;
        while at < range.end {
            let word = (at as u64) / WORD;
            let word_start = (word * WORD) as usize;
            let mut bytes = [0; 8];
            if let Some(old) = self.current.get(word_start..word_start + 8) {
                bytes.copy_from_slice(old);
            }
            let upto = (word_start + 8).min(range.end);
            for pos in at..upto {
                bytes[pos - word_start] = data[pos - range.start];
            }
            self.store_word(word, u64::from_le_bytes(bytes));
            at = upto;
        }
        Ok(())
    }

    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        checked_range(offset, len, self.size)?;
        let lines = line_numbers(offset, len);
        if !lines.is_empty() {
            self.events.push(Event::WriteBack {
                first: lines.start,
                end: lines.end,
            });
        }
        Ok(())
    }

    fn fence(&mut self) {
        self.events.push(Event::Fence);
    }
}

/// The bytes of a commit group of one record with arbitrary fields and a
/// correct CRC (padded to the group alignment): for tests and fuzzers that
/// probe recovery's checks beyond the checksum. Bit 0 of `flags` (which
/// ended a group in format 2) is implied by a group of one record; the
/// other bits go to the group header's flags. The payload is cut to
/// [`MAX_PAYLOAD`](crate::MAX_PAYLOAD) bytes.
pub fn forge_record(kind: u16, flags: u16, seq: u64, epoch: u64, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(crate::MAX_PAYLOAD)];
    let entry = Entry {
        len: payload.len() as u16,
        kind,
    };
    let mut body = entry.word().to_le_bytes().to_vec();
    body.extend_from_slice(payload);
    let mut header = Header {
        len: body.len() as u32,
        count: 1,
        seq,
        epoch,
        flags: u32::from(flags & !1),
        crc: 0,
    };
    let mut crc = Crc32c::new();
    crc.update_record(entry.word(), payload);
    header.crc = header.checksum(crc);
    let mut bytes: Vec<u8> = header
        .words()
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    bytes.extend_from_slice(&body);
    let align = RECORD_ALIGN as usize;
    bytes.resize(bytes.len().div_ceil(align) * align, 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_images(sim: &SimPmem) -> Vec<Vec<u8>> {
        let mut images = Vec::new();
        let point = sim.point();
        sim.crash_images(point..point + 1, &CrashConfig::default(), |c| {
            images.push(c.image.to_vec());
            ControlFlow::Continue(())
        });
        images.sort();
        images.dedup();
        images
    }

    #[test]
    fn unflushed_stores_in_one_line_persist_as_prefixes() {
        let mut sim = SimPmem::new(128);
        sim.store_u64(0, 1).unwrap();
        sim.store_u64(8, 2).unwrap();
        let images = all_images(&sim);
        // Nothing, the first, or both; never the second alone.
        assert_eq!(images.len(), 3);
        assert!(!images.iter().any(|i| i[0] == 0 && i[8] == 2));
    }

    #[test]
    fn lines_are_independent() {
        let mut sim = SimPmem::new(128);
        sim.store_u64(0, 1).unwrap();
        sim.store_u64(64, 2).unwrap();
        assert_eq!(all_images(&sim).len(), 4);
    }

    #[test]
    fn written_back_and_fenced_stores_are_durable() {
        let mut sim = SimPmem::new(128);
        sim.store_u64(0, 1).unwrap();
        sim.write_back(0, 8).unwrap();
        // Not yet fenced: may or may not be there.
        assert_eq!(all_images(&sim).len(), 2);
        sim.store_u64(8, 2).unwrap();
        sim.fence();
        // The store after the write-back is still pending.
        let images = all_images(&sim);
        assert_eq!(images.len(), 2);
        assert!(images.iter().all(|i| i[0] == 1));
        sim.write_back(8, 1).unwrap();
        sim.fence();
        assert_eq!(all_images(&sim).len(), 1);
    }

    #[test]
    fn a_fence_without_write_back_makes_nothing_durable() {
        let mut sim = SimPmem::new(64);
        sim.store_u64(0, 1).unwrap();
        sim.fence();
        assert_eq!(all_images(&sim).len(), 2);
    }

    #[test]
    fn byte_stores_split_into_words() {
        let mut sim = SimPmem::new(64);
        sim.store(6, &[1, 2, 3, 4]).unwrap();
        assert_eq!(sim.events().len(), 2);
        assert_eq!(sim.image()[4..12], [0, 0, 1, 2, 3, 4, 0, 0]);
        let images = all_images(&sim);
        assert_eq!(images.len(), 3);
        let mut buf = [0; 4];
        sim.read(6, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
    }

    #[test]
    fn every_point_is_visited_and_sampling_is_bounded() {
        let mut sim = SimPmem::new(64 * 20);
        for line in 0..20 {
            sim.store_u64(line * 64, 7).unwrap();
        }
        let config = CrashConfig {
            exhaustive_limit: 1000,
            samples: 50,
            seed: 1,
        };
        let stats = sim.crash_images(0..usize::MAX, &config, |_| ControlFlow::Continue(()));
        assert_eq!(stats.points, 21);
        // 2^k images for k <= 9 pending lines, then 50 samples per point.
        let exhaustive: u64 = (0..10).map(|k| 1u64 << k).sum();
        assert_eq!(stats.exhaustive_points, 10);
        assert_eq!(stats.sampled_points, 11);
        assert_eq!(stats.images, exhaustive + 11 * 50);
        let random = sim.random_crash_image(20, 3);
        assert_eq!(random.len(), 64 * 20);
    }

    #[test]
    fn odd_sizes_are_kept() {
        let mut sim = SimPmem::from_image(vec![9; 100]);
        assert_eq!(sim.size(), 100);
        assert!(sim.store(96, &[0; 5]).is_err());
        sim.store(96, &[1; 4]).unwrap();
        assert_eq!(sim.image().len(), 100);
        assert_eq!(all_images(&sim).iter().map(Vec::len).max(), Some(100));
    }
}
