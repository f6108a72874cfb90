//! The heap: its metadata and its queries (the block moves its operations
//! are made of are in [`crate::moves`]).
//!
//! Each frame is in one of four states, kept in two bit planes (see
//! [`crate::bits`]): unmanaged, interior, allocated head, or free start. A
//! free block of order k is a free start followed by 2^k − 1 interior
//! frames, with its bit set in F_k (order 0: read off the planes). An
//! allocated block is a head followed by interior frames up to the next
//! frame that is not interior: so the heap knows where every allocated
//! block ends without storing its order, and can tell a wrong-order free
//! from a right one in two reads (see [`crate::free`]).
//!
//! Invariants ([`Heap::check_invariants`] checks them all):
//! - free blocks lie inside the span, on managed frames, and never overlap;
//!   every free start begins one;
//! - two buddies are never both free at the same order below the largest
//!   (they are merged), so the free blocks are exactly the maximal aligned
//!   blocks of the free frames;
//! - every allocated block is a head and interior frames, 2^k in all,
//!   aligned;
//! - every summary bit says exactly whether the word below it is non-zero,
//!   and the counters match the bitmaps;
//! - a lazy block (see [`crate::lazy`]) is a block of the largest order
//!   wholly inside the span whose first word pair says what its other words
//!   imply: all unmanaged, or one free block.

use core::fmt;

use zerocopy::FromBytes;

use crate::MfnRange;
use crate::bits::{Bits, FREE, HEAD, INTERIOR, UNMANAGED};
use crate::error::{BlockError, NewError};
use crate::layout::Layout;
use crate::moves::{Counts, OrderCount};
use crate::{Block, MemKind, Mfn, Order, Zone};

/// What a frame is, as [`Heap::frame_state`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameState {
    /// Outside the span, never added, or reserved.
    Unmanaged,
    /// Part of a free block.
    Free,
    /// Part of an allocated block.
    Allocated,
}

/// A buddy heap of one memory kind over a span of frames.
///
/// The metadata lives in the caller's buffer (see
/// [`metadata_bytes`](crate::metadata_bytes)); the heap never reads or
/// writes the frames it manages.
///
/// Invariants, which [`Heap::check_invariants`] verifies: free blocks lie
/// inside the span, on managed frames, and never overlap; two buddies are
/// never both free at the same order below the largest, so the free blocks
/// are exactly the maximal aligned blocks of the free frames; every
/// allocated block is a head frame followed by interior frames, 2^k in all
/// for an order k up to the largest, aligned; the summaries are exact; the
/// counters match the bitmaps.
pub struct Heap<'m> {
    pub(crate) c: Counts,
    pub(crate) bits: Bits<'m>,
    kind: MemKind,
    /// Frames added and not reserved.
    managed: u64,
}

impl fmt::Debug for Heap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("kind", &self.kind)
            .field("span", &self.span())
            .field("max_order", &self.max_order())
            .field("managed", &self.managed)
            .field("free_frames", &self.free_frames())
            .finish_non_exhaustive()
    }
}

impl<'m> Heap<'m> {
    /// An empty heap of `kind` for frames in `span`, with blocks of at most
    /// `max_order`, keeping its metadata in `metadata`.
    ///
    /// The buffer needs [`metadata_bytes`](crate::metadata_bytes)`(span,
    /// max_order)` bytes from its first 8-byte-aligned byte on, whatever
    /// they hold. About 1/32 bit per frame is written here; the per-frame
    /// metadata of each block of `max_order` inside the span is written
    /// when something first changes inside the block (adding the whole
    /// block as free memory does not), so creating a heap over a large span
    /// and adding it takes time in proportion to its blocks of `max_order`.
    /// No frame is free until [`Heap::add`] adds it.
    pub fn new(
        kind: MemKind,
        span: MfnRange,
        max_order: Order,
        metadata: &'m mut [u8],
    ) -> Result<Self, NewError> {
        if span.is_empty() {
            return Err(NewError::EmptySpan);
        }
        let layout = Layout::compute(span, max_order);
        let needed = layout.words * 8;
        let skip = metadata.as_ptr().align_offset(8).min(metadata.len());
        let available = metadata.len() - skip;
        let bytes = metadata
            .get_mut(skip..)
            .and_then(|b| b.get_mut(..needed))
            .ok_or(NewError::TooSmall { needed, available })?;
        let w = <[u64]>::mut_from_bytes(bytes).map_err(|_| NewError::TooSmall {
            needed,
            available: 0,
        })?;
        Ok(Self {
            c: Counts {
                nonempty: 0,
                deferred: crate::moves::NO_FRAME,
                freeing: false,
                order: [OrderCount::default(); Order::COUNT],
            },
            bits: Bits::new(w, layout),
            kind,
            managed: 0,
        })
    }

