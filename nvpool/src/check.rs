//! The pool's invariants, checked.
//!
//! - every domain's extents form a well-formed, balanced tree of disjoint
//!   guest ranges, whose counts match the domain's counters, within its
//!   quota;
//! - every extent's machine frames are allocated in the heap (none both
//!   free and owned), and the index finds every extent by its first frame;
//! - the heap's allocated frames are exactly the owned frames plus those
//!   waiting for their scrub: none owned twice (that would count more
//!   owned than allocated) and none lost (allocated but owned by nobody);
//! - no known-bad frame is free in the heap;
//! - the heap's own invariants.
//!
//! Recovery establishes the first two by construction (each extent is
//! claimed in the heap, which refuses frames not free) and checks the
//! counts; [`NvPool::check`](crate::NvPool::check) checks everything.

use core::fmt;

use nvirt_addr::Mfn;
use nvirt_buddy::FrameState;

use crate::avl::{self, InOrder, TreeFault};
use crate::state::State;
use crate::work::slot_state;

/// Data frames up to which the full check visits every frame of every
/// extent (above, the first and last frame of each).
const PER_FRAME_LIMIT: u64 = 1 << 20;

/// An invariant that does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvariantError {
    /// The buddy heap's own invariants.
    Heap(nvirt_buddy::InvariantError),
    /// A domain's extent tree is malformed: extents out of order or
    /// overlapping, unbalanced, or badly linked.
    Tree {
        /// The domain slot.
        slot: u32,
    },
    /// A domain's counters disagree with its extents.
    Counters {
        /// The domain slot.
        slot: u32,
        /// Extents counted.
        extents: u64,
        /// Frames counted.
        frames: u64,
    },
    /// A domain owns more than its quota.
    Quota {
        /// The domain slot.
        slot: u32,
    },
    /// An extent's frame is not allocated in the heap: free and owned.
    FreeAndOwned {
        /// The frame.
        mfn: u64,
    },
    /// An extent is not in the machine-frame index, or the index holds
    /// something else.
    Index {
        /// Entries in the index.
        entries: u64,
        /// Extents in all domains.
        extents: u64,
    },
    /// A known-bad frame is free in the heap: it could be handed out.
    BadFrameFree {
        /// The frame.
        mfn: u64,
    },
    /// The heap's allocated frames are not the owned frames plus the
    /// frames being scrubbed.
    Frames {
        /// Allocated in the heap.
        allocated: u64,
        /// Owned by domains.
        owned: u64,
        /// Waiting for their scrub.
        pending: u64,
    },
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Heap(e) => write!(f, "buddy heap: {e}"),
            Self::Tree { slot } => write!(f, "domain slot {slot}: extent tree malformed"),
            Self::Counters {
                slot,
                extents,
                frames,
            } => write!(
                f,
                "domain slot {slot}: counters disagree with its {extents} extents of {frames} frames"
            ),
            Self::Quota { slot } => write!(f, "domain slot {slot} owns more than its quota"),
            Self::FreeAndOwned { mfn } => write!(f, "mfn {mfn:#x} is owned but free in the heap"),
            Self::BadFrameFree { mfn } => {
                write!(f, "mfn {mfn:#x} is known bad but free in the heap")
            }
            Self::Index { entries, extents } => write!(
                f,
                "machine-frame index holds {entries} entries for {extents} extents"
            ),
            Self::Frames {
                allocated,
                owned,
                pending,
            } => {
                if allocated > owned + pending {
                    write!(
                        f,
                        "{} frames lost: {allocated} allocated, {owned} owned, {pending} being freed",
                        allocated - owned - pending
                    )
                } else {
                    write!(
                        f,
                        "frames owned twice: {allocated} allocated, {owned} owned, {pending} being freed"
                    )
                }
            }
        }
    }
}

impl core::error::Error for InvariantError {}

impl State<'_> {
    /// The cheap checks: per-domain counters against the totals, the index
    /// size, and allocated = owned + pending. O(domains).
    pub(crate) fn check_counts(&self) -> Result<(), InvariantError> {
        let mut extents = 0;
        let mut frames = 0;
        for slot in self.domains.iter() {
            if slot.state != slot_state::FREE {
                extents += slot.extents;
                frames += slot.frames;
            }
        }
        if self.index.len() as u64 != extents {
            return Err(InvariantError::Index {
                entries: self.index.len() as u64,
                extents,
            });
        }
        let allocated = self.heap.allocated_frames();
        if frames != self.owned_frames || allocated != self.owned_frames + self.pending_frames {
            return Err(InvariantError::Frames {
                allocated,
                owned: frames,
                pending: self.pending_frames,
            });
        }
        Ok(())
    }

    /// Every invariant. O(frames + extents).
    pub(crate) fn check_all(&self) -> Result<(), InvariantError> {
        self.heap.check_invariants().map_err(InvariantError::Heap)?;
        let every_frame = self.geo.data_frames() <= PER_FRAME_LIMIT;
        for (s, slot) in self.domains.iter().enumerate() {
            if slot.state == slot_state::FREE {
                continue;
            }
            let tree = avl::check(self.nodes, slot.root).map_err(|f| match f {
                TreeFault::Order(_) | TreeFault::Balance(_) | TreeFault::Link(_) => {
                    InvariantError::Tree { slot: s as u32 }
                }
            })?;
            if tree.nodes != slot.extents || tree.frames != slot.frames {
                return Err(InvariantError::Counters {
                    slot: s as u32,
                    extents: tree.nodes,
                    frames: tree.frames,
                });
            }
            if slot.state == slot_state::LIVE && slot.frames > slot.quota {
                return Err(InvariantError::Quota { slot: s as u32 });
            }
            let mut it = InOrder::from(self.nodes, slot.root, 0);
            while let Some(i) = it.next(self.nodes) {
                let node = &self.nodes[i as usize];
                if usize::from(node.dom) != s {
                    return Err(InvariantError::Tree { slot: s as u32 });
                }
                if self.index.get(self.nodes, node.mfn) != Some(i) {
                    return Err(InvariantError::Index {
                        entries: self.index.len() as u64,
                        extents: slot.extents,
                    });
                }
                let last = node.frames() - 1;
                let mut frames = 0..=last;
                let mut ends = [0, last].into_iter();
                let visit: &mut dyn Iterator<Item = u64> =
                    if every_frame { &mut frames } else { &mut ends };
                for f in visit {
                    let mfn = node.mfn + f;
                    let state = Mfn::new(mfn).map(|p| self.heap.frame_state(p));
                    if state != Some(FrameState::Allocated) {
                        return Err(InvariantError::FreeAndOwned { mfn });
                    }
                }
            }
        }
        self.index
            .check(self.nodes)
            .map_err(|_| InvariantError::Index {
                entries: self.index.len() as u64,
                extents: u64::from(self.used_nodes),
            })?;
        self.check_bad()?;
        self.check_counts()
    }
}
