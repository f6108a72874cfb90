//! Where each bitmap lives in the metadata buffer, computed by `const fn`
//! from the managed span and the largest order.
//!
//! The buffer holds 64-bit words, in this order:
//!
//! 1. planes P and Q, one bit per frame each, interleaved a word at a time
//!    (P of frames 64w..64w+63 at word 2w, their Q at word 2w + 1, counted
//!    from the 64-aligned group that holds the span's first frame), so a
//!    frame's state is one 16-byte read. Together they give every frame one
//!    of four states (see [`crate::bits`]): unmanaged, interior, allocated
//!    head, or free start — the first frame of a free block of any order;
//! 2. for each order k from 1 to the largest, the free bitmap F_k with one
//!    bit per aligned 2^k-frame block, in words aligned like the planes'
//!    (bit `(pfn >> k) % 64` of word `(pfn >> (k + 6)) - (base >> (k + 6))`):
//!    set when that block is a free block of order k, with a zero word
//!    before and after it so that the buddy of every block in the span has a
//!    bit to test. Order 0's bitmap is not stored: it is read off the planes
//!    (a free start whose next frame is not interior);
//! 3. for each order k from 0, the summary levels of F_k: bit i of level
//!    l + 1 is set exactly when word i of level l is non-zero, up to a level
//!    of one word, so the highest or lowest free block below or above any
//!    bound is found in one word read per level, without backtracking;
//! 4. the lazy bitmap, one bit per block of the largest order, indexed like
//!    that order's free bitmap: set while the block's per-frame metadata is
//!    not written yet (see [`crate::lazy`]).
//!
//! That is 2 + 1/2 + 1/4 + … < 3 bits per frame, plus about 1/32 bit for the
//! summaries and a word per bitmap for alignment.

use crate::MfnRange;
use crate::Order;

/// Summary levels above a bitmap: 2^40 frames (`Mfn::LIMIT`) need 2^34
/// words, and six levels of 64-way summaries bring that to one word; eight
/// leave room.
pub(crate) const MAX_LEVELS: usize = 8;

/// One order's bitmap and its summaries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tree {
    /// `base >> (k + 6)`: the absolute word number of level-0 word 0.
    pub(crate) origin: u64,
    /// Words of level 0 (for order 0: word pairs of the planes).
    pub(crate) words: usize,
    /// The level made of a single word (0 when level 0 is one word).
    pub(crate) top: usize,
    /// Word offset of each level; level 0 of order 0 is the planes.
    pub(crate) off: [usize; MAX_LEVELS + 1],
}

impl Tree {
    const EMPTY: Tree = Tree {
        origin: 0,
        words: 0,
        top: 0,
        off: [0; MAX_LEVELS + 1],
    };
}

/// The whole metadata layout of one heap.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// First frame of the span.
    pub(crate) base: u64,
    /// One past the last frame of the span.
    pub(crate) end: u64,
    /// The largest order of the heap.
    pub(crate) max_order: u8,
    /// Index of the P word of frame 0, wrapping: frame `pfn`'s P word is
    /// `pbase + 2 * (pfn >> 6)` (for frames in the span).
    pub(crate) pbase: usize,
    /// Per order k ≥ 1, the index of the F_k word of block 0, wrapping: the
    /// word of the block at `pfn` is `fbase[k] + (pfn >> (k + 6))`.
    pub(crate) fbase: [usize; Order::COUNT],
    /// Per order.
    pub(crate) trees: [Tree; Order::COUNT],
    /// Index of the lazy word of block 0 of the largest order, wrapping:
    /// the word of the block at `pfn` is `lbase + (pfn >> (max_order + 6))`.
    pub(crate) lbase: usize,
    /// The blocks of the largest order that start lazy, as block numbers
    /// (`pfn >> max_order`): those wholly inside the span, when a block
    /// covers whole plane words (largest order ≥ 6); empty otherwise.
    pub(crate) lazy: (u64, u64),
    /// Words in all.
    pub(crate) words: usize,
}

/// The smallest largest order whose blocks can be lazy: a block must cover
/// whole plane words.
pub(crate) const LAZY_MIN_ORDER: u8 = 6;

const fn words_between(first: u64, last: u64) -> usize {
    (last - first + 1) as usize
}

impl Layout {
    /// The layout of a heap over `span` with blocks up to `max_order`.
    pub(crate) const fn compute(span: MfnRange, max_order: Order) -> Layout {
        let (base, end) = (span.start().get(), span.end().get());
        let mut layout = Layout {
            base,
            end,
            max_order: max_order.get(),
            pbase: 0,
            fbase: [0; Order::COUNT],
            trees: [Tree::EMPTY; Order::COUNT],
            lbase: 0,
            lazy: (0, 0),
            words: 0,
        };
        if end == base {
            return layout;
        }
        let pairs = words_between(base >> 6, (end - 1) >> 6);
        layout.words = 2 * pairs;
        layout.pbase = (2 * (base >> 6) as usize).wrapping_neg();
        let mut k = 0;
        while k <= max_order.get() as usize {
            let origin = base >> (k + 6);
            let mut words = words_between(origin, (end - 1) >> (k + 6));
            let mut tree = Tree {
                origin,
                words,
                top: 0,
                off: [0; MAX_LEVELS + 1],
            };
            if k > 0 {
                // A zero word on each side, so the buddy of any block in the
                // span has a word to test (its bit is never set).
                tree.off[0] = layout.words + 1;
                layout.fbase[k] = tree.off[0].wrapping_sub(origin as usize);
                layout.words += words + 2;
            }
            let mut level = 0;
            while words > 1 && level < MAX_LEVELS {
                level += 1;
                words = words.div_ceil(64);
                tree.off[level] = layout.words;
                layout.words += words;
            }
            tree.top = level;
            layout.trees[k] = tree;
            k += 1;
        }
        let max = max_order.get() as usize;
        let top = layout.trees[max];
        layout.lbase = layout.words.wrapping_sub(top.origin as usize);
        layout.words += top.words;
        let (first, last) = (base.div_ceil(1 << max), end >> max);
        if max_order.get() >= LAZY_MIN_ORDER && first < last {
            layout.lazy = (first, last);
        }
        layout
    }
}

/// Bytes of metadata a heap over `span` with blocks up to `max_order`
/// needs, for an 8-byte-aligned buffer (a buffer that is not aligned needs
/// up to 7 bytes more: the heap uses its aligned part).
///
/// ```
/// use nvirt_buddy::{MfnRange, Order, metadata_bytes};
///
/// // 4 GiB of frames: 1 Mi frames, about 3.03 bits each.
/// let span = MfnRange::from_numbers(0x10_0000, 0x20_0000).unwrap();
/// let bytes = metadata_bytes(span, Order::MAX);
/// assert!(bytes * 8 <= 4 * 0x10_0000 && bytes * 8 > 3 * 0x10_0000);
/// ```
#[must_use]
pub const fn metadata_bytes(span: MfnRange, max_order: Order) -> usize {
    Layout::compute(span, max_order).words * 8
}
