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
//!
//! A stream of frees (a CPU releasing memory: the cache found full twice
//! with no allocation between) is passed on to the heap in batches instead:
//! the double-free filter costs about as much as the heap's own free of a
//! frame in a batch, and frames that are only passing through are never
//! handed out again, so they need no filter. A frame freed twice within
//! such a stream is refused when the two frees reach the heap (at once if
//! the second directly follows the first); the next allocation ends the
//! stream by flushing it.

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
/// span and is not already in this cache (but for a stream of frees, see
/// [`FrameCache::free`]). Everything else (the frame was never allocated,
/// or was freed into another CPU's cache too) is found when the cache
/// flushes it to the heap, which refuses it with a [`FreeError`]: that
/// error is returned by the call that flushed (or, for a flush an
/// allocation made, by the next free or drain), the frame is dropped from
/// the cache, and the heap is unchanged. A frame is never handed out while
/// the cache also holds it. Use the heap directly where every free must be
/// checked at once.
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
    /// [`OVERFLOWED`] when a free found the cache full since the last
    /// allocation; [`PASSING`] while the cache passes a stream of frees on
    /// to the heap: its frames are then not in the filter and are never
    /// handed out (see [`FrameCache::free`]). One byte, so an allocation
    /// checks both with one read.
    mode: u8,
    /// A refusal found by a flush an allocation made, for the next free or
    /// drain to return.
    refused: Option<FreeError>,
}

