//! A guest's physical-to-machine map: which host block backs which guest
//! frames, and of which kind.
//!
//! Every extent is one buddy block exactly as its pool allocated it, so it
//! can be given back as it was taken. Extents are kept sorted by guest
//! frame in caller-provided storage (the hypervisor has no allocator); the
//! nested tables hold the same translation for the hardware, this map is
//! the hypervisor's own record: it answers "what backs this guest frame?"
//! when the guest gives memory back, and reaches guest memory for
//! hypercall arguments without walking tables.

use core::fmt;
use core::ops::Range;

use nvirt_addr::{FrameMapping, Gfn, GfnRange, Mfn, MfnRange};
use nvirt_buddy::{AlignedBlocks, Block, MemKind, Order};

use crate::pool::remainder;

/// Guest frames `gfn..gfn + 2^order` backed by `block`, one buddy block of
/// the pool of `kind`: a guest-to-machine run whose guest side is aligned
/// like its block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockMapping {
    mapping: FrameMapping,
    block: Block,
    kind: MemKind,
}

/// The frame-0 block every empty slot holds.
const EMPTY_BLOCK: Block = match Block::new(Mfn::ZERO, Order::SIZE_4K) {
    Some(b) => b,
    None => panic!("frame 0 is a block"),
};

impl BlockMapping {
    /// A placeholder for unused storage slots.
    pub const EMPTY: Self = match Self::new(Gfn::ZERO, EMPTY_BLOCK, MemKind::Volatile) {
        Some(m) => m,
        None => panic!("frame 0 maps frame 0"),
    };

    /// Guest frames from `gfn` backed by `block`, if `gfn` is aligned to
    /// the block's order and the run ends inside the guest frame space.
    #[must_use]
    pub const fn new(gfn: Gfn, block: Block, kind: MemKind) -> Option<Self> {
        if !gfn.is_aligned(block.order()) {
            return None;
        }
        match FrameMapping::new(gfn, block.start(), block.frames()) {
            Some(mapping) => Some(Self {
                mapping,
                block,
                kind,
            }),
            None => None,
        }
    }

    /// First guest frame.
    #[must_use]
    pub const fn gfn(&self) -> Gfn {
        self.mapping.gfn()
    }

    /// The host block.
    #[must_use]
    pub const fn block(&self) -> Block {
        self.block
    }

    /// Which pool it came from.
    #[must_use]
    pub const fn kind(&self) -> MemKind {
        self.kind
    }

    /// One past the last guest frame.
    #[must_use]
    pub const fn end(&self) -> Gfn {
        self.mapping.guest().end()
    }

    /// The guest frames.
    #[must_use]
    pub const fn gfns(&self) -> GfnRange {
        self.mapping.guest()
    }

    /// The guest-to-machine run.
    #[must_use]
    pub const fn mapping(&self) -> FrameMapping {
        self.mapping
    }

    /// The host frame behind guest frame `gfn`, if it lies inside.
    #[must_use]
    pub const fn mfn(&self, gfn: Gfn) -> Option<Mfn> {
        self.mapping.translate(gfn)
    }
}

/// A change the map cannot take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2mError {
    /// The storage is full.
    Full {
        /// Its capacity.
        capacity: usize,
    },
    /// The extent overlaps one already present.
    Overlap {
        /// The first guest frame both hold.
        gpfn: Gfn,
    },
    /// A guest frame to remove is not backed.
    NotBacked {
        /// The frame.
        gpfn: Gfn,
    },
    /// A guest frame to remove is backed by the other kind.
    WrongKind {
        /// The frame.
        gpfn: Gfn,
        /// What backs it.
        backed_by: MemKind,
    },
}

impl fmt::Display for P2mError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Full { capacity } => write!(f, "guest memory map full ({capacity} extents)"),
            Self::Overlap { gpfn } => write!(f, "guest frame {gpfn:#x} is backed already"),
            Self::NotBacked { gpfn } => write!(f, "guest frame {gpfn:#x} is not backed"),
            Self::WrongKind { gpfn, backed_by } => {
                write!(f, "guest frame {gpfn:#x} is backed by {backed_by} memory")
            }
        }
    }
}

