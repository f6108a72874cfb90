//! Where a guest's frames of one kind come from: the seam between the
//! guest's memory and the allocator behind it.
//!
//! Guest RAM comes from the volatile buddy heap. Guest NVRAM comes from the
//! NVRAM pool (`nvirt-nvpool`, through [`crate::nv_frames::NvFrames`]),
//! which also persists which guest frame owns which NVRAM frame across
//! reboots; a buddy heap can stand in for it (host tests). That is why
//! every call names the guest frame the block backs: the buddy heap ignores
//! it, the pool records it.

use core::fmt;

use nvirt_addr::Gfn;
use nvirt_buddy::{
    AllocError, Block, ClaimError, Constraints, FreeError, Heap, MemKind, MfnRange, Order,
};
use nvirt_nvpool::{DecreaseError, PopulateError};

/// An allocation or release the pool refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// No block could be allocated.
    Alloc(AllocError),
    /// The block could not be freed.
    Free(FreeError),
    /// What remains of a partly released block could not be kept.
    Claim(ClaimError),
    /// The part to release is not inside the block.
    NotInBlock {
        /// The block.
        block: Block,
        /// The part.
        part: MfnRange,
    },
    /// The NV pool refused to give the domain frames.
    Populate(PopulateError),
    /// The NV pool refused to take frames back.
    Decrease(DecreaseError),
    /// The NV pool does not hold what it just committed (a broken pool).
    Lost {
        /// The guest frame.
        gpfn: Gfn,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alloc(e) => e.fmt(f),
            Self::Free(e) => e.fmt(f),
            Self::Claim(e) => e.fmt(f),
            Self::NotInBlock { block, part } => write!(f, "{part} is not inside {block}"),
            Self::Populate(e) => write!(f, "NV pool: {e}"),
            Self::Decrease(e) => write!(f, "NV pool: {e}"),
            Self::Lost { gpfn } => write!(
                f,
                "NV pool: no extent at guest frame {gpfn:#x} after committing one"
            ),
        }
    }
}

impl core::error::Error for PoolError {}

/// Frames of one kind for guests.
pub trait FramePool {
    /// What the pool holds.
    #[allow(
        dead_code,
        reason = "part of the seam's contract; only tests ask it today"
    )]
    fn kind(&self) -> MemKind;

    /// The largest free block of at most `order` to back guest frames from
    /// `gfn` on.
    fn alloc_for(&mut self, gfn: Gfn, order: Order) -> Result<Block, PoolError>;

    /// Takes back `part` of the allocated `block`, which backed guest frames
    /// from `gfn` on. What is left of the block stays allocated as the
    /// maximal aligned blocks of `remainder(block, part)`.
    fn release(&mut self, gfn: Gfn, block: Block, part: MfnRange) -> Result<(), PoolError>;

    /// Frames free in the pool.
    fn free_frames(&self) -> u64;

    /// Whether [`release`](Self::release)`(…, block, part)` has the room it
    /// needs, asked before the guest's tables change so that a refusal
    /// leaves everything as it was. A heap always has.
    fn can_release(&self, block: Block, part: MfnRange) -> bool {
        let _ = (block, part);
        true
    }

    /// Whether a refusal from this pool means the pool itself is broken
    /// (the hypervisor must stop) rather than out of room (the guest is
    /// told so).
    fn is_broken(&self, error: &PoolError) -> bool {
        matches!(error, PoolError::Lost { .. })
    }

    /// The first block the pool already holds for the guest at or after
    /// guest frame `from`, with its first guest frame: what a pool that
    /// persists its guests' frames (the NV pool) re-attaches at boot. A
    /// pool that keeps no such record holds none.
    fn next_owned(&self, from: Gfn) -> Option<(Gfn, Block)> {
        let _ = from;
        None
    }
}