/// [`FrameCache`]'s modes.
const NORMAL: u8 = 0;
const OVERFLOWED: u8 = 1;
const PASSING: u8 = 2;

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
            mode: NORMAL,
            refused: None,
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
        self.buckets[bucket(pfn)] != 0 && self.scan(pfn)
    }

    /// Whether `pfn` is among the cached frames; out of line, so the free
    /// that usually needs no scan stays small enough to inline.
    #[inline(never)]
    fn scan(&self, pfn: u64) -> bool {
        self.frames[..self.len].contains(&pfn)
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
        if self.mode != NORMAL {
            self.stop_passing(heap);
        }
        if self.len == 0 {
            self.refill(heap)?;
        }
        self.len -= 1;
        let pfn = self.frames[self.len];
        self.buckets[bucket(pfn)] -= 1;
        Ok(Mfn::new(pfn).unwrap_or(Mfn::MAX))
    }

    /// Ends a stream of frees before an allocation: the frames passed on so
    /// far go to the heap, which checks them, so none of them is handed out
    /// from here; a refusal waits for the next free or drain.
    #[cold]
    #[inline(never)]
    fn stop_passing(&mut self, heap: &LockedHeap<'_>) {
        let was = core::mem::replace(&mut self.mode, NORMAL);
        if was != PASSING {
            return;
        }
        self.mode = PASSING;
        let flushed = self.flush(heap, self.len);
        self.mode = NORMAL;
        if let Err(e) = flushed {
            self.refused.get_or_insert(e);
        }
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
    ///
    /// A cache that a free finds full twice with no allocation between is
    /// passed a stream of frees (a CPU releasing memory): it flushes all its
    /// frames and passes the frees that follow on to the heap in batches of
    /// its capacity, without the double-free filter, until the next
    /// allocation flushes what it holds. Those frames are never handed out
    /// from the cache, and the heap refuses a frame freed twice among them
    /// when they reach it (the error comes from the call that flushed, or
    /// after an allocation flushed them, from the next free or drain); a
    /// frame freed twice in a row is refused at once.
    // Always inlined: out of line, the call and the registers it saves cost
    // as much as the cached free itself.
    #[inline(always)]
    pub fn free(&mut self, heap: &LockedHeap<'_>, pfn: Mfn) -> Result<(), FreeError> {
        if !self.span.contains(pfn) {
            return Err(FreeError::NotManaged { pfn });
        }
        if self.len == N || self.refused.is_some() {
            return self.free_full(heap, pfn);
        }
        let p = pfn.get();
        if self.mode == PASSING {
            if self.frames.get(self.len.wrapping_sub(1)) == Some(&p) {
                return Err(FreeError::AlreadyFree { pfn });
            }
            self.frames[self.len] = p;
            self.len += 1;
            return Ok(());
        }
        if self.holds(p) {
            return Err(FreeError::AlreadyFree { pfn });
        }
        self.push(p);
        Ok(())
    }

    /// [`FrameCache::free`] into a full cache (or one with a refusal to
    /// return, or none at all).
    #[inline(never)]
    fn free_full(&mut self, heap: &LockedHeap<'_>, pfn: Mfn) -> Result<(), FreeError> {
        if N == 0 {
            return heap.lock().free(pfn, Order::SIZE_4K);
        }
        let p = pfn.get();
        let repeated = if self.mode == PASSING {
            self.len != 0 && self.frames[self.len - 1] == p
        } else {
            self.holds(p)
        };
        if repeated {
            return Err(FreeError::AlreadyFree { pfn });
        }
        let flushed = if self.len < N {
            Ok(())
        } else if self.mode == PASSING {
            self.flush(heap, N)
        } else {
            // The second overflow since an allocation starts a stream.
            let stream = self.mode == OVERFLOWED;
            let flushed = self.flush(heap, if stream { N } else { N / 2 });
            self.mode = if stream { PASSING } else { OVERFLOWED };
            flushed
        };
        if self.mode == PASSING {
            self.frames[self.len] = p;
            self.len += 1;
        } else {
            self.push(p);
        }
        self.refusal(flushed)
    }

    /// `flushed`, or if it is not an error, the refusal an allocation's
    /// flush left.
    #[inline(always)]
    fn refusal(&mut self, flushed: Result<(), FreeError>) -> Result<(), FreeError> {
        if self.refused.is_some() && flushed.is_ok() {
            if let Some(e) = self.refused.take() {
                return Err(e);
            }
        }
        flushed
    }

    /// Returns every cached frame to the heap; the first refusal, if any, is
    /// returned after all the others were freed.
    pub fn drain(&mut self, heap: &LockedHeap<'_>) -> Result<(), FreeError> {
        let flushed = self.flush(heap, self.len);
        self.mode = NORMAL;
        self.refusal(flushed)
    }

    /// Frees the `count` oldest cached frames to the heap under one lock.
    /// Not `#[cold]`, for the reason given at [`FrameCache::refill`]: every
    /// free reaches the heap from here.
    #[inline(never)]
    fn flush(&mut self, heap: &LockedHeap<'_>, count: usize) -> Result<(), FreeError> {
        let count = count.min(self.len);
        if self.mode == PASSING {
            // No frame is in the filter.
        } else if count == self.len {
            self.buckets.fill(0);
        } else {
            for &f in &self.frames[..count] {
                self.buckets[bucket(f)] -= 1;
            }
        }
        let first_error = heap.lock().free_batch(&self.frames[..count]);
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

    /// The filter counts exactly the cached frames, but while the cache
    /// passes frees on, when it counts none.
    fn consistent<const N: usize>(cache: &FrameCache<N>, span: MfnRange) {
        let mut counts = [0u16; BUCKETS];
        let passing = cache.mode == PASSING;
        if !passing {
            for &f in &cache.frames[..cache.len] {
                counts[bucket(f)] += 1;
            }
        }
        assert_eq!(counts, cache.buckets);
        for f in span.start().get()..span.end().get() {
            let cached = cache.frames[..cache.len].contains(&f);
            assert_eq!(cache.holds(f), cached && !passing);
        }
    }

    /// What a cache may do with frames freed twice: refuse the second free
    /// at once, or when the two reach the heap (then from the call that
    /// flushed, or after an allocation flushed them, from the next free or
    /// drain); never hand the frame out while it is held, never lose or
    /// duplicate one. Double frees are made while the first free is still
    /// in the cache, in every mode (a stream of frees passes the cache
    /// after two overflows with no allocation between).
    fn run_with_double_frees(ops: &[(u8, u16)]) -> Result<(), TestCaseError> {
        let span = MfnRange::from_numbers(0x4000, 0x4400).unwrap();
        let mut buf = std::vec![0u8; crate::metadata_bytes(span, Order::MAX) + 8];
        let mut heap = Heap::new(MemKind::Volatile, span, Order::MAX, &mut buf).unwrap();
        heap.add(span).unwrap();
        let locked = LockedHeap::new(heap);
        let mut cache = FrameCache::<16>::new(&locked);
        let mut held: Vec<Mfn> = Vec::new();
        let (mut doubles, mut refusals) = (0usize, 0usize);
        let mut count = |r: Result<(), FreeError>| -> Result<(), TestCaseError> {
            match r {
                Ok(()) => {}
                Err(FreeError::AlreadyFree { .. }) => refusals += 1,
                Err(e) => prop_assert!(false, "unexpected refusal {e}"),
            }
            Ok(())
        };
        for &(op, pick) in ops {
            // Runs of up to 47 frees or allocations, so streams start.
            let run = usize::from(pick) % 48;
            match op % 3 {
                0 => {
                    for _ in 0..run {
                        let Some(p) = held.pop() else { break };
                        count(cache.free(&locked, p))?;
                    }
                }
                1 if cache.len > 0 => {
                    let p = cache.frames[usize::from(pick) % cache.len];
                    doubles += 1;
                    count(cache.free(&locked, Mfn::new(p).unwrap()))?;
                }
                _ => {
                    for _ in 0..run {
                        let Ok(p) = cache.alloc(&locked) else { break };
                        prop_assert!(!held.contains(&p), "{p} handed out twice");
                        prop_assert_eq!(locked.lock().frame_state(p), crate::FrameState::Allocated);
                        held.push(p);
                    }
                }
            }
            consistent(&cache, span);
        }
        for p in held {
            count(cache.free(&locked, p))?;
        }
        count(cache.drain(&locked))?;
        consistent(&cache, span);
        prop_assert!(refusals <= doubles);
        prop_assert_eq!(refusals > 0, doubles > 0);
        prop_assert_eq!(locked.free_frames(), span.len());
        locked.lock().check_invariants().unwrap();
        Ok(())
    }

    proptest! {
        #[test]
        fn double_frees_are_refused_and_never_handed_out(
            ops in prop::collection::vec(any::<(u8, u16)>(), 1..300)
        ) {
            run_with_double_frees(&ops)?;
        }

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
