//! The block moves every operation is made of: taking a free block,
//! recording one, merging a freed block with its buddies, and splitting a
//! taken block, with the counters they keep.

use crate::Order;
use crate::bits::HEAD;
use crate::heap::Heap;
use crate::view::View;

/// The counters and the hints of the block moves, apart from the metadata
/// so both can be borrowed at once. Laid out so that everything a
/// single-frame allocation or free changes here shares one cache line: on a
/// heap shared between CPUs, that is one line less to move per call.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Counts {
    /// Bit k set when order k has a free block.
    pub(crate) nonempty: u32,
    /// The frame freed last whose merge with its free buddy is deferred
    /// (see [`Heap::merge_deferred`]), or [`NO_FRAME`].
    pub(crate) deferred: u64,
    /// Whether the last call of `free` or `alloc` was a free: a free right
    /// after another merges at once, since a run of frees (emptying a heap,
    /// flushing a cache) would only pay the deferral twice.
    pub(crate) freeing: bool,
    /// Per order.
    pub(crate) order: [OrderCount; Order::COUNT],
}

/// No deferred frame.
pub(crate) const NO_FRAME: u64 = u64::MAX;

/// One order's counter and hint.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(crate) struct OrderCount {
    /// The frame (plus one; 0 for none) of the block last made free:
    /// allocations take it first while it is still free, so a frame just
    /// freed is reused while its metadata is in cache, and the usual
    /// allocation needs no search.
    pub(crate) recent: u64,
    /// Free blocks.
    pub(crate) free: u64,
}

impl Counts {
    /// Counts the order-`k` block at `pfn`, just made free.
    #[inline(always)]
    pub(crate) fn put(&mut self, k: usize, pfn: u64) {
        self.order[k].recent = pfn + 1;
        self.order[k].free += 1;
        self.nonempty |= 1 << k;
    }

    /// Counts a free order-`k` block just taken.
    #[inline(always)]
    pub(crate) fn take(&mut self, k: usize) {
        self.order[k].free -= 1;
        if self.order[k].free == 0 {
            self.nonempty &= !(1 << k);
        }
    }
}

