//! Known-bad ranges in a live pool: keeping their frames out of the heap,
//! and finding the domains that own some.

use nvirt_addr::{Mfn, MfnRange};
use nvirt_buddy::FrameState;
use nvirt_persist_meta::Pmem;

use crate::bad::{BadFrames, BadRangeReport};
use crate::check::InvariantError;
use crate::pool::NvPool;
use crate::state::State;
use crate::types::Extent;

/// Data frames up to which the full check visits every bad frame.
const PER_FRAME_LIMIT: u64 = 1 << 20;

impl State<'_> {
    /// Takes `bad` as the pool's bad frames and keeps every free one out of
    /// the heap. Writes nothing to the region.
    pub(crate) fn set_bad(&mut self, bad: BadFrames) {
        self.bad = bad;
        for &run in bad.runs() {
            self.keep_out(run);
        }
    }

    /// Keeps the free bad frames of `range` out of the heap.
    pub(crate) fn keep_out_bad(&mut self, range: MfnRange) {
        let bad = self.bad;
        for part in bad.within(range) {
            self.keep_out(part);
        }
    }

    /// Takes the free frames of `run` out of the heap; allocated ones
    /// (owned, or waiting for their scrub) stay as they are.
    fn keep_out(&mut self, run: MfnRange) {
        if let Ok(n) = self.heap.reserve(run) {
            self.bad_kept_out += n;
            return;
        }
        // Some frame is allocated: take the stretches between.
        let (mut f, end) = (run.start().get(), run.end().get());
        let allocated = |heap: &nvirt_buddy::Heap<'_>, f: u64| {
            Mfn::new(f).map(|m| heap.frame_state(m)) == Some(FrameState::Allocated)
        };
        while f < end {
            while f < end && allocated(&self.heap, f) {
                // An owned extent is skipped whole; other allocated frames
                // (waiting for their scrub) one by one.
                f = match self.index.containing(self.nodes, f) {
                    Some(i) => {
                        let node = &self.nodes[i as usize];
                        (node.mfn + node.frames()).max(f + 1)
                    }
                    None => f + 1,
                };
            }
            let start = f;
            while f < end && !allocated(&self.heap, f) {
                f += 1;
            }
            if let Some(stretch) = MfnRange::from_numbers(start, f).filter(|s| !s.is_empty()) {
                self.bad_kept_out += self.heap.reserve(stretch).unwrap_or(0);
            }
        }
    }

    /// No bad frame is free in the heap.
    pub(crate) fn check_bad(&self) -> Result<(), InvariantError> {
        if self.geo.data_frames() > PER_FRAME_LIMIT {
            return Ok(());
        }
        for run in self.bad.runs() {
            for mfn in run.iter() {
                if self.heap.frame_state(mfn) == FrameState::Free {
                    return Err(InvariantError::BadFrameFree { mfn: mfn.get() });
                }
            }
        }
        Ok(())
    }
}

impl<P: Pmem> NvPool<'_, P> {
    /// The known-bad data frames given at format or open, as sorted,
    /// disjoint runs (metadata ranges were refused, ranges past the data
    /// ignored).
    pub fn bad_frames(&self) -> impl Iterator<Item = MfnRange> + '_ {
        self.state.bad.runs().iter().copied()
    }

    /// Bad frames kept out of the heap: never handed out, never written.
    #[must_use]
    pub fn bad_frames_kept_out(&self) -> u64 {
        self.state.bad_kept_out
    }

    /// Bad frames domains own (see [`bad_range_owners`](Self::bad_range_owners)).
    #[must_use]
    pub fn bad_frames_owned(&self) -> u64 {
        self.bad_range_owners(|_| {})
    }

    /// Calls `f` for every run of bad frames a domain owns, by domain slot
    /// then guest frame; returns how many bad frames domains own. Their
    /// data there is likely lost; the frames stay the domain's until it
    /// frees them, and then never return to the pool.
    pub fn bad_range_owners(&self, mut f: impl FnMut(&BadRangeReport)) -> u64 {
        if self.state.bad.runs().is_empty() {
            return 0;
        }
        let mut owned = 0;
        for d in self.domains() {
            for extent in self.extents(d.dom) {
                for frames in self.state.bad.within(extent_frames(extent)) {
                    owned += frames.len();
                    f(&BadRangeReport {
                        dom: d.dom,
                        id: d.id,
                        extent,
                        frames,
                    });
                }
            }
        }
        owned
    }
}

/// The machine frames of `extent`.
fn extent_frames(extent: Extent) -> MfnRange {
    extent.mapping().host()
}