    /// The kind of every frame of this heap.
    #[must_use]
    pub fn kind(&self) -> MemKind {
        self.kind
    }

    /// The frames this heap can manage.
    #[must_use]
    pub fn span(&self) -> MfnRange {
        MfnRange::from_numbers(self.bits.l.base, self.bits.l.end).unwrap_or_default()
    }

    /// The largest order.
    #[must_use]
    pub fn max_order(&self) -> Order {
        Order::new(self.bits.l.max_order).unwrap_or(Order::MAX)
    }

    /// Bytes of metadata in use: [`metadata_bytes`](crate::metadata_bytes)
    /// of the span.
    #[must_use]
    pub fn metadata_bytes(&self) -> usize {
        self.bits.l.words * 8
    }

    /// Frames added and not reserved: free or allocated.
    #[must_use]
    pub fn managed_frames(&self) -> u64 {
        self.managed
    }

    /// Free frames.
    #[must_use]
    pub fn free_frames(&self) -> u64 {
        self.c
            .order
            .iter()
            .enumerate()
            .map(|(k, n)| n.free << k)
            .sum()
    }

    /// Allocated frames.
    #[must_use]
    pub fn allocated_frames(&self) -> u64 {
        self.managed - self.free_frames()
    }

    /// Free blocks of `order`.
    #[must_use]
    pub fn free_blocks(&self, order: Order) -> u64 {
        self.c
            .order
            .get(usize::from(order.get()))
            .map_or(0, |n| n.free)
    }

    /// Free blocks of `order` that start in `zone` (the block at frame 0 is
    /// in zone 0). Counts bits, so it takes time in proportion to the zone's
    /// share of the span.
    #[must_use]
    pub fn free_blocks_in_zone(&self, zone: Zone, order: Order) -> u64 {
        let k = usize::from(order.get());
        if k > usize::from(self.bits.l.max_order) {
            return 0;
        }
        let t = &self.bits.l.trees[k];
        let (first, slots) = (t.origin << 6, t.words as u64 * 64);
        let first_block = zone.start().div_ceil(order.frames());
        let end_block = zone.end().div_ceil(order.frames());
        let lo = first_block.saturating_sub(first).min(slots);
        let hi = end_block.saturating_sub(first).min(slots);
        self.bits.count(k, lo as usize, hi as usize)
    }

    /// Free frames in `zone`.
    #[must_use]
    pub fn free_frames_in_zone(&self, zone: Zone) -> u64 {
        let (start, end) = (zone.start(), zone.end());
        let mut n = 0;
        for order in self.max_order().up_to() {
            n += self.free_blocks_in_zone(zone, order) << order.get();
            // The block at frame 0 counts as zone 0's but spans zones 0
            // through its order.
            if self.bits.l.base == 0
                && self.free_block_starting(0) == Some(usize::from(order.get()))
            {
                if start == 0 {
                    n -= order.frames() - 1;
                } else if order.frames() > start {
                    n += order.frames().min(end) - start;
                }
            }
        }
        n
    }

