//! Two heaps, one per memory kind, behind one interface: a call site asks
//! for RAM or NVRAM by kind, frees without saying which, and asks any
//! frame's kind.

use crate::MfnRange;
use crate::error::{
    AddError, AllocError, ClaimError, FreeError, HeapsAddError, NewError, UnknownFrame,
};
use crate::heap::Heap;
use crate::range::Constraints;
use crate::{Block, MemKind, Mfn, Order};

/// A volatile and a non-volatile heap. Their spans may overlap (NVRAM often
/// sits between RAM ranges), but no frame is ever managed by both:
/// [`Heaps::add`] refuses frames the other heap manages.
#[derive(Debug)]
pub struct Heaps<'v, 'n> {
    volatile: Heap<'v>,
    nonvolatile: Heap<'n>,
}

impl<'v, 'n> Heaps<'v, 'n> {
    /// Two empty heaps; see [`Heap::new`] for the spans and buffers.
    pub fn new(
        volatile: (MfnRange, &'v mut [u8]),
        nonvolatile: (MfnRange, &'n mut [u8]),
        max_order: Order,
    ) -> Result<Self, NewError> {
        Ok(Self {
            volatile: Heap::new(MemKind::Volatile, volatile.0, max_order, volatile.1)?,
            nonvolatile: Heap::new(
                MemKind::NonVolatile,
                nonvolatile.0,
                max_order,
                nonvolatile.1,
            )?,
        })
    }

    /// Pairs two existing heaps, if the first is volatile, the second
    /// non-volatile, and no frame is managed by both; else gives them back.
    #[allow(
        clippy::result_large_err,
        reason = "the heaps go back to the caller, who owns their buffers"
    )]
    pub fn from_heaps(
        volatile: Heap<'v>,
        nonvolatile: Heap<'n>,
    ) -> Result<Self, (Heap<'v>, Heap<'n>)> {
        let kinds_ok =
            volatile.kind() == MemKind::Volatile && nonvolatile.kind() == MemKind::NonVolatile;
        let shared = kinds_ok && first_shared(&volatile, &nonvolatile).is_some();
        if kinds_ok && !shared {
            Ok(Self {
                volatile,
                nonvolatile,
            })
        } else {
            Err((volatile, nonvolatile))
        }
    }

