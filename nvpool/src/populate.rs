//! Giving a domain frames: `populate` (a range of guest frames, largest
//! blocks first) and `increase_reservation` (Xen's: extents of one order
//! at given guest frames).
//!
//! Both first check everything that can be checked, then allocate a *plan*
//! (blocks from the heap, nodes threaded on a list), commit its records as
//! one group, and link the plan into the domain. Anything refused before
//! the commit is undone: the pool is unchanged.

use nvirt_addr::{Mfn, Order};
use nvirt_buddy::Constraints;
use nvirt_persist_meta::{AppendError, Group, Pmem};

use crate::avl;
use crate::error::PopulateError;
use crate::pool::{Dom, NvPool};
use crate::records::{AddList, ENTRIES_PER_RECORD, list_bytes};
use crate::state::State;
use crate::types::Extent;
use crate::window::Window;
use crate::work::NIL;
use nvirt_addr::Gfn;

/// What a populate or increase gave the domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Populated {
    /// Extents added.
    pub extents: u32,
    /// Frames added.
    pub frames: u64,
    /// The largest extent's order.
    pub largest: Order,
}

/// Nodes allocated for a change, threaded through `link` in order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) head: u32,
    tail: u32,
    pub(crate) count: u32,
    pub(crate) frames: u64,
    largest: Order,
}

impl Plan {
    pub(crate) const EMPTY: Plan = Plan {
        head: NIL,
        tail: NIL,
        count: 0,
        frames: 0,
        largest: Order::SIZE_4K,
    };

    pub(crate) fn push(&mut self, state: &mut State<'_>, i: u32) {
        if self.tail == NIL {
            self.head = i;
        } else {
            state.nodes[self.tail as usize].link = i;
        }
        self.tail = i;
        self.count += 1;
        let order = state.nodes[i as usize].order;
        self.frames += 1u64 << order;
        self.largest = self.largest.max(Order::new(order).unwrap_or(Order::MAX));
    }

    /// Gives every block and node back.
    pub(crate) fn undo(self, state: &mut State<'_>) {
        let mut i = self.head;
        for _ in 0..self.count {
            let node = state.nodes[i as usize];
            if let (Some(pfn), Some(order)) = (Mfn::new(node.mfn), Order::new(node.order)) {
                let _ = state.heap.free(pfn, order);
            }
            state.free_node(i);
            i = node.link;
        }
    }

    /// Pushes the plan's add records.
    fn push_records<P: Pmem>(
        self,
        slot: u16,
        group: &mut Group<'_, Window<P>>,
        state: &State<'_>,
    ) -> Result<(), AppendError> {
        let mut first = self.head;
        let mut left = self.count as usize;
        while left > 0 {
            let count = left.min(ENTRIES_PER_RECORD);
            group.push(&AddList {
                slot,
                nodes: state.nodes,
                first,
                count,
            })?;
            for _ in 0..count {
                first = state.nodes[first as usize].link;
            }
            left -= count;
        }
        Ok(())
    }

    fn result(&self) -> Populated {
        Populated {
            extents: self.count,
            frames: self.frames,
            largest: self.largest,
        }
    }
}

/// The order of the next block of a populate at guest frame `gpfn` with
/// `left` frames to go: as large as the guest address's alignment and the
/// remaining count allow, up to 1 GiB.
fn block_order(gpfn: u64, left: u64) -> Order {
    let fits = 63 - left.leading_zeros() as u8;
    let align = Gfn::new(gpfn).map_or(Order::SIZE_4K, Gfn::alignment);
    Order::new(fits.min(align.get())).unwrap_or(Order::MAX)
}