    /// What frame `pfn` is.
    #[must_use]
    pub fn frame_state(&self, pfn: Mfn) -> FrameState {
        if !self.span().contains(pfn) {
            return FrameState::Unmanaged;
        }
        match self.bits.code_any(pfn.get()) {
            UNMANAGED => FrameState::Unmanaged,
            HEAD => FrameState::Allocated,
            FREE => FrameState::Free,
            _ => {
                if self.free_block_containing(pfn.get()).is_some() {
                    FrameState::Free
                } else {
                    FrameState::Allocated
                }
            }
        }
    }

    /// The kind of frame `pfn` if this heap manages it (free or allocated).
    #[must_use]
    pub fn kind_of(&self, pfn: Mfn) -> Option<MemKind> {
        self.manages(pfn).then_some(self.kind)
    }

    /// Whether this heap manages frame `pfn` (free or allocated).
    #[must_use]
    pub fn manages(&self, pfn: Mfn) -> bool {
        self.span().contains(pfn) && self.bits.code_any(pfn.get()) != UNMANAGED
    }

    /// The free block that contains frame `pfn`, if any.
    #[must_use]
    pub fn free_block_at(&self, pfn: Mfn) -> Option<Block> {
        if !self.span().contains(pfn) {
            return None;
        }
        let (start, k) = self.free_block_containing(pfn.get())?;
        Block::new(Mfn::new(start)?, Order::new(k as u8)?)
    }

    /// The free block containing in-span frame `pfn`, as (start, order).
    pub(crate) fn free_block_containing(&self, pfn: u64) -> Option<(u64, usize)> {
        if self.bits.is_lazy(pfn) {
            let max = usize::from(self.bits.l.max_order);
            let start = pfn >> max << max;
            return self
                .bits
                .is_free_in_span(max, start)
                .then_some((start, max));
        }
        match self.bits.code(pfn) {
            FREE => self.free_block_starting(pfn).map(|k| (pfn, k)),
            INTERIOR => (1..=usize::from(self.bits.l.max_order)).find_map(|k| {
                let start = pfn & !((1u64 << k) - 1);
                self.bits.is_free_block(k, start).then_some((start, k))
            }),
            _ => None,
        }
    }

    /// The order of the free block starting at in-span frame `pfn`, if one
    /// does.
    pub(crate) fn free_block_starting(&self, pfn: u64) -> Option<usize> {
        if self.bits.is_lazy(pfn) {
            let max = usize::from(self.bits.l.max_order);
            let start = pfn >> max << max;
            return (pfn == start && self.bits.is_free_in_span(max, start)).then_some(max);
        }
        if self.bits.code(pfn) != FREE {
            return None;
        }
        if self.bits.is_free0(pfn) {
            return Some(0);
        }
        let top = (pfn.trailing_zeros() as usize).min(usize::from(self.bits.l.max_order));
        (1..=top).find(|&k| self.bits.is_free_block(k, pfn))
    }

    /// Checks that `(pfn, order)` is a block inside the span.
    #[inline(always)]
    pub(crate) fn check_block(&self, pfn: Mfn, order: Order) -> Result<(u64, usize), BlockError> {
        let (p, k) = (pfn.get(), usize::from(order.get()));
        if k > usize::from(self.bits.l.max_order)
            || p & ((1 << k) - 1) != 0
            || p < self.bits.l.base
            || p + (1 << k) > self.bits.l.end
        {
            return Err(self.block_error(pfn, order));
        }
        Ok((p, k))
    }

    #[cold]
    fn block_error(&self, pfn: Mfn, order: Order) -> BlockError {
        let max = self.max_order();
        if order > max {
            BlockError::OrderTooLarge { order, max }
        } else if !pfn.is_aligned(order) {
            BlockError::Misaligned { pfn, order }
        } else {
            BlockError::OutsideSpan {
                pfn,
                order,
                span: self.span(),
            }
        }
    }

    pub(crate) fn managed_add(&mut self, frames: u64) {
        self.managed += frames;
    }

    pub(crate) fn managed_sub(&mut self, frames: u64) {
        self.managed -= frames;
    }
}
