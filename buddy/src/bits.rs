//! The metadata words: the two frame-state planes, the per-order free
//! bitmaps and their summaries, with the searches that use the summaries.
//!
//! Nothing here checks arguments: callers pass frame numbers inside the span
//! and slots inside a bitmap, which [`crate::heap`] guarantees.

use crate::layout::Layout;

/// The state of one frame, from planes P and Q.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    /// P = 0, Q = 0: never added, or reserved.
    Unmanaged,
    /// P = 1, Q = 0: inside a free block of order ≥ 1, or an allocated
    /// block's frame other than its first.
    Interior,
    /// P = 1, Q = 1: the first frame of an allocated block.
    Head,
    /// P = 0, Q = 1: a free block of order 0.
    Free0,
}

/// The metadata words and where everything is in them.
#[derive(Debug)]
pub(crate) struct Bits<'m> {
    pub(crate) w: &'m mut [u64],
    pub(crate) l: Layout,
}

#[inline]
const fn bit(i: usize) -> u64 {
    1 << (i % 64)
}

/// Index of the highest set bit of a non-zero word.
#[inline]
const fn high(word: u64) -> usize {
    63 - word.leading_zeros() as usize
}

impl Bits<'_> {
    /// Index of frame `pfn` in the planes.
    #[inline]
    fn fi(&self, pfn: u64) -> usize {
        (pfn - self.l.base) as usize
    }

    /// The state of frame `pfn`.
    #[inline]
    pub(crate) fn code(&self, pfn: u64) -> Code {
        let i = self.fi(pfn);
        let p = self.w[self.l.p_off + i / 64] & bit(i) != 0;
        let q = self.w[self.l.q_off + i / 64] & bit(i) != 0;
        match (p, q) {
            (false, false) => Code::Unmanaged,
            (true, false) => Code::Interior,
            (true, true) => Code::Head,
            (false, true) => Code::Free0,
        }
    }

    /// Turns an interior frame into an allocated head or back.
    #[inline]
    pub(crate) fn set_head(&mut self, pfn: u64, head: bool) {
        let i = self.fi(pfn);
        let q = &mut self.w[self.l.q_off + i / 64];
        if head {
            *q |= bit(i);
        } else {
            *q &= !bit(i);
        }
    }

    /// Sets the states of frames `start..end` (relative to nothing: frame
    /// numbers) to managed interior (`managed`) or unmanaged, a word at a
    /// time. Free order-0 blocks and heads in the range are overwritten, so
    /// callers first take them out of the free bitmaps.
    pub(crate) fn fill_planes(&mut self, start: u64, end: u64, managed: bool) {
        let (mut i, e) = (self.fi(start), self.fi(end));
        while i < e {
            let w = i / 64;
            let lo = i % 64;
            let hi = if e - w * 64 >= 64 { 64 } else { e - w * 64 };
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            let p = &mut self.w[self.l.p_off + w];
            if managed {
                *p |= mask;
            } else {
                *p &= !mask;
            }
            self.w[self.l.q_off + w] &= !mask;
            i = w * 64 + hi;
        }
    }

    /// Makes the unmanaged frames `start..end` interior in one pass; if one
    /// of them is managed, undoes that and returns the first managed frame.
    pub(crate) fn manage_planes(&mut self, start: u64, end: u64) -> Option<u64> {
        let (first, e) = (self.fi(start), self.fi(end));
        let mut i = first;
        while i < e {
            let w = i / 64;
            let hi = if e - w * 64 >= 64 { 64 } else { e - w * 64 };
            let mask = (u64::MAX << (i % 64)) & if hi < 64 { (1u64 << hi) - 1 } else { u64::MAX };
            let busy = (self.w[self.l.p_off + w] | self.w[self.l.q_off + w]) & mask;
            if busy != 0 {
                let pfn = self.l.base + (w * 64) as u64 + u64::from(busy.trailing_zeros());
                let done = self.l.base + (w * 64) as u64;
                if done > start {
                    self.fill_planes(start, done, false);
                }
                return Some(pfn);
            }
            self.w[self.l.p_off + w] |= mask;
            i = w * 64 + hi;
        }
        None
    }

    /// The first frame of `start..end` whose state is not `Unmanaged`.
    pub(crate) fn first_managed(&self, start: u64, end: u64) -> Option<u64> {
        let (mut i, e) = (self.fi(start), self.fi(end));
        while i < e {
            let w = i / 64;
            let hi = if e - w * 64 >= 64 { 64 } else { e - w * 64 };
            let mut word = self.w[self.l.p_off + w] | self.w[self.l.q_off + w];
            word &= u64::MAX << (i % 64);
            if hi < 64 {
                word &= (1u64 << hi) - 1;
            }
            if word != 0 {
                return Some(self.l.base + (w * 64) as u64 + u64::from(word.trailing_zeros()));
            }
            i = w * 64 + hi;
        }
        None
    }

    /// Managed frames among `start..end`.
    pub(crate) fn count_managed(&self, start: u64, end: u64) -> u64 {
        let (mut i, e) = (self.fi(start), self.fi(end));
        let mut n = 0;
        while i < e {
            let w = i / 64;
            let hi = if e - w * 64 >= 64 { 64 } else { e - w * 64 };
            let mut word = self.w[self.l.p_off + w] | self.w[self.l.q_off + w];
            word &= u64::MAX << (i % 64);
            if hi < 64 {
                word &= (1u64 << hi) - 1;
            }
            n += u64::from(word.count_ones());
            i = w * 64 + hi;
        }
        n
    }

    /// The slot of the order-`k` block starting at `pfn`, if the bitmap has
    /// one (blocks partly outside the span still have a slot; it is never
    /// set).
    #[inline]
    pub(crate) fn slot(&self, k: usize, pfn: u64) -> Option<usize> {
        let t = &self.l.trees[k];
        let s = (pfn >> k).checked_sub(t.first)?;
        if s < t.slots { Some(s as usize) } else { None }
    }

    /// The first frame of slot `s` of order `k`.
    #[inline]
    pub(crate) fn slot_pfn(&self, k: usize, s: usize) -> u64 {
        (self.l.trees[k].first + s as u64) << k
    }

    /// Word `idx` of level `level` of order `k`.
    #[inline]
    pub(crate) fn level_word(&self, k: usize, level: usize, idx: usize) -> u64 {
        if k == 0 && level == 0 {
            self.w[self.l.q_off + idx] & !self.w[self.l.p_off + idx]
        } else {
            self.w[self.l.trees[k].off[level] + idx]
        }
    }

    /// Whether slot `s` of order `k` is a free block.
    #[inline]
    pub(crate) fn test(&self, k: usize, s: usize) -> bool {
        self.level_word(k, 0, s / 64) & bit(s) != 0
    }

    /// Whether the order-`k` block starting at `pfn` is free.
    #[inline]
    pub(crate) fn is_free_block(&self, k: usize, pfn: u64) -> bool {
        match self.slot(k, pfn) {
            Some(s) => self.test(k, s),
            None => false,
        }
    }

    /// Marks slot `s` of order `k` free (it was not). For order 0 the frame
    /// becomes a free order-0 block whatever its state was.
    #[inline]
    pub(crate) fn set(&mut self, k: usize, s: usize) {
        let w = s / 64;
        let before = self.level_word(k, 0, w);
        if k == 0 {
            self.w[self.l.p_off + w] &= !bit(s);
            self.w[self.l.q_off + w] |= bit(s);
        } else {
            self.w[self.l.trees[k].off[0] + w] = before | bit(s);
        }
        if before == 0 {
            self.summary_set(k, w);
        }
    }

    /// Marks slot `s` of order `k` not free (it was). For order 0 the frame
    /// becomes `Head` or `Interior`.
    #[inline]
    pub(crate) fn clear(&mut self, k: usize, s: usize, head: bool) {
        let w = s / 64;
        let after;
        if k == 0 {
            self.w[self.l.p_off + w] |= bit(s);
            if !head {
                self.w[self.l.q_off + w] &= !bit(s);
            }
            after = self.level_word(0, 0, w);
        } else {
            let word = &mut self.w[self.l.trees[k].off[0] + w];
            *word &= !bit(s);
            after = *word;
        }
        if after == 0 {
            self.summary_clear(k, w);
        }
    }

    /// Level-0 word `idx` of order `k` became non-zero.
    #[inline]
    fn summary_set(&mut self, k: usize, mut idx: usize) {
        let t = &self.l.trees[k];
        let mut level = 1;
        while level <= t.top {
            let word = &mut self.w[t.off[level] + idx / 64];
            let before = *word;
            *word = before | bit(idx);
            if before != 0 {
                return;
            }
            idx /= 64;
            level += 1;
        }
    }

    /// Level-0 word `idx` of order `k` became zero.
    #[inline]
    fn summary_clear(&mut self, k: usize, mut idx: usize) {
        let t = &self.l.trees[k];
        let mut level = 1;
        while level <= t.top {
            let word = &mut self.w[t.off[level] + idx / 64];
            *word &= !bit(idx);
            if *word != 0 {
                return;
            }
            idx /= 64;
            level += 1;
        }
    }

    /// The highest set slot of order `k` below `hi`.
    pub(crate) fn find_prev(&self, k: usize, hi: usize) -> Option<usize> {
        let top = self.l.trees[k].top;
        let mut bound = hi;
        let mut level = 0;
        let mut pos = loop {
            if bound == 0 {
                return None;
            }
            let i = bound - 1;
            let word = self.level_word(k, level, i / 64) & (u64::MAX >> (63 - i % 64));
            if word != 0 {
                break (i / 64) * 64 + high(word);
            }
            if level == top {
                return None;
            }
            bound = i / 64;
            level += 1;
        };
        while level > 0 {
            level -= 1;
            pos = pos * 64 + high(self.level_word(k, level, pos));
        }
        Some(pos)
    }

    /// The lowest set slot of order `k` at or above `lo`.
    pub(crate) fn find_next(&self, k: usize, lo: usize) -> Option<usize> {
        let t = &self.l.trees[k];
        let mut from = lo;
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
            level -= 1;
            pos = pos * 64 + self.level_word(k, level, pos).trailing_zeros() as usize;
        }
        Some(pos)
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
