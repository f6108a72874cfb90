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
        if let Some(pfn) = self.bits.first_managed(start, end) {
            return Err(AddError::AlreadyManaged {
                pfn: Mfn::new(pfn).unwrap_or(Mfn::MAX),
            });
        }
        // Where blocks can be lazy, one block of the largest order at a
        // time (the maximal aligned blocks never cross their boundaries);
        // elsewhere in one pass.
        let max = self.bits.l.max_order;
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
                if e - f == 1 << max {
                    self.bits.add_lazy(f);
                    self.c.put(usize::from(max), f);
                    f = e;
                    continue;
                }
                self.bits.materialise(f);
            }
            // Nothing in the range is managed (checked above).
            let _ = self.bits.manage_planes(f, e);
            let mut p = f;
            while p < e {
                let k = largest_fitting(p, e, max);
                self.put_merge(p, usize::from(k));
                p += 1 << k;
            }
            f = e;
        }
        self.managed_add(range.len());
        Ok(())
    }
}
