//! Freeing with buddy merging, and the checks that make a wrong free an
//! error instead of corruption.
//!
//! Like Xen's `free_heap_pages`, the caller says the block's order; the heap
//! stores no orders. It still knows where an allocated block ends: at the
//! first frame after the head that is a head, free or unmanaged (see
//! [`crate::heap`]). For a free of order k at frame p it checks p is a head,
//! that none of p + 2^j (j < k) ends the block early, and that p + 2^k does
//! end it, where "ends" is one look at the frame's state bits and at plane
//! S: k + 1 tests, or three word tests for blocks of up to 64 frames.

use crate::bits::{Code, HEAD};
use crate::error::{FreeError, FreeRangeError};
use crate::heap::Heap;
use crate::range::PfnRange;
use crate::types::{Block, Order, Pfn};

impl Heap<'_> {
    /// Frees the allocated block of `order` at `pfn`, merging it with free
    /// buddies.
    ///
    /// Refuses, changing nothing, a block that is not exactly an allocated
    /// block: a double free, a frame never added, a frame inside an
    /// allocated block, an order other than the allocation's.
    pub fn free(&mut self, pfn: Pfn, order: Order) -> Result<(), FreeError> {
        let (p, k) = self.check_block(pfn, order)?;
        self.check_allocated(p, k)?;
        self.release(p, k);
        Ok(())
    }

    /// Frees a [`Block`] returned by an allocation or claim.
    #[inline]
    pub fn free_block(&mut self, block: Block) -> Result<(), FreeError> {
        self.free(block.start(), block.order())
    }

    /// Frees every maximal aligned block of `range` (see
    /// [`PfnRange::blocks`]), each of which must be an allocated block: the
    /// inverse of [`Heap::claim_range`]. All or nothing.
    pub fn free_range(&mut self, range: PfnRange) -> Result<(), FreeRangeError> {
        if !self.span().covers(range) {
            return Err(FreeRangeError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        for block in range.blocks(self.max_order()) {
            let k = usize::from(block.order().get());
            self.check_allocated(block.start().get(), k)
                .map_err(|error| FreeRangeError::Block { block, error })?;
        }
        for block in range.blocks(self.max_order()) {
            self.release(block.start().get(), usize::from(block.order().get()));
        }
        Ok(())
    }

    /// Frees the checked allocated block.
    #[inline]
    fn release(&mut self, p: u64, k: usize) {
        self.bits.set_head(p, false);
        self.put_merge(p, k);
    }

    /// Whether the order-`k` block at in-span, aligned frame `p` is exactly
    /// an allocated block.
    #[inline]
    pub(crate) fn check_allocated(&self, p: u64, k: usize) -> Result<(), FreeError> {
        if self.bits.code_bits(p) != HEAD {
            return Err(self.not_head(p));
        }
        let inside = k == 0
            || match (k <= 6).then(|| self.bits.interior_in_word(p, k)).flatten() {
                Some(inside) => inside,
                None => (0..k).all(|j| !self.bits.ends_block(p + (1 << j))),
            };
        let after = p + (1 << k);
        if !inside || (after < self.bits.l.end && !self.bits.ends_block(after)) {
            return Err(self.wrong_order(p, k));
        }
        Ok(())
    }

    /// The error for a free at `p`, which is not a head.
    #[cold]
    fn not_head(&self, p: u64) -> FreeError {
        let pfn = Pfn::new(p).unwrap_or(Pfn::MAX);
        match self.bits.code(p) {
            Code::Unmanaged => FreeError::NotManaged { pfn },
            Code::Interior if self.free_block_containing(p).is_none() => {
                FreeError::NotBlockStart { pfn }
            }
            Code::Free0 | Code::Interior | Code::Head => FreeError::AlreadyFree { pfn },
        }
    }

    /// The error for a head at `p` whose block is not of order `k`.
    #[cold]
    fn wrong_order(&self, p: u64, k: usize) -> FreeError {
        let end = self.bits.l.end;
        let allocated = (0..usize::from(self.bits.l.max_order))
            .find(|&j| {
                let f = p + (1 << j);
                f >= end || self.bits.ends_block(f)
            })
            .unwrap_or(usize::from(self.bits.l.max_order));
        FreeError::WrongOrder {
            block: crate::alloc::make_block(p, k),
            allocated: Order::new(allocated as u8).unwrap_or(Order::MAX),
        }
    }
}
