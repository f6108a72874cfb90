//! The invariant checker: every fact the fast paths rely on, verified from
//! scratch. Meant for tests and fuzzers; it takes time in proportion to the
//! span times the largest order.

use core::fmt;

use crate::bits::{FREE, HEAD, INTERIOR, UNMANAGED};
use crate::heap::Heap;

/// A broken invariant: what, and at which frame (or slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantError {
    /// The invariant.
    pub what: &'static str,
    /// The order concerned, if any.
    pub order: Option<u8>,
    /// The frame concerned (for summary levels: the word index).
    pub at: u64,
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:#x}", self.what, self.at)?;
        if let Some(k) = self.order {
            write!(f, " (order {k})")?;
        }
        Ok(())
    }
}

impl core::error::Error for InvariantError {}

fn fail(what: &'static str, order: Option<usize>, at: u64) -> Result<(), InvariantError> {
    Err(InvariantError {
        what,
        order: order.map(|k| k as u8),
        at,
    })
}

impl Heap<'_> {
    /// Verifies every invariant of the heap's metadata (listed at
    /// [`Heap`]), recomputing everything from the bitmaps and planes.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.check_lazy()?;
        self.check_bitmaps()?;
        self.check_summaries()?;
        self.check_frames()
    }

    fn check_bitmaps(&self) -> Result<(), InvariantError> {
        let l = &self.bits.l;
        let max = usize::from(l.max_order);
        let mut nonempty = 0u32;
        for k in 0..=max {
            let t = &l.trees[k];
            let mut count = 0;
            for w in 0..t.words {
                if self.bits.lazy_word(k, w) {
                    continue;
                }
                let mut word = self.bits.level_word(k, 0, w);
                count += u64::from(word.count_ones());
                while word != 0 {
                    let s = w * 64 + word.trailing_zeros() as usize;
                    word &= word - 1;
                    let pfn = self.bits.slot_pfn(k, s);
                    if pfn < l.base || pfn + (1 << k) > l.end {
                        return fail("free block outside the span", Some(k), pfn);
                    }
                    if self.bits.is_lazy(pfn) {
                        // Its words are implied (its first pair is checked
                        // in `check_lazy`).
                        continue;
                    }
                    if self.bits.code(pfn) != FREE {
                        return fail("free block start not a free start", Some(k), pfn);
                    }
                    if (pfn + 1..pfn + (1 << k)).any(|f| self.bits.code(f) != INTERIOR) {
                        return fail("free block frame not interior", Some(k), pfn);
                    }
                    for j in k + 1..=max {
                        if self.bits.is_free_block(j, pfn & !((1 << j) - 1)) {
                            return fail("free blocks overlap", Some(k), pfn);
                        }
                    }
                    // The one frame whose merge is deferred (see
                    // `Heap::merge_deferred`) and its buddy are both order-0 blocks.
                    let deferred = k == 0
                        && self
                            .deferred_frame()
                            .is_some_and(|d| d == pfn || d == pfn ^ 1);
                    if k < max && !deferred && self.bits.is_free_block(k, pfn ^ (1 << k)) {
                        return fail("free buddies not merged", Some(k), pfn);
                    }
                }
            }
            if count != self.free_blocks(crate::Order::new(k as u8).unwrap_or_default()) {
                return fail("free block counter wrong", Some(k), count);
            }
            if count > 0 {
                nonempty |= 1 << k;
            }
        }
        if nonempty != self.c.nonempty {
            return fail(
                "non-empty order mask wrong",
                None,
                u64::from(self.c.nonempty),
            );
        }
        // The plane words cover whole groups of 64 frames: the frames of
        // those groups outside the span are unmanaged.
        let first = l.base & !63;
        let last = (l.end - 1) | 63;
        for f in (first..l.base).chain(l.end..=last) {
            let i = self.bits.pair(f);
            if (self.bits.w[i] | self.bits.w[i + 1]) & crate::bits::bit(f) != 0 {
                return fail("frame outside the span not unmanaged", None, f);
            }
        }
        Ok(())
    }

    /// Lazy blocks are blocks of the largest order wholly inside the span
    /// (see [`crate::lazy`]), whose first word pair says what they imply:
    /// unmanaged frames, or a free start and interior frames.
    fn check_lazy(&self) -> Result<(), InvariantError> {
        let l = &self.bits.l;
        let max = usize::from(l.max_order);
        let (lo, hi) = l.lazy;
        let top = &l.trees[max];
        let mut lazy = 0;
        for w in 0..top.words {
            let word = self.bits.w[l.lbase.wrapping_add(top.origin as usize + w)];
            lazy += u64::from(word.count_ones());
            let mut bits = word;
            while bits != 0 {
                let slot = ((top.origin + w as u64) << 6) + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let pfn = slot << max;
                if slot < lo || slot >= hi {
                    return fail("lazy block not wholly in the span", Some(max), pfn);
                }
                let i = self.bits.pair(pfn);
                let pair = (self.bits.w[i], self.bits.w[i + 1]);
                let want = if self.bits.is_free_in_span(max, pfn) {
                    (u64::MAX, 1)
                } else {
                    (0, 0)
                };
                if pair != want {
                    return fail("lazy block's first frames wrong", Some(max), pfn);
                }
            }
        }
        if lazy != self.bits.lazy_left {
            return fail("lazy blocks miscounted", Some(max), l.base);
        }
        Ok(())
    }

    fn check_summaries(&self) -> Result<(), InvariantError> {
        let l = &self.bits.l;
        for k in 0..=usize::from(l.max_order) {
            let t = &l.trees[k];
            let mut below = t.words;
            for level in 1..=t.top {
                let words = below.div_ceil(64);
                for i in 0..words * 64 {
                    let set = self.bits.level_word(k, level, i / 64) & (1 << (i % 64)) != 0;
                    if i >= below && set {
                        return fail("summary bit past the level's end", Some(k), i as u64);
                    }
                    // Only the pending word's own summary bit may be out of
                    // date.
                    let pending = level == 1 && Some(i) == self.bits.pending_word(k);
                    let lazy = level == 1 && i < below && self.bits.lazy_word(k, i);
                    let nonzero = i < below && !lazy && self.bits.level_word(k, level - 1, i) != 0;
                    if i < below && !pending && set != nonzero {
                        return fail("summary bit wrong", Some(k), i as u64);
                    }
                }
                below = words;
            }
        }
        Ok(())
    }

    /// Walks the span: every free start begins a free block; every
    /// allocated block is a head followed by interior frames, 2^k of them in
    /// all for some order k within the heap's, aligned; the managed count is
    /// right.
    fn check_frames(&self) -> Result<(), InvariantError> {
        let l = &self.bits.l;
        let max = usize::from(l.max_order);
        let mut managed = 0;
        let mut run: Option<(u64, u64)> = None;
        let mut f = l.base;
        let close = |run: Option<(u64, u64)>| match run {
            Some((head, len)) if !len.is_power_of_two() || len > 1 << max => {
                fail("allocated block of no order", None, head)
            }
            Some((head, len)) if head % len != 0 => fail("allocated block misaligned", None, head),
            _ => Ok(()),
        };
        while f < l.end {
            if self.bits.is_lazy(f) {
                close(run.take())?;
                if self.bits.is_free_in_span(max, f) {
                    managed += 1 << max;
                }
                f += 1 << max;
                continue;
            }
            match self.bits.code(f) {
                UNMANAGED => {
                    close(run.take())?;
                    f += 1;
                }
                HEAD => {
                    close(run.take())?;
                    run = Some((f, 1));
                    managed += 1;
                    f += 1;
                }
                FREE => {
                    close(run.take())?;
                    let Some(k) = self.free_block_starting(f) else {
                        return fail("free start with no free block", None, f);
                    };
                    managed += 1 << k;
                    f += 1 << k;
                }
                _ => {
                    let Some((_, len)) = run.as_mut() else {
                        return fail("interior frame outside any block", None, f);
                    };
                    *len += 1;
                    managed += 1;
                    f += 1;
                }
            }
        }
        close(run)?;
        if managed != self.managed_frames() {
            return fail("managed frame count wrong", None, managed);
        }
        if self.bits.count_managed(l.base, l.end) != managed {
            return fail("managed frames disagree", None, managed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::bits::{FREE, INTERIOR, bit};
    use crate::{Constraints, Heap, MemKind, MfnRange, Order};

    /// A heap over frames 64..1088 with every frame added and an order-2
    /// block allocated (at 1084, the top), the metadata in `buf`.
    fn heap(buf: &mut Vec<u8>) -> Heap<'_> {
        let span = MfnRange::from_numbers(64, 64 + 1024).unwrap();
        *buf = vec![0; crate::metadata_bytes(span, Order::MAX) + 8];
        let mut heap = Heap::new(MemKind::Volatile, span, Order::MAX, buf).unwrap();
        heap.add(span).unwrap();
        let block = heap
            .alloc(Order::new(2).unwrap(), Constraints::ANY)
            .unwrap();
        assert_eq!(block.start().get(), 1084);
        heap.check_invariants().unwrap();
        heap
    }

    fn broken(heap: &Heap<'_>) -> &'static str {
        heap.check_invariants().unwrap_err().what
    }

    #[test]
    fn a_summary_bit_over_an_empty_word_is_caught() {
        let mut buf = Vec::new();
        let mut heap = heap(&mut buf);
        // Settle order 1's pending word, then set a summary bit over a word
        // with no free block: the exact summaries are broken.
        heap.bits.settle(1);
        let t = heap.bits.l.trees[1];
        let word = (0..t.words)
            .find(|&w| heap.bits.level_word(1, 0, w) == 0)
            .unwrap();
        heap.bits.w[t.off[1] + word / 64] |= 1 << (word % 64);
        assert_eq!(broken(&heap), "summary bit wrong");
    }

    #[test]
    fn a_free_start_without_a_free_block_is_caught() {
        let mut buf = Vec::new();
        let mut heap = heap(&mut buf);
        // Frame 1086 is inside the allocated block at 1084: mark it a free
        // start of nothing.
        heap.bits.view().set_code(1086, FREE);
        assert_eq!(broken(&heap), "free start with no free block");
        // Inside a free block, the same is caught as a broken free block.
        heap.bits.view().set_code(1086, INTERIOR);
        heap.bits.view().set_code(66, FREE);
        assert_eq!(broken(&heap), "free block frame not interior");
    }

    #[test]
    fn a_free_bit_without_its_free_start_is_caught() {
        let mut buf = Vec::new();
        let mut heap = heap(&mut buf);
        // The free order-6 block at 64 loses its free start.
        assert!(heap.bits.is_free_block(6, 64));
        heap.bits.view().set_code(64, INTERIOR);
        assert_eq!(broken(&heap), "free block start not a free start");
    }

    #[test]
    fn unmerged_buddies_are_caught() {
        let mut buf = Vec::new();
        let mut heap = heap(&mut buf);
        // Split the free order-6 block at 64 into two free order-5 halves.
        let i = heap.bits.fword(6, 64).unwrap();
        heap.bits.w[i] &= !bit(64 >> 6);
        heap.bits.view().set_start(96, true);
        heap.bits.view().set_fbit(5, 64);
        heap.bits.view().set_fbit(5, 96);
        assert_eq!(broken(&heap), "free buddies not merged");
    }
}
