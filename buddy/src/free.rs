//! Freeing with buddy merging, and the checks that make a wrong free an
//! error instead of corruption.
//!
//! Like Xen's `free_heap_pages`, the caller says the block's order; the heap
//! stores no orders. It still knows where an allocated block ends: at the
//! first frame after the head that is not interior (see [`crate::bits`]).
//! Blocks are aligned, so for a head p the frame p + 2^(k−1) is interior
//! exactly when p's block has order ≥ k (otherwise it starts a block of its
//! own or is unmanaged: nothing that began before it can reach it), and
//! p + 2^k is not interior exactly when the order is ≤ k. A free of order k
//! is therefore checked with three state reads: the head, and those two
//! frames.

use crate::MfnRange;
use crate::bits::{FREE, HEAD, INTERIOR, UNMANAGED, bit, free0_word};
use crate::error::{FreeError, FreeRangeError};
use crate::heap::Heap;
use crate::range::{AlignedBlocks, covers};
use crate::{Block, Mfn, Order};

impl Heap<'_> {
    /// Frees the allocated block of `order` at `pfn`, merging it with free
    /// buddies.
    ///
    /// Refuses, changing nothing, a block that is not exactly an allocated
    /// block: a double free, a frame never added, a frame inside an
    /// allocated block, an order other than the allocation's.
    #[inline]
    pub fn free(&mut self, pfn: Mfn, order: Order) -> Result<(), FreeError> {
        if order.get() == 0 {
            self.free_one(pfn)
        } else {
            self.free_order(pfn, order)
        }
    }

    /// [`Heap::free`] of one frame. Order 0 is always in range and every
    /// frame is aligned, so of [`Heap::check_block`] only the span check is
    /// left, one compare; and without the larger orders' path beside it
    /// the call saves fewer registers.
    #[inline(always)]
    fn free_one(&mut self, pfn: Mfn) -> Result<(), FreeError> {
        self.merge_deferred();
        let after_alloc = !core::mem::replace(&mut self.c.freeing, true);
        let p = pfn.get();
        let (base, end) = (self.bits.l.base, self.bits.l.end);
        if p.wrapping_sub(base) >= end - base {
            return Err(self.outside_span(p));
        }
        // A lazy block holds no allocated frame: the free is refused below,
        // from the block's real words.
        self.bits.materialise_at(p);
        self.free_frame(p, after_alloc)
    }

    /// [`Heap::free`] of a block of order ≥ 1.
    #[inline(never)]
    fn free_order(&mut self, pfn: Mfn, order: Order) -> Result<(), FreeError> {
        self.merge_deferred();
        self.c.freeing = true;
        let (p, k) = self.check_block(pfn, order)?;
        self.bits.materialise_at(p);
        if !self.is_allocated(p, k) {
            return Err(self.free_error(p, k));
        }
        self.put_merge(p, k);
        Ok(())
    }

    /// [`Heap::free`] of each frame of `frames` (order 0), as a run of
    /// frees: every frame merges at once, and what a call of
    /// [`Heap::free`] does once per call is done once for the batch.
    /// Returns the first refusal, after freeing every other frame.
    pub(crate) fn free_batch(&mut self, frames: &[u64]) -> Result<(), FreeError> {
        self.merge_deferred();
        self.c.freeing = true;
        let mut first = Ok(());
        let (base, end) = (self.bits.l.base, self.bits.l.end);
        for &p in frames {
            let freed = if p >= base && p < end {
                self.bits.materialise_at(p);
                self.free_frame(p, false)
            } else {
                Err(self.outside_span(p))
            };
            if let (Err(e), Ok(())) = (freed, first) {
                first = Err(e);
            }
        }
        first
    }

    #[cold]
    fn outside_span(&self, p: u64) -> FreeError {
        let pfn = Mfn::new(p).unwrap_or(Mfn::MAX);
        match self.check_block(pfn, Order::SIZE_4K) {
            Err(e) => e.into(),
            Ok(_) => FreeError::NotManaged { pfn },
        }
    }

    /// [`Heap::free`] of one frame: the head, its next frame and its buddy
    /// are read in one word pair (but for the last frame of a word), and
    /// without a free buddy the free is one plane write.
    #[inline(always)]
    fn free_frame(&mut self, p: u64, defer: bool) -> Result<(), FreeError> {
        let (end, max) = (self.bits.l.end, self.bits.l.max_order);
        let mut v = self.bits.view();
        let i = v.pair(p);
        let (pw, qw) = (v.w[i], v.w[i + 1]);
        let m = bit(p);
        let next_interior = if p & 63 != 63 {
            pw & !qw & (m << 1) != 0
        } else {
            p + 1 < end && {
                let n = v.pair(p + 1);
                v.w[n] & !v.w[n + 1] & 1 != 0
            }
        };
        if pw & m != 0 || qw & m == 0 || next_interior {
            return Err(self.free_error(p, 0));
        }
        if pw & qw & bit(p ^ 1) != 0 && max != 0 {
            // A free buddy (a free start in the same word, so in the span,
            // and an order-0 block, as a larger one would hold this frame).
            if !defer {
                self.merge_frame(p, i, pw, qw);
                return Ok(());
            }
            // Their merge waits for the next operation that needs it.
            self.c.deferred = p;
        }
        // Head to free start; the frame becomes an order-0 block (its next
        // frame is not interior), the only change to order 0's bitmap (a
        // free buddy stays one too).
        v.w[i] = pw | m;
        if free0_word(pw, qw) == 0 {
            v.changed(0, i);
        }
        self.c.put(0, p);
        Ok(())
    }

    /// Frees head `p` (at word pair `i`, which holds `pw` and `qw`) whose
    /// buddy is a free frame, merging as far as the buddies go. Below order
    /// 6 every buddy's first frame lies in `p`'s plane word, so the merges
    /// there change the word pair in registers and write it once; only the
    /// free bitmaps of the buddies are read.
    #[inline(always)]
    fn merge_frame(&mut self, p: u64, i: usize, pw: u64, qw: u64) {
        let max = usize::from(self.bits.l.max_order);
        let c = &mut self.c;
        let mut v = self.bits.view();
        c.take(0);
        let pw = pw | bit(p);
        // Both frames interior; the block's first frame is set at the end.
        let mut q = qw & !(bit(p) | bit(p ^ 1));
        let mut start = p & !1;
        let mut k = 1;
        // A constant trip count, so the loop unrolls and every order's
        // offsets and shifts are constants.
        for order in 1..6 {
            if order >= max {
                break;
            }
            let b = start ^ (1 << order);
            let f = v.fword_in(order, b);
            let word = v.w[f];
            if word & bit(b >> order) == 0 {
                break;
            }
            let now = word & !bit(b >> order);
            v.w[f] = now;
            if now == 0 {
                v.changed(order, f);
            }
            c.take(order);
            q &= !bit(b);
            start &= !(1 << order);
            k = order + 1;
        }
        let q = q | bit(start);
        v.w[i] = pw;
        v.w[i + 1] = q;
        // Order 0's word had the buddy, so it only changes if it empties.
        if free0_word(pw, q) == 0 {
            v.changed(0, i);
        }
        if k < 6 || k >= max {
            v.set_fbit(k, start);
            c.put(k, start);
            return;
        }
        self.merge_word_up(start);
    }

    /// Goes on with the merge of the whole free plane word at `first` (an
    /// order-6 block, not yet in any bitmap) through the bitmaps of orders 6
    /// and up, whose buddies lie in other plane words. Out of line: at most
    /// one free in 64 of a word comes here, and the registers it needs
    /// would otherwise be saved by every free.
    #[inline(never)]
    fn merge_word_up(&mut self, first: u64) {
        let max = usize::from(self.bits.l.max_order);
        let c = &mut self.c;
        let mut v = self.bits.view();
        let (k, start) = crate::moves::merge_up(&mut v, c, 6, first, max);
        if start != first {
            v.set_start(first, false);
            v.set_start(start, true);
        }
        v.set_fbit(k, start);
        c.put(k, start);
    }

    /// Frees a [`Block`] returned by an allocation or claim.
    #[inline]
    pub fn free_block(&mut self, block: Block) -> Result<(), FreeError> {
        self.free(block.start(), block.order())
    }

    /// Frees every maximal aligned block of `range` (see
    /// [`AlignedBlocks`](crate::AlignedBlocks)), each of which must be an allocated block: the
    /// inverse of [`Heap::claim_range`]. All or nothing.
    pub fn free_range(&mut self, range: MfnRange) -> Result<(), FreeRangeError> {
        self.merge_deferred();
        if !covers(self.span(), range) {
            return Err(FreeRangeError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        self.bits
            .materialise_range(range.start().get(), range.end().get());
        for block in AlignedBlocks::new(range, self.max_order()) {
            let k = usize::from(block.order().get());
            self.check_allocated(block.start().get(), k)
                .map_err(|error| FreeRangeError::Block { block, error })?;
        }
        for block in AlignedBlocks::new(range, self.max_order()) {
            self.put_merge(block.start().get(), usize::from(block.order().get()));
        }
        Ok(())
    }

    /// Whether the order-`k` block at in-span, aligned frame `p` is exactly
    /// an allocated block: a head, p + 2^(k−1) interior (order ≥ k), and
    /// p + 2^k not interior (order ≤ k).
    #[inline(always)]
    pub(crate) fn is_allocated(&self, p: u64, k: usize) -> bool {
        let b = &self.bits;
        if b.code(p) != HEAD {
            return false;
        }
        if k > 0 && b.code(p + (1 << (k - 1))) != INTERIOR {
            return false;
        }
        let after = p + (1 << k);
        after >= b.l.end || b.code(after) != INTERIOR
    }

    /// [`Heap::is_allocated`] with the error that explains a refusal.
    pub(crate) fn check_allocated(&self, p: u64, k: usize) -> Result<(), FreeError> {
        if self.is_allocated(p, k) {
            Ok(())
        } else {
            Err(self.free_error(p, k))
        }
    }

    /// The error for a free of the order-`k` block at `p`, which is not an
    /// allocated block.
    #[cold]
    #[inline(never)]
    fn free_error(&self, p: u64, k: usize) -> FreeError {
        let pfn = Mfn::new(p).unwrap_or(Mfn::MAX);
        match self.bits.code(p) {
            UNMANAGED => FreeError::NotManaged { pfn },
            FREE => FreeError::AlreadyFree { pfn },
            INTERIOR if self.free_block_containing(p).is_some() => FreeError::AlreadyFree { pfn },
            INTERIOR => FreeError::NotBlockStart { pfn },
            _ => {
                // A head: the block ends at the first frame p + 2^j that is
                // not interior.
                let (end, max) = (self.bits.l.end, self.bits.l.max_order);
                let allocated = (0..max)
                    .find(|&j| {
                        let f = p + (1 << j);
                        f >= end || self.bits.code(f) != INTERIOR
                    })
                    .unwrap_or(max);
                FreeError::WrongOrder {
                    block: crate::alloc::make_block(p, k),
                    allocated: Order::new(allocated).unwrap_or(Order::MAX),
                }
            }
        }
    }
}
