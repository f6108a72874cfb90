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

use nvirt_buddy::{AlignedBlocks, Block, MemKind, Mfn, MfnRange, Order};

use crate::pool::remainder;

/// Guest frames `gpfn..gpfn + 2^order` backed by `block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First guest frame.
    pub gpfn: u64,
    /// The host block (aligned to its order, as `gpfn` is).
    pub block: Block,
    /// Which pool it came from.
    pub kind: MemKind,
}

/// The frame-0 block every empty slot holds.
const EMPTY_BLOCK: Block = match Block::new(Mfn::ZERO, Order::SIZE_4K) {
    Some(b) => b,
    None => panic!("frame 0 is a block"),
};

impl Extent {
    /// A placeholder for unused storage slots.
    pub const EMPTY: Self = Self {
        gpfn: 0,
        block: EMPTY_BLOCK,
        kind: MemKind::Volatile,
    };

    /// One past the last guest frame.
    #[must_use]
    pub const fn end(&self) -> u64 {
        self.gpfn + self.block.frames()
    }

    /// The guest frames.
    #[must_use]
    pub const fn gpfns(&self) -> Range<u64> {
        self.gpfn..self.end()
    }

    /// The host frame behind guest frame `gpfn` (which must lie inside).
    #[must_use]
    pub const fn mfn(&self, gpfn: u64) -> u64 {
        self.block.start().get() + (gpfn - self.gpfn)
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
        gpfn: u64,
    },
    /// A guest frame to remove is not backed.
    NotBacked {
        /// The frame.
        gpfn: u64,
    },
    /// A guest frame to remove is backed by the other kind.
    WrongKind {
        /// The frame.
        gpfn: u64,
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
    slots: &'s mut [Extent],
    len: usize,
}

impl<'s> P2m<'s> {
    /// An empty map keeping its extents in `storage`.
    #[must_use]
    pub const fn new(storage: &'s mut [Extent]) -> Self {
        Self {
            slots: storage,
            len: 0,
        }
    }

    /// The extents in guest-frame order.
    #[must_use]
    pub fn extents(&self) -> &[Extent] {
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

    /// Index of the first extent ending after `gpfn`.
    fn first_ending_after(&self, gpfn: u64) -> usize {
        self.extents().partition_point(|e| e.end() <= gpfn)
    }

    /// The extent holding `gpfn`.
    #[must_use]
    pub fn lookup(&self, gpfn: u64) -> Option<&Extent> {
        self.extents()
            .get(self.first_ending_after(gpfn))
            .filter(|e| e.gpfn <= gpfn)
    }

    /// Whether any frame of `gpfns` is backed.
    #[must_use]
    pub fn any_backed(&self, gpfns: &Range<u64>) -> bool {
        gpfns.start < gpfns.end
            && self
                .extents()
                .get(self.first_ending_after(gpfns.start))
                .is_some_and(|e| e.gpfn < gpfns.end)
    }

    /// Adds an extent.
    pub fn insert(&mut self, extent: Extent) -> Result<(), P2mError> {
        let at = self.first_ending_after(extent.gpfn);
        if let Some(next) = self.extents().get(at) {
            if next.gpfn < extent.end() {
                return Err(P2mError::Overlap {
                    gpfn: next.gpfn.max(extent.gpfn),
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

    /// The extents that back `gpfns`, as an index range, if every frame is
    /// backed by `kind`.
    pub fn covering(&self, gpfns: &Range<u64>, kind: MemKind) -> Result<Range<usize>, P2mError> {
        let first = self.first_ending_after(gpfns.start);
        let mut at = gpfns.start;
        let mut i = first;
        while at < gpfns.end {
            let Some(e) = self.extents().get(i).filter(|e| e.gpfn <= at) else {
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

    /// What removing `gpfns` from the extents `cover` (from
    /// [`covering`](Self::covering)) leaves of the first and last of them.
    fn pieces(&self, gpfns: &Range<u64>, cover: &Range<usize>) -> ([Extent; MAX_PIECES], usize) {
        let mut out = [Extent::EMPTY; MAX_PIECES];
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
            let part = self.part_of(e, gpfns);
            for keep in remainder(e.block, part) {
                for block in AlignedBlocks::new(keep, Order::MAX) {
                    if let Some(slot) = out.get_mut(n) {
                        *slot = Extent {
                            gpfn: e.gpfn + (block.start().get() - e.block.start().get()),
                            block,
                            kind: e.kind,
                        };
                        n += 1;
                    }
                }
            }
        }
        (out, n)
    }

    /// The host frames of `e` that back guest frames `gpfns`.
    #[must_use]
    pub fn part_of(&self, e: &Extent, gpfns: &Range<u64>) -> MfnRange {
        let start = gpfns.start.max(e.gpfn);
        let end = gpfns.end.min(e.end());
        MfnRange::from_numbers(e.mfn(start), e.mfn(end.max(start))).unwrap_or_default()
    }

    /// Whether removing `gpfns` (backed by the extents `cover`) fits the
    /// storage.
    #[must_use]
    pub fn can_remove(&self, gpfns: &Range<u64>, cover: &Range<usize>) -> bool {
        let (_, n) = self.pieces(gpfns, cover);
        self.len - cover.len() + n <= self.capacity()
    }

    /// Removes guest frames `gpfns`, backed by the extents `cover` (from
    /// [`covering`](Self::covering)); what remains of a cut extent stays as
    /// the maximal aligned blocks of its remainder, the blocks its pool
    /// keeps allocated.
    pub fn remove(&mut self, gpfns: &Range<u64>, cover: Range<usize>) -> Result<(), P2mError> {
        if !self.can_remove(gpfns, &cover) {
            return Err(P2mError::Full {
                capacity: self.capacity(),
            });
        }
        let (pieces, n) = self.pieces(gpfns, &cover);
        let new_len = self.len - cover.len() + n;
        let tail = cover.end..self.len;
        let dest = cover.start + n;
        self.slots.copy_within(tail, dest);
        self.slots[cover.start..dest].copy_from_slice(&pieces[..n]);
        self.len = new_len;
        Ok(())
    }

    /// The lowest `2^order`-aligned run of `2^order` unbacked guest frames
    /// inside `region`.
    #[must_use]
    pub fn first_hole(&self, region: &Range<u64>, order: Order) -> Option<u64> {
        let size = order.frames();
        let align = |x: u64| x.checked_add(size - 1).map(|v| v & !(size - 1));
        let mut at = align(region.start)?;
        for e in &self.extents()[self.first_ending_after(region.start)..] {
            if e.gpfn >= region.end {
                break;
            }
            if e.gpfn >= at.checked_add(size)? {
                break;
            }
            at = at.max(align(e.end())?);
        }
        (at.checked_add(size)? <= region.end).then_some(at)
    }

    /// Maximal runs of guest frames whose host frames are contiguous too,
    /// as `(gpfn, mfn, frames)`: the translation the nested tables hold,
    /// independent of how it was allocated.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        let mut rest = self.extents().iter().peekable();
        core::iter::from_fn(move || {
            let first = rest.next()?;
            let (gpfn, mfn) = (first.gpfn, first.block.start().get());
            let mut frames = first.block.frames();
            while let Some(next) = rest.peek() {
                if next.gpfn == gpfn + frames && next.block.start().get() == mfn + frames {
                    frames += next.block.frames();
                    rest.next();
                } else {
                    break;
                }
            }
            Some((gpfn, mfn, frames))
        })
    }
}

#[cfg(test)]
#[path = "p2m_tests.rs"]
mod tests;
