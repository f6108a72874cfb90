//! Per-CPU caches of single frames in front of a shared [`LockedHeap`], as
//! Linux keeps per-CPU page lists: most order-0 allocations and frees touch
//! only the CPU's own cache, and the lock is taken once per batch.
//!
//! A cache is owned by one CPU (it is used through `&mut`), so it needs no
//! synchronisation of its own; only its refills and flushes take the heap's
//! lock. The heap counts cached frames as allocated.
//!
//! What a free into a cache checks at once: that the frame lies in the
//! heap's span and is not already in this cache (a double free into the
//! same cache). Everything else (the frame was never allocated, or was
//! freed into another CPU's cache too) is found when the cache flushes the
//! frame to the heap, which refuses it with a [`FreeError`]: the error is
//! returned by the call that flushed, the frame is dropped from the cache,
//! and the heap is unchanged. Use the heap directly where every free must
//! be checked at once.

use core::fmt;

use crate::MfnRange;
use crate::error::{AllocError, FreeError};
use crate::locked::LockedHeap;
use crate::range::Constraints;
use crate::{Mfn, Order};

/// A cache of up to `N` single frames for one CPU, in front of a
/// [`LockedHeap`]: refills and flushes move half the capacity under one
/// lock, so most allocations and frees of one frame take no lock.
///
/// A free into the cache checks at once that the frame lies in the heap's
/// span and is not already in this cache. Everything else (the frame was
/// never allocated, or was freed into another CPU's cache too) is found
/// when the cache flushes it to the heap, which refuses it with a
/// [`FreeError`]: that error is returned by the call that flushed, the
/// frame is dropped from the cache, and the heap is unchanged. Use the heap
/// directly where every free must be checked at once.
pub struct FrameCache<const N: usize> {
    frames: [u64; N],
    len: usize,
    span: MfnRange,
}

impl<const N: usize> fmt::Debug for FrameCache<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameCache")
            .field("capacity", &N)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> FrameCache<N> {
    /// An empty cache for `heap`. A refill or flush moves half the capacity.
    pub fn new(heap: &LockedHeap<'_>) -> Self {
        Self {
            frames: [0; N],
            len: 0,
            span: heap.lock().span(),
        }
    }

    /// Frames in the cache.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no frame.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Allocates one frame: from the cache, or after refilling it with up to
    /// half its capacity under one lock.
    #[inline]
    pub fn alloc(&mut self, heap: &LockedHeap<'_>) -> Result<Mfn, AllocError> {
        if N == 0 {
            return heap
                .alloc(Order::SIZE_4K, Constraints::ANY)
                .map(|b| b.start());
        }
        if self.len == 0 {
            self.refill(heap)?;
        }
        self.len -= 1;
        Ok(Mfn::new(self.frames[self.len]).unwrap_or(Mfn::MAX))
    }

    #[cold]
    fn refill(&mut self, heap: &LockedHeap<'_>) -> Result<(), AllocError> {
        let mut heap = heap.lock();
        let want = (N / 2).max(1).min(N);
        while self.len < want {
            match heap.alloc(Order::SIZE_4K, Constraints::ANY) {
                Ok(block) => {
                    self.frames[self.len] = block.start().get();
                    self.len += 1;
                }
                Err(e) if self.len == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Frees one frame into the cache, flushing half the cache to the heap
    /// first when it is full; see [`FrameCache`] for what is checked when.
    #[inline]
    pub fn free(&mut self, heap: &LockedHeap<'_>, pfn: Mfn) -> Result<(), FreeError> {
        if !self.span.contains(pfn) {
            return Err(FreeError::NotManaged { pfn });
        }
        if self.frames[..self.len].contains(&pfn.get()) {
            return Err(FreeError::AlreadyFree { pfn });
        }
        let flushed = if self.len == N {
            self.flush(heap, N / 2)
        } else {
            Ok(())
        };
        if self.len < N {
            self.frames[self.len] = pfn.get();
            self.len += 1;
        } else {
            // N == 0: no room at all; free straight to the heap.
            heap.lock().free(pfn, Order::SIZE_4K)?;
        }
        flushed
    }

    /// Returns every cached frame to the heap; the first refusal, if any, is
    /// returned after all the others were freed.
    pub fn drain(&mut self, heap: &LockedHeap<'_>) -> Result<(), FreeError> {
        self.flush(heap, self.len)
    }

    /// Frees the `count` oldest cached frames to the heap under one lock.
    #[cold]
    fn flush(&mut self, heap: &LockedHeap<'_>, count: usize) -> Result<(), FreeError> {
        let count = count.min(self.len);
        let mut first_error = Ok(());
        {
            let mut heap = heap.lock();
            for &f in &self.frames[..count] {
                if let Err(e) = heap.free(Mfn::new(f).unwrap_or(Mfn::MAX), Order::SIZE_4K) {
                    if first_error.is_ok() {
                        first_error = Err(e);
                    }
                }
            }
        }
        self.frames.copy_within(count..self.len, 0);
        self.len -= count;
        first_error
    }
}
