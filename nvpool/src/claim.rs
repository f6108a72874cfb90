//! Claiming named machine frames into a domain, and the quarantine domain
//! `lost+found` that salvage (see [`NvPool::salvage`]) puts them in.
//!
//! Populate lets the heap choose the frames; a claim names them: the
//! frames `start .. end`, each free, become extents of the domain at guest
//! frames equal to their machine frames (so the extents show where the
//! data lies), in blocks as large as the frames' alignment allows. It is
//! committed like a populate: one group of add records, one fence.

use core::fmt;

use nvirt_addr::{Mfn, MfnRange, Order};
use nvirt_buddy::FrameState;
use nvirt_persist_meta::Pmem;

use crate::error::{CommitError, PopulateError};
use crate::pool::{Dom, NvPool};
use crate::populate::{Plan, Populated};
use crate::state::State;
use crate::types::DomainUuid;

/// The id of the quarantine domain salvage creates: frames that records
/// lost to damage may own are kept there, unscrubbed, until the operator
/// destroys it. (`lost+found` in ASCII.)
pub const LOST_FOUND_ID: DomainUuid = DomainUuid::new(0x6c6f_7374_2b66_6f75_6e64);

/// The quarantine domain's name.
pub const LOST_FOUND_NAME: &str = "lost+found";

/// A claim was refused; the pool is unchanged (unless the commit failed
/// half-way, see [`CommitError::Poisoned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// The handle names no live domain.
    UnknownDomain,
    /// The range is empty.
    Empty,
    /// A frame of the range is not a data frame of the pool.
    NotData {
        /// The frame.
        mfn: Mfn,
    },
    /// A frame of the range is not free (owned, being scrubbed, or
    /// known-bad).
    NotFree {
        /// The frame.
        mfn: Mfn,
    },
    /// The domain already maps a guest frame the claim would use.
    GuestOverlap {
        /// The first such frame.
        gpfn: u64,
    },
    /// The claim would take the domain past its quota.
    Quota {
        /// Frames it would own.
        frames: u64,
        /// Its quota.
        quota: u64,
    },
    /// The work area has no extent nodes left.
    ExtentsFull,
    /// Committing failed.
    Commit(CommitError),
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownDomain => f.write_str("no such domain"),
            Self::Empty => f.write_str("the range of frames to claim is empty"),
            Self::NotData { mfn } => write!(f, "{mfn} is not a data frame of the pool"),
            Self::NotFree { mfn } => write!(f, "{mfn} is not free"),
            Self::GuestOverlap { gpfn } => {
                write!(f, "the domain already maps guest frame {gpfn:#x}")
            }
            Self::Quota { frames, quota } => write!(
                f,
                "the domain would own {frames} frames, over its quota of {quota}"
            ),
            Self::ExtentsFull => f.write_str("no extent nodes left in the work area"),
            Self::Commit(e) => write!(f, "commit: {e}"),
        }
    }
}

impl core::error::Error for ClaimError {}

/// The largest block at `mfn` with `left` frames to go.
fn block_order(mfn: u64, left: u64) -> Order {
    let fits = 63 - left.leading_zeros() as u8;
    let align = Mfn::new(mfn).map_or(Order::SIZE_4K, Mfn::alignment);
    Order::new(fits.min(align.get())).unwrap_or(Order::MAX)
}

impl State<'_> {
    /// Checks that slot `s` can take the frames of `range` as extents at
    /// guest frames equal to their machine frames.
    fn check_claim(&self, s: u16, range: MfnRange) -> Result<(), ClaimError> {
        if range.is_empty() {
            return Err(ClaimError::Empty);
        }
        let span = self.geo.data_span();
        if !span.contains_range(range) {
            let mfn = range
                .iter()
                .find(|&m| !span.contains(m))
                .unwrap_or(range.start());
            return Err(ClaimError::NotData { mfn });
        }
        if let Some(mfn) = range
            .iter()
            .find(|&m| self.heap.frame_state(m) != FrameState::Free)
        {
            return Err(ClaimError::NotFree { mfn });
        }
        if let Some(i) = self.overlap(s, range.start().get(), range.len()) {
            let gpfn = self.nodes[i as usize].gpfn.max(range.start().get());
            return Err(ClaimError::GuestOverlap { gpfn });
        }
        let slot = &self.domains[usize::from(s)];
        let frames = slot.frames.saturating_add(range.len());
        if frames > slot.quota {
            return Err(ClaimError::Quota {
                frames,
                quota: slot.quota,
            });
        }
        Ok(())
    }

    /// Takes the checked, free frames of `range` from the heap into nodes
    /// of slot `s` (not yet linked), threaded on a plan.
    fn plan_claim(&mut self, s: u16, range: MfnRange) -> Result<Plan, ClaimError> {
        let mut plan = Plan::EMPTY;
        let (mut at, end) = (range.start().get(), range.end().get());
        while at < end {
            let order = block_order(at, end - at);
            match self.claim_extent(s, at, at, order.get()) {
                Ok(i) => plan.push(self, i),
                Err(_) => {
                    plan.undo(self);
                    return Err(ClaimError::ExtentsFull);
                }
            }
            at += order.frames();
        }
        Ok(plan)
    }

    /// Claims the free frames of `range` into slot `s` without a record
    /// (salvage commits them with its checkpoint).
    pub(crate) fn claim_unlogged(&mut self, s: u16, range: MfnRange) -> Result<u64, ClaimError> {
        self.check_claim(s, range)?;
        let plan = self.plan_claim(s, range)?;
        let mut i = plan.head;
        for _ in 0..plan.count {
            let next = self.nodes[i as usize].link;
            if self.link(i).is_err() {
                return Err(ClaimError::GuestOverlap {
                    gpfn: self.nodes[i as usize].gpfn,
                });
            }
            i = next;
        }
        Ok(plan.frames)
    }
}