impl core::error::Error for P2mError {}

/// Most pieces one removal leaves: what remains of the first and of the
/// last extent it cuts, each at most two runs of one block per order.
const MAX_PIECES: usize = 4 * Order::COUNT;

/// A guest's extents, sorted by guest frame, disjoint.
#[derive(Debug)]
pub struct P2m<'s> {
    slots: &'s mut [BlockMapping],
    len: usize,
}

impl<'s> P2m<'s> {
    /// An empty map keeping its extents in `storage`.
    #[must_use]
    pub const fn new(storage: &'s mut [BlockMapping]) -> Self {
        Self {
            slots: storage,
            len: 0,
        }
    }

    /// The extents in guest-frame order.
    #[must_use]
    pub fn extents(&self) -> &[BlockMapping] {
        &self.slots[..self.len]
    }

    /// Most extents.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Guest frames backed by `kind`.
    #[must_use]
    pub fn frames(&self, kind: MemKind) -> u64 {
        self.extents()
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.block.frames())
            .sum()
    }

    /// Index of the first extent ending after `gfn`.
    fn first_ending_after(&self, gfn: Gfn) -> usize {
        self.extents().partition_point(|e| e.end() <= gfn)
    }

    /// The extent holding `gfn`.
    #[must_use]
    pub fn lookup(&self, gfn: Gfn) -> Option<&BlockMapping> {
        self.extents()
            .get(self.first_ending_after(gfn))
            .filter(|e| e.gfn() <= gfn)
    }

    /// Whether any frame of `gfns` is backed.
    #[must_use]
    pub fn any_backed(&self, gfns: &GfnRange) -> bool {
        !gfns.is_empty()
            && self
                .extents()
                .get(self.first_ending_after(gfns.start()))
                .is_some_and(|e| e.gfn() < gfns.end())
    }

    /// Adds an extent.
    pub fn insert(&mut self, extent: BlockMapping) -> Result<(), P2mError> {
        let at = self.first_ending_after(extent.gfn());
        if let Some(next) = self.extents().get(at) {
            if next.gfn() < extent.end() {
                return Err(P2mError::Overlap {
                    gpfn: next.gfn().max(extent.gfn()),
                });
            }
        }
        if self.len == self.slots.len() {
            return Err(P2mError::Full {
                capacity: self.capacity(),
            });
        }
        self.slots[at..=self.len].rotate_right(1);
        self.slots[at] = extent;
        self.len += 1;
        Ok(())
    }

    /// The extents that back `gfns`, as an index range, if every frame is
    /// backed by `kind`.
    pub fn covering(&self, gfns: &GfnRange, kind: MemKind) -> Result<Range<usize>, P2mError> {
        let first = self.first_ending_after(gfns.start());
        let mut at = gfns.start();
        let mut i = first;
        while at < gfns.end() {
            let Some(e) = self.extents().get(i).filter(|e| e.gfn() <= at) else {
                return Err(P2mError::NotBacked { gpfn: at });
            };
            if e.kind != kind {
                return Err(P2mError::WrongKind {
                    gpfn: at,
                    backed_by: e.kind,
                });
            }
            at = e.end();
            i += 1;
        }
        Ok(first..i)
    }

    /// What removing `gfns` from the extents `cover` (from
    /// [`covering`](Self::covering)) leaves of the first and last of them.
    fn pieces(&self, gfns: &GfnRange, cover: &Range<usize>) -> ([BlockMapping; MAX_PIECES], usize) {
        let mut out = [BlockMapping::EMPTY; MAX_PIECES];
        let mut n = 0;
        if cover.is_empty() {
            return (out, n);
        }
        let ends = [cover.start, cover.end.saturating_sub(1)];
        for (k, &i) in ends.iter().enumerate() {
            if k == 1 && ends[0] == ends[1] {
                break;
            }
            let Some(e) = self.extents().get(i) else {
                continue;
            };
            let part = self.part_of(e, gfns);
            let offset = e.mapping().offset();
            for keep in remainder(e.block, part) {
                for block in AlignedBlocks::new(keep, Order::MAX) {
                    let piece = offset
                        .to_guest(block.start())
                        .and_then(|gfn| BlockMapping::new(gfn, block, e.kind));
                    if let (Some(slot), Some(piece)) = (out.get_mut(n), piece) {
                        *slot = piece;
                        n += 1;
                    }
                }
            }
        }
        (out, n)
    }

    /// The host frames of `e` that back guest frames `gfns`.
    #[must_use]
    pub fn part_of(&self, e: &BlockMapping, gfns: &GfnRange) -> MfnRange {
        let Some(both) = e.gfns().intersection(*gfns) else {
            return MfnRange::EMPTY;
        };
        match (
            e.mfn(both.start()),
            both.end().checked_sub(1).and_then(|l| e.mfn(l)),
        ) {
            (Some(start), Some(last)) => last
                .checked_add(1)
                .and_then(|end| MfnRange::new(start, end))
                .unwrap_or_default(),
            _ => MfnRange::EMPTY,
        }
    }

    /// Whether removing `gfns` (backed by the extents `cover`) fits the
    /// storage.
    #[must_use]
    pub fn can_remove(&self, gfns: &GfnRange, cover: &Range<usize>) -> bool {
        let (_, n) = self.pieces(gfns, cover);
        self.len - cover.len() + n <= self.capacity()
    }

    /// Removes guest frames `gfns`, backed by the extents `cover` (from
    /// [`covering`](Self::covering)); what remains of a cut extent stays as
    /// the maximal aligned blocks of its remainder, the blocks its pool
    /// keeps allocated.
    pub fn remove(&mut self, gfns: &GfnRange, cover: Range<usize>) -> Result<(), P2mError> {
        if !self.can_remove(gfns, &cover) {
            return Err(P2mError::Full {
                capacity: self.capacity(),
            });
        }
        let (pieces, n) = self.pieces(gfns, &cover);
        let new_len = self.len - cover.len() + n;
        let tail = cover.end..self.len;
        let dest = cover.start + n;
        self.slots.copy_within(tail, dest);
        self.slots[cover.start..dest].copy_from_slice(&pieces[..n]);
        self.len = new_len;
        Ok(())
    }

    /// Forgets every extent backed by `kind`; the frames they held.
    pub fn drop_kind(&mut self, kind: MemKind) -> u64 {
        let dropped = self.frames(kind);
        let mut kept = 0;
        for i in 0..self.len {
            if self.slots[i].kind != kind {
                self.slots[kept] = self.slots[i];
                kept += 1;
            }
        }
        self.len = kept;
        dropped
    }

    /// The lowest `2^order`-aligned run of `2^order` unbacked guest frames
    /// inside `region`.
    #[must_use]
    pub fn first_hole(&self, region: &GfnRange, order: Order) -> Option<Gfn> {
        let size = order.frames();
        let align = |x: Gfn| {
            let down = x.align_down(order);
            if down == x {
                Some(x)
            } else {
                down.checked_add(size)
            }
        };
        let mut at = align(region.start())?;
        for e in &self.extents()[self.first_ending_after(region.start())..] {
            if e.gfn() >= region.end() || e.gfn() >= at.checked_add(size)? {
                break;
            }
            at = at.max(align(e.end())?);
        }
        (at.checked_add(size)? <= region.end()).then_some(at)
    }

    /// Maximal runs of guest frames whose host frames are contiguous too:
    /// the translation the nested tables hold, independent of how it was
    /// allocated.
    pub fn runs(&self) -> impl Iterator<Item = FrameMapping> + '_ {
        let mut rest = self.extents().iter().peekable();
        core::iter::from_fn(move || {
            let first = rest.next()?;
            let mut run = first.mapping();
            while let Some(next) = rest.peek() {
                let joined =
                    FrameMapping::new(run.gfn(), run.mfn(), run.frames() + next.block.frames());
                let follows =
                    next.gfn() == run.guest().end() && next.block.start() == run.host().end();
                match joined {
                    Some(j) if follows => {
                        run = j;
                        rest.next();
                    }
                    _ => break,
                }
            }
            Some(run)
        })
    }
}

#[cfg(test)]
#[path = "p2m_tests.rs"]
mod tests;