    /// The heap of `kind`.
    #[must_use]
    pub fn heap(&self, kind: MemKind) -> &Heap<'_> {
        match kind {
            MemKind::Volatile => &self.volatile,
            MemKind::NonVolatile => &self.nonvolatile,
        }
    }

    /// The volatile heap, to use directly.
    pub fn volatile_mut(&mut self) -> &mut Heap<'v> {
        &mut self.volatile
    }

    /// The non-volatile heap, to use directly.
    pub fn nonvolatile_mut(&mut self) -> &mut Heap<'n> {
        &mut self.nonvolatile
    }

    /// Splits the pair back into its heaps.
    #[must_use]
    pub fn into_heaps(self) -> (Heap<'v>, Heap<'n>) {
        (self.volatile, self.nonvolatile)
    }

    /// The kind of frame `pfn`, if either heap manages it.
    #[must_use]
    pub fn kind_of(&self, pfn: Mfn) -> Option<MemKind> {
        self.volatile
            .kind_of(pfn)
            .or_else(|| self.nonvolatile.kind_of(pfn))
    }

    /// Adds `range` to the heap of `kind`; no frame of it may be managed by
    /// the other heap.
    pub fn add(&mut self, kind: MemKind, range: MfnRange) -> Result<(), HeapsAddError> {
        let (this, other) = match kind {
            MemKind::Volatile => (&mut self.volatile as &mut dyn AddTo, &self.nonvolatile),
            MemKind::NonVolatile => (&mut self.nonvolatile as &mut dyn AddTo, &self.volatile),
        };
        if let Some(pfn) = other.first_managed_in(range) {
            return Err(HeapsAddError::OtherKind {
                pfn,
                kind: other.kind(),
            });
        }
        Ok(this.add_range(range)?)
    }

    /// Allocates a block of `order` from the heap of `kind`.
    pub fn alloc(
        &mut self,
        kind: MemKind,
        order: Order,
        constraints: Constraints,
    ) -> Result<Block, AllocError> {
        match kind {
            MemKind::Volatile => self.volatile.alloc(order, constraints),
            MemKind::NonVolatile => self.nonvolatile.alloc(order, constraints),
        }
    }

    /// Allocates the largest block of at most `order` from the heap of
    /// `kind`; see [`Heap::alloc_at_most`].
    pub fn alloc_at_most(
        &mut self,
        kind: MemKind,
        order: Order,
        constraints: Constraints,
    ) -> Result<Block, AllocError> {
        match kind {
            MemKind::Volatile => self.volatile.alloc_at_most(order, constraints),
            MemKind::NonVolatile => self.nonvolatile.alloc_at_most(order, constraints),
        }
    }

    /// Frees a block to whichever heap manages its first frame; returns that
    /// heap's kind.
    pub fn free(&mut self, pfn: Mfn, order: Order) -> Result<MemKind, FreeError> {
        match self.kind_of(pfn) {
            Some(MemKind::Volatile) => self.volatile.free(pfn, order).map(|()| MemKind::Volatile),
            Some(MemKind::NonVolatile) => self
                .nonvolatile
                .free(pfn, order)
                .map(|()| MemKind::NonVolatile),
            None => Err(FreeError::NotManaged { pfn }),
        }
    }

    /// Claims the block of `order` at `pfn` in whichever heap manages `pfn`.
    pub fn claim(&mut self, pfn: Mfn, order: Order) -> Result<(MemKind, Block), ClaimError> {
        match self.kind_of(pfn) {
            Some(MemKind::Volatile) => self
                .volatile
                .claim(pfn, order)
                .map(|b| (MemKind::Volatile, b)),
            Some(MemKind::NonVolatile) => self
                .nonvolatile
                .claim(pfn, order)
                .map(|b| (MemKind::NonVolatile, b)),
            None => Err(ClaimError::NotManaged { pfn }),
        }
    }

    /// The heap that manages `pfn`, for any other operation.
    pub fn heap_of(&mut self, pfn: Mfn) -> Result<(MemKind, HeapRef<'_, 'v, 'n>), UnknownFrame> {
        match self.kind_of(pfn) {
            Some(MemKind::Volatile) => {
                Ok((MemKind::Volatile, HeapRef::Volatile(&mut self.volatile)))
            }
            Some(MemKind::NonVolatile) => Ok((
                MemKind::NonVolatile,
                HeapRef::NonVolatile(&mut self.nonvolatile),
            )),
            None => Err(UnknownFrame { pfn }),
        }
    }
}

/// A mutable borrow of one heap of a [`Heaps`].
#[derive(Debug)]
pub enum HeapRef<'a, 'v, 'n> {
    /// The volatile heap.
    Volatile(&'a mut Heap<'v>),
    /// The non-volatile heap.
    NonVolatile(&'a mut Heap<'n>),
}

/// The two heaps have different lifetimes; this lets `add` pick one.
trait AddTo {
    fn add_range(&mut self, range: MfnRange) -> Result<(), AddError>;
}

impl AddTo for Heap<'_> {
    fn add_range(&mut self, range: MfnRange) -> Result<(), AddError> {
        self.add(range)
    }
}

impl Heap<'_> {
    /// The first frame of `range` this heap manages.
    #[must_use]
    pub fn first_managed_in(&self, range: MfnRange) -> Option<Mfn> {
        let span = self.span();
        let start = range.start().max(span.start());
        let end = range.end().min(span.end());
        if start >= end {
            return None;
        }
        self.bits
            .first_managed(start.get(), end.get())
            .and_then(Mfn::new)
    }
}

fn first_shared(a: &Heap<'_>, b: &Heap<'_>) -> Option<Mfn> {
    let mut f = a.span().start();
    let end = a.span().end();
    while f < end {
        let pfn = a.first_managed_in(MfnRange::new(f, end)?)?;
        if b.manages(pfn) {
            return Some(pfn);
        }
        f = pfn.checked_add(1)?;
    }
    None
}
