//! A guest's NVRAM frames from the NV pool (`nvirt-nvpool`): the
//! [`FramePool`] the guest's memory takes NVRAM from, for one domain of the
//! pool.
//!
//! Every frame the guest gets or gives back is committed to the pool's log
//! on the NVRAM before the call returns, so after a crash the pool knows
//! which machine frame backs which guest frame (see [`crate::nv_boot`]).
//! Blocks are asked for one at a time with Xen's
//! `increase_reservation` semantics (one extent of an exact order at a
//! guest frame aligned to it), trying smaller orders when the pool has no
//! free block of the order asked for, so each block the guest's map holds
//! is exactly one extent of the pool. A release is the pool's
//! `decrease_reservation` of the part's maximal aligned blocks; the pool
//! splits its extent the same way the guest's map does (the maximal aligned
//! blocks of what remains), so the two stay extent for extent equal, which
//! [`NvFrames::agrees`] checks.
//!
//! The caller unmaps the frames from the guest's tables before a release:
//! the pool scrubs them and may hand them to another domain as soon as the
//! call returns.

use nvirt_buddy::{AlignedBlocks, Block, MemKind, MfnRange, Order};
use nvirt_nvpool::nvirt_addr::FrameOffset;
use nvirt_nvpool::{Dom, Gfn, Mfn, NvPool, PopulateError};
use nvirt_persist_meta::Pmem;

use crate::p2m::BlockMapping;
use crate::pool::{FramePool, PoolError, block_range, remainder};

/// Most blocks one order of a release is decreased in (a part of a block
/// has at most two maximal aligned blocks of each order).
const BLOCKS_PER_ORDER: usize = 2;

/// Domain `dom`'s NVRAM in `pool`, as a [`FramePool`].
pub struct NvFrames<'p, 'w, P: Pmem> {
    pool: &'p mut NvPool<'w, P>,
    dom: Dom,
    /// A cycle counter to time the pool's commits with, if any.
    clock: Option<fn() -> u64>,
    /// Cycles spent in the pool's `increase_reservation` (its commit).
    commit_ticks: u64,
}

impl<P: Pmem> core::fmt::Debug for NvFrames<'_, '_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NvFrames")
            .field("dom", &self.dom)
            .finish_non_exhaustive()
    }
}

/// The host block of a pool extent (the pool's frame base is the region's
/// host frame number, so a machine frame number is a host frame number).
fn block_of(mfn: Mfn, order: Order) -> Option<Block> {
    Block::new(mfn, order)
}

impl<'p, 'w, P: Pmem> NvFrames<'p, 'w, P> {
    /// Domain `dom` of `pool`.
    pub fn new(pool: &'p mut NvPool<'w, P>, dom: Dom) -> Self {
        Self {
            pool,
            dom,
            clock: None,
            commit_ticks: 0,
        }
    }

    /// Times every allocation's commit with `clock` (e.g. the TSC).
    #[must_use]
    pub fn timed(mut self, clock: fn() -> u64) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Clock ticks the pool's allocations (each one commit) took so far.
    #[must_use]
    pub const fn commit_ticks(&self) -> u64 {
        self.commit_ticks
    }

    /// The domain.
    #[must_use]
    pub const fn dom(&self) -> Dom {
        self.dom
    }

    /// The pool.
    pub fn pool(&mut self) -> &mut NvPool<'w, P> {
        self.pool
    }

    #[cfg(any(test, feature = "std"))]
    /// The pool, read only.
    #[must_use]
    pub fn pool_ref(&self) -> &NvPool<'w, P> {
        self.pool
    }

    /// Whether the NVRAM extents of the guest's map (`extents`, in guest
    /// frame order) are exactly the domain's extents in the pool; the
    /// first guest frame where they differ if not.
    pub fn agrees<'e>(
        &self,
        extents: impl IntoIterator<Item = &'e BlockMapping>,
    ) -> Result<(), Gfn> {
        let mut pool = self.pool.extents(self.dom);
        for e in extents
            .into_iter()
            .filter(|e| e.kind() == MemKind::NonVolatile)
        {
            let Some(p) = pool.next() else {
                return Err(e.gfn());
            };
            let same = p.mapping() == e.mapping() && p.order() == e.block().order();
            if !same {
                return Err(e.gfn().min(p.gfn()));
            }
        }
        match pool.next() {
            Some(p) => Err(p.gfn()),
            None => Ok(()),
        }
    }
}

