//! Adding frames to a heap.

use crate::Mfn;
use crate::MfnRange;
use crate::error::AddError;
use crate::heap::Heap;
use crate::range::{covers, largest_fitting};

impl Heap<'_> {
    /// Adds the frames of `range`, none of which may be managed yet, as free
    /// memory: the range is cut into maximal aligned blocks (so unaligned
    /// edges become smaller blocks), each merged with free buddies already
    /// in the heap. Adding a range in pieces gives the same heap as adding
    /// it whole. A block of the largest order that has not been touched
    /// since the heap was created is added without writing its per-frame
    /// metadata (see [`Heap::new`]).
    pub fn add(&mut self, range: MfnRange) -> Result<(), AddError> {
        self.merge_deferred();
        if !covers(self.span(), range) {
            return Err(AddError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        if range.is_empty() {
            return Ok(());
        }
        let (start, end) = (range.start().get(), range.end().get());
        // Lazy blocks the range covers only in part become real (which
        // changes nothing they hold): only whole ones are left.
        let (max, mask) = (self.bits.l.max_order, (1u64 << self.bits.l.max_order) - 1);
        let short = (end - start) >> max == 0;
        if short || start & mask != 0 {
            self.bits.materialise_at(start);
        }
        if short || end & mask != 0 {
            self.bits.materialise_at(end - 1);
        }
        if !self.bits.any_lazy(start, end) {
            if let Some(pfn) = self.bits.manage_planes(start, end) {
                return Err(AddError::AlreadyManaged {
                    pfn: Mfn::new(pfn).unwrap_or(Mfn::MAX),
                });
            }
            self.put_blocks(start, end);
            self.managed_add(range.len());
            return Ok(());
        }
        if let Some(pfn) = self.bits.first_managed(start, end) {
            return Err(AddError::AlreadyManaged {
                pfn: Mfn::new(pfn).unwrap_or(Mfn::MAX),
            });
        }
        // Where blocks can be lazy, one block of the largest order at a
        // time (the maximal aligned blocks never cross their boundaries);
        // elsewhere in one pass.
        let (lo, hi) = self.bits.l.lazy;
        let mut f = start;
        while f < end {
            let slot = f >> max;
            let e = if slot >= hi {
                end
            } else if slot < lo {
                (lo << max).min(end)
            } else {
                ((slot + 1) << max).min(end)
            };
            if slot >= lo && slot < hi && self.bits.is_lazy(f) {
                // A whole block (partial ones were made real above).
                self.bits.add_lazy(f);
                self.c.put(usize::from(max), f);
            } else {
                // Nothing in the range is managed (checked above).
                let _ = self.bits.manage_planes(f, e);
                self.put_blocks(f, e);
            }
            f = e;
        }
        self.managed_add(range.len());
        Ok(())
    }

    /// Records the maximal aligned blocks of `start..end`, all interior
    /// frames now, as free, each merged with its free buddies.
    fn put_blocks(&mut self, start: u64, end: u64) {
        let max = self.bits.l.max_order;
        let mut p = start;
        while p < end {
            let k = largest_fitting(p, end, max);
            self.put_merge(p, usize::from(k));
            p += 1 << k;
        }
    }
}
