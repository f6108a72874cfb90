//! The reference model: one owner per frame in a `Vec`, every operation
//! written the obvious way, and a driver that runs an operation sequence on
//! a [`Heap`] and the model side by side, comparing every result and the
//! whole state after every step. The property tests and the fuzz target
//! use it.
//!
//! The model predicts every result of the heap exactly, except which of
//! several equally good blocks an allocation takes: the free blocks of a
//! buddy heap are always the maximal aligned blocks of its free frames
//! (but for the one frame whose merge the heap defers: see
//! [`Model::free_blocks`]), so the model derives them from its frames and
//! checks the heap's choice
//! against its documented policy (a free block of the smallest order that
//! fits, split so that the allocation is its highest part).

use std::string::String;
use std::vec::Vec;
use std::{format, vec};

use crate::MfnRange;
use crate::error::{
    AddError, AllocError, BlockError, ClaimError, FreeError, FreeRangeError, ReserveError,
};
use crate::heap::FrameState;
#[cfg(doc)]
use crate::heap::Heap;
use crate::range::{AlignedBlocks, Constraints, covers, largest_fitting};
use crate::{Block, Mfn, Order};

mod percpu;
mod run;

pub use percpu::{PerCpuOp, run_per_cpu};
use run::same;
pub use run::{Op, Tally, compare, run};

/// Who owns a frame in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Not in the heap.
    Unmanaged,
    /// Free.
    Free,
    /// Part of the allocated block of `order` at `head`.
    Alloc {
        /// First frame of the block.
        head: u64,
        /// Its order.
        order: u8,
    },
}

/// The reference model of a heap.
#[derive(Clone, Debug)]
pub struct Model {
    base: u64,
    end: u64,
    max_order: u8,
    frames: Vec<Owner>,
    /// The frame freed last, whose merge with its free buddy the heap
    /// defers until an operation other than an allocation of one frame.
    deferred: Option<u64>,
    /// Whether the last call of `free` or `alloc` was a free (a free right
    /// after another merges at once).
    freeing: bool,
}

fn block(start: u64, order: usize) -> Block {
    Mfn::new(start)
        .zip(Order::new(order as u8))
        .and_then(|(p, o)| Block::new(p, o))
        .unwrap_or_else(|| panic!("model made an invalid block {start:#x}/{order}"))
}

fn pfn(n: u64) -> Mfn {
    Mfn::new(n).unwrap_or(Mfn::MAX)
}

impl Model {
    /// A model of an empty heap over `span`.
    #[must_use]
    pub fn new(span: MfnRange, max_order: Order) -> Self {
        let (base, end) = (span.start().get(), span.end().get());
        Self {
            base,
            end,
            max_order: max_order.get(),
            frames: vec![Owner::Unmanaged; (end - base) as usize],
            deferred: None,
            freeing: false,
        }
    }

    fn span(&self) -> MfnRange {
        MfnRange::from_numbers(self.base, self.end).unwrap_or_default()
    }

    /// The owner of frame `pfn`.
    #[must_use]
    pub fn owner(&self, pfn: u64) -> Owner {
        match pfn.checked_sub(self.base) {
            Some(i) if pfn < self.end => self.frames[i as usize],
            _ => Owner::Unmanaged,
        }
    }

    fn set(&mut self, start: u64, end: u64, owner: Owner) {
        for f in start..end {
            self.frames[(f - self.base) as usize] = owner;
        }
    }

    /// The frame state the heap should report.
    #[must_use]
    pub fn state(&self, pfn: u64) -> FrameState {
        match self.owner(pfn) {
            Owner::Unmanaged => FrameState::Unmanaged,
            Owner::Free => FrameState::Free,
            Owner::Alloc { .. } => FrameState::Allocated,
        }
    }

    /// The free blocks: the maximal aligned blocks of the free frames,
    /// smallest order first, by address within an order; but a frame whose
    /// merge is deferred, if still free, is a block of its own, and the
    /// other blocks are the maximal ones of the other free frames.
    #[must_use]
    pub fn free_blocks(&self) -> Vec<Block> {
        let deferred = self.deferred.filter(|&p| self.owner(p) == Owner::Free);
        let free = |f: u64| self.owner(f) == Owner::Free && Some(f) != deferred;
        let mut out: Vec<Block> = deferred.map(|p| block(p, 0)).into_iter().collect();
        let mut f = self.base;
        while f < self.end {
            if !free(f) {
                f += 1;
                continue;
            }
            let mut e = f;
            while e < self.end && free(e) {
                e += 1;
            }
            while f < e {
                let k = largest_fitting(f, e, self.max_order);
                out.push(block(f, usize::from(k)));
                f += 1 << k;
            }
        }
        out.sort_by_key(|b| (b.order(), b.start()));
        out
    }

