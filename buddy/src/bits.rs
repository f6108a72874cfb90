//! The metadata words: the two frame-state planes, the per-order free
//! bitmaps and their summaries, and every elementary change to them.
//!
//! A frame's state is two bits, P and Q (see [`crate::layout`]):
//!
//! | P | Q | state |
//! |---|---|-------|
//! | 0 | 0 | unmanaged: never added, or reserved |
//! | 1 | 0 | interior: inside a block (free or allocated), not its first frame |
//! | 0 | 1 | head: the first frame of an allocated block |
//! | 1 | 1 | free start: the first frame of a free block of any order |
//!
//! So every frame that ends an allocated block from the outside — the next
//! block's first frame, or an unmanaged frame — is "not interior", which a
//! free checks with one read per probe. A free start is an order-0 block
//! unless its next frame is interior (only even frames can start larger
//! blocks, and their next frame is in the same word), so order 0's bitmap is
//! computed from the planes, a word at a time ([`free0_word`]). The codes
//! are chosen so that the frequent changes flip one plane: allocating or
//! freeing a single frame flips P, making a larger block free or taking it
//! flips Q.
//!
//! Summaries are exact — bit i of level l + 1 is set if and only if word i
//! of level l is non-zero — except along the path above one level-0 word
//! per order, the "pending" word, whose summary bits are brought up to date
//! only when another word of the same order changes between zero and
//! non-zero, or before a search. A block split off and merged back again
//! and again (one frame allocated and freed on an empty heap, or a heap
//! filled frame by frame) so costs no summary writes at all, and searches
//! still descend one word per level without backtracking.
//!
//! Nothing here checks arguments unless it says so: callers pass frame
//! numbers inside the span, which [`crate::heap`] guarantees.

use crate::Order;
use crate::layout::Layout;

/// State code (P | Q << 1): unmanaged.
pub(crate) const UNMANAGED: u64 = 0;
/// State code: inside a block, not its first frame.
pub(crate) const INTERIOR: u64 = 1;
/// State code: the first frame of an allocated block.
pub(crate) const HEAD: u64 = 2;
/// State code: the first frame of a free block.
pub(crate) const FREE: u64 = 3;

/// The even bit positions of a word.
const EVEN: u64 = 0x5555_5555_5555_5555;

/// No pending word.
pub(crate) const NONE: usize = usize::MAX;

/// Order 0's free bitmap word from a word pair of the planes: the free
/// starts whose next frame is not interior.
#[inline(always)]
pub(crate) const fn free0_word(p: u64, q: u64) -> u64 {
    p & q & !(((p & !q) >> 1) & EVEN)
}

/// Bit `n % 64`.
#[inline(always)]
pub(crate) const fn bit(n: u64) -> u64 {
    1 << (n & 63)
}

/// Index of the highest set bit of a non-zero word.
#[inline(always)]
pub(crate) const fn high(word: u64) -> usize {
    63 - word.leading_zeros() as usize
}

/// The metadata words and where everything is in them.
#[derive(Debug)]
pub(crate) struct Bits<'m> {
    pub(crate) w: &'m mut [u64],
    pub(crate) l: Layout,
    /// Per order, the index in `w` of the level-0 word whose summary bits
    /// may be out of date (for order 0: of its P word; [`NONE`] for none).
    pub(crate) pending: [usize; Order::COUNT],
    /// Lazy blocks (see [`crate::lazy`]): while there are none, which is
    /// soon on a heap in use, a frame's block is known to be real without
    /// reading the lazy bitmap.
    pub(crate) lazy_left: u64,
}

impl<'m> Bits<'m> {
    /// The metadata of `layout` in `w`: an empty heap, its blocks of the
    /// largest order lazy where they can be (see [`crate::lazy`]).
    pub(crate) fn new(w: &'m mut [u64], l: Layout) -> Self {
        let mut bits = Self {
            w,
            l,
            pending: [NONE; Order::COUNT],
            lazy_left: 0,
        };
        bits.init();
        bits
    }
}

