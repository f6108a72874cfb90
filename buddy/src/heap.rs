//! The heap: its metadata, its queries, and the block moves every operation
//! is made of.
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
//!   and the counters match the bitmaps.

use core::fmt;

use zerocopy::FromBytes;

use crate::bits::{Bits, FREE, HEAD, INTERIOR, UNMANAGED};
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
/// for an order k up to the largest, aligned; the summaries are exact; the
/// counters match the bitmaps.
pub struct Heap<'m> {
    pub(crate) c: Counts,
    pub(crate) bits: Bits<'m>,
    kind: MemKind,
    /// Frames added and not reserved.
    managed: u64,
}

/// The counters and the hints of the block moves, apart from the metadata
/// so both can be borrowed at once. Laid out so that everything a
/// single-frame allocation or free changes here shares one cache line: on a
/// heap shared between CPUs, that is one line less to move per call.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Counts {
    /// Bit k set when order k has a free block.
    pub(crate) nonempty: u32,
    /// Per order.
    pub(crate) order: [OrderCount; Order::COUNT],
}

/// One order's counter and hint.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(crate) struct OrderCount {
    /// The frame (plus one; 0 for none) of the block last made free:
    /// allocations take it first while it is still free, so a frame just
    /// freed is reused while its metadata is in cache, and the usual
    /// allocation needs no search.
    pub(crate) recent: u64,
    /// Free blocks.
    pub(crate) free: u64,
}

impl Counts {
    /// Counts the order-`k` block at `pfn`, just made free.
    #[inline(always)]
    pub(crate) fn put(&mut self, k: usize, pfn: u64) {
        self.order[k].recent = pfn + 1;
        self.order[k].free += 1;
        self.nonempty |= 1 << k;
    }

    /// Counts a free order-`k` block just taken.
    #[inline(always)]
    pub(crate) fn take(&mut self, k: usize) {
        self.order[k].free -= 1;
        if self.order[k].free == 0 {
            self.nonempty &= !(1 << k);
        }
    }
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
        Ok(Self {
            c: Counts {
                nonempty: 0,
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
    pub fn kind_of(&self, pfn: Pfn) -> Option<MemKind> {
        self.manages(pfn).then_some(self.kind)
    }

    /// Whether this heap manages frame `pfn` (free or allocated).
    #[must_use]
    pub fn manages(&self, pfn: Pfn) -> bool {
        self.span().contains(pfn) && self.bits.code(pfn.get()) != UNMANAGED
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
    pub(crate) fn check_block(&self, pfn: Pfn, order: Order) -> Result<(u64, usize), BlockError> {
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
    fn block_error(&self, pfn: Pfn, order: Order) -> BlockError {
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

    /// Takes the free in-span order-`k` block at `pfn` out of the bitmaps;
    /// its first frame becomes `code` (interior or head).
    #[inline(always)]
    pub(crate) fn take(&mut self, k: usize, pfn: u64, code: u64) {
        self.bits.view().clear_free(k, pfn, code);
        self.c.take(k);
    }

    /// Records the in-span order-`k` block at `pfn`, whose frames are
    /// interior (an order-0 block: in any state but free), as free, without
    /// merging.
    #[inline(always)]
    pub(crate) fn put(&mut self, k: usize, pfn: u64) {
        self.bits.view().set_free(k, pfn);
        self.c.put(k, pfn);
    }

    /// Records the in-span order-`k` block at `pfn` as free, merging it with
    /// free buddies as far as they go. Its first frame is a head or
    /// interior, its other frames are interior, and no free block holds it.
    #[inline]
    pub(crate) fn put_merge(&mut self, pfn: u64, mut k: usize) {
        let max = usize::from(self.bits.l.max_order);
        let c = &mut self.c;
        let mut v = self.bits.view();
        let mut start = pfn;
        if k == 0 {
            // The buddy shares the frame's plane word, so it has a state
            // even outside the span (unmanaged there).
            if max == 0 || !v.take_buddy0(pfn ^ 1) {
                v.set_free(0, pfn);
                c.put(0, pfn);
                return;
            }
            c.take(0);
            start = pfn & !1;
            k = 1;
        }
        while k < max {
            // A buddy outside the span has a bit (in the bitmap's padding
            // words or at its ends), never set.
            if !v.take_buddy(k, start ^ (1 << k)) {
                break;
            }
            c.take(k);
            start &= !(1 << k);
            k += 1;
        }
        // The first frame of a block of order ≥ 1, and a frame merged into
        // the buddy below it (whose first frame, before it if it is odd, is
        // interior by now): order 0 cannot change.
        if start == pfn {
            v.set_free_start_quiet(pfn);
        } else {
            v.set_interior_quiet(pfn);
            v.set_start(start, true);
        }
        v.set_fbit(k, start);
        c.put(k, start);
    }

    /// Splits the taken order-`j` block at `pfn` down to order `k`, keeping
    /// the sub-block that starts at `target` (already marked a head) and
    /// freeing the rest.
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

    /// Takes the free in-span order-`j` block at `pfn` (j > k) and allocates
    /// its top order-`k` part, freeing the lower halves, one per order from
    /// `j − 1` down to `k`. The block's first frame stays a free start: it
    /// begins the lower half. Returns the allocated part's first frame.
    #[inline(always)]
    pub(crate) fn take_split_top(&mut self, pfn: u64, j: usize, k: usize) -> u64 {
        let c = &mut self.c;
        let mut v = self.bits.view();
        let end = pfn + (1 << j);
        let target = end - (1 << k);
        v.clear_fbit(j, pfn);
        c.take(j);
        if j == 1 {
            // k = 0: the lower half is the frame at `pfn`, an order-0 block
            // as soon as its next frame, the target, is a head.
            v.set_code(target, HEAD);
            c.order[0].recent = pfn + 1;
            c.order[0].free += 1;
        } else {
            // The target's frame before it (if odd) is interior: quiet.
            v.set_head_quiet(target);
            v.set_fbit(j - 1, pfn);
            c.order[j - 1].recent = pfn + 1;
            c.order[j - 1].free += 1;
            let mut i = j - 1;
            while i > k && i > 1 {
                i -= 1;
                // The lower half of the upper half of …: frames
                // end − 2^(i+1) to end − 2^i.
                let f = end - (2 << i);
                v.set_start(f, true);
                v.set_fbit(i, f);
                c.order[i].recent = f + 1;
                c.order[i].free += 1;
            }
            if k == 0 {
                v.set_free(0, end - 2);
                c.order[0].recent = end - 1;
                c.order[0].free += 1;
            }
        }
        c.nonempty |= ((1 << j) - 1) & !((1 << k) - 1);
        target
    }

    /// Marks in-span frame `pfn`, interior inside a taken block whose other
    /// parts are not freed yet, as the head of an allocated block.
    #[inline(always)]
    pub(crate) fn mark_head(&mut self, pfn: u64) {
        self.bits.view().set_head_quiet(pfn);
    }
}
