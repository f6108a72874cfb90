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
/// `N` is at most 65 535 (checked when the cache is created).
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
    /// How many cached frames fall in each bucket of [`bucket`]: a free
    /// scans the cached frames for a double free only when its bucket is
    /// occupied, so a free into a cache of 64 usually costs one counter
    /// read instead of a scan of 64 words (one free in sixteen scans when
    /// the cache is full; with 256 buckets it was one in four, which still
    /// cost a few ns per free).
    buckets: [u16; BUCKETS],
}

/// Buckets of the double-free filter.
const BUCKETS: usize = 1024;

/// The filter bucket of frame `pfn`: the top byte of a Fibonacci hash, so
/// runs of consecutive frames spread over all buckets.
#[inline(always)]
fn bucket(pfn: u64) -> usize {
    (pfn.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize
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
    /// The bucket counters count up to `N` frames.
    const FITS: () = assert!(
        N <= u16::MAX as usize,
        "a FrameCache holds at most 65535 frames"
    );

    /// An empty cache for `heap`. A refill or flush moves half the capacity.
    pub fn new(heap: &LockedHeap<'_>) -> Self {
        let () = Self::FITS;
        Self {
            frames: [0; N],
            len: 0,
            span: heap.lock().span(),
            buckets: [0; BUCKETS],
        }
    }

    /// Puts `pfn` on top of the cache, which has room.
    #[inline(always)]
    fn push(&mut self, pfn: u64) {
        self.frames[self.len] = pfn;
        self.len += 1;
        self.buckets[bucket(pfn)] += 1;
    }

    /// Whether `pfn` is in the cache.
    #[inline(always)]
    fn holds(&self, pfn: u64) -> bool {
        self.buckets[bucket(pfn)] != 0 && self.frames[..self.len].contains(&pfn)
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
        let pfn = self.frames[self.len];
        self.buckets[bucket(pfn)] -= 1;
        Ok(Mfn::new(pfn).unwrap_or(Mfn::MAX))
    }

    // Out of line, to keep the cached path small, but not `#[cold]`: every
    // frame the cache hands out comes from here, and a cold function's
    // calls to the heap's allocation are not inlined and optimised.
    #[inline(never)]
    fn refill(&mut self, heap: &LockedHeap<'_>) -> Result<(), AllocError> {
        let mut heap = heap.lock();
        let want = (N / 2).max(1).min(N);
        while self.len < want {
            match heap.alloc(Order::SIZE_4K, Constraints::ANY) {
                Ok(block) => self.push(block.start().get()),
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
        if self.holds(pfn.get()) {
            return Err(FreeError::AlreadyFree { pfn });
        }
        let flushed = if self.len == N {
            self.flush(heap, N / 2)
        } else {
            Ok(())
        };
        if self.len < N {
            self.push(pfn.get());
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
    /// Not `#[cold]`, for the reason given at [`FrameCache::refill`]: every
    /// free reaches the heap from here.
    #[inline(never)]
    fn flush(&mut self, heap: &LockedHeap<'_>, count: usize) -> Result<(), FreeError> {
        let count = count.min(self.len);
        let mut first_error = Ok(());
        {
            let mut heap = heap.lock();
            for &f in &self.frames[..count] {
                self.buckets[bucket(f)] -= 1;
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

/// The filter against a plain scan: after every operation, each bucket
/// counts exactly the cached frames that hash to it, so `holds` answers as
/// the scan would for every frame of the heap.
#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use proptest::prelude::*;

    use super::*;
    use crate::{Heap, MemKind};

    fn consistent<const N: usize>(cache: &FrameCache<N>, span: MfnRange) {
        let mut counts = [0u16; BUCKETS];
        for &f in &cache.frames[..cache.len] {
            counts[bucket(f)] += 1;
        }
        assert_eq!(counts, cache.buckets);
        for f in span.start().get()..span.end().get() {
            assert_eq!(cache.holds(f), cache.frames[..cache.len].contains(&f));
        }
    }

    proptest! {
        #[test]
        fn filter_matches_the_cached_frames(ops in prop::collection::vec(any::<(bool, u8)>(), 1..200)) {
            let span = MfnRange::from_numbers(0x4000, 0x4200).unwrap();
            let mut buf = std::vec![0u8; crate::metadata_bytes(span, Order::MAX) + 8];
            let mut heap = Heap::new(MemKind::Volatile, span, Order::MAX, &mut buf).unwrap();
            heap.add(span).unwrap();
            let locked = LockedHeap::new(heap);
            let mut cache = FrameCache::<16>::new(&locked);
            let mut held = Vec::new();
            for (alloc, pick) in ops {
                if alloc || held.is_empty() {
                    held.push(cache.alloc(&locked).unwrap());
                } else {
                    let p = held.swap_remove(usize::from(pick) % held.len());
                    cache.free(&locked, p).unwrap();
                    // A second free of the same frame is refused at once.
                    prop_assert_eq!(cache.free(&locked, p), Err(FreeError::AlreadyFree { pfn: p }));
                }
                consistent(&cache, span);
            }
            for p in held {
                cache.free(&locked, p).unwrap();
            }
            cache.drain(&locked).unwrap();
            consistent(&cache, span);
            prop_assert_eq!(locked.free_frames(), span.len());
        }
    }
}
