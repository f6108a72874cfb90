//! Lazy metadata: blocks of the largest order whose per-frame metadata is
//! not written until something needs it.
//!
//! Initialising every plane word and free bitmap of a large span costs
//! about 3 bits written per frame (some 100 MiB for 1 TiB), and adding the
//! span as free memory writes the planes again. But a block of the largest
//! order that is wholly unmanaged, or wholly one free block, has metadata
//! that follows from one bit of F_max: its planes are all zero, or a free
//! start followed by interior frames; every smaller order's bitmap is zero
//! over it. So such a block, while nothing has touched it, is "lazy": its
//! bit in the lazy bitmap is set and its words may hold anything, except
//! its first plane word pair, which is always written (the neighbouring
//! block's paths read a frame past their own block's end, and find it
//! there). The first change inside the block writes its words
//! ([`Bits::materialise`]), once: a block never becomes lazy again.
//!
//! Which words are lazy: the plane words of the block but its first pair,
//! and for each order k < largest whose bitmap words each cover at most one
//! block (k + 6 ≤ largest) the words over the block. Summaries, the larger
//! orders' bitmaps (a word there is shared by several blocks) and F_max are
//! always written. Summaries over lazy words are zero, as the words are
//! (implied), so searches, which only read a bitmap word under a set summary
//! bit, never read one; the paths that read words at given places (counts,
//! bounded searches, the checker) ask [`Bits::lazy_word`] first, and every
//! operation on given frames makes their block real first, or answers from
//! the implied state.
//!
//! So `Heap::new` writes about 1/32 bit per frame and adding a range of
//! whole blocks of the largest order costs one bit and one word pair per
//! block.

use crate::bits::{Bits, FREE, INTERIOR, UNMANAGED, bit};

