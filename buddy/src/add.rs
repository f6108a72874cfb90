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
    /// it whole.
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
        if let Some(pfn) = self.bits.manage_planes(start, end) {
            return Err(AddError::AlreadyManaged {
                pfn: Mfn::new(pfn).unwrap_or(Mfn::MAX),
            });
        }
        // The maximal aligned blocks (see `MfnRange::blocks`).
        let max = self.bits.l.max_order;
        let mut p = start;
        while p < end {
            let k = largest_fitting(p, end, max);
            self.put_merge(p, usize::from(k));
            p += 1 << k;
        }
        self.managed_add(range.len());
        Ok(())
    }
}
