//! A heap split by address into shards, each a [`Heap`] behind a lock of
//! its own, so CPUs that allocate from different shards never touch the
//! same lock, counters or bitmap words.
//!
//! Shards are aligned runs of whole blocks of the largest order, so every
//! block a buddy heap could form lies inside one shard: a free finds its
//! shard from the frame number alone (one shift), and splitting changes no
//! allocation's order. An allocation tries the caller's shard first and
//! then every other one in turn, so it fails only when no shard has a
//! fitting block, that is, when one heap over the whole span would fail
//! too; which block it takes follows the heap's policy within the shard
//! that serves it.

use crate::error::{AddError, AllocError, ClaimError, FreeError, NewError};
use crate::layout::Layout;
use crate::locked::LockedHeap;
use crate::range::{Constraints, covers};
use crate::{Block, Heap, MemKind, Mfn, MfnRange, Order};

/// Where the shards of a span lie: shard `i` holds the span's frames in
/// `first + (i << shift) .. first + ((i + 1) << shift)`.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    first: u64,
    shift: u32,
    used: usize,
}

impl Geometry {
    /// Up to `n` shards of equal power-of-two size (at least a block of
    /// `max_order`) over the non-empty `span`.
    const fn of(span: MfnRange, max_order: Order, n: usize) -> Geometry {
        let (base, end) = (span.start().get(), span.end().get());
        let max = max_order.get() as u32;
        let first = base & !((1u64 << max) - 1);
        let blocks = (end - first).div_ceil(1 << max);
        let per = blocks.div_ceil(if n == 0 { 1 } else { n as u64 });
        let shift = max + per.next_power_of_two().trailing_zeros();
        let used = (end - first).div_ceil(1 << shift) as usize;
        Geometry { first, shift, used }
    }

    /// Shard `i`'s part of `span` (empty when `i` is past the last shard).
    const fn part(&self, span: MfnRange, i: usize) -> (u64, u64) {
        let (base, end) = (span.start().get(), span.end().get());
        let lo = self.first + ((i as u64) << self.shift);
        let hi = lo + (1 << self.shift);
        let lo = if lo > base { lo } else { base };
        let hi = if hi < end { hi } else { end };
        if lo < hi { (lo, hi) } else { (lo, lo) }
    }
}

/// Up to `N` [`LockedHeap`]s over consecutive parts of one span, with one
/// interface: allocations name the calling CPU, whose shard they try first;
/// frees and claims go to the shard that holds the frame.
///
/// Each shard is a whole heap with every guarantee of [`Heap`] within its
/// part (typed errors for wrong frees, exact orders, zone constraints); an
/// allocation fails only if no shard can serve it.
pub struct ShardedHeap<'m, const N: usize> {
    shards: [Option<LockedHeap<'m>>; N],
    geometry: Geometry,
    span: MfnRange,
}

impl<const N: usize> core::fmt::Debug for ShardedHeap<'_, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShardedHeap")
            .field("span", &self.span)
            .field("shards", &self.geometry.used)
            .finish_non_exhaustive()
    }
}

impl<'m, const N: usize> ShardedHeap<'m, N> {
    /// Bytes of metadata a sharded heap over `span` with blocks up to
    /// `max_order` needs, for an 8-byte-aligned buffer (up to 7 more
    /// otherwise): the sum of its shards' [`metadata_bytes`](crate::metadata_bytes).
    #[must_use]
    pub const fn metadata_bytes(span: MfnRange, max_order: Order) -> usize {
        if span.is_empty() {
            return 0;
        }
        let g = Geometry::of(span, max_order, N);
        let mut bytes = 0;
        let mut i = 0;
        while i < g.used {
            let (lo, hi) = g.part(span, i);
            if let Some(part) = MfnRange::from_numbers(lo, hi) {
                bytes += Layout::compute(part, max_order).words * 8;
            }
            i += 1;
        }
        bytes
    }

    /// An empty sharded heap of `kind` over `span`, with blocks of at most
    /// `max_order`, its shards' metadata carved from `metadata` (see
    /// [`ShardedHeap::metadata_bytes`]).
    pub fn new(
        kind: MemKind,
        span: MfnRange,
        max_order: Order,
        metadata: &'m mut [u8],
    ) -> Result<Self, NewError> {
        if span.is_empty() {
            return Err(NewError::EmptySpan);
        }
        let needed = Self::metadata_bytes(span, max_order);
        let skip = metadata.as_ptr().align_offset(8).min(metadata.len());
        let available = metadata.len() - skip;
        if available < needed {
            return Err(NewError::TooSmall { needed, available });
        }
        let geometry = Geometry::of(span, max_order, N);
        let mut rest = &mut metadata[skip..];
        let mut shards = core::array::from_fn(|_| None);
        for (i, slot) in shards.iter_mut().enumerate().take(geometry.used) {
            let (lo, hi) = geometry.part(span, i);
            let Some(part) = MfnRange::from_numbers(lo, hi) else {
                continue;
            };
            let (mine, others) =
                core::mem::take(&mut rest).split_at_mut(crate::metadata_bytes(part, max_order));
            rest = others;
            *slot = Some(LockedHeap::new(Heap::new(kind, part, max_order, mine)?));
        }
        Ok(Self {
            shards,
            geometry,
            span,
        })
    }

