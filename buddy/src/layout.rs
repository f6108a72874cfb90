//! Where each bitmap lives in the metadata buffer, computed by `const fn`
//! from the managed span and the largest order.
//!
//! The buffer holds 64-bit words, in this order:
//!
//! 1. plane P and plane Q, one bit per frame each. Together they give every
//!    frame one of four states (see [`crate::heap`]): unmanaged, allocated
//!    head, free order-0 block, or "interior" (inside a larger free block
//!    or an allocated block, but not its head);
//! 2. plane S, one bit per even frame: a free block of order 1 to 9 starts
//!    there. It repeats what the bitmaps below say, so that "where does
//!    this allocated block end?" is one bit test instead of one per order
//!    (larger blocks start only at frames aligned to 1024, where the few
//!    bitmaps that can hold them are tested);
//! 3. for each order k from 1 to the largest, the free bitmap F_k with one
//!    bit per aligned 2^k-frame slot that overlaps the span: set when that
//!    slot is a free block of order k. Order 0's bitmap is not stored: it
//!    is `Q & !P`;
//! 4. for each order k from 0, the summary levels of F_k: bit i of level
//!    l + 1 is set whenever word i of level l is non-zero, up to a level of
//!    one word, so the lowest or highest free block below any bound is
//!    found in one word read per level. Summaries are lazy: a bit may stay
//!    set over a word that became zero, until a search passes by and clears
//!    it, so freeing and allocating rarely touch them.
//!
//! That is 2 + 1/2 + 1/2 + 1/4 + … < 3.5 bits per frame, plus about 1/32
//! bit for the summaries.

use crate::range::PfnRange;
use crate::types::Order;

/// Summary levels above a bitmap: 2^52 frames need 2^46 words, and eight
/// levels of 64-way summaries bring that to one word.
pub(crate) const MAX_LEVELS: usize = 8;

/// One order's bitmap and its summaries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tree {
    /// `base >> k`: the block number of slot 0.
    pub(crate) first: u64,
    /// Slots (bits of level 0).
    pub(crate) slots: u64,
    /// The level made of a single word (0 when the bitmap itself is one
    /// word).
    pub(crate) top: usize,
    /// Word offset of each level; level 0 of order 0 is virtual.
    pub(crate) off: [usize; MAX_LEVELS + 1],
}

impl Tree {
    const EMPTY: Tree = Tree {
        first: 0,
        slots: 0,
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
    /// Offset of plane P's first word; its word w is at `p_off + 2w`, so a
    /// frame's P and Q bits share a cache line.
    pub(crate) p_off: usize,
    /// Offset of plane Q's first word (`q_off + 2w`).
    pub(crate) q_off: usize,
    /// Offset of plane S: one bit per even frame (`pfn >> 1`, from
    /// `base >> 1`), set where a free block of order ≥ 1 starts.
    pub(crate) s_off: usize,
    /// Per order.
    pub(crate) trees: [Tree; Order::COUNT],
    /// Words in all.
    pub(crate) words: usize,
}

const fn words_for(bits: u64) -> usize {
    bits.div_ceil(64) as usize
}

impl Layout {
    /// The layout of a heap over `span` with blocks up to `max_order`.
    pub(crate) const fn compute(span: PfnRange, max_order: Order) -> Layout {
        let (base, end) = span.raw();
        let frames = end - base;
        let plane_words = words_for(frames);
        let mut layout = Layout {
            base,
            end,
            max_order: max_order.get(),
            p_off: 0,
            q_off: 1,
            s_off: 2 * plane_words,
            trees: [Tree::EMPTY; Order::COUNT],
            words: 2 * plane_words,
        };
        if frames == 0 {
            return layout;
        }
        layout.words += words_for(((end - 1) >> 1) - (base >> 1) + 1);
        let mut k = 0;
        while k <= max_order.get() as usize {
            let first = base >> k;
            let slots = ((end - 1) >> k) - first + 1;
            let mut tree = Tree {
                first,
                slots,
                top: 0,
                off: [0; MAX_LEVELS + 1],
            };
            let mut words = words_for(slots);
            if k > 0 {
                tree.off[0] = layout.words;
                layout.words += words;
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
        layout
    }
}

/// Bytes of metadata a heap over `span` with blocks up to `max_order`
/// needs, for an 8-byte-aligned buffer (a buffer that is not aligned needs
/// up to 7 bytes more: the heap uses its aligned part).
///
/// ```
/// use nvirt_buddy::{PfnRange, Order, metadata_bytes};
///
/// // 4 GiB of frames: 1 Mi frames, about 3.53 bits each.
/// let span = PfnRange::from_numbers(0x10_0000, 0x20_0000).unwrap();
/// let bytes = metadata_bytes(span, Order::MAX);
/// assert!(bytes * 8 <= 4 * 0x10_0000 && bytes * 8 > 3 * 0x10_0000);
/// ```
#[must_use]
pub const fn metadata_bytes(span: PfnRange, max_order: Order) -> usize {
    Layout::compute(span, max_order).words * 8
}
