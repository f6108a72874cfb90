//! Allocation: an exact order, or the largest block up to an order.
//!
//! Policy: the smallest order that has a free block inside the constraint
//! window; within it the block of that order last made free if it still is
//! (its metadata is in cache, and no search is needed), else the block at
//! the highest address (found in one word read per summary level); the block is split so that the allocation is its
//! highest part. Taking from the top keeps low memory (which DMA-limited
//! callers need) for last, as Xen does by trying its highest zone first,
//! and keeps allocations packed so large free blocks survive.

use crate::bits::{HEAD, INTERIOR, bit, free0_word};
use crate::error::AllocError;
use crate::heap::Heap;
use crate::range::Constraints;
use crate::{Block, Order};

impl Heap<'_> {
    /// Allocates a block of `order` whose frames all satisfy `constraints`.
    #[inline]
    pub fn alloc(&mut self, order: Order, constraints: Constraints) -> Result<Block, AllocError> {
        let k = usize::from(order.get());
        self.c.freeing = false;
        if k != 0 {
            self.merge_deferred();
        }
        // Orders above the largest have no bit in `nonempty`.
        let orders = self.c.nonempty >> k << k;
        if orders != 0 && constraints.limit() >= self.bits.l.end {
            // Every free block is usable: the smallest order present
            // decides, and in it the block last made free, if it still is.
            let j = orders.trailing_zeros() as usize;
            let r = self.c.order[j].recent;
            if r != 0 && self.bits.is_free_in_span(j, r - 1) {
                return Ok(self.take_top(r - 1, j, k));
            }
            if let Some(pfn) = self.highest(j) {
                return Ok(self.take_top(pfn, j, k));
            }
        }
        self.alloc_slow(order, constraints)
    }

    #[cold]
    fn alloc_slow(&mut self, order: Order, constraints: Constraints) -> Result<Block, AllocError> {
        let k = self.alloc_order(order)?;
        match self.find_fit(k, constraints.limit()) {
            Some((pfn, j, target)) => Ok(self.take_fit(pfn, j, target, k)),
            None => Err(AllocError::OutOfMemory { order, constraints }),
        }
    }

    /// Allocates the largest free block of at most `order` that satisfies
    /// `constraints`: a block of `order` if one can be had, else the largest
    /// smaller one. Mapping a guest with this gives the fewest, largest
    /// pages.
    pub fn alloc_at_most(
        &mut self,
        order: Order,
        constraints: Constraints,
    ) -> Result<Block, AllocError> {
        self.c.freeing = false;
        self.merge_deferred();
        let k = self.alloc_order(order)?;
        if constraints.limit() >= self.bits.l.end {
            // Every free block is usable: the largest order present decides.
            if self.c.nonempty == 0 {
                return Err(AllocError::OutOfMemory { order, constraints });
            }
            let top = 31 - self.c.nonempty.leading_zeros() as usize;
            let j = k.min(top);
            if let Some((pfn, i, target)) = self.find_fit(j, self.bits.l.end) {
                return Ok(self.take_fit(pfn, i, target, j));
            }
        } else {
            for j in (0..=k).rev() {
                if let Some((pfn, i, target)) = self.find_fit(j, constraints.limit()) {
                    return Ok(self.take_fit(pfn, i, target, j));
                }
            }
        }
        Err(AllocError::OutOfMemory { order, constraints })
    }

    fn alloc_order(&self, order: Order) -> Result<usize, AllocError> {
        let max = self.max_order();
        if order > max {
            return Err(AllocError::OrderTooLarge { order, max });
        }
        Ok(usize::from(order.get()))
    }

    /// The free block to take for an order-`k` allocation below frame
    /// `limit`: (its start, its order, the start of the part to allocate).
    fn find_fit(&mut self, k: usize, limit: u64) -> Option<(u64, usize, u64)> {
        let mut orders = self.c.nonempty >> k << k;
        if limit >= self.bits.l.end {
            if orders == 0 {
                return None;
            }
            let j = orders.trailing_zeros() as usize;
            let pfn = match self.recent_free(j) {
                Some(pfn) => pfn,
                None => self.highest(j)?,
            };
            return Some((pfn, j, pfn + (1 << j) - (1 << k)));
        }
        while orders != 0 {
            let j = orders.trailing_zeros() as usize;
            orders &= orders - 1;
            let t = &self.bits.l.trees[j];
            let hi = (limit >> j)
                .saturating_sub(t.origin << 6)
                .min(t.words as u64 * 64) as usize;
            let found = match self.recent_free(j).filter(|&p| p + (1 << j) <= limit) {
                Some(pfn) => Some(pfn),
                None => self.bits.find_prev(j, hi).map(|s| self.bits.slot_pfn(j, s)),
            };
            if let Some(pfn) = found {
                return Some((pfn, j, pfn + (1 << j) - (1 << k)));
            }
        }
        // No free block lies entirely below the limit; the one holding the
        // frame just below it may reach above it (only possible for a block
        // at frame 0 larger than the limit) and still have room below.
        let last = limit.checked_sub(1)?;
        if last < self.bits.l.base {
            return None;
        }
        let (start, j) = self.free_block_containing(last)?;
        let target = (limit >> k << k).checked_sub(1 << k)?;
        (j > k && target >= start).then_some((start, j, target))
    }

    /// Takes the free order-`j` block at `pfn` and allocates its top
    /// order-`k` part.
    #[inline(always)]
    fn take_top(&mut self, pfn: u64, j: usize, k: usize) -> Block {
        if j == 0 {
            self.take_frame(pfn);
            make_block(pfn, 0)
        } else if j == k {
            self.take(j, pfn, HEAD);
            make_block(pfn, k)
        } else {
            make_block(self.take_split_top(pfn, j, k), k)
        }
    }

    /// Allocates the free order-0 block at in-span frame `pfn`: one plane
    /// word written.
    #[inline(always)]
    fn take_frame(&mut self, pfn: u64) {
        let mut v = self.bits.view();
        let i = v.pair(pfn);
        let (pw, qw) = (v.w[i], v.w[i + 1]);
        // Free start to head; a head is no more interior than a free start,
        // so no other frame's order-0 status changes.
        v.w[i] = pw & !bit(pfn);
        if free0_word(pw, qw) == bit(pfn) {
            v.changed(0, i);
        }
        self.c.take(0);
    }

    /// The block of order `j` last made free, if it still is.
    fn recent_free(&self, j: usize) -> Option<u64> {
        let p = self.c.order[j].recent.checked_sub(1)?;
        self.bits.is_free_in_span(j, p).then_some(p)
    }

    /// The free block of order `j` at the highest address.
    #[inline]
    fn highest(&mut self, j: usize) -> Option<u64> {
        let s = self.bits.find_last(j)?;
        Some(self.bits.slot_pfn(j, s))
    }

    /// Takes the free order-`j` block at `pfn` and allocates its order-`k`
    /// part at `target`.
    fn take_fit(&mut self, pfn: u64, j: usize, target: u64, k: usize) -> Block {
        if target == pfn + (1 << j) - (1 << k) {
            return self.take_top(pfn, j, k);
        }
        if j == k {
            self.take(j, pfn, HEAD);
        } else {
            self.take(j, pfn, INTERIOR);
            self.mark_head(target);
            self.split_to(pfn, j, target, k);
        }
        make_block(target, k)
    }
}

/// A block the heap found, which is valid by construction.
#[inline(always)]
pub(crate) fn make_block(pfn: u64, k: usize) -> Block {
    Block::from_heap(pfn, k as u8)
}
