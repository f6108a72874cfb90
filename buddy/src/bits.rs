//! The metadata words: the two frame-state planes, the per-order free
//! bitmaps and their summaries, with the searches that use the summaries.
//!
//! Nothing here checks arguments: callers pass frame numbers inside the span
//! and slots inside a bitmap, which [`crate::heap`] guarantees.

use crate::layout::Layout;
use crate::types::Order;

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
    /// Per order, a level-0 word index no non-zero word lies above.
    pub(crate) hint: [usize; Order::COUNT],
}

/// [`Code::Interior`] as [`Bits::code_bits`] gives it.
pub(crate) const INTERIOR: u64 = 1;
/// [`Code::Head`] as [`Bits::code_bits`] gives it.
pub(crate) const HEAD: u64 = 3;
/// The largest order plane S records (2 MiB blocks): larger free blocks
/// start only at frames aligned to 2^10 or more, where the bitmaps are
/// tested instead, so splitting and merging large blocks skips plane S.
pub(crate) const S_MAX: usize = 9;

#[inline]
pub(crate) const fn bit(i: usize) -> u64 {
    1 << (i % 64)
}

/// Index of the highest set bit of a non-zero word.
#[inline]
pub(crate) const fn high(word: u64) -> usize {
    63 - word.leading_zeros() as usize
}

