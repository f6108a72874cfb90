//! TEMPORARY frame allocator: a region/bump allocator over the free ranges
//! of [`crate::host_memory`], until the `nvirt-buddy` crate replaces it.
//!
//! The seam is [`FrameAlloc`]: everything that needs frames (nested tables,
//! VMCB/VMCS pages, guest memory) asks through it, so swapping in the buddy
//! heap changes only the type constructed in `main.rs`. Frames are never
//! freed (the reference hypervisor runs one guest, then stops).

use core::ops::Range;

use crate::ranges::RangeSet;

/// Where frames come from. Returned blocks are `size` bytes (a multiple of
/// 4 KiB) aligned to `align` (a power of two; at least 4 KiB is used) and
/// not zeroed.
pub trait FrameAlloc {
    /// A block of `size` bytes aligned to `align`, or `None` if no free range
    /// holds one.
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64>;

    /// One 4 KiB frame.
    fn alloc_frame(&mut self) -> Option<u64> {
        self.alloc(4096, 4096)
    }
}

/// Hands out the lowest suitable block of a set of free ranges; nothing is
/// ever given back.
#[derive(Clone, Debug)]
pub struct RegionFrames<const N: usize> {
    free: RangeSet<N>,
}

impl<const N: usize> RegionFrames<N> {
    /// Frames from `free` only.
    #[must_use]
    pub const fn new(free: RangeSet<N>) -> Self {
        Self { free }
    }

    /// What is still free.
    #[must_use]
    pub const fn free(&self) -> &RangeSet<N> {
        &self.free
    }

    fn fit(&self, size: u64, align: u64) -> Option<Range<u64>> {
        self.free.iter().find_map(|r| {
            let start = r.start.checked_add(align - 1)? & !(align - 1);
            let end = start.checked_add(size)?;
            (end <= r.end).then_some(start..end)
        })
    }
}

impl<const N: usize> FrameAlloc for RegionFrames<N> {
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        if size == 0 || size % 4096 != 0 || !align.is_power_of_two() {
            return None;
        }
        let align = align.max(4096);
        let block = self.fit(size, align)?;
        // Removing from the middle of a range needs one more slot; when the
        // set is full, such a block is simply not available.
        self.free.remove(block.clone()).ok()?;
        Some(block.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_aligned_blocks_from_free_ranges_only() {
        let mut free = RangeSet::<8>::new();
        free.insert(0x13_3000..0x13_5000).unwrap();
        free.insert(0x13_6000..0x100_0000).unwrap();
        let mut frames = RegionFrames::new(free);
        assert_eq!(frames.alloc_frame(), Some(0x13_3000));
        assert_eq!(frames.alloc(2 << 20, 2 << 20), Some(0x20_0000));
        assert_eq!(frames.alloc_frame(), Some(0x13_4000));
        assert_eq!(frames.alloc_frame(), Some(0x13_6000));
        assert_eq!(frames.alloc(64 << 20, 2 << 20), None);
        assert_eq!(frames.alloc(0, 4096), None);
        assert_eq!(frames.alloc(4096, 3), None);
        let total_before = frames.free().total();
        assert_eq!(frames.alloc(0x3000, 4096), Some(0x13_7000));
        assert_eq!(frames.free().total(), total_before - 0x3000);
    }
}