/// The frames of `block` outside `part`, before and after it.
#[must_use]
pub fn remainder(block: Block, part: MfnRange) -> [MfnRange; 2] {
    let (start, end) = (block.start(), block.end());
    let cut_start = part.start().clamp(start, end);
    let cut_end = part.end().clamp(cut_start, end);
    let range = |a, b| MfnRange::new(a, b).unwrap_or_default();
    [range(start, cut_start), range(cut_end, end)]
}

/// The whole block as a frame range.
#[must_use]
pub fn block_range(block: Block) -> MfnRange {
    block.range()
}

impl FramePool for Heap<'_> {
    fn kind(&self) -> MemKind {
        Heap::kind(self)
    }

    fn alloc_for(&mut self, _gfn: Gfn, order: Order) -> Result<Block, PoolError> {
        self.alloc_at_most(order, Constraints::ANY)
            .map_err(PoolError::Alloc)
    }

    fn release(&mut self, _gfn: Gfn, block: Block, part: MfnRange) -> Result<(), PoolError> {
        if part.is_empty() || !block_range(block).contains_range(part) {
            return Err(PoolError::NotInBlock { block, part });
        }
        // The heap frees whole blocks only. To give back part of one, free
        // it and claim the rest again: nothing can take the freed frames in
        // between (one CPU, no interrupts), and a claim of free frames
        // cannot fail.
        self.free_block(block).map_err(PoolError::Free)?;
        for keep in remainder(block, part) {
            if !keep.is_empty() {
                self.claim_range(keep).map_err(PoolError::Claim)?;
            }
        }
        Ok(())
    }

    fn free_frames(&self) -> u64 {
        Heap::free_frames(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvirt_buddy::{AlignedBlocks, FrameState, Mfn, metadata_bytes};

    #[test]
    fn releases_part_of_a_block_and_keeps_the_rest_allocated() {
        let span = MfnRange::from_numbers(0x1000, 0x2000).unwrap();
        let mut meta = vec![0u8; metadata_bytes(span, Order::MAX) + 8];
        let mut heap = Heap::new(MemKind::NonVolatile, span, Order::MAX, &mut meta).unwrap();
        heap.add(span).unwrap();
        let block = heap
            .alloc_for(Gfn::new(0x100).unwrap(), Order::new(12).unwrap())
            .unwrap();
        assert_eq!(block.order().get(), 12, "the whole span is one block");
        let part = MfnRange::from_numbers(0x1005, 0x1006).unwrap();
        heap.release(Gfn::new(0x100).unwrap(), block, part).unwrap();
        assert_eq!(heap.free_frames(), 1);
        let [before, after] = remainder(block, part);
        assert_eq!(
            (before, after),
            (
                MfnRange::from_numbers(0x1000, 0x1005).unwrap(),
                MfnRange::from_numbers(0x1006, 0x2000).unwrap()
            )
        );
        // Each maximal block of the remainder is an allocated block.
        for b in AlignedBlocks::new(before, Order::MAX).chain(AlignedBlocks::new(after, Order::MAX))
        {
            assert_eq!(heap.frame_state(b.start()), FrameState::Allocated);
        }
        let freed = Mfn::new(0x1005).unwrap();
        assert_eq!(heap.frame_state(freed), FrameState::Free);
        // Releasing the rest piece by piece gives everything back.
        for b in AlignedBlocks::new(before, Order::MAX).chain(AlignedBlocks::new(after, Order::MAX))
        {
            heap.release(Gfn::ZERO, b, block_range(b)).unwrap();
        }
        assert_eq!(heap.free_frames(), 0x1000);
        heap.check_invariants().unwrap();
        assert!(matches!(
            heap.release(
                Gfn::ZERO,
                block,
                MfnRange::from_numbers(0x3000, 0x3001).unwrap()
            ),
            Err(PoolError::NotInBlock { .. })
        ));
        assert!(matches!(
            heap.release(Gfn::ZERO, block, block_range(block)),
            Err(PoolError::Free(_))
        ));
    }
}
