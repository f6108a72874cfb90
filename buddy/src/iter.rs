//! Iteration over free blocks and the statistics built on it.

use core::fmt;

use crate::alloc::make_block;
use crate::heap::Heap;
use crate::{Block, Order};

/// The free blocks of a heap, smallest order first and in address order
/// within an order; see [`Heap::free_blocks_iter`].
pub struct FreeBlocks<'h, 'm> {
    heap: &'h Heap<'m>,
    order: usize,
    last: usize,
    slot: usize,
}

impl fmt::Debug for FreeBlocks<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreeBlocks")
            .field("order", &self.order)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl Iterator for FreeBlocks<'_, '_> {
    type Item = Block;

    fn next(&mut self) -> Option<Block> {
        while self.order <= self.last {
            if let Some(s) = self.heap.bits.find_next(self.order, self.slot) {
                self.slot = s + 1;
                return Some(make_block(
                    self.heap.bits.slot_pfn(self.order, s),
                    self.order,
                ));
            }
            self.order += 1;
            self.slot = 0;
        }
        None
    }
}

/// A snapshot of a heap's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Frames added and not reserved.
    pub managed_frames: u64,
    /// Free frames.
    pub free_frames: u64,
    /// Free blocks per order (index = order).
    pub free_blocks: [u64; Order::COUNT],
}

impl Stats {
    /// Free frames in blocks of `order` or larger: memory that can still be
    /// handed out in pages of that size.
    #[must_use]
    pub fn free_frames_at_least(&self, order: Order) -> u64 {
        self.free_blocks
            .iter()
            .enumerate()
            .skip(usize::from(order.get()))
            .map(|(k, n)| n << k)
            .sum()
    }
}

impl<'m> Heap<'m> {
    /// The free blocks, smallest order first, in address order within an
    /// order.
    #[must_use]
    pub fn free_blocks_iter(&self) -> FreeBlocks<'_, 'm> {
        FreeBlocks {
            heap: self,
            order: 0,
            last: usize::from(self.bits.l.max_order),
            slot: 0,
        }
    }

    /// The counters, all at once.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut free_blocks = [0; Order::COUNT];
        for order in self.max_order().up_to() {
            if let Some(n) = free_blocks.get_mut(usize::from(order.get())) {
                *n = self.free_blocks(order);
            }
        }
        Stats {
            managed_frames: self.managed_frames(),
            free_frames: self.free_frames(),
            free_blocks,
        }
    }
}