impl<P: Pmem> FramePool for NvFrames<'_, '_, P> {
    fn kind(&self) -> MemKind {
        MemKind::NonVolatile
    }

    fn alloc_for(&mut self, at: Gfn, order: Order) -> Result<Block, PoolError> {
        let gpfn = at;
        let mut last = PopulateError::OutOfMemory {
            frames: order.frames(),
            free: self.free_frames(),
        };
        for o in (0..=order.get()).rev() {
            let start = self.clock.map(|now| now());
            let done = self.pool.increase_reservation(self.dom, &[at], o);
            if let (Some(now), Some(start)) = (self.clock, start) {
                self.commit_ticks += now().wrapping_sub(start);
            }
            match done {
                Ok(_) => {
                    let extent = self
                        .pool
                        .extent_at(self.dom, at)
                        .ok_or(PoolError::Lost { gpfn })?;
                    return block_of(extent.mfn(), extent.order()).ok_or(PoolError::Lost { gpfn });
                }
                // No free block of this order: a smaller one may do.
                Err(e @ PopulateError::OutOfMemory { .. }) => last = e,
                Err(e) => return Err(PoolError::Populate(e)),
            }
        }
        Err(PoolError::Populate(last))
    }

    fn release(&mut self, gpfn: Gfn, block: Block, part: MfnRange) -> Result<(), PoolError> {
        if part.is_empty() || !block_range(block).contains_range(part) {
            return Err(PoolError::NotInBlock { block, part });
        }
        // The part's maximal aligned blocks, decreased one order at a time
        // (one commit per order): host and guest frames of a block are
        // congruent modulo its size, so an aligned host block is an aligned
        // guest block.
        let offset = FrameOffset::between(gpfn, block.start());
        for order in 0..Order::COUNT as u8 {
            let mut gpfns = [Gfn::default(); BLOCKS_PER_ORDER];
            let mut n = 0;
            for b in AlignedBlocks::new(part, Order::MAX).filter(|b| b.order().get() == order) {
                let g = offset.to_guest(b.start()).ok_or(PoolError::Lost { gpfn })?;
                let slot = gpfns
                    .get_mut(n)
                    .ok_or(PoolError::NotInBlock { block, part })?;
                *slot = g;
                n += 1;
            }
            if n > 0 {
                self.pool
                    .decrease_reservation(self.dom, &gpfns[..n], order)
                    .map_err(PoolError::Decrease)?;
            }
        }
        Ok(())
    }

    /// Splitting an extent to give back part of it takes extent slots of
    /// the pool, which all domains share: at most one per block of what
    /// remains plus one per block given back, whatever the order of the
    /// per-order decreases.
    fn can_release(&self, block: Block, part: MfnRange) -> bool {
        let pieces = |r: MfnRange| AlignedBlocks::new(r, Order::MAX).count() as u64;
        let needed = remainder(block, part).into_iter().map(pieces).sum::<u64>() + pieces(part);
        let free = self
            .pool
            .geometry()
            .max_extents()
            .saturating_sub(self.pool.stats().extents);
        needed <= u64::from(free)
    }

    /// A pool whose commit failed is poisoned; one that lost what it had
    /// just committed is inconsistent. Neither can serve the guest on.
    fn is_broken(&self, error: &PoolError) -> bool {
        matches!(
            error,
            PoolError::Lost { .. } | PoolError::Populate(PopulateError::Commit(_))
        )
    }

    fn free_frames(&self) -> u64 {
        self.pool.stats().free_frames
    }

    fn next_owned(&self, from: Gfn) -> Option<(Gfn, Block)> {
        let e = self.pool.extents_from(self.dom, from).next()?;
        Some((e.gfn(), block_of(e.mfn(), e.order())?))
    }
}

#[cfg(test)]
#[path = "nv_frames_tests.rs"]
mod tests;
