//! The heap: its metadata, its queries, and the block moves every operation
//! is made of.
//!
//! Each frame is in one of four states, kept in two bit planes (see
//! [`crate::layout`]): unmanaged, free order-0 block, allocated head, or
//! interior. Free blocks of order ≥ 1 are bits in the per-order bitmaps, and
//! the frames inside them are interior. An allocated block is a head frame
//! followed by interior frames that no free block covers, up to the next
//! head, free or unmanaged frame: so the heap knows where every allocated
//! block ends without storing its order, and can tell a wrong-order free
//! from a right one.
//!
//! Invariants ([`Heap::check_invariants`] checks them all):
//! - free blocks lie inside the span, on managed frames, and never overlap;
//! - two buddies are never both free at the same order below the largest
//!   (they are merged), so the free blocks are exactly the maximal aligned
//!   blocks of the free frames;
//! - every summary bit says whether the word below it is non-zero, and the
//!   counters match the bitmaps.

use core::fmt;

use zerocopy::FromBytes;

use crate::bits::{Bits, Code};
use crate::error::{BlockError, NewError};
use crate::layout::Layout;
use crate::range::PfnRange;
use crate::types::{Block, MemKind, Order, Pfn, Zone};

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
/// for an order k up to the largest, aligned; the summaries never miss a
/// non-zero word; the counters match the bitmaps.
pub struct Heap<'m> {
    pub(crate) bits: Bits<'m>,
    kind: MemKind,
    /// Free blocks per order.
    free_blocks: [u64; Order::COUNT],
    /// Bit k set when `free_blocks[k] > 0`.
    pub(crate) nonempty: u32,
    /// Per order, the slot (plus one; 0 for none) of the block last made
    /// free: allocations take it first while it is still free, so a frame
    /// just freed is reused while its metadata is in cache, and the usual
    /// allocation needs no search.
    pub(crate) recent: [usize; Order::COUNT],
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
    /// max_order)` bytes from its first 8-byte-aligned byte on; every one of
    /// them is overwritten. No frame is free until [`Heap::add`] adds it.
    pub fn new(
        kind: MemKind,
        span: PfnRange,
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
        w.fill(0);
        Ok(Self {
            bits: Bits {
                w,
                l: layout,
                hint: [0; Order::COUNT],
            },
            kind,
            free_blocks: [0; Order::COUNT],
            nonempty: 0,
            recent: [0; Order::COUNT],
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
    pub fn span(&self) -> PfnRange {
        PfnRange::from_numbers(self.bits.l.base, self.bits.l.end).unwrap_or_default()
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
        self.free_blocks
            .iter()
            .enumerate()
            .map(|(k, n)| n << k)
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
        self.free_blocks
            .get(usize::from(order.get()))
            .copied()
            .unwrap_or(0)
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
        let first_block = zone.start().div_ceil(order.frames());
        let end_block = zone.end().div_ceil(order.frames());
        let lo = first_block.saturating_sub(t.first).min(t.slots);
        let hi = end_block.saturating_sub(t.first).min(t.slots);
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
            if self.bits.l.base == 0 && self.bits.is_free_block(usize::from(order.get()), 0) {
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
    pub fn frame_state(&self, pfn: Pfn) -> FrameState {
        if !self.span().contains(pfn) {
            return FrameState::Unmanaged;
        }
        match self.bits.code(pfn.get()) {
            Code::Unmanaged => FrameState::Unmanaged,
            Code::Free0 => FrameState::Free,
            Code::Head => FrameState::Allocated,
            Code::Interior => {
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
    pub fn kind_of(&self, pfn: Pfn) -> Option<MemKind> {
        self.manages(pfn).then_some(self.kind)
    }

    /// Whether this heap manages frame `pfn` (free or allocated).
    #[must_use]
    pub fn manages(&self, pfn: Pfn) -> bool {
        self.span().contains(pfn) && self.bits.code(pfn.get()) != Code::Unmanaged
    }

    /// The free block that contains frame `pfn`, if any.
    #[must_use]
    pub fn free_block_at(&self, pfn: Pfn) -> Option<Block> {
        if !self.span().contains(pfn) {
            return None;
        }
        let (start, k) = self.free_block_containing(pfn.get())?;
        Block::new(Pfn::new(start)?, Order::new(k as u8)?)
    }

    /// The free block containing in-span frame `pfn`, as (start, order).
    pub(crate) fn free_block_containing(&self, pfn: u64) -> Option<(u64, usize)> {
        match self.bits.code(pfn) {
            Code::Free0 => Some((pfn, 0)),
            Code::Interior => (1..=usize::from(self.bits.l.max_order)).find_map(|k| {
                let start = pfn & !((1u64 << k) - 1);
                self.bits.is_free_block(k, start).then_some((start, k))
            }),
            Code::Unmanaged | Code::Head => None,
        }
    }

    /// The order of a free block starting exactly at in-span frame `pfn`,
    /// among orders 1 through `up_to` and the frame's alignment (order 0 is
    /// the `Free0` state).
    #[inline]
    pub(crate) fn free_block_starting(&self, pfn: u64, up_to: usize) -> Option<usize> {
        if !self.bits.starts_free(pfn) {
            return None;
        }
        let align = pfn.trailing_zeros() as usize;
        let top = up_to.min(align).min(usize::from(self.bits.l.max_order));
        (1..=top).find(|&k| self.bits.is_free_block(k, pfn))
    }

    /// Checks that `(pfn, order)` is a block inside the span.
    pub(crate) fn check_block(&self, pfn: Pfn, order: Order) -> Result<(u64, usize), BlockError> {
        let max = self.max_order();
        if order > max {
            return Err(BlockError::OrderTooLarge { order, max });
        }
        if !pfn.is_aligned(order) {
            return Err(BlockError::Misaligned { pfn, order });
        }
        let (p, end) = (pfn.get(), pfn.get() + order.frames());
        if p < self.bits.l.base || end > self.bits.l.end {
            return Err(BlockError::OutsideSpan {
                pfn,
                order,
                span: self.span(),
            });
        }
        Ok((p, usize::from(order.get())))
    }

    pub(crate) fn managed_add(&mut self, frames: u64) {
        self.managed += frames;
    }

    pub(crate) fn managed_sub(&mut self, frames: u64) {
        self.managed -= frames;
    }

    /// Takes the free order-`k` block at `pfn` out of the bitmaps. An
    /// order-0 block becomes a head (`head`) or interior frame; a larger
    /// block's frames stay interior.
    #[inline(always)]
    pub(crate) fn take(&mut self, k: usize, pfn: u64, head: bool) {
        let s = (pfn >> k) - self.bits.l.trees[k].first;
        self.take_slot(k, s as usize, pfn, head);
    }

    /// [`Heap::take`] of slot `s`, which starts at `pfn`.
    #[inline(always)]
    fn take_slot(&mut self, k: usize, s: usize, pfn: u64, head: bool) {
        self.bits.clear(k, s, pfn, head);
        self.free_blocks[k] -= 1;
        if self.free_blocks[k] == 0 {
            self.nonempty &= !(1 << k);
        }
    }

    /// Records the order-`k` block at `pfn`, whose frames are interior (or,
    /// for order 0, interior or head), as free, without merging.
    #[inline(always)]
    pub(crate) fn put(&mut self, k: usize, pfn: u64) {
        let s = (pfn >> k) - self.bits.l.trees[k].first;
        self.bits.set(k, s as usize, pfn);
        self.recent[k] = s as usize + 1;
        self.free_blocks[k] += 1;
        self.nonempty |= 1 << k;
    }

    /// Records the order-`k` block at `pfn` as free, merging it with free
    /// buddies as far as they go.
    #[inline]
    pub(crate) fn put_merge(&mut self, mut pfn: u64, mut k: usize) {
        let max = usize::from(self.bits.l.max_order);
        while k < max {
            let buddy = pfn ^ (1 << k);
            match self.bits.slot(k, buddy) {
                Some(s) if self.bits.take_if_free(k, s, buddy) => {
                    self.free_blocks[k] -= 1;
                    if self.free_blocks[k] == 0 {
                        self.nonempty &= !(1 << k);
                    }
                    pfn &= !(1 << k);
                    k += 1;
                }
                _ => break,
            }
        }
        self.put(k, pfn);
    }

    /// Splits the taken order-`j` block at `pfn` down to order `k`, keeping
    /// the sub-block that starts at `target` and freeing the rest.
    #[inline]
    pub(crate) fn split_to(&mut self, mut pfn: u64, mut j: usize, target: u64, k: usize) {
        while j > k {
            j -= 1;
            let half = 1u64 << j;
            if target >= pfn + half {
                self.put(j, pfn);
                pfn += half;
            } else {
                self.put(j, pfn + half);
            }
        }
    }

    /// Marks in-span frame `pfn`, interior (or a taken order-0 block), as the
    /// head of an allocated block.
    #[inline(always)]
    pub(crate) fn mark_head(&mut self, pfn: u64) {
        self.bits.set_head(pfn, true);
    }
}
