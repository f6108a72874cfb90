//! The paths that change the metadata: every elementary change of a
//! frame's state or of a free bit, each keeping the summaries as
//! [`crate::bits`] describes them, made through a [`View`] of the metadata
//! held in a local.

use crate::Order;
use crate::bits::{Bits, FREE, HEAD, NONE, bit, free0_word};
use crate::layout::Layout;

/// The metadata borrowed apart, for the paths that change it: held in a
/// local, the slice's address and length and the planes' base stay in
/// registers across the stores.
pub(crate) struct View<'a> {
    pub(crate) w: &'a mut [u64],
    pub(crate) l: &'a Layout,
    pending: &'a mut [usize; Order::COUNT],
    pbase: usize,
}

impl Bits<'_> {
    /// The metadata, to change it.
    #[inline(always)]
    pub(crate) fn view(&mut self) -> View<'_> {
        View {
            pbase: self.l.pbase,
            w: &mut *self.w,
            l: &self.l,
            pending: &mut self.pending,
        }
    }
}

impl View<'_> {
    /// Index of the P word of in-span frame `pfn` (Q is the next word).
    #[inline(always)]
    pub(crate) fn pair(&self, pfn: u64) -> usize {
        self.pbase.wrapping_add(2 * (pfn >> 6) as usize)
    }

    /// [`Bits::fword`] of a block inside the span.
    #[inline(always)]
    pub(crate) fn fword_in(&self, k: usize, pfn: u64) -> usize {
        self.l.fbase[k].wrapping_add((pfn >> (k + 6)) as usize)
    }

    /// Sets the state of in-span frame `pfn` to `code`, keeping order 0's
    /// summaries.
    #[inline(always)]
    pub(crate) fn set_code(&mut self, pfn: u64, code: u64) {
        let i = self.pair(pfn);
        let (p, q) = (self.w[i], self.w[i + 1]);
        let m = bit(pfn);
        let np = (p & !m) | ((code & 1) << (pfn & 63));
        let nq = (q & !m) | ((code >> 1) << (pfn & 63));
        self.w[i] = np;
        self.w[i + 1] = nq;
        self.sync0(i, free0_word(p, q), free0_word(np, nq));
    }

    /// Turns in-span frame `pfn` between interior and free start (Q) where
    /// that cannot change order 0's bitmap: `pfn` is even and its next
    /// frame interior (the start of a block of order ≥ 1).
    #[inline(always)]
    pub(crate) fn set_start(&mut self, pfn: u64, free: bool) {
        let i = self.pair(pfn) + 1;
        if free {
            self.w[i] |= bit(pfn);
        } else {
            self.w[i] &= !bit(pfn);
        }
    }

    /// Marks in-span frame `pfn` interior where that cannot change order
    /// 0's bitmap: it is not a free start, and if it is odd, the frame
    /// before it is not a free start either.
    #[inline(always)]
    pub(crate) fn set_interior_quiet(&mut self, pfn: u64) {
        let i = self.pair(pfn);
        self.w[i] |= bit(pfn);
        self.w[i + 1] &= !bit(pfn);
    }

    /// Marks in-span frame `pfn`, a head or interior, a free start, where
    /// that cannot change order 0's bitmap: `pfn` is even and its next frame
    /// interior.
    #[inline(always)]
    pub(crate) fn set_free_start_quiet(&mut self, pfn: u64) {
        let i = self.pair(pfn);
        self.w[i] |= bit(pfn);
        self.w[i + 1] |= bit(pfn);
    }

    /// Marks in-span frame `pfn`, interior, a head, where that cannot change
    /// order 0's bitmap: if it is odd, the frame before it is not a free
    /// start.
    #[inline(always)]
    pub(crate) fn set_head_quiet(&mut self, pfn: u64) {
        let i = self.pair(pfn);
        self.w[i] &= !bit(pfn);
        self.w[i + 1] |= bit(pfn);
    }

    /// Order 0's summaries after word pair `i` of the planes went from
    /// free-0 word `old` to `new`.
    #[inline(always)]
    pub(crate) fn sync0(&mut self, i: usize, old: u64, new: u64) {
        if (old == 0) != (new == 0) {
            self.changed(0, i);
        }
    }

    /// Notes that the level-0 word of order `k` at index `i` of `w` (for
    /// order 0: the P word of a pair) became zero or non-zero: it becomes
    /// the pending word, and the previous pending word's summaries are
    /// brought up to date.
    #[inline(always)]
    pub(crate) fn changed(&mut self, k: usize, i: usize) {
        let old = self.pending[k];
        if old != i {
            self.pending[k] = i;
            if old != NONE {
                update_summaries(self.w, self.l, k, old);
            }
        }
    }

    /// Records the in-span order-`k` block at `pfn`, whose frames are
    /// interior (an order-0 block: in any state but free), as free.
    #[inline(always)]
    pub(crate) fn set_free(&mut self, k: usize, pfn: u64) {
        if k == 0 {
            self.set_code(pfn, FREE);
            return;
        }
        self.set_start(pfn, true);
        self.set_fbit(k, pfn);
    }

    /// Sets the F_k bit (k ≥ 1) of the in-span block at `pfn`.
    #[inline(always)]
    pub(crate) fn set_fbit(&mut self, k: usize, pfn: u64) {
        let i = self.fword_in(k, pfn);
        let was = self.w[i];
        self.w[i] = was | bit(pfn >> k);
        if was == 0 {
            self.changed(k, i);
        }
    }

    /// Clears the set F_k bit (k ≥ 1) of the in-span block at `pfn`.
    #[inline(always)]
    pub(crate) fn clear_fbit(&mut self, k: usize, pfn: u64) {
        let i = self.fword_in(k, pfn);
        let word = self.w[i];
        self.clear_fbit_in(k, i, word, pfn);
    }

    /// Clears the set F_k bit (k ≥ 1) at word `i`, of the block at `pfn`.
    #[inline(always)]
    fn clear_fbit_in(&mut self, k: usize, i: usize, word: u64, pfn: u64) {
        let now = word & !bit(pfn >> k);
        self.w[i] = now;
        if now == 0 {
            self.changed(k, i);
        }
    }

    /// Takes the free in-span order-`k` block at `pfn` out of the bitmaps:
    /// its first frame becomes `code` (interior, or a head).
    #[inline(always)]
    pub(crate) fn clear_free(&mut self, k: usize, pfn: u64, code: u64) {
        if k == 0 {
            self.set_code(pfn, code);
            return;
        }
        // An even frame whose next frame is interior: order 0 unchanged.
        let i = self.pair(pfn);
        if code == HEAD {
            self.w[i] &= !bit(pfn);
        } else {
            self.w[i + 1] &= !bit(pfn);
        }
        let i = self.fword_in(k, pfn);
        let word = self.w[i];
        self.clear_fbit_in(k, i, word, pfn);
    }

    /// For a merge: if frame `pfn`, the buddy of a frame being freed (so in
    /// the same plane word), is a free block, takes it out of the bitmaps (it
    /// becomes interior) and says so. It is free exactly when it is a free
    /// start: a larger free block starting there would hold the freed frame.
    #[inline(always)]
    pub(crate) fn take_buddy0(&mut self, pfn: u64) -> bool {
        let i = self.pair(pfn);
        let (p, q) = (self.w[i], self.w[i + 1]);
        let m = bit(pfn);
        if p & q & m == 0 {
            return false;
        }
        self.w[i + 1] = q & !m;
        self.sync0(i, free0_word(p, q), free0_word(p, q & !m));
        true
    }

    /// For a merge: if the order-`k` block at `pfn` (k ≥ 1), the buddy of a
    /// block in the span, is free, takes it out of the bitmaps (its first
    /// frame becomes interior) and says so. A buddy outside the span has a
    /// bit all the same (see [`crate::layout`]), never set.
    #[inline(always)]
    pub(crate) fn take_buddy(&mut self, k: usize, pfn: u64) -> bool {
        let i = self.fword_in(k, pfn);
        let word = self.w[i];
        if word & bit(pfn >> k) == 0 {
            return false;
        }
        self.set_start(pfn, false);
        self.clear_fbit_in(k, i, word, pfn);
        true
    }
}

/// Sets the summary bits above the level-0 word of order `k` at index
/// `i` of `w` from its value, up to the first level whose word does not
/// change between zero and non-zero.
#[inline(never)]
pub(crate) fn update_summaries(w: &mut [u64], l: &Layout, k: usize, i: usize) {
    let mut idx = if k == 0 { i / 2 } else { i - l.trees[k].off[0] };
    let mut nonzero = level0(w, l, k, idx) != 0;
    let t = &l.trees[k];
    for level in 1..=t.top {
        let word = &mut w[t.off[level] + idx / 64];
        let was = *word;
        let now = if nonzero {
            was | bit(idx as u64)
        } else {
            was & !bit(idx as u64)
        };
        *word = now;
        if (was == 0) == (now == 0) {
            return;
        }
        nonzero = now != 0;
        idx /= 64;
    }
}

/// Level-0 word `idx` of order `k` (for order 0 read off the planes).
#[inline(always)]
fn level0(w: &[u64], l: &Layout, k: usize, idx: usize) -> u64 {
    if k == 0 {
        free0_word(w[2 * idx], w[2 * idx + 1])
    } else {
        w[l.trees[k].off[0] + idx]
    }
}
