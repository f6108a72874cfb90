//! Searching the free bitmaps through their summaries, and counting.
//!
//! Slots here are relative: slot s of order k is the block at frame
//! [`Bits::slot_pfn`]`(k, s)`. A search climbs until a masked word is
//! non-zero and then descends along highest (or lowest) set bits, one word
//! per level. Summaries are exact once the pending word of the order is
//! settled (see [`crate::bits`]), which the searches that can write do
//! first; the iteration, which cannot, reads the pending word itself. Should
//! a summary bit ever sit over a zero word all the same, a search clears it
//! (or steps over it) and goes on from the level where it was.

use crate::bits::{Bits, bit, high};

impl Bits<'_> {
    /// The highest set slot of order `k` below slot `hi`, clearing the
    /// stale summary bits it meets.
    pub(crate) fn find_prev(&mut self, k: usize, hi: usize) -> Option<usize> {
        self.settle(k);
        let top = self.l.trees[k].top;
        // Bound (exclusive, in bits) of the search at `level`.
        let mut b = hi.min(self.l.trees[k].words * 64);
        let mut level = 0;
        'climb: loop {
            if b == 0 {
                return None;
            }
            let i = b - 1;
            // Summaries never lead to a lazy word, but the bound can.
            let word = if level == 0 && self.lazy_word(k, i / 64) {
                0
            } else {
                self.level_word(k, level, i / 64) & (u64::MAX >> (63 - i % 64))
            };
            if word == 0 {
                if level == top {
                    return None;
                }
                b = i / 64;
                level += 1;
                continue;
            }
            // Every word below this bit lies below the bound: descend.
            let mut pos = (i / 64) * 64 + high(word);
            let mut l = level;
            while l > 0 {
                let below = self.level_word(k, l - 1, pos);
                if below == 0 {
                    // Stale: clear it, and go on with the bits below it at
                    // its level (everything above it up to the bound is
                    // empty).
                    self.w[self.l.trees[k].off[l] + pos / 64] &= !bit(pos as u64);
                    b = pos;
                    level = l;
                    continue 'climb;
                }
                pos = pos * 64 + high(below);
                l -= 1;
            }
            return Some(pos);
        }
    }

    /// The highest set slot of order `k`, if any: a descent from the top
    /// level along highest set bits.
    #[inline]
    pub(crate) fn find_last(&mut self, k: usize) -> Option<usize> {
        self.settle(k);
        let mut level = self.l.trees[k].top;
        // A bitmap of one word has no summary to say it is lazy.
        if level == 0 && self.lazy_word(k, 0) {
            return None;
        }
        let mut pos = 0;
        loop {
            let word = self.level_word(k, level, pos);
            if word == 0 {
                break;
            }
            pos = pos * 64 + high(word);
            if level == 0 {
                return Some(pos);
            }
            level -= 1;
        }
        // Nothing, or a summary bit over a zero word (which settled
        // summaries never have): the bounded search copes with both.
        let words = self.l.trees[k].words * 64;
        self.find_prev(k, words)
    }

    /// The lowest set slot of order `k` at or above slot `lo`.
    pub(crate) fn find_next(&self, k: usize, lo: usize) -> Option<usize> {
        let found = self.find_next_summarised(k, lo);
        // The pending word may be missing from the summaries.
        let Some(p) = self.pending_word(k) else {
            return found;
        };
        if (p + 1) * 64 <= lo {
            return found;
        }
        let mut word = self.level_word(k, 0, p);
        if p * 64 < lo {
            word &= u64::MAX << (lo % 64);
        }
        if word == 0 {
            return found;
        }
        let here = p * 64 + word.trailing_zeros() as usize;
        Some(found.map_or(here, |f| f.min(here)))
    }

    /// [`Bits::find_next`] through the summaries only.
    fn find_next_summarised(&self, k: usize, lo: usize) -> Option<usize> {
        let t = &self.l.trees[k];
        let mut start = lo;
        'search: loop {
            let mut from = start;
            let mut level = 0;
            let mut words = t.words;
            let mut pos = loop {
                let w = from / 64;
                if w >= words {
                    return None;
                }
                let word = if level == 0 && self.lazy_word(k, w) {
                    0
                } else {
                    self.level_word(k, level, w) & (u64::MAX << (from % 64))
                };
                if word != 0 {
                    break w * 64 + word.trailing_zeros() as usize;
                }
                if level == t.top {
                    return None;
                }
                from = w + 1;
                words = words.div_ceil(64);
                level += 1;
            };
            while level > 0 {
                let word = self.level_word(k, level - 1, pos);
                if word == 0 {
                    // Stale: skip everything below this summary bit.
                    start = (pos + 1) << (6 * (level - 1)) << 6;
                    continue 'search;
                }
                pos = pos * 64 + word.trailing_zeros() as usize;
                level -= 1;
            }
            return Some(pos);
        }
    }

    /// Set slots of order `k` in `lo..hi`.
    pub(crate) fn count(&self, k: usize, lo: usize, hi: usize) -> u64 {
        let mut n = 0;
        let mut i = lo;
        while i < hi {
            let w = i / 64;
            let top = if hi - w * 64 >= 64 { 64 } else { hi - w * 64 };
            let mut word = if self.lazy_word(k, w) {
                0
            } else {
                self.level_word(k, 0, w) & (u64::MAX << (i % 64))
            };
            if top < 64 {
                word &= (1u64 << top) - 1;
            }
            n += u64::from(word.count_ones());
            i = w * 64 + top;
        }
        n
    }
}