impl Bits<'_> {
    /// Index of the P word of in-span frame `pfn` (Q is the next word).
    #[inline(always)]
    pub(crate) fn pair(&self, pfn: u64) -> usize {
        self.l.pbase.wrapping_add(2 * (pfn >> 6) as usize)
    }

    /// The state code of in-span frame `pfn`.
    #[inline(always)]
    pub(crate) fn code(&self, pfn: u64) -> u64 {
        let i = self.pair(pfn);
        ((self.w[i] >> (pfn & 63)) & 1) | (((self.w[i + 1] >> (pfn & 63)) & 1) << 1)
    }

    /// Whether in-span frame `pfn` is a free block of order 0.
    #[inline(always)]
    pub(crate) fn is_free0(&self, pfn: u64) -> bool {
        let i = self.pair(pfn);
        free0_word(self.w[i], self.w[i + 1]) & bit(pfn) != 0
    }

    /// The pending word of order `k` as a level-0 word number, if any.
    pub(crate) fn pending_word(&self, k: usize) -> Option<usize> {
        let i = self.pending[k];
        if i == NONE {
            None
        } else if k == 0 {
            Some(i / 2)
        } else {
            Some(i - self.l.trees[k].off[0])
        }
    }

    /// Brings the summaries of order `k` up to date before a search.
    #[inline(always)]
    pub(crate) fn settle(&mut self, k: usize) {
        let old = self.pending[k];
        if old != NONE {
            self.pending[k] = NONE;
            crate::view::update_summaries(self.w, &self.l, k, old);
        }
    }

    /// Index of the F_k word (k ≥ 1) that holds the block at `pfn`, if the
    /// bitmap has that word (a block partly outside the span may have a
    /// bit; it is never set).
    #[inline(always)]
    pub(crate) fn fword(&self, k: usize, pfn: u64) -> Option<usize> {
        let t = &self.l.trees[k];
        let rel = (pfn >> (k + 6)).wrapping_sub(t.origin);
        (rel < t.words as u64).then(|| t.off[0] + rel as usize)
    }

    /// Whether the in-span order-`k` block at `pfn` is free.
    #[inline(always)]
    pub(crate) fn is_free_in_span(&self, k: usize, pfn: u64) -> bool {
        if k == 0 {
            return self.is_free0(pfn);
        }
        let i = self.l.fbase[k].wrapping_add((pfn >> (k + 6)) as usize);
        self.w[i] & bit(pfn >> k) != 0
    }

    /// Whether the order-`k` block at `pfn` (any frame number) is free.
    #[inline(always)]
    pub(crate) fn is_free_block(&self, k: usize, pfn: u64) -> bool {
        if k == 0 {
            return pfn >= self.l.base && pfn < self.l.end && self.is_free0(pfn);
        }
        match self.fword(k, pfn) {
            Some(i) => self.w[i] & bit(pfn >> k) != 0,
            None => false,
        }
    }

    /// Word `idx` of level `level` of order `k` (level 0 of order 0 read
    /// off the planes).
    #[inline(always)]
    pub(crate) fn level_word(&self, k: usize, level: usize, idx: usize) -> u64 {
        if k == 0 && level == 0 {
            free0_word(self.w[2 * idx], self.w[2 * idx + 1])
        } else {
            self.w[self.l.trees[k].off[level] + idx]
        }
    }

    /// The first frame of relative slot `s` of order `k`.
    #[inline(always)]
    pub(crate) fn slot_pfn(&self, k: usize, s: usize) -> u64 {
        ((self.l.trees[k].origin << 6) + s as u64) << k
    }

    /// Sets the in-span frames `start..end` to interior (`managed`) or
    /// unmanaged, a word at a time, keeping order 0's summaries.
    /// Callers first take the free blocks in the range out of the bitmaps.
    pub(crate) fn fill_planes(&mut self, start: u64, end: u64, managed: bool) {
        // The closure never fails, so neither does the pass.
        let _ = self.bulk(start, end, |p, q, mask| {
            if managed {
                Ok((p | mask, q & !mask))
            } else {
                Ok((p & !mask, q & !mask))
            }
        });
    }

    /// Makes the unmanaged in-span frames `start..end` interior in one pass;
    /// if one of them is managed, undoes that and returns the first managed
    /// frame.
    pub(crate) fn manage_planes(&mut self, start: u64, end: u64) -> Option<u64> {
        if start >= end {
            return None;
        }
        let (first, last) = (self.pair(start), self.pair(end - 1));
        // See `bulk` for why only the end words' order-0 bitmaps can change.
        let before = (self.free0_at(first), self.free0_at(last));
        let end_mask = u64::MAX >> (63 - ((end - 1) & 63));
        let mut mask = u64::MAX << (start & 63);
        let mut i = first;
        loop {
            if i == last {
                mask &= end_mask;
            }
            let busy = (self.w[i] | self.w[i + 1]) & mask;
            if busy != 0 {
                let pfn =
                    (start & !63) + 32 * (i - first) as u64 + u64::from(busy.trailing_zeros());
                // Undo the words before this one.
                self.fill_planes(start, (pfn & !63).max(start), false);
                return Some(pfn);
            }
            self.w[i] |= mask;
            if i == last {
                break;
            }
            mask = u64::MAX;
            i += 2;
        }
        let after = self.free0_at(first);
        self.view().sync0(first, before.0, after);
        if last != first {
            let after = self.free0_at(last);
            self.view().sync0(last, before.1, after);
        }
        None
    }

    /// Applies `f(p, q, mask)` to the plane words of `start..end` (`mask`:
    /// the range's frames in the word), stopping at the first error with
    /// the word's first frame. Only the first and last word pairs can hold
    /// frames outside the range whose order-0 status the change affects (an
    /// even frame before the range, through its next frame), so only they
    /// are checked for the summaries; every word in between changes from
    /// and to states without free starts.
    fn bulk(
        &mut self,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, u64, u64) -> Result<(u64, u64), u64>,
    ) -> Result<(), (u64, u64)> {
        if start >= end {
            return Ok(());
        }
        let (first, last) = (self.pair(start), self.pair(end - 1));
        let before = (self.free0_at(first), self.free0_at(last));
        let mut result = Ok(());
        let mut f0 = start;
        while f0 < end {
            let i = self.pair(f0);
            let lo = f0 & 63;
            let hi = if end - (f0 & !63) >= 64 {
                64
            } else {
                end - (f0 & !63)
            };
            let mask = (u64::MAX >> (64 - (hi - lo))) << lo;
            match f(self.w[i], self.w[i + 1], mask) {
                Ok((p, q)) => {
                    self.w[i] = p;
                    self.w[i + 1] = q;
                }
                Err(busy) => {
                    result = Err((f0, busy));
                    break;
                }
            }
            f0 = (f0 & !63) + hi;
        }
        let after = self.free0_at(first);
        self.view().sync0(first, before.0, after);
        if last != first {
            let after = self.free0_at(last);
            self.view().sync0(last, before.1, after);
        }
        result
    }

    /// Order 0's bitmap word of word pair `i`.
    #[inline(always)]
    fn free0_at(&self, i: usize) -> u64 {
        free0_word(self.w[i], self.w[i + 1])
    }

    /// The first frame of in-span `start..end` that is managed.
    pub(crate) fn first_managed(&self, start: u64, end: u64) -> Option<u64> {
        let mut f = start;
        while f < end {
            if let Some((free, e)) = self.lazy_run(f, end) {
                if free {
                    return Some(f);
                }
                f = e;
                continue;
            }
            let i = self.pair(f);
            let hi = (end - (f & !63)).min(64);
            let mut word = (self.w[i] | self.w[i + 1]) & (u64::MAX << (f & 63));
            if hi < 64 {
                word &= (1u64 << hi) - 1;
            }
            if word != 0 {
                return Some((f & !63) + u64::from(word.trailing_zeros()));
            }
            f = (f & !63) + hi;
        }
        None
    }

    /// If in-span frame `f` lies in a lazy block: whether that block is
    /// free (so all its frames managed), and where it or `end` ends.
    #[inline]
    fn lazy_run(&self, f: u64, end: u64) -> Option<(bool, u64)> {
        if !self.is_lazy(f) {
            return None;
        }
        let max = usize::from(self.l.max_order);
        let s = f >> max << max;
        Some((self.is_free_in_span(max, s), (s + (1 << max)).min(end)))
    }

    /// Managed frames among in-span `start..end`.
    pub(crate) fn count_managed(&self, start: u64, end: u64) -> u64 {
        let mut n = 0;
        let mut f = start;
        while f < end {
            if let Some((free, e)) = self.lazy_run(f, end) {
                if free {
                    n += e - f;
                }
                f = e;
                continue;
            }
            let i = self.pair(f);
            let hi = (end - (f & !63)).min(64);
            let mut word = (self.w[i] | self.w[i + 1]) & (u64::MAX << (f & 63));
            if hi < 64 {
                word &= (1u64 << hi) - 1;
            }
            n += u64::from(word.count_ones());
            f = (f & !63) + hi;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word pair with frame i in state `codes[i]`.
    fn planes(codes: &[u64]) -> (u64, u64) {
        codes.iter().enumerate().fold((0, 0), |(p, q), (i, c)| {
            (p | (c & 1) << i, q | (c >> 1) << i)
        })
    }

    #[test]
    fn order_0_blocks_are_free_starts_not_followed_by_interior_frames() {
        // 0: free 0 (next a head); 2: start of a free order-1 block (3
        // interior); 4: free 0 (next unmanaged); 5: free 0 (odd); 6: head,
        // 7: interior (an allocated order-1 block).
        let (p, q) = planes(&[FREE, HEAD, FREE, INTERIOR, FREE, FREE, HEAD, INTERIOR]);
        assert_eq!(free0_word(p, q), 0b0011_0001);
        // The last frame of a word is odd: never the start of a larger block.
        let (p, q) = (1u64 << 63, 1u64 << 63);
        assert_eq!(free0_word(p, q), 1 << 63);
    }
}