impl<P: Pmem> NvPool<'_, P> {
    /// Gives domain `dom` the free machine frames `frames`, at guest frames
    /// equal to their machine frames, in blocks as large as their alignment
    /// allows. One fence. Salvage uses it (in its checkpoint) to keep
    /// frames that lost records may own in [`LOST_FOUND_NAME`]; an operator
    /// can use it to take frames whose owner is unknown out of the pool.
    pub fn claim(&mut self, dom: Dom, frames: MfnRange) -> Result<Populated, ClaimError> {
        self.usable().map_err(ClaimError::Commit)?;
        let s = self.live(dom).ok_or(ClaimError::UnknownDomain)?;
        self.state.check_claim(s, frames)?;
        let plan = self.state.plan_claim(s, frames)?;
        self.commit_plan(s, plan).map_err(|e| match e {
            PopulateError::Commit(e) => ClaimError::Commit(e),
            _ => ClaimError::Commit(CommitError::Poisoned),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]
    use super::*;
    use crate::{Config, Owner};
    use nvirt_persist_meta::MemPmem;

    fn pool(work: &mut [u8]) -> NvPool<'_, MemPmem> {
        let size = 4 << 20;
        NvPool::format(MemPmem::new(size), Config::for_region(size as u64), work).unwrap()
    }

    #[test]
    fn claimed_frames_are_owned_at_their_own_numbers_and_survive_recovery() {
        let size = 4 << 20;
        let geo = Config::for_region(size).geometry(size).unwrap();
        let mut work = vec![0u8; geo.work_area_bytes()];
        let mut p = pool(&mut work);
        // 3 frames past a 16-frame boundary of machine frames.
        let start = (geo.data_span().start().get() + 16) / 16 * 16 + 3;
        let lf = p.create(LOST_FOUND_ID, LOST_FOUND_NAME, 64).unwrap();
        let range = MfnRange::from_numbers(start, start + 13).unwrap();
        let got = p.claim(lf, range).unwrap();
        assert_eq!(got.frames, 13);
        // 3 .. 16 in aligned blocks: 1 + 4 + 8.
        assert_eq!(got.extents, 3);
        p.check().unwrap();
        let image = p.into_region();
        let (p, _) = NvPool::recover(image, &mut work).unwrap();
        p.check().unwrap();
        let lf = p.find(LOST_FOUND_ID).unwrap();
        for mfn in range.iter() {
            match p.owner_of(mfn) {
                Owner::Domain { dom, gpfn, .. } => {
                    assert_eq!(dom, lf);
                    assert_eq!(gpfn.get(), mfn.get());
                }
                other => panic!("{mfn}: {other:?}"),
            }
        }
    }

    #[test]
    fn claims_of_owned_foreign_or_too_many_frames_are_refused_unchanged() {
        let size = 4 << 20;
        let geo = Config::for_region(size).geometry(size).unwrap();
        let mut work = vec![0u8; geo.work_area_bytes()];
        let mut p = pool(&mut work);
        let base = geo.data_span().start().get();
        let a = p.create(DomainUuid::new(1), "a", 8).unwrap();
        let taken = p.populate(a, crate::Gfn::new(0).unwrap(), 8).unwrap();
        assert_eq!(taken.frames, 8);
        let owned = p.extents(a).next().unwrap().mfn().get();
        let lf = p.create(LOST_FOUND_ID, LOST_FOUND_NAME, 4).unwrap();
        let before = p.stats();
        let r = |s, e| MfnRange::from_numbers(s, e).unwrap();
        assert_eq!(
            p.claim(lf, r(owned, owned + 1)),
            Err(ClaimError::NotFree {
                mfn: Mfn::new(owned).unwrap()
            })
        );
        assert_eq!(
            p.claim(lf, r(base - 1, base)),
            Err(ClaimError::NotData {
                mfn: Mfn::new(base - 1).unwrap()
            })
        );
        assert_eq!(p.claim(lf, r(base, base)), Err(ClaimError::Empty));
        let free = geo.data_span().end().get() - 8;
        assert_eq!(
            p.claim(lf, r(free, free + 8)),
            Err(ClaimError::Quota {
                frames: 8,
                quota: 4
            })
        );
        p.claim(lf, r(free, free + 2)).unwrap();
        assert_eq!(
            p.claim(lf, r(free + 1, free + 3)),
            Err(ClaimError::NotFree {
                mfn: Mfn::new(free + 1).unwrap()
            })
        );
        p.destroy(a).unwrap();
        assert_eq!(
            p.claim(a, r(free + 4, free + 5)),
            Err(ClaimError::UnknownDomain)
        );
        assert_eq!(p.stats().owned_frames, before.owned_frames - 8 + 2);
        p.check().unwrap();
        assert!(!ClaimError::ExtentsFull.to_string().is_empty());
    }
}
