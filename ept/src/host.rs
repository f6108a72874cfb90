//! A frame source backed by host memory (feature `alloc`): for tools that
//! build tables to inspect them, tests, fuzzers and benchmarks.
//!
//! Frames live in 2 MiB chunks allocated on first touch, so a large
//! capacity costs nothing until used. Frame `i` has the host-physical
//! address `base + i * 4096`.

use crate::addr::host_addr;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::{Cell, OnceCell, RefCell};
use core::sync::atomic::AtomicU64;

use crate::frames::{FrameSource, PhysMem, TableView};
use crate::{HostPhysAddr, PAGE_4K};

/// Frames per chunk.
const CHUNK: usize = 512;

#[repr(C, align(4096))]
struct Frame(TableView);

impl Frame {
    fn new() -> Self {
        Self(core::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Table frames in host memory. Use `&HostFrames` as both the
/// [`PhysMem`] and the [`FrameSource`] of a set of tables.
pub struct HostFrames {
    base: HostPhysAddr,
    chunks: Box<[OnceCell<Box<[Frame]>>]>,
    capacity: usize,
    next: Cell<usize>,
    free: RefCell<Vec<HostPhysAddr>>,
    live: Cell<usize>,
    limit: Cell<usize>,
}

impl core::fmt::Debug for HostFrames {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostFrames")
            .field("base", &self.base)
            .field("capacity", &self.capacity)
            .field("live", &self.live.get())
            .finish_non_exhaustive()
    }
}

impl HostFrames {
    /// Room for `capacity` frames whose addresses start at `base` (rounded
    /// down to 4 KiB).
    #[must_use]
    pub fn new(base: HostPhysAddr, capacity: usize) -> Self {
        let chunks = capacity.div_ceil(CHUNK);
        Self {
            base: host_addr(base.get() & !(PAGE_4K - 1)),
            chunks: (0..chunks).map(|_| OnceCell::new()).collect(),
            capacity,
            next: Cell::new(0),
            free: RefCell::new(Vec::new()),
            live: Cell::new(0),
            limit: Cell::new(capacity),
        }
    }

    /// Frames handed out and not given back.
    #[must_use]
    pub fn live(&self) -> usize {
        self.live.get()
    }

    /// Makes allocation fail once `limit` frames are live (to test
    /// exhaustion); `None` restores the capacity.
    pub fn set_limit(&self, limit: Option<usize>) {
        self.limit
            .set(limit.unwrap_or(self.capacity).min(self.capacity));
    }

    /// Forgets every allocation: all frames are free again. Tables built
    /// from this source must not be used afterwards.
    pub fn reset(&mut self) {
        self.next.set(0);
        self.free.get_mut().clear();
        self.live.set(0);
    }

    /// Whether `frame` is a frame of this source.
    #[must_use]
    pub fn contains(&self, frame: HostPhysAddr) -> bool {
        self.index(frame).is_some()
    }

    fn index(&self, frame: HostPhysAddr) -> Option<usize> {
        let offset = frame.offset_from(self.base)?;
        let index = usize::try_from(offset / PAGE_4K).ok()?;
        (offset % PAGE_4K == 0 && index < self.capacity).then_some(index)
    }
}

impl PhysMem for HostFrames {
    /// # Panics
    /// If `frame` is not a frame of this source: the tables only ask for
    /// frames the source handed out, so this is a caller bug.
    fn table(&self, frame: HostPhysAddr) -> &TableView {
        let Some(index) = self.index(frame) else {
            panic!("{frame} is not a frame of this HostFrames");
        };
        let chunk =
            self.chunks[index / CHUNK].get_or_init(|| (0..CHUNK).map(|_| Frame::new()).collect());
        &chunk[index % CHUNK].0
    }
}

impl FrameSource for &HostFrames {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        if self.live.get() >= self.limit.get() {
            return None;
        }
        let frame = match self.free.borrow_mut().pop() {
            Some(frame) => frame,
            None => {
                let index = self.next.get();
                if index >= self.capacity {
                    return None;
                }
                self.next.set(index + 1);
                host_addr(self.base.get() + index as u64 * PAGE_4K)
            }
        };
        self.live.set(self.live.get() + 1);
        Some(frame)
    }

    fn free_table(&mut self, frame: HostPhysAddr) {
        if self.contains(frame) {
            self.free.borrow_mut().push(frame);
            self.live.set(self.live.get().saturating_sub(1));
        }
    }
}