    /// The frames this heap can manage.
    #[must_use]
    pub fn span(&self) -> MfnRange {
        self.span
    }

    /// The shards, in address order (`None` where the span has no part).
    #[must_use]
    pub fn shards(&self) -> &[Option<LockedHeap<'m>>] {
        &self.shards[..self.geometry.used.min(N)]
    }

    /// The shard that holds frame `pfn`, if any.
    #[inline]
    fn shard_of(&self, pfn: Mfn) -> Option<&LockedHeap<'m>> {
        let i = pfn.get().checked_sub(self.geometry.first)? >> self.geometry.shift;
        self.shards.get(usize::try_from(i).ok()?)?.as_ref()
    }

    /// Adds the frames of `range` as free memory, like [`Heap::add`]: all
    /// or nothing, checked under every shard's lock at once.
    pub fn add(&self, range: MfnRange) -> Result<(), AddError> {
        if !covers(self.span, range) {
            return Err(AddError::OutsideSpan {
                range,
                span: self.span,
            });
        }
        // Locks are taken in address order, so two adds cannot deadlock.
        let mut guards: [_; N] = core::array::from_fn(|i| {
            let part = self.part_of(range, i)?;
            Some((self.shards[i].as_ref()?.lock(), part))
        });
        for (heap, part) in guards.iter().flatten() {
            let (s, e) = (part.start().get(), part.end().get());
            if let Some(f) = heap.bits.first_managed(s, e) {
                return Err(AddError::AlreadyManaged {
                    pfn: Mfn::new(f).unwrap_or(Mfn::MAX),
                });
            }
        }
        for (heap, part) in guards.iter_mut().flatten() {
            heap.add(*part)?;
        }
        Ok(())
    }

    /// Shard `i`'s part of `range`, if not empty.
    fn part_of(&self, range: MfnRange, i: usize) -> Option<MfnRange> {
        let (lo, hi) = self.geometry.part(self.span, i);
        let lo = lo.max(range.start().get());
        let hi = hi.min(range.end().get());
        (lo < hi).then(|| MfnRange::from_numbers(lo, hi)).flatten()
    }

    /// Allocates a block of `order` whose frames satisfy `constraints`, as
    /// [`Heap::alloc`] does, from the shard of CPU `cpu` (any number: it is
    /// taken modulo the shards) or, if that one has none, the next shard
    /// that has one.
    #[inline]
    pub fn alloc(
        &self,
        cpu: usize,
        order: Order,
        constraints: Constraints,
    ) -> Result<Block, AllocError> {
        let used = self.geometry.used.min(N);
        let own = cpu % used.max(1);
        let mut error = AllocError::OutOfMemory { order, constraints };
        for i in (own..used).chain(0..own) {
            if let Some(shard) = &self.shards[i] {
                match shard.alloc(order, constraints) {
                    Ok(block) => return Ok(block),
                    Err(e) => error = e,
                }
            }
        }
        Err(error)
    }

    /// Frees the allocated block of `order` at `pfn`, as [`Heap::free`]
    /// does, in the shard that holds it.
    #[inline]
    pub fn free(&self, pfn: Mfn, order: Order) -> Result<(), FreeError> {
        match self.shard_of(pfn) {
            Some(shard) => shard.free(pfn, order),
            None => Err(FreeError::NotManaged { pfn }),
        }
    }

    /// Frees a [`Block`] returned by an allocation or claim.
    #[inline]
    pub fn free_block(&self, block: Block) -> Result<(), FreeError> {
        self.free(block.start(), block.order())
    }

    /// Allocates exactly the free block of `order` at `pfn`, as
    /// [`Heap::claim`] does.
    pub fn claim(&self, pfn: Mfn, order: Order) -> Result<Block, ClaimError> {
        match self.shard_of(pfn) {
            Some(shard) => shard.claim(pfn, order),
            None => Err(ClaimError::NotManaged { pfn }),
        }
    }

    /// Free frames in all shards (each counted under its lock).
    pub fn free_frames(&self) -> u64 {
        self.shards()
            .iter()
            .flatten()
            .map(LockedHeap::free_frames)
            .sum()
    }
}