    /// The allocated blocks, by address.
    #[must_use]
    pub fn allocated(&self) -> Vec<Block> {
        let mut out = Vec::new();
        for (i, o) in self.frames.iter().enumerate() {
            if let Owner::Alloc { head, order } = *o {
                if head == self.base + i as u64 {
                    out.push(block(head, usize::from(order)));
                }
            }
        }
        out
    }

    /// Frames added and not reserved.
    #[must_use]
    pub fn managed_frames(&self) -> u64 {
        self.frames
            .iter()
            .filter(|o| **o != Owner::Unmanaged)
            .count() as u64
    }

    /// Free frames.
    #[must_use]
    pub fn free_frames(&self) -> u64 {
        self.frames.iter().filter(|o| **o == Owner::Free).count() as u64
    }

    fn check_block(&self, p: Mfn, order: Order) -> Result<(u64, usize), BlockError> {
        let max = Order::new(self.max_order).unwrap_or(Order::MAX);
        if order > max {
            return Err(BlockError::OrderTooLarge { order, max });
        }
        if !p.is_aligned(order) {
            return Err(BlockError::Misaligned { pfn: p, order });
        }
        if p.get() < self.base || p.get() + order.frames() > self.end {
            return Err(BlockError::OutsideSpan {
                pfn: p,
                order,
                span: self.span(),
            });
        }
        Ok((p.get(), usize::from(order.get())))
    }

    /// Every operation of the heap but an allocation of one frame first
    /// completes a deferred merge.
    fn merge_deferred(&mut self) {
        self.deferred = None;
    }

