//! Host memory in a buffer, for tests and fuzzing (feature `std`): frames
//! the buddy heaps can hand out and the nested tables and guest memory
//! code can reach, as a bare-metal hypervisor reaches them through its
//! direct map; and a model-checked driver of a guest's memory
//! ([`balloon`]).

pub mod balloon;
mod model;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec::Vec;

use nvirt_buddy::{Heap, MemKind, Order, metadata_bytes};
use nvirt_ept::{HostPhysAddr, PhysMem, TableView};

use crate::guest_memory::{HostMem, PAGE};
use crate::heaps::pfn_range;

/// Host-physical memory `base..base + len`, 4 KiB frames of atomics (what
/// the tables need, and byte access on top).
#[derive(Debug)]
pub struct Arena {
    base: u64,
    frames: Vec<TableView>,
}

impl Arena {
    /// Zeroed memory at host-physical `range` (page aligned).
    #[must_use]
    pub fn new(range: Range<u64>) -> Self {
        let n = ((range.end - range.start) / PAGE) as usize;
        let mut frames = Vec::with_capacity(n);
        frames.resize_with(n, || [const { AtomicU64::new(0) }; 512]);
        Self {
            base: range.start,
            frames,
        }
    }

    fn word(&self, hpa: u64) -> &AtomicU64 {
        let offset = hpa - self.base;
        &self.frames[(offset / PAGE) as usize][((offset % PAGE) / 8) as usize]
    }

    /// Reads the byte at `hpa`.
    #[must_use]
    pub fn byte(&self, hpa: u64) -> u8 {
        (self.word(hpa).load(Ordering::Relaxed) >> (8 * (hpa % 8))) as u8
    }

    fn set_byte(&self, hpa: u64, value: u8) {
        let shift = 8 * (hpa % 8);
        let word = self.word(hpa);
        let old = word.load(Ordering::Relaxed);
        word.store(
            (old & !(0xff << shift)) | (u64::from(value) << shift),
            Ordering::Relaxed,
        );
    }
}

impl PhysMem for Arena {
    fn table(&self, frame: HostPhysAddr) -> &TableView {
        &self.frames[((frame.get() - self.base) / PAGE) as usize]
    }
}

impl HostMem for Arena {
    fn read(&self, hpa: HostPhysAddr, out: &mut [u8]) {
        let hpa = hpa.get();
        for (i, b) in out.iter_mut().enumerate() {
            *b = self.byte(hpa + i as u64);
        }
    }

    fn write(&self, hpa: HostPhysAddr, data: &[u8]) {
        let hpa = hpa.get();
        for (i, &b) in data.iter().enumerate() {
            self.set_byte(hpa + i as u64, b);
        }
    }

    fn zero(&self, hpa: HostPhysAddr, len: u64) {
        let hpa = hpa.get();
        let mut at = hpa;
        while at < hpa + len {
            if at % 8 == 0 && hpa + len - at >= 8 {
                self.word(at).store(0, Ordering::Relaxed);
                at += 8;
            } else {
                self.set_byte(at, 0);
                at += 1;
            }
        }
    }
}

/// A metadata buffer for a heap over `range`.
#[must_use]
pub fn metadata_for(range: &Range<u64>) -> Vec<u8> {
    let span = pfn_range(range).unwrap_or_default();
    vec![0u8; metadata_bytes(span, Order::MAX) + 8]
}

/// A heap of `kind` holding all of `range`, its metadata in `meta` (from
/// [`metadata_for`]). `None` if the range is not whole frames.
pub fn heap<'m>(kind: MemKind, range: &Range<u64>, meta: &'m mut [u8]) -> Option<Heap<'m>> {
    let span = pfn_range(range).ok()?;
    let mut heap = Heap::new(kind, span, Order::MAX, meta).ok()?;
    heap.add(span).ok()?;
    Some(heap)
}