impl<P: Pmem> NvPool<'_, P> {
    /// Checks what populate and increase share: the domain, the range, the
    /// quota, and that the pool has the frames. Returns the slot.
    fn check_adding(&self, s: u16, frames: u64) -> Result<(), PopulateError> {
        let slot = &self.state.domains[usize::from(s)];
        if slot
            .frames
            .checked_add(frames)
            .is_none_or(|f| f > slot.quota)
        {
            return Err(PopulateError::Quota {
                frames,
                owned: slot.frames,
                quota: slot.quota,
            });
        }
        let free = self.state.heap.free_frames();
        if frames > free {
            return Err(PopulateError::OutOfMemory { frames, free });
        }
        Ok(())
    }

    fn overlap_error(&self, s: u16, gpfn: u64, frames: u64) -> Result<(), PopulateError> {
        match self.state.overlap(s, gpfn, frames) {
            Some(i) => {
                let node = &self.state.nodes[i as usize];
                Err(PopulateError::Overlap {
                    gpfn: Gfn::new(gpfn).unwrap_or_default(),
                    existing: Extent::trusted(node.gpfn, node.mfn, node.order),
                })
            }
            None => Ok(()),
        }
    }

    /// Gives domain `dom` the guest frames `gpfn .. gpfn + frames`, backed
    /// by the largest blocks the free frames allow, each aligned to its
    /// guest address so that it can be mapped with 1 GiB or 2 MiB pages.
    /// One fence (two when the log is full and a checkpoint commits it).
    pub fn populate(
        &mut self,
        dom: Dom,
        gpfn: Gfn,
        frames: u64,
    ) -> Result<Populated, PopulateError> {
        let s = self.live(dom).ok_or(PopulateError::UnknownDomain)?;
        if gpfn
            .get()
            .checked_add(frames)
            .is_none_or(|end| end >= Gfn::LIMIT)
        {
            return Err(PopulateError::GpfnRange { gpfn, frames });
        }
        self.check_adding(s, frames)?;
        if frames == 0 {
            return Ok(Populated::default());
        }
        self.overlap_error(s, gpfn.get(), frames)?;
        let mut plan = Plan::EMPTY;
        let (mut at, mut left) = (gpfn.get(), frames);
        while left > 0 {
            let want = block_order(at, left);
            let block = match self.state.heap.alloc_at_most(want, Constraints::ANY) {
                Ok(b) => b,
                Err(_) => {
                    plan.undo(&mut self.state);
                    let free = self.state.heap.free_frames();
                    return Err(PopulateError::OutOfMemory { frames, free });
                }
            };
            let order = block.order().get();
            let Some(i) = self.state.alloc_node(s, at, block.start().get(), order) else {
                let _ = self.state.heap.free_block(block);
                plan.undo(&mut self.state);
                return Err(PopulateError::ExtentsFull {
                    max: self.state.geo.max_extents,
                });
            };
            plan.push(&mut self.state, i);
            at += block.frames();
            left -= block.frames();
        }
        self.commit_plan(s, plan)
    }

    /// Xen's `increase_reservation` / `populate_physmap` for NVRAM: gives
    /// domain `dom` one extent of `order` at each guest frame of `gpfns`
    /// (each aligned to the order), all or nothing. One fence (two when the
    /// log is full).
    pub fn increase_reservation(
        &mut self,
        dom: Dom,
        gpfns: &[Gfn],
        order: u8,
    ) -> Result<Populated, PopulateError> {
        let s = self.live(dom).ok_or(PopulateError::UnknownDomain)?;
        let o = Order::new(order).ok_or(PopulateError::OrderTooLarge { order })?;
        let frames = (gpfns.len() as u64).saturating_mul(o.frames());
        self.check_adding(s, frames)?;
        for &gpfn in gpfns {
            if !gpfn.is_aligned(o) {
                return Err(PopulateError::Misaligned { gpfn, order: o });
            }
            if gpfn.get() + o.frames() >= Gfn::LIMIT {
                return Err(PopulateError::GpfnRange {
                    gpfn,
                    frames: o.frames(),
                });
            }
            self.overlap_error(s, gpfn.get(), o.frames())?;
        }
        let mut plan = Plan::EMPTY;
        // The plan's nodes also form a tree of their own, which finds a
        // guest frame asked for twice in O(log n).
        let mut seen = NIL;
        for &gpfn in gpfns {
            let block = match self.state.heap.alloc(o, Constraints::ANY) {
                Ok(b) => b,
                Err(_) => {
                    plan.undo(&mut self.state);
                    let free = self.state.heap.free_frames();
                    return Err(PopulateError::OutOfMemory { frames, free });
                }
            };
            let Some(i) = self
                .state
                .alloc_node(s, gpfn.get(), block.start().get(), order)
            else {
                let _ = self.state.heap.free_block(block);
                plan.undo(&mut self.state);
                return Err(PopulateError::ExtentsFull {
                    max: self.state.geo.max_extents,
                });
            };
            if avl::insert(self.state.nodes, &mut seen, i).is_err() {
                let _ = self.state.heap.free_block(block);
                self.state.free_node(i);
                plan.undo(&mut self.state);
                return Err(PopulateError::Duplicate { gpfn });
            }
            plan.push(&mut self.state, i);
        }
        self.commit_plan(s, plan)
    }

    /// Commits a plan's records and links its nodes; undoes it if the
    /// commit fails before anything changed.
    pub(crate) fn commit_plan(&mut self, s: u16, plan: Plan) -> Result<Populated, PopulateError> {
        let result = self.commit_adding(
            list_bytes(plan.count.into()),
            |g, state| plan.push_records(s, g, state),
            |state| {
                let mut i = plan.head;
                for _ in 0..plan.count {
                    let next = state.nodes[i as usize].link;
                    state.link(i)?;
                    i = next;
                }
                Ok(())
            },
        );
        match result {
            Ok(()) => Ok(plan.result()),
            Err(e) => {
                if !self.poisoned {
                    plan.undo(&mut self.state);
                }
                Err(PopulateError::Commit(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_alignment_and_count() {
        assert_eq!(block_order(0, 1 << 20), Order::SIZE_1G);
        assert_eq!(block_order(0x200, 1 << 20), Order::SIZE_2M);
        assert_eq!(block_order(0x40000, 0x3ffff), Order::new(17).unwrap());
        assert_eq!(block_order(3, 100), Order::SIZE_4K);
        assert_eq!(block_order(4, 3), Order::new(1).unwrap());
    }
}
