//! Taking specific frames: claiming blocks (recovery re-establishing the
//! allocations its log records) and reserving ranges.
//!
//! A claim finds the free block that holds the wanted block by testing one
//! bit per order above it, then splits down to it: O(largest order), no
//! matter where in free space the block lies, so rebuilding a heap from a
//! log of N allocations costs N such steps.

use crate::MfnRange;
use crate::bits::{HEAD, INTERIOR, UNMANAGED};
use crate::error::{ClaimError, ReserveError};
use crate::heap::Heap;
use crate::range::{AlignedBlocks, covers, largest_fitting};
use crate::{Block, Mfn};

impl Heap<'_> {
    /// Allocates exactly the block of `order` at `pfn`, which must be free.
    pub fn claim(&mut self, pfn: Mfn, order: crate::Order) -> Result<Block, ClaimError> {
        self.merge_deferred();
        let (p, k) = self.check_block(pfn, order)?;
        self.bits.materialise_at(p);
        let Some((q, j)) = self.free_ancestor(p, k) else {
            return Err(self.claim_error(p, p + (1 << k)));
        };
        self.take_part(q, j, p, k);
        Ok(crate::alloc::make_block(p, k))
    }

    /// Allocates every frame of `range`, which must all be free, as the
    /// range's maximal aligned blocks (see [`AlignedBlocks`](crate::AlignedBlocks)); returns
    /// how many blocks that is. Give them back one by one with
    /// [`Heap::free`] or together with [`Heap::free_range`]. All or nothing.
    pub fn claim_range(&mut self, range: MfnRange) -> Result<u64, ClaimError> {
        self.merge_deferred();
        if !covers(self.span(), range) {
            return Err(ClaimError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        let (start, end) = (range.start().get(), range.end().get());
        self.bits.materialise_range(start, end);
        for block in AlignedBlocks::new(range, self.max_order()) {
            let (p, k) = (block.start().get(), usize::from(block.order().get()));
            if self.free_ancestor(p, k).is_none() {
                return Err(self.claim_error(start, end));
            }
        }
        let mut blocks = 0;
        for block in AlignedBlocks::new(range, self.max_order()) {
            let (p, k) = (block.start().get(), usize::from(block.order().get()));
            if let Some((q, j)) = self.free_ancestor(p, k) {
                self.take_part(q, j, p, k);
                blocks += 1;
            }
        }
        Ok(blocks)
    }

    /// Takes the free frames of `range` out of the heap for good: they
    /// become unmanaged, as if never added (firmware tables, the hypervisor
    /// image, broken frames). Unmanaged frames in the range are skipped; an
    /// allocated frame refuses the whole range. Returns how many frames
    /// left the heap.
    pub fn reserve(&mut self, range: MfnRange) -> Result<u64, ReserveError> {
        self.merge_deferred();
        if !covers(self.span(), range) {
            return Err(ReserveError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        let (start, end) = (range.start().get(), range.end().get());
        self.bits.materialise_range(start, end);
        let mut f = start;
        while let Some((s, k)) = self.next_free_in(&mut f, end)? {
            f = (s + (1 << k)).min(end);
        }
        let mut f = start;
        let mut removed = 0;
        let max = self.bits.l.max_order;
        while let Ok(Some((s, k))) = self.next_free_in(&mut f, end) {
            let e = s + (1 << k);
            self.take(k, s, INTERIOR);
            let (a, b) = (start.max(s), end.min(e));
            self.bits.fill_planes(a, b, false);
            // Whatever part of the block lies outside the range stays free;
            // those parts are maximal aligned blocks of a block that had no
            // free buddy, so they cannot merge. (Put after the range became
            // unmanaged, so an order-0 part sees its true neighbour.)
            for (x, y) in [(s, a), (b, e)] {
                let mut p = x;
                while p < y {
                    let o = largest_fitting(p, y, max);
                    self.put(usize::from(o), p);
                    p += 1 << o;
                }
            }
            removed += b - a;
            f = b;
        }
        self.managed_sub(removed);
        Ok(removed)
    }

    /// The free block at or after frame `*f` (moved past unmanaged frames)
    /// and before `end`, or the allocated frame found there first.
    fn next_free_in(&self, f: &mut u64, end: u64) -> Result<Option<(u64, usize)>, ReserveError> {
        if *f >= end {
            return Ok(None);
        }
        let Some(m) = self.bits.first_managed(*f, end) else {
            return Ok(None);
        };
        *f = m;
        self.free_block_containing(m)
            .map(Some)
            .ok_or(ReserveError::Allocated {
                pfn: Mfn::new(m).unwrap_or(Mfn::MAX),
            })
    }

    /// Takes the free order-`j` block at `q` and allocates its order-`k`
    /// part at `p`, freeing the rest.
    fn take_part(&mut self, q: u64, j: usize, p: u64, k: usize) {
        if j == k {
            self.take(j, q, HEAD);
        } else {
            self.take(j, q, INTERIOR);
            self.mark_head(p);
            self.split_to(q, j, p, k);
        }
    }

    /// The free block of order ≥ `k` that holds the order-`k` block at `p`.
    #[inline]
    fn free_ancestor(&self, p: u64, k: usize) -> Option<(u64, usize)> {
        if k == 0 && self.bits.is_free0(p) {
            return Some((p, 0));
        }
        // Only orders that have free blocks at all: rebuilding a heap from
        // a log starts from a few large blocks, found in one test.
        let from = k.max(1);
        let mut orders = self.c.nonempty >> from << from;
        while orders != 0 {
            let j = orders.trailing_zeros() as usize;
            orders &= orders - 1;
            let q = p & !((1u64 << j) - 1);
            if self.bits.is_free_block(j, q) {
                return Some((q, j));
            }
        }
        None
    }

    /// The error for a claim of frames `start..end`: the first frame there
    /// that is not free.
    fn claim_error(&self, start: u64, end: u64) -> ClaimError {
        let mut f = start;
        while f < end {
            let pfn = Mfn::new(f).unwrap_or(Mfn::MAX);
            match self.bits.code(f) {
                UNMANAGED => return ClaimError::NotManaged { pfn },
                HEAD => return ClaimError::NotFree { pfn },
                _ => match self.free_block_containing(f) {
                    Some((s, k)) => f = s + (1 << k),
                    None => return ClaimError::NotFree { pfn },
                },
            }
        }
        ClaimError::NotFree {
            pfn: Mfn::new(start).unwrap_or(Mfn::MAX),
        }
    }
}