    /// [`Heap::add`].
    pub fn add(&mut self, range: MfnRange) -> Result<(), AddError> {
        self.merge_deferred();
        if !covers(self.span(), range) {
            return Err(AddError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        let (s, e) = (range.start().get(), range.end().get());
        if let Some(f) = (s..e).find(|&f| self.owner(f) != Owner::Unmanaged) {
            return Err(AddError::AlreadyManaged { pfn: pfn(f) });
        }
        self.set(s, e, Owner::Free);
        Ok(())
    }

    /// Where an order-`k` allocation below frame `limit` may come from:
    /// the top order-`k` part of any free block of the smallest order that
    /// fits below the limit (which one is the heap's choice), or, if none
    /// fits, the highest order-`k` part below the limit of the free block
    /// that reaches across it.
    fn fits(&self, k: usize, limit: u64) -> Vec<u64> {
        let blocks = self.free_blocks();
        let fitting = blocks
            .iter()
            .filter(|b| usize::from(b.order().get()) >= k && b.end().get() <= limit);
        if let Some(j) = fitting.clone().map(|b| b.order()).min() {
            return fitting
                .filter(|b| b.order() == j)
                .map(|b| b.end().get() - (1 << k))
                .collect();
        }
        if limit >= self.end {
            return Vec::new();
        }
        let straddle = || {
            let last = limit.checked_sub(1)?;
            let b = blocks.iter().find(|b| b.contains(pfn(last)))?;
            let target = (limit >> k << k).checked_sub(1 << k)?;
            (usize::from(b.order().get()) > k && target >= b.start().get()).then_some(target)
        };
        straddle().into_iter().collect()
    }

    /// Checks the heap's answer to [`Heap::alloc`] and applies it.
    pub fn alloc(
        &mut self,
        order: Order,
        c: Constraints,
        got: Result<Block, AllocError>,
    ) -> Result<(), String> {
        self.freeing = false;
        if order.get() != 0 {
            self.merge_deferred();
        }
        let max = Order::new(self.max_order).unwrap_or(Order::MAX);
        if order > max {
            return same(got, Err(AllocError::OrderTooLarge { order, max }));
        }
        self.alloc_fitting(order, order, c, got)
    }

    fn alloc_fitting(
        &mut self,
        asked: Order,
        order: Order,
        c: Constraints,
        got: Result<Block, AllocError>,
    ) -> Result<(), String> {
        let k = usize::from(order.get());
        let fits = self.fits(k, c.limit());
        let b = match got {
            Err(e) if fits.is_empty() => {
                return same(
                    Err::<(), _>(e),
                    Err(AllocError::OutOfMemory {
                        order: asked,
                        constraints: c,
                    }),
                );
            }
            Err(e) => {
                return Err(format!(
                    "heap refused with {e:?}, model could use {fits:x?}"
                ));
            }
            Ok(b) => b,
        };
        if b.order() != order || !fits.contains(&b.start().get()) {
            return Err(format!(
                "heap gave {b:?}, model expected one of {fits:x?} of {order}"
            ));
        }
        self.set(
            b.start().get(),
            b.end().get(),
            Owner::Alloc {
                head: b.start().get(),
                order: order.get(),
            },
        );
        Ok(())
    }

    /// Checks the heap's answer to [`Heap::alloc_at_most`] and applies it.
    pub fn alloc_at_most(
        &mut self,
        order: Order,
        c: Constraints,
        got: Result<Block, AllocError>,
    ) -> Result<(), String> {
        self.freeing = false;
        self.merge_deferred();
        let max = Order::new(self.max_order).unwrap_or(Order::MAX);
        if order > max {
            return same(got, Err(AllocError::OrderTooLarge { order, max }));
        }
        let largest = order
            .up_to()
            .rev()
            .find(|o| !self.fits(usize::from(o.get()), c.limit()).is_empty())
            .unwrap_or(order);
        self.alloc_fitting(order, largest, c, got)
    }

    fn check_allocated(&self, p: u64, k: usize) -> Result<(), FreeError> {
        match self.owner(p) {
            Owner::Unmanaged => Err(FreeError::NotManaged { pfn: pfn(p) }),
            Owner::Free => Err(FreeError::AlreadyFree { pfn: pfn(p) }),
            Owner::Alloc { head, .. } if head != p => Err(FreeError::NotBlockStart { pfn: pfn(p) }),
            Owner::Alloc { order, .. } if usize::from(order) != k => Err(FreeError::WrongOrder {
                block: block(p, k),
                allocated: Order::new(order).unwrap_or(Order::MAX),
            }),
            Owner::Alloc { .. } => Ok(()),
        }
    }

    /// [`Heap::free`].
    pub fn free(&mut self, p: Mfn, order: Order) -> Result<(), FreeError> {
        self.merge_deferred();
        let after_alloc = !core::mem::replace(&mut self.freeing, true);
        let (p, k) = self.check_block(p, order)?;
        self.check_allocated(p, k)?;
        self.set(p, p + (1 << k), Owner::Free);
        if after_alloc && k == 0 && self.max_order != 0 && self.owner(p ^ 1) == Owner::Free {
            self.deferred = Some(p);
        }
        Ok(())
    }

    fn first_not_free(&self, s: u64, e: u64) -> Option<ClaimError> {
        (s..e).find_map(|f| match self.owner(f) {
            Owner::Free => None,
            Owner::Unmanaged => Some(ClaimError::NotManaged { pfn: pfn(f) }),
            Owner::Alloc { .. } => Some(ClaimError::NotFree { pfn: pfn(f) }),
        })
    }

    /// [`Heap::claim`].
    pub fn claim(&mut self, p: Mfn, order: Order) -> Result<Block, ClaimError> {
        self.merge_deferred();
        let (p, k) = self.check_block(p, order)?;
        if let Some(e) = self.first_not_free(p, p + (1 << k)) {
            return Err(e);
        }
        self.set(
            p,
            p + (1 << k),
            Owner::Alloc {
                head: p,
                order: order.get(),
            },
        );
        Ok(block(p, k))
    }

    /// [`Heap::claim_range`].
    pub fn claim_range(&mut self, range: MfnRange) -> Result<u64, ClaimError> {
        self.merge_deferred();
        if !covers(self.span(), range) {
            return Err(ClaimError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        let (s, e) = (range.start().get(), range.end().get());
        if let Some(err) = self.first_not_free(s, e) {
            return Err(err);
        }
        let max = Order::new(self.max_order).unwrap_or(Order::MAX);
        let mut n = 0;
        for b in AlignedBlocks::new(range, max) {
            self.set(
                b.start().get(),
                b.end().get(),
                Owner::Alloc {
                    head: b.start().get(),
                    order: b.order().get(),
                },
            );
            n += 1;
        }
        Ok(n)
    }

    /// [`Heap::reserve`].
    pub fn reserve(&mut self, range: MfnRange) -> Result<u64, ReserveError> {
        self.merge_deferred();
        if !covers(self.span(), range) {
            return Err(ReserveError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        let (s, e) = (range.start().get(), range.end().get());
        if let Some(f) = (s..e).find(|&f| matches!(self.owner(f), Owner::Alloc { .. })) {
            return Err(ReserveError::Allocated { pfn: pfn(f) });
        }
        let n = (s..e).filter(|&f| self.owner(f) == Owner::Free).count() as u64;
        self.set(s, e, Owner::Unmanaged);
        Ok(n)
    }

    /// [`Heap::free_range`].
    pub fn free_range(&mut self, range: MfnRange) -> Result<(), FreeRangeError> {
        self.merge_deferred();
        if !covers(self.span(), range) {
            return Err(FreeRangeError::OutsideSpan {
                range,
                span: self.span(),
            });
        }
        let max = Order::new(self.max_order).unwrap_or(Order::MAX);
        for b in AlignedBlocks::new(range, max) {
            self.check_allocated(b.start().get(), usize::from(b.order().get()))
                .map_err(|error| FreeRangeError::Block { block: b, error })?;
        }
        let (s, e) = (range.start().get(), range.end().get());
        self.set(s, e, Owner::Free);
        Ok(())
    }
}
