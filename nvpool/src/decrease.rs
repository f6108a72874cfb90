//! Taking frames back: Xen's `decrease_reservation` for NVRAM.
//!
//! Each block asked for (2^order guest frames, aligned) must be wholly
//! owned by the domain. Extents and blocks are both aligned blocks, so
//! either the block lies inside one extent (which is split: the block and
//! the largest aligned pieces around it) or it covers whole extents. The
//! freed frames are scrubbed before they return to the pool.

use nvirt_addr::Order;
use nvirt_persist_meta::Pmem;

use crate::error::DecreaseError;
use crate::pool::{Dom, NvPool};
use crate::records::{ENTRIES_PER_RECORD, RemoveList, list_bytes};
use nvirt_addr::Gfn;

/// The most blocks one `decrease_reservation` call frees (callers with
/// more split them, as Xen's hypercall continuations do).
pub const MAX_DECREASE_BATCH: usize = 4096;

impl<P: Pmem> NvPool<'_, P> {
    /// Frees the blocks of `2^order` guest frames at `gpfns` from domain
    /// `dom`, all or nothing: their frames are scrubbed (zeroed and made
    /// durable) before any other domain can get them. Two fences, however
    /// many frames. Returns the frames freed.
    pub fn decrease_reservation(
        &mut self,
        dom: Dom,
        gpfns: &[Gfn],
        order: u8,
    ) -> Result<u64, DecreaseError> {
        let s = self.live(dom).ok_or(DecreaseError::UnknownDomain)?;
        let o = Order::new(order).ok_or(DecreaseError::OrderTooLarge { order })?;
        if gpfns.len() > MAX_DECREASE_BATCH {
            return Err(DecreaseError::BatchTooLarge {
                n: gpfns.len(),
                max: MAX_DECREASE_BATCH,
            });
        }
        if gpfns.is_empty() {
            return Ok(0);
        }
        let mut needed = 0u64;
        // Balloon drivers give frames back in ascending order: then no
        // block can appear twice, and the quadratic search is skipped.
        let ascending = gpfns.windows(2).all(|w| w[0] < w[1]);
        for (n, &gpfn) in gpfns.iter().enumerate() {
            if !gpfn.is_aligned(o) {
                return Err(DecreaseError::Misaligned { gpfn, order: o });
            }
            // Blocks of one order are equal or disjoint: a block twice is
            // the only way two of them can overlap.
            if !ascending && gpfns[..n].contains(&gpfn) {
                return Err(DecreaseError::Duplicate { gpfn });
            }
            let (_, extra) = self
                .state
                .check_block(s, gpfn.get(), order)
                .map_err(|_| self.first_unowned(s, gpfn, o))?;
            needed += u64::from(extra);
        }
        let free = self.state.free_nodes();
        if needed > u64::from(free) {
            return Err(DecreaseError::ExtentsFull { needed, free });
        }
        self.commit_freeing(
            list_bytes(gpfns.len() as u64),
            |g, state| {
                for chunk in gpfns.chunks(ENTRIES_PER_RECORD) {
                    g.push(&RemoveList {
                        slot: s,
                        order,
                        gpfns: chunk,
                        state,
                    })?;
                }
                Ok(())
            },
            |state| {
                for gpfn in gpfns {
                    let (mfn, _) = state.check_block(s, gpfn.get(), order)?;
                    state.remove_block(s, gpfn.get(), order, mfn)?;
                }
                Ok(())
            },
        )
        .map_err(DecreaseError::Commit)?;
        Ok((gpfns.len() as u64) << order)
    }

    /// The error for a block at `gpfn` the domain does not wholly own: the
    /// first guest frame of it that it does not own.
    fn first_unowned(&self, s: u16, gpfn: Gfn, order: Order) -> DecreaseError {
        let end = gpfn.get() + order.frames();
        let mut at = gpfn.get();
        while at < end {
            match self.state.extent_at(s, at) {
                Some(i) => at = self.state.nodes[i as usize].gpfn_end(),
                None => break,
            }
        }
        DecreaseError::NotPopulated {
            gpfn: Gfn::new(at.min(end - 1)).unwrap_or(gpfn),
        }
    }
}