impl Heap<'_> {
    /// Completes the deferred merge, if there is one: every operation but
    /// an allocation of one frame does this first, so it sees the free
    /// blocks as the maximal aligned blocks of the free frames.
    ///
    /// A free of one frame whose buddy is free, right after an allocation
    /// (of any order; or as the heap's first free), does not merge the two:
    /// the frame stays an order-0 block, remembered here, until the next
    /// operation that is not an allocation of one frame. An allocation of
    /// one frame takes the smallest free block, which is that frame, so a
    /// frame freed and allocated again and again (and a block split to one
    /// frame and merged back) costs one plane write each way instead of a
    /// split and a merge through every order. Every other allocation settles
    /// first, so no allocation fails or takes a smaller block than it would
    /// from the merged heap.
    #[inline(always)]
    pub(crate) fn merge_deferred(&mut self) {
        if self.c.deferred != NO_FRAME {
            self.merge_deferred_now();
        }
    }

    #[inline(never)]
    fn merge_deferred_now(&mut self) {
        let p = core::mem::replace(&mut self.c.deferred, NO_FRAME);
        // Still a free frame (an allocation of one frame may have taken it
        // since) whose buddy (in the same plane word) is free: merge them.
        if self.bits.is_free0(p) && self.bits.code(p ^ 1) == crate::bits::FREE {
            self.take(0, p, HEAD);
            self.put_merge(p, 0);
        }
    }

    /// The frame whose merge is deferred, if it is still free.
    pub(crate) fn deferred_frame(&self) -> Option<u64> {
        let p = self.c.deferred;
        (p != NO_FRAME && self.bits.is_free0(p)).then_some(p)
    }

    /// Takes the free in-span order-`k` block at `pfn` out of the bitmaps;
    /// its first frame becomes `code` (interior or head).
    #[inline(always)]
    pub(crate) fn take(&mut self, k: usize, pfn: u64, code: u64) {
        if k == usize::from(self.bits.l.max_order) {
            self.bits.materialise_at(pfn);
        }
        self.bits.view().clear_free(k, pfn, code);
        self.c.take(k);
    }

    /// Records the in-span order-`k` block at `pfn`, whose frames are
    /// interior (an order-0 block: in any state but free), as free, without
    /// merging.
    #[inline(always)]
    pub(crate) fn put(&mut self, k: usize, pfn: u64) {
        self.bits.view().set_free(k, pfn);
        self.c.put(k, pfn);
    }

    /// Records the in-span order-`k` block at `pfn` as free, merging it with
    /// free buddies as far as they go. Its first frame is a head or
    /// interior, its other frames are interior, and no free block holds it.
    #[inline]
    pub(crate) fn put_merge(&mut self, pfn: u64, mut k: usize) {
        let max = usize::from(self.bits.l.max_order);
        let c = &mut self.c;
        let mut v = self.bits.view();
        let mut start = pfn;
        if k == 0 {
            // The buddy shares the frame's plane word, so it has a state
            // even outside the span (unmanaged there).
            if max == 0 || !v.take_buddy0(pfn ^ 1) {
                v.set_free(0, pfn);
                c.put(0, pfn);
                return;
            }
            c.take(0);
            start = pfn & !1;
            k = 1;
        }
        (k, start) = merge_up(&mut v, c, k, start, max);
        // The first frame of a block of order ≥ 1, and a frame merged into
        // the buddy below it (whose first frame, before it if it is odd, is
        // interior by now): order 0 cannot change.
        if start == pfn {
            v.set_free_start_quiet(pfn);
        } else {
            v.set_interior_quiet(pfn);
            v.set_start(start, true);
        }
        v.set_fbit(k, start);
        c.put(k, start);
    }

    /// Splits the taken order-`j` block at `pfn` down to order `k`, keeping
    /// the sub-block that starts at `target` (already marked a head) and
    /// freeing the rest.
    pub(crate) fn split_to(&mut self, mut pfn: u64, mut j: usize, target: u64, k: usize) {
        while j > k {
            j -= 1;
            let half = 1u64 << j;
            if target >= pfn + half {
                self.put(j, pfn);
                pfn += half;
            } else {
                self.put(j, pfn + half);
            }
        }
    }

    /// Takes the free in-span order-`j` block at `pfn` (j > k) and allocates
    /// its top order-`k` part, freeing the lower halves, one per order from
    /// `j − 1` down to `k`. The block's first frame stays a free start: it
    /// begins the lower half. Returns the allocated part's first frame.
    #[inline(always)]
    pub(crate) fn take_split_top(&mut self, pfn: u64, j: usize, k: usize) -> u64 {
        if j == usize::from(self.bits.l.max_order) {
            self.bits.materialise_at(pfn);
        }
        let c = &mut self.c;
        let mut v = self.bits.view();
        let end = pfn + (1 << j);
        let target = end - (1 << k);
        v.clear_fbit(j, pfn);
        c.take(j);
        if j == 1 {
            // k = 0: the lower half is the frame at `pfn`, an order-0 block
            // as soon as its next frame, the target, is a head.
            v.set_code(target, HEAD);
            c.order[0].recent = pfn + 1;
            c.order[0].free += 1;
        } else {
            // The target's frame before it (if odd) is interior: quiet.
            v.set_head_quiet(target);
            v.set_fbit(j - 1, pfn);
            c.order[j - 1].recent = pfn + 1;
            c.order[j - 1].free += 1;
            let mut i = j - 1;
            while i > k && i > 1 {
                i -= 1;
                // The lower half of the upper half of …: frames
                // end − 2^(i+1) to end − 2^i.
                let f = end - (2 << i);
                v.set_start(f, true);
                v.set_fbit(i, f);
                c.order[i].recent = f + 1;
                c.order[i].free += 1;
            }
            if k == 0 {
                v.set_free(0, end - 2);
                c.order[0].recent = end - 1;
                c.order[0].free += 1;
            }
        }
        c.nonempty |= ((1 << j) - 1) & !((1 << k) - 1);
        target
    }

    /// Marks in-span frame `pfn`, interior inside a taken block whose other
    /// parts are not freed yet, as the head of an allocated block.
    #[inline(always)]
    pub(crate) fn mark_head(&mut self, pfn: u64) {
        self.bits.view().set_head_quiet(pfn);
    }
}

/// Merges the free order-`k` block at `start` with each free buddy in
/// turn, below order `max`: each buddy leaves the bitmaps and the counts.
/// The merged block's order and first frame; its own bits are the
/// caller's to set.
#[inline(always)]
pub(crate) fn merge_up(
    v: &mut View<'_>,
    c: &mut Counts,
    mut k: usize,
    mut start: u64,
    max: usize,
) -> (usize, u64) {
    while k < max {
        // A buddy outside the span has a bit (in the bitmap's padding
        // words or at its ends), never set.
        if !v.take_buddy(k, start ^ (1 << k)) {
            break;
        }
        c.take(k);
        start &= !(1 << k);
        k += 1;
    }
    (k, start)
}