impl Bits<'_> {
    /// Zeroes the metadata that is not lazy and marks the blocks of
    /// `l.lazy` lazy (unmanaged: their first word pairs are zeroed too).
    pub(crate) fn init(&mut self) {
        let (lo, hi) = self.l.lazy;
        if lo >= hi {
            self.w.fill(0);
            return;
        }
        let max = usize::from(self.l.max_order);
        let (a, b) = (lo << max, hi << max);
        // The lazy words, in address order: the planes, then each order's
        // bitmap (its summaries lie between them).
        let mut from = 0;
        let mut skip = |w: &mut [u64], s: usize, e: usize| {
            w[from..s].fill(0);
            from = e;
        };
        let (pa, pb) = (self.pair(a), self.pair(b));
        skip(self.w, pa, pb);
        for k in 1..max {
            if k + 6 <= max {
                let off = self.l.fbase[k];
                let (s, e) = (
                    off.wrapping_add((a >> (k + 6)) as usize),
                    off.wrapping_add((b >> (k + 6)) as usize),
                );
                skip(self.w, s, e);
            }
        }
        self.w[from..].fill(0);
        self.lazy_left = hi - lo;
        for slot in lo..hi {
            let i = self.pair(slot << max);
            self.w[i] = 0;
            self.w[i + 1] = 0;
            self.w[self.l.lbase.wrapping_add((slot >> 6) as usize)] |= bit(slot);
        }
    }

    /// Whether the block of the largest order holding in-span frame `pfn`
    /// is lazy.
    #[inline(always)]
    pub(crate) fn is_lazy(&self, pfn: u64) -> bool {
        if self.lazy_left == 0 {
            return false;
        }
        let max = usize::from(self.l.max_order);
        let i = self.l.lbase.wrapping_add((pfn >> (max + 6)) as usize);
        self.w[i] & bit(pfn >> max) != 0
    }

    /// Makes the block holding in-span frame `pfn` real, if it is lazy.
    #[inline(always)]
    pub(crate) fn materialise_at(&mut self, pfn: u64) {
        if self.is_lazy(pfn) {
            self.materialise(pfn);
        }
    }

    /// Whether a block holding a frame of in-span `start..end` is lazy.
    pub(crate) fn any_lazy(&self, start: u64, end: u64) -> bool {
        let (lo, hi) = self.l.lazy;
        let max = self.l.max_order;
        let first = (start >> max).max(lo);
        let last = end.div_ceil(1 << max).min(hi);
        (first..last).any(|slot| self.is_lazy(slot << max))
    }

    /// Makes every block holding a frame of in-span `start..end` real.
    pub(crate) fn materialise_range(&mut self, start: u64, end: u64) {
        let (lo, hi) = self.l.lazy;
        let max = self.l.max_order;
        let first = (start >> max).max(lo);
        let last = end.div_ceil(1 << max).min(hi);
        for slot in first..last {
            self.materialise_at(slot << max);
        }
    }

    /// Writes the lazy words of the lazy block holding `pfn` from its
    /// implied state and clears its lazy bit. Summaries stay right: the
    /// words below them were zero before (implied) and after.
    #[cold]
    #[inline(never)]
    pub(crate) fn materialise(&mut self, pfn: u64) {
        let max = usize::from(self.l.max_order);
        let s = pfn >> max << max;
        let e = s + (1 << max);
        self.w[self.l.lbase.wrapping_add((pfn >> (max + 6)) as usize)] &= !bit(pfn >> max);
        self.lazy_left -= 1;
        let p = if self.is_free_in_span(max, s) {
            u64::MAX
        } else {
            0
        };
        let (first, last) = (self.pair(s) + 2, self.pair(e));
        let planes = &mut self.w[first..last];
        if p == 0 {
            planes.fill(0);
        } else {
            for pair in planes.chunks_exact_mut(2) {
                pair[0] = p;
                pair[1] = 0;
            }
        }
        for k in 1..max {
            if k + 6 <= max {
                let off = self.l.fbase[k];
                let (a, b) = (
                    off.wrapping_add((s >> (k + 6)) as usize),
                    off.wrapping_add((e >> (k + 6)) as usize),
                );
                self.w[a..b].fill(0);
            }
        }
    }

    /// Writes lazy, unmanaged block `pfn` (of the largest order) as one
    /// free block: its first word pair and its F_max bit. The caller counts
    /// it.
    pub(crate) fn add_lazy(&mut self, pfn: u64) {
        let i = self.pair(pfn);
        self.w[i] = u64::MAX;
        self.w[i + 1] = 1;
        let max = usize::from(self.l.max_order);
        self.view().set_fbit(max, pfn);
    }

    /// The state code of in-span frame `pfn`, lazy block or not.
    #[inline]
    pub(crate) fn code_any(&self, pfn: u64) -> u64 {
        if !self.is_lazy(pfn) {
            return self.code(pfn);
        }
        let max = usize::from(self.l.max_order);
        let s = pfn >> max << max;
        match (self.is_free_in_span(max, s), pfn == s) {
            (false, _) => UNMANAGED,
            (true, true) => FREE,
            (true, false) => INTERIOR,
        }
    }

    /// Whether level-0 word `idx` of order `k` (for order 0: word pair
    /// `idx` of the planes) lies in a lazy block, so is zero whatever it
    /// holds.
    #[inline]
    pub(crate) fn lazy_word(&self, k: usize, idx: usize) -> bool {
        let (lo, hi) = self.l.lazy;
        let max = usize::from(self.l.max_order);
        if lo >= hi || k + 6 > max {
            return false;
        }
        let pfn = (self.l.trees[k].origin + idx as u64) << (k + 6);
        let slot = pfn >> max;
        slot >= lo && slot < hi && self.is_lazy(pfn)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Constraints, Heap, MemKind, MfnRange, Order};

    /// A heap over 64 blocks of order 6 at frames 0x1000.., with stray
    /// bytes in its buffer, as a buffer that was never zeroed has.
    fn with_heap(f: impl FnOnce(&mut Heap<'_>)) {
        let span = MfnRange::from_numbers(0x1000 - 3, 0x2000 + 5).unwrap();
        let order = Order::new(6).unwrap();
        let mut buf = vec![0xa5u8; crate::metadata_bytes(span, order) + 8];
        let mut heap = Heap::new(MemKind::Volatile, span, order, &mut buf).unwrap();
        heap.check_invariants().unwrap();
        f(&mut heap);
        heap.check_invariants().unwrap();
    }

    fn range(s: u64, e: u64) -> MfnRange {
        MfnRange::from_numbers(s, e).unwrap()
    }

    #[test]
    fn whole_blocks_are_added_without_writing_their_frames() {
        with_heap(|heap| {
            heap.add(range(0x1000, 0x2000)).unwrap();
            assert!(heap.bits.is_lazy(0x1000) && heap.bits.is_lazy(0x1fc0));
            assert_eq!(heap.free_frames(), 0x1000);
            assert_eq!(heap.free_blocks(Order::new(6).unwrap()), 64);
            assert_eq!(heap.free_blocks_iter().count(), 64);
            assert_eq!(
                heap.frame_state(crate::Mfn::new(0x1234).unwrap()),
                crate::FrameState::Free
            );
            let b = heap
                .free_block_at(crate::Mfn::new(0x1234).unwrap())
                .unwrap();
            assert_eq!((b.start().get(), b.order().get()), (0x1200, 6));
            assert!(heap.add(range(0x1fff, 0x2002)).is_err());
        });
    }

    #[test]
    fn the_first_split_writes_the_block() {
        with_heap(|heap| {
            heap.add(range(0x1000, 0x2000)).unwrap();
            let b = heap
                .alloc(Order::new(0).unwrap(), Constraints::ANY)
                .unwrap();
            assert_eq!(b.start().get(), 0x1fff);
            assert!(!heap.bits.is_lazy(0x1fc0) && heap.bits.is_lazy(0x1f80));
            heap.check_invariants().unwrap();
            heap.free_block(b).unwrap();
            assert_eq!(heap.free_frames(), 0x1000);
        });
    }

    #[test]
    fn operations_on_lazy_blocks_see_their_implied_state() {
        with_heap(|heap| {
            let f = |n| crate::Mfn::new(n).unwrap();
            // Unmanaged: a free is refused, a claim too.
            assert!(heap.free(f(0x1040), Order::new(0).unwrap()).is_err());
            assert!(heap.claim(f(0x1080), Order::new(1).unwrap()).is_err());
            assert!(!heap.manages(f(0x10c0)));
            heap.add(range(0x1000, 0x1800)).unwrap();
            heap.add(range(0x1801, 0x1802)).unwrap();
            // Free: a double free is refused; a claim splits it.
            assert!(heap.free(f(0x1100), Order::new(6).unwrap()).is_err());
            assert!(heap.free(f(0x1141), Order::new(0).unwrap()).is_err());
            let c = heap.claim(f(0x1180), Order::new(2).unwrap()).unwrap();
            assert_eq!(heap.free_frames(), 0x800 + 1 - 4);
            assert_eq!(heap.reserve(range(0x1200, 0x1210)).unwrap(), 0x10);
            heap.check_invariants().unwrap();
            assert_eq!(heap.claim_range(range(0x1300, 0x1400)).unwrap(), 4);
            heap.free_range(range(0x1300, 0x1400)).unwrap();
            heap.free_block(c).unwrap();
            // The zone counts skip lazy words.
            let z = crate::Zone::new(13).unwrap();
            assert_eq!(heap.free_frames_in_zone(z), 0x800 + 1 - 0x10);
            // An allocation below a limit inside a lazy block.
            let lim = Constraints::max_zone(crate::Zone::new(12).unwrap());
            let b = heap.alloc(Order::new(3).unwrap(), lim);
            assert!(b.is_err());
            let b = heap
                .alloc_at_most(Order::new(3).unwrap(), Constraints::ANY)
                .unwrap();
            heap.free_block(b).unwrap();
        });
    }
}
