//! Searching the free bitmaps through their summaries, and counting.
//!
//! Summaries are lazy (see [`crate::layout`]): a set bit may sit over a word
//! that became zero. Searches that meet one clear it (or, when they cannot
//! write, step over it), so every stale bit costs one extra step once.

use crate::bits::{Bits, bit, high};

impl Bits<'_> {
    /// The highest set slot of order `k` below `hi`, clearing the stale
    /// summary bits it meets on the way.
    pub(crate) fn find_prev(&mut self, k: usize, hi: usize) -> Option<usize> {
        let top = self.l.trees[k].top;
        let hint_bound = (self.hint[k] + 1) * 64;
        let full = hi >= hint_bound;
        let mut bound = hi.min(hint_bound);
        'search: loop {
            let mut b = bound;
            let mut level = 0;
            let mut pos = loop {
                if b == 0 {
                    break 'search;
                }
                let i = b - 1;
                let word = self.level_word(k, level, i / 64) & (u64::MAX >> (63 - i % 64));
                if word != 0 {
                    break (i / 64) * 64 + high(word);
                }
                if level == top {
                    break 'search;
                }
                b = i / 64;
                level += 1;
            };
            while level > 0 {
                let word = self.level_word(k, level - 1, pos);
                if word == 0 {
                    // A stale summary bit: clear it. Every subtree above it
                    // (below the bound) is empty, so search on below it.
                    self.w[self.l.trees[k].off[level] + pos / 64] &= !bit(pos);
                    bound = pos << (6 * level);
                    continue 'search;
                }
                pos = pos * 64 + high(word);
                level -= 1;
            }
            if full {
                self.hint[k] = pos / 64;
            }
            return Some(pos);
        }
        if full {
            self.hint[k] = 0;
        }
        None
    }

    /// The lowest set slot of order `k` at or above `lo`, stepping over
    /// stale summary bits.
    pub(crate) fn find_next(&self, k: usize, lo: usize) -> Option<usize> {
        let t = &self.l.trees[k];
        let mut start = lo;
        'search: loop {
            let mut from = start;
            let mut level = 0;
            let mut words = (t.slots as usize).div_ceil(64);
            let mut pos = loop {
                let w = from / 64;
                if w >= words {
                    return None;
                }
                let word = self.level_word(k, level, w) & (u64::MAX << (from % 64));
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
            let mut word = self.level_word(k, 0, w) & (u64::MAX << (i % 64));
            if top < 64 {
                word &= (1u64 << top) - 1;
            }
            n += u64::from(word.count_ones());
            i = w * 64 + top;
        }
        n
    }
}
