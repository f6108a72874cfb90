//! Adding frames to a heap.

use crate::error::AddError;
use crate::heap::Heap;
use crate::range::PfnRange;
use crate::types::Pfn;

impl Heap<'_> {
    /// Adds the frames of `range`, none of which may be managed yet, as free
    /// memory: the range is cut into maximal aligned blocks (so unaligned
    /// edges become smaller blocks), each merged with free buddies already
    /// in the heap. Adding a range in pieces gives the same heap as adding
    /// it whole.
    pub fn add(&mut self, range: PfnRange) -> Result<(), AddError> {
        if !self.span().covers(range) {
            return Err(AddError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        if range.is_empty() {
            return Ok(());
        }
        let (start, end) = range.raw();
        if let Some(pfn) = self.bits.manage_planes(start, end) {
            return Err(AddError::AlreadyManaged {
                pfn: Pfn::new(pfn).unwrap_or(Pfn::MAX),
            });
        }
        for block in range.blocks(self.max_order()) {
            self.put_merge(block.start().get(), usize::from(block.order().get()));
        }
        self.managed_add(range.frames());
        Ok(())
    }
}