impl Bits<'_> {
    /// Index of frame `pfn` in the planes.
    #[inline(always)]
    fn fi(&self, pfn: u64) -> usize {
        (pfn - self.l.base) as usize
    }

    /// The state of frame `pfn` as two bits: P, and Q above it.
    #[inline(always)]
    pub(crate) fn code_bits(&self, pfn: u64) -> u64 {
        let i = self.fi(pfn);
        let w = self.l.p_off + 2 * (i / 64);
        let (p, q) = (self.w[w], self.w[w + 1]);
        ((p >> (i % 64)) & 1) | (((q >> (i % 64)) & 1) << 1)
    }

    /// The state of frame `pfn`.
    #[inline]
    pub(crate) fn code(&self, pfn: u64) -> Code {
        match self.code_bits(pfn) {
            0 => Code::Unmanaged,
            1 => Code::Interior,
            3 => Code::Head,
            _ => Code::Free0,
        }
    }

    /// Turns an interior frame into an allocated head or back.
    #[inline(always)]
    pub(crate) fn set_head(&mut self, pfn: u64, head: bool) {
        let i = self.fi(pfn);
        let q = &mut self.w[self.l.q_off + 2 * (i / 64)];
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
            let p = &mut self.w[self.l.p_off + 2 * w];
            if managed {
                *p |= mask;
            } else {
                *p &= !mask;
            }
            self.w[self.l.q_off + 2 * w] &= !mask;
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
            let busy = (self.w[self.l.p_off + 2 * w] | self.w[self.l.q_off + 2 * w]) & mask;
            if busy != 0 {
                let pfn = self.l.base + (w * 64) as u64 + u64::from(busy.trailing_zeros());
                let done = self.l.base + (w * 64) as u64;
                if done > start {
                    self.fill_planes(start, done, false);
                }
                return Some(pfn);
            }
            self.w[self.l.p_off + 2 * w] |= mask;
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
            let mut word = self.w[self.l.p_off + 2 * w] | self.w[self.l.q_off + 2 * w];
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
            let mut word = self.w[self.l.p_off + 2 * w] | self.w[self.l.q_off + 2 * w];
            word &= u64::MAX << (i % 64);
            if hi < 64 {
                word &= (1u64 << hi) - 1;
            }
            n += u64::from(word.count_ones());
            i = w * 64 + hi;
        }
        n
    }

    /// Whether a free block of order 1 to [`S_MAX`] starts at in-span frame
    /// `pfn`.
    #[inline(always)]
    pub(crate) fn starts_small_free(&self, pfn: u64) -> bool {
        if pfn & 1 != 0 {
            return false;
        }
        let i = ((pfn >> 1) - (self.l.base >> 1)) as usize;
        self.w[self.l.s_off + i / 64] & bit(i) != 0
    }

    /// Whether a free block of order ≥ 1 starts at in-span frame `pfn`:
    /// plane S for small blocks, the bitmaps for frames aligned enough to
    /// start a large one.
    #[inline(always)]
    pub(crate) fn starts_free(&self, pfn: u64) -> bool {
        self.starts_small_free(pfn) || {
            let align = (pfn.trailing_zeros() as usize).min(usize::from(self.l.max_order));
            align > S_MAX && (S_MAX + 1..=align).any(|k| self.is_free_block(k, pfn))
        }
    }

    #[inline(always)]
    fn set_start(&mut self, pfn: u64, on: bool) {
        let i = ((pfn >> 1) - (self.l.base >> 1)) as usize;
        let word = &mut self.w[self.l.s_off + i / 64];
        if on {
            *word |= bit(i);
        } else {
            *word &= !bit(i);
        }
    }

    /// Whether in-span frame `f`, following an allocated frame, is not part
    /// of that frame's block: it is a head, free or unmanaged.
    #[inline(always)]
    pub(crate) fn ends_block(&self, f: u64) -> bool {
        self.code_bits(f) != INTERIOR || self.starts_free(f)
    }

    /// Whether the frames after head `p` up to `p + 2^k` (exclusive) are
    /// all interior frames of its allocated block, when the block lies in
    /// one word of the planes (k ≤ 6; `None` otherwise).
    #[inline]
    pub(crate) fn interior_in_word(&self, p: u64, k: usize) -> Option<bool> {
        let i = self.fi(p);
        let (w, b) = (i / 64, i % 64);
        let len = 1usize << k;
        if b + len > 64 {
            return None;
        }
        let mask = if len == 64 {
            u64::MAX << 1
        } else {
            ((1u64 << len) - 1) << b & !(1u64 << b)
        };
        let (pw, qw) = (self.w[self.l.p_off + 2 * w], self.w[self.l.q_off + 2 * w]);
        if pw & mask != mask || qw & mask != 0 {
            return Some(false);
        }
        if k == 0 {
            return Some(true);
        }
        // Even frames after p: S bits (p >> 1) + 1 .. (p >> 1) + len / 2.
        let si = ((p >> 1) - (self.l.base >> 1)) as usize;
        let half = len / 2;
        let smask = if half == 64 {
            u64::MAX << 1
        } else {
            ((1u64 << half) - 1) << (si % 64) & !(1u64 << (si % 64))
        };
        if si % 64 + half > 64 {
            return Some((1..half as u64).all(|j| !self.starts_small_free(p + 2 * j)));
        }
        Some(self.w[self.l.s_off + si / 64] & smask == 0)
    }

    /// The slot of the order-`k` block starting at `pfn`, if the bitmap has
    /// one (blocks partly outside the span still have a slot; it is never
    /// set).
    #[inline(always)]
    pub(crate) fn slot(&self, k: usize, pfn: u64) -> Option<usize> {
        let t = &self.l.trees[k];
        let s = (pfn >> k).checked_sub(t.first)?;
        if s < t.slots { Some(s as usize) } else { None }
    }

    /// The first frame of slot `s` of order `k`.
    #[inline(always)]
    pub(crate) fn slot_pfn(&self, k: usize, s: usize) -> u64 {
        (self.l.trees[k].first + s as u64) << k
    }

    /// Word `idx` of level `level` of order `k`.
    #[inline(always)]
    pub(crate) fn level_word(&self, k: usize, level: usize, idx: usize) -> u64 {
        if k == 0 && level == 0 {
            self.w[self.l.q_off + 2 * idx] & !self.w[self.l.p_off + 2 * idx]
        } else {
            self.w[self.l.trees[k].off[level] + idx]
        }
    }

    /// Whether slot `s` of order `k` is a free block.
    #[inline(always)]
    pub(crate) fn test(&self, k: usize, s: usize) -> bool {
        self.level_word(k, 0, s / 64) & bit(s) != 0
    }

    /// Whether the order-`k` block starting at `pfn` is free.
    #[inline(always)]
    pub(crate) fn is_free_block(&self, k: usize, pfn: u64) -> bool {
        match self.slot(k, pfn) {
            Some(s) => self.test(k, s),
            None => false,
        }
    }

    /// Marks slot `s` of order `k`, starting at frame `pfn`, free (it was
    /// not). For order 0 the frame becomes a free order-0 block whatever its
    /// state was.
    #[inline(always)]
    pub(crate) fn set(&mut self, k: usize, s: usize, pfn: u64) {
        let w = s / 64;
        let t = &self.l.trees[k];
        if k == 0 {
            self.w[self.l.p_off + 2 * w] &= !bit(s);
            self.w[self.l.q_off + 2 * w] |= bit(s);
        } else {
            self.w[t.off[0] + w] |= bit(s);
            if k <= S_MAX {
                let i = ((pfn >> 1) - (self.l.base >> 1)) as usize;
                self.w[self.l.s_off + i / 64] |= bit(i);
            }
        }
        if w > self.hint[k] {
            self.hint[k] = w;
        }
        // Summaries have no false negatives: once a bit is found set, every
        // level above it is set already.
        let mut idx = w;
        let mut level = 1;
        while level <= t.top {
            let word = &mut self.w[t.off[level] + idx / 64];
            if *word & bit(idx) != 0 {
                return;
            }
            *word |= bit(idx);
            idx /= 64;
            level += 1;
        }
    }

    /// If slot `s` of order `k` (starting at frame `pfn`) is free, marks it
    /// not free (an order-0 block becomes interior) and says so: the test
    /// and the clear of a merge in one load.
    #[inline(always)]
    pub(crate) fn take_if_free(&mut self, k: usize, s: usize, pfn: u64) -> bool {
        let w = s / 64;
        if k == 0 {
            let (p, q) = (self.l.p_off + 2 * w, self.l.q_off + 2 * w);
            if self.w[q] & !self.w[p] & bit(s) == 0 {
                return false;
            }
            self.w[p] |= bit(s);
            self.w[q] &= !bit(s);
        } else {
            let i = self.l.trees[k].off[0] + w;
            let word = self.w[i];
            if word & bit(s) == 0 {
                return false;
            }
            self.w[i] = word & !bit(s);
            if k <= S_MAX {
                self.set_start(pfn, false);
            }
        }
        true
    }

    /// Marks slot `s` of order `k`, starting at frame `pfn`, not free (it
    /// was). For order 0 the frame becomes `Head` or `Interior`. Summaries
    /// are left for searches to clear.
    #[inline(always)]
    pub(crate) fn clear(&mut self, k: usize, s: usize, pfn: u64, head: bool) {
        let w = s / 64;
        if k == 0 {
            self.w[self.l.p_off + 2 * w] |= bit(s);
            if !head {
                self.w[self.l.q_off + 2 * w] &= !bit(s);
            }
        } else {
            self.w[self.l.trees[k].off[0] + w] &= !bit(s);
            if k <= S_MAX {
                self.set_start(pfn, false);
            }
        }
    }
}
