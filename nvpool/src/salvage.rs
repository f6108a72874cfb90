//! Salvage (`nvirt pool repair --salvage`): a pool whose log lost
//! committed records is cut back to the longest state that provably
//! happened — everything committed before the first lost record — and the
//! frames that the lost records, or any record after them, may own are
//! kept in the quarantine domain [`LOST_FOUND_NAME`], unscrubbed, until
//! the operator destroys it.
//!
//! *Which state.* The log's survey names the first damaged range of
//! committed records. Replaying the log with that range read as blank
//! gives the state before it (the chain simply ends there); every record
//! from there on — lost or intact — is dropped.
//!
//! *Quarantine.* A frame the salvaged state shows free (or freeing, which
//! salvage never scrubs) is put in `lost+found` when an intact record
//! after the cut adds it to a domain, or when it holds anything but zeros:
//! format and every scrub leave free frames zeroed, so a written free
//! frame was handed out and written by an operation that is now lost. A
//! frame a later record adds to another domain than the salvaged owner
//! (or to a domain a dropped record created in the owner's slot) means
//! its salvaged owner gave it up in a lost record: that owner's whole
//! extent moves to `lost+found` too. Frames that are free, zero and
//! named by no surviving record hold no data and stay free. Extents in
//! `lost+found` map guest frame = machine frame.
//!
//! *Crash safety.* Salvage writes only a checkpoint of the salvaged state
//! (snapshot into the inactive slot, a fence, then the superblocks'
//! switch words, a fence), through a view of the log that drops every
//! other store: before the switch the image is the damaged one, after it
//! the salvaged one. The checkpoint's epoch exceeds every epoch in the
//! record area, so nothing left there can join the new chain or testify
//! for it. A copy of the metadata kept beside the image (the user tool
//! does that) is the operator's undo.

use core::fmt;
use core::ops::Range;

use nvirt_addr::{Mfn, MfnRange, PAGE_SIZE};
use nvirt_buddy::FrameState;
use nvirt_persist_meta::{
    Damaged, DamagedPart, ImageError, Log, Pmem, PmemError, RecordKind, replay,
};
use zerocopy::FromBytes;

use crate::bad::{BadFrames, BadRange, BadRangeError};
use crate::claim::{ClaimError, LOST_FOUND_ID, LOST_FOUND_NAME};
use crate::config::LOG_OFFSET;
use crate::damage::DamageError;
use crate::error::CommitError;
use crate::format::check_log;
use crate::pool::NvPool;
use crate::records::{ADD, CREATE, Entry, ListHeader};
use crate::recover::{RecoverError, read_geometry};
use crate::replay::Rebuild;
use crate::snapshot;
use crate::state::State;
use crate::survey::{LogView, PoolRecord};
use crate::types::{DomainUuid, Extent};
use crate::window::Window;
use crate::work::{WorkAreaError, carve};

/// Why salvage wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SalvageError {
    /// The pool superblocks or geometry cannot be read: nothing to start
    /// from.
    Pool(RecoverError),
    /// The log cannot be read up to its first damage (no superblock, or
    /// the active checkpoint is damaged: no state is known at all).
    Log(ImageError),
    /// The records before the damage, or the log without damaged records,
    /// say something impossible.
    Replay(DamageError),
    /// The work area is too small.
    WorkArea(WorkAreaError),
    /// The known-bad ranges cannot be taken.
    BadRange(BadRangeError),
    /// The quarantine needs a domain slot and none is free.
    DomainsFull,
    /// Quarantining frames failed (e.g. no extent nodes left).
    Quarantine(ClaimError),
    /// The log's epoch could not be raised above every epoch in its
    /// record area (it is full).
    Epoch {
        /// The checkpoint's epoch would be this.
        checkpoint: u64,
        /// The highest epoch of a record in the area.
        highest: u64,
    },
    /// Writing the salvaged state failed before it took effect.
    Checkpoint(CommitError),
    /// The region refused an access.
    Pmem(PmemError),
}

impl fmt::Display for SalvageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Pool(e) => write!(f, "nothing to salvage: {e}"),
            Self::Log(e) => write!(f, "nothing to salvage: log: {e}"),
            Self::Replay(e) => write!(f, "the records before the damage cannot be replayed: {e}"),
            Self::WorkArea(e) => e.fmt(f),
            Self::BadRange(e) => e.fmt(f),
            Self::DomainsFull => write!(
                f,
                "no free domain slot for the quarantine domain {LOST_FOUND_NAME}: destroy a domain first"
            ),
            Self::Quarantine(e) => write!(f, "quarantining frames: {e}"),
            Self::Epoch {
                checkpoint,
                highest,
            } => write!(
                f,
                "the salvaged checkpoint's epoch {checkpoint} would not exceed epoch {highest} found in the record area"
            ),
            Self::Checkpoint(e) => write!(f, "writing the salvaged state: {e}"),
            Self::Pmem(e) => write!(f, "region refused an access: {e}"),
        }
    }
}

impl core::error::Error for SalvageError {}

impl From<PmemError> for SalvageError {
    fn from(e: PmemError) -> Self {
        Self::Pmem(e)
    }
}

/// Why frames went to quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuarantineReason {
    /// An intact record dropped by the salvage (sequence number `seq`)
    /// adds them to a domain.
    LaterRecord {
        /// The record's sequence number.
        seq: u64,
    },
    /// They are free in the salvaged state but hold data.
    Written,
    /// A dropped record gives some of them to another domain, so their
    /// salvaged owner (`from`, this extent) had given them up.
    Moved {
        /// The salvaged owner.
        from: DomainUuid,
        /// Its extent, now in `lost+found`.
        extent: Extent,
    },
}

impl fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LaterRecord { seq } => write!(f, "added by dropped record seq {seq}"),
            Self::Written => f.write_str("free but written"),
            Self::Moved { from, extent } => write!(
                f,
                "taken from domain {from} (extent gpfn={:#x} order={}): a dropped record gives it to another domain",
                extent.gfn().get(),
                extent.order().get()
            ),
        }
    }
}

/// Frames put in quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The frames.
    pub frames: MfnRange,
    /// Why.
    pub why: QuarantineReason,
}

/// What salvage did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SalvageReport {
    /// No committed record is lost: nothing was written (plain recovery
    /// opens the pool, repairing what it can).
    Unchanged,
    /// The pool was cut back and the salvaged state written.
    Salvaged(Salvaged),
}

/// The figures of a salvage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Salvaged {
    /// The first damaged range of committed records (region offsets).
    pub damaged: Damaged,
    /// Sequence number of the first lost record.
    pub first_lost_seq: u64,
    /// Records kept (replayed after the active checkpoint).
    pub kept_records: u64,
    /// Intact records after the damage, dropped with it.
    pub dropped_records: u64,
    /// Frames put in `lost+found`.
    pub quarantined_frames: u64,
    /// Extents moved from their salvaged owner to `lost+found`.
    pub moved_extents: u64,
    /// The generation of the checkpoint that holds the salvaged state.
    pub generation: u64,
}

/// The log, as salvage's replay sees it: `hide` (log offsets) reads as
/// blank, and stores reach the region only once `writes` is set.
struct View<P: Pmem> {
    window: Window<P>,
    hide: Range<u64>,
    writes: bool,
}

impl<P: Pmem> Pmem for View<P> {
    fn size(&self) -> u64 {
        self.window.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        self.window.read(offset, buf)?;
        let end = offset.saturating_add(buf.len() as u64);
        let (from, to) = (self.hide.start.max(offset), self.hide.end.min(end));
        if from < to {
            buf[(from - offset) as usize..(to - offset) as usize].fill(0);
        }
        Ok(())
    }
    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        if self.writes {
            self.window.store_u64(offset, value)
        } else {
            Ok(())
        }
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        if self.writes {
            self.window.store(offset, data)
        } else {
            Ok(())
        }
    }
    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        if self.writes {
            self.window.write_back(offset, len)
        } else {
            Ok(())
        }
    }
    fn fence(&mut self) {
        if self.writes {
            self.window.fence();
        }
    }
}

/// What the first survey found.
struct Found {
    /// The first damaged range of committed records (region offsets),
    /// with its first lost sequence number.
    first: Option<(Damaged, u64)>,
    /// Intact records after it.
    dropped: u64,
    /// The highest epoch of any record walked.
    highest_epoch: u64,
    /// Why the survey stopped early.
    stopped: Option<ImageError>,
}

fn survey_log<P: Pmem + ?Sized>(region: &P, log_len: u64) -> Found {
    let view = LogView {
        region,
        len: log_len,
    };
    let mut found = Found {
        first: None,
        dropped: 0,
        highest_epoch: 0,
        stopped: None,
    };
    let mut first = None;
    let mut dropped = 0;
    let mut highest = 0;
    let survey = nvirt_persist_meta::survey(
        &view,
        |d| {
            if let (None, DamagedPart::Records { first_seq, .. }) = (&first, d.what) {
                // Reported in region offsets, as the pool's survey does.
                let mut d = Damaged {
                    offset: d.offset + LOG_OFFSET,
                    ..*d
                };
                if let DamagedPart::Records { failed_offset, .. } = &mut d.what {
                    *failed_offset += LOG_OFFSET;
                }
                first = Some((d, first_seq));
            }
        },
        |r, past| {
            highest = highest.max(r.epoch());
            if past && r.kind() != RecordKind::EPOCH {
                dropped += 1;
            }
        },
    );
    found.first = first;
    found.dropped = dropped;
    found.highest_epoch = highest;
    found.stopped = survey.stopped;
    found
}

/// What a record dropped by the salvage says, as far as the quarantine
/// cares.
#[derive(Clone, Copy, Debug)]
enum Dropped {
    /// It creates a domain in `slot`.
    Create {
        /// The slot.
        slot: u32,
    },
    /// It adds the block `gpfn -> mfn, order` to the domain in `slot`.
    Add {
        /// The record's sequence number.
        seq: u64,
        /// The slot.
        slot: u32,
        /// The block's first guest frame.
        gpfn: u64,
        /// Its first machine frame.
        mfn: u64,
        /// Its order.
        order: u8,
    },
}

/// Every create and add record after the first damage, in order, through
/// `each`.
fn dropped_records<P: Pmem + ?Sized>(region: &P, log_len: u64, mut each: impl FnMut(Dropped)) {
    let view = LogView {
        region,
        len: log_len,
    };
    nvirt_persist_meta::survey(
        &view,
        |_| {},
        |r, past| {
            if !past {
                return;
            }
            let record = PoolRecord::new(r.kind(), r.payload());
            if r.kind() == CREATE {
                if let Some(slot) = record.slot() {
                    each(Dropped::Create { slot });
                }
                return;
            }
            if r.kind() != ADD {
                return;
            }
            let Ok((h, rest)) = ListHeader::read_from_prefix(r.payload()) else {
                return;
            };
            for e in rest.chunks_exact(16).take(h.count.get() as usize) {
                if let Ok(e) = Entry::read_from_bytes(e) {
                    let (gpfn, order) = e.block();
                    each(Dropped::Add {
                        seq: r.seq(),
                        slot: h.slot.get(),
                        gpfn,
                        mfn: e.mfn.get(),
                        order,
                    });
                }
            }
        },
    );
}

/// Bytes of a frame, for the zero test.
const FRAME: usize = PAGE_SIZE as usize;

impl<P: Pmem> NvPool<'_, P> {
    /// Salvages the pool in `region` when committed records of its log
    /// are lost (recovery refuses it as damaged): writes the state before
    /// the first lost record — the longest state that provably happened —
    /// with every frame that the dropped records (lost, or intact after
    /// them) may own in the quarantine domain [`LOST_FOUND_NAME`]
    /// ([`LOST_FOUND_ID`]), at guest frame = machine frame, unscrubbed:
    /// frames an intact dropped record adds to a domain, free frames that
    /// hold anything but zeros (format and every scrub leave free frames
    /// zeroed, so such a frame was handed out by a lost operation), and the
    /// extents whose salvaged owner a dropped record shows had given them
    /// up. Each quarantined run is reported through `on`. Destroying
    /// `lost+found` scrubs and frees them like any domain's.
    ///
    /// One checkpoint commits it (snapshot, fence, switch, fence): a crash
    /// leaves the damaged image, which salvages again to the same pool, or
    /// the salvaged one. Gives the region back; [`recover`](Self::recover)
    /// then opens the salvaged pool. Writes nothing when no committed
    /// record is lost ([`SalvageReport::Unchanged`]: salvaging twice is
    /// harmless) or on error (e.g. a damaged active checkpoint: no state
    /// is known to salvage). `bad` are the region's known-bad byte ranges,
    /// as for [`recover_with_bad_ranges`](Self::recover_with_bad_ranges).
    pub fn salvage(
        region: P,
        work: &mut [u8],
        bad: &[BadRange],
        mut on: impl FnMut(&Quarantined),
    ) -> Result<(P, SalvageReport), SalvageError> {
        let (geo, _) = read_geometry(&region).map_err(SalvageError::Pool)?;
        let bad = BadFrames::new(&geo, region.size(), bad).map_err(SalvageError::BadRange)?;
        let found = survey_log(&region, geo.log_len);
        let tables = carve(work, &geo).map_err(SalvageError::WorkArea)?;
        let mut state = State::new(geo, tables).map_err(SalvageError::WorkArea)?;
        let Some((damaged, first_lost_seq)) = found.first else {
            if let Some(e) = found.stopped {
                return Err(SalvageError::Log(e));
            }
            // Nothing lost; a replay tells whether recovery would open it.
            let view = LogView {
                region: &region,
                len: geo.log_len,
            };
            return match replay(&view, &mut Rebuild::new(&mut state)) {
                Ok(_) => Ok((region, SalvageReport::Unchanged)),
                Err(nvirt_persist_meta::RecoverError::Image(e)) => Err(SalvageError::Log(e)),
                Err(nvirt_persist_meta::RecoverError::Replay(e)) => Err(SalvageError::Replay(e)),
            };
        };
        let window = Window::new(region, LOG_OFFSET, geo.log_len).map_err(|r| {
            SalvageError::Pool(RecoverError::Truncated {
                region_len: geo.region_len,
                size: r.size(),
            })
        })?;
        let hide = damaged.offset - LOG_OFFSET..damaged.offset - LOG_OFFSET + damaged.len;
        let view = View {
            window,
            hide,
            writes: false,
        };
        let mut rebuild = Rebuild::new(&mut state);
        let (mut log, recovery, _) = Log::open(view, &mut rebuild).map_err(|e| match e {
            nvirt_persist_meta::RecoverError::Image(e) => SalvageError::Log(e),
            nvirt_persist_meta::RecoverError::Replay(d) => SalvageError::Replay(d),
        })?;
        check_log(&geo, &log).map_err(|_| {
            SalvageError::Pool(RecoverError::LogGeometry {
                expected: geo.record_area,
                found: log.layout().record_len(),
            })
        })?;
        let checkpoint_epoch = log.epoch().saturating_add(1);
        if checkpoint_epoch <= found.highest_epoch {
            return Err(SalvageError::Epoch {
                checkpoint: checkpoint_epoch,
                highest: found.highest_epoch,
            });
        }
        state.set_bad(bad);
        // Salvage scrubs nothing: frames being freed return to the heap
        // as they are, and the zero test below keeps any that hold data.
        state.complete_pending();
        let lf = match state.find_id(LOST_FOUND_ID) {
            Some(s) => s,
            None => {
                let s = state.free_slot().ok_or(SalvageError::DomainsFull)?;
                state.create(s, LOST_FOUND_ID, LOST_FOUND_NAME.as_bytes(), 0, 0);
                s
            }
        };
        state.domains[usize::from(lf)].quota = geo.data_frames();
        let mut q = Quarantine {
            state: &mut state,
            lf,
            frames: 0,
            moved: 0,
            error: None,
        };
        let region = log.pmem().window.region();
        dropped_records(region, geo.log_len, |d| match d {
            Dropped::Create { slot } => q.reissue(slot),
            Dropped::Add {
                seq,
                slot,
                gpfn,
                mfn,
                order,
            } => q.later_block(seq, slot, gpfn, mfn, order, &mut on),
        });
        q.written_frames(region, &mut on)?;
        let (frames, moved) = (q.frames, q.moved);
        if let Some(e) = q.error {
            return Err(SalvageError::Quarantine(e));
        }
        log.pmem_mut().writes = true;
        let info = log
            .checkpoint(|w| snapshot::write(&state, w))
            .map_err(|e| SalvageError::Checkpoint(e.into()))?;
        let report = Salvaged {
            damaged,
            first_lost_seq,
            kept_records: recovery.records,
            dropped_records: found.dropped,
            quarantined_frames: frames,
            moved_extents: moved,
            generation: info.generation,
        };
        let region = log.into_pmem().window.into_region();
        Ok((region, SalvageReport::Salvaged(report)))
    }
}

/// Salvage's quarantine, applied to the salvaged state.
struct Quarantine<'s, 'w> {
    state: &'s mut State<'w>,
    lf: u16,
    frames: u64,
    moved: u64,
    error: Option<ClaimError>,
}

impl Quarantine<'_, '_> {
    /// Claims the free frames `start .. end` into `lost+found`.
    fn claim(
        &mut self,
        start: u64,
        end: u64,
        why: QuarantineReason,
        on: &mut impl FnMut(&Quarantined),
    ) {
        let Some(frames) = MfnRange::from_numbers(start, end) else {
            return;
        };
        if self.error.is_some() || frames.is_empty() {
            return;
        }
        match self.state.claim_unlogged(self.lf, frames) {
            Ok(n) => {
                self.frames += n;
                on(&Quarantined { frames, why });
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Notes that a dropped record creates a domain in `slot`: its later
    /// add records are not the salvaged domain's.
    fn reissue(&mut self, slot: u32) {
        if let Some(d) = usize::try_from(slot)
            .ok()
            .and_then(|s| self.state.domains.get_mut(s))
        {
            d.reissued = 1;
        }
    }

    /// Quarantines what the salvaged state shows free of the block
    /// `gpfn -> mfn, order` that the dropped record `seq` adds to slot
    /// `slot`, and moves extents the record contradicts.
    fn later_block(
        &mut self,
        seq: u64,
        slot: u32,
        gpfn: u64,
        mfn: u64,
        order: u8,
        on: &mut impl FnMut(&Quarantined),
    ) {
        let span = self.state.geo.data_span();
        let frames = 1u64 << order.min(30);
        let (lo, hi) = (
            mfn.max(span.start().get()),
            mfn.saturating_add(frames).min(span.end().get()),
        );
        let why = QuarantineReason::LaterRecord { seq };
        let mut run = None;
        let mut f = lo;
        while f < hi {
            let Some(m) = Mfn::new(f) else { break };
            if self.state.heap.frame_state(m) == FrameState::Free {
                run.get_or_insert(f);
                f += 1;
                continue;
            }
            if let Some(start) = run.take() {
                self.claim(start, f, why, on);
            }
            let Some(i) = self.state.index.containing(self.state.nodes, f) else {
                f += 1;
                continue;
            };
            let node = self.state.nodes[i as usize];
            let agrees = u32::from(node.dom) == slot
                && self.state.domains[usize::from(node.dom)].reissued == 0
                && node.gpfn.wrapping_sub(node.mfn) == gpfn.wrapping_sub(mfn);
            if node.dom != self.lf && !agrees {
                self.move_extent(i, on);
            }
            f = node.mfn + node.frames();
        }
        if let Some(start) = run {
            self.claim(start, hi, why, on);
        }
    }

    /// Moves extent node `i` to `lost+found`, at guest frame = machine
    /// frame.
    fn move_extent(&mut self, i: u32, on: &mut impl FnMut(&Quarantined)) {
        let node = self.state.nodes[i as usize];
        let Some(from) = self.state.slot(node.dom) else {
            return;
        };
        let from = DomainUuid::from_bytes(from.id);
        let extent = Extent::trusted(node.gpfn, node.mfn, node.order);
        self.state.unlink(i);
        let n = &mut self.state.nodes[i as usize];
        n.dom = self.lf;
        n.gpfn = node.mfn;
        if self.state.link(i).is_err() {
            self.error = Some(ClaimError::GuestOverlap { gpfn: node.mfn });
            return;
        }
        self.frames += node.frames();
        self.moved += 1;
        if let Some(frames) = MfnRange::from_numbers(node.mfn, node.mfn + node.frames()) {
            let why = QuarantineReason::Moved { from, extent };
            on(&Quarantined { frames, why });
        }
    }

    /// Quarantines every free frame that holds anything but zeros.
    fn written_frames<R: Pmem + ?Sized>(
        &mut self,
        region: &R,
        on: &mut impl FnMut(&Quarantined),
    ) -> Result<(), PmemError> {
        let geo = self.state.geo;
        let mut buf = [0u8; FRAME];
        let mut run = None;
        for m in geo.data_span().iter() {
            let f = m.get();
            let written = self.state.heap.frame_state(m) == FrameState::Free && {
                region.read((f - geo.frame_base) * PAGE_SIZE, &mut buf)?;
                buf.iter().any(|&b| b != 0)
            };
            match (written, run) {
                (true, None) => run = Some(f),
                (false, Some(start)) => {
                    run = None;
                    self.claim(start, f, QuarantineReason::Written, on);
                }
                _ => {}
            }
        }
        if let Some(start) = run {
            self.claim(
                start,
                geo.data_span().end().get(),
                QuarantineReason::Written,
                on,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]
    use super::*;
    use crate::Config;
    use nvirt_persist_meta::MemPmem;

    #[test]
    fn the_view_hides_its_range_and_drops_stores_until_allowed() {
        let mut region = MemPmem::new(0x3000);
        region.store(0x1000, &[7u8; 0x100]).unwrap();
        let window = Window::new(region, 0x1000, 0x1000).unwrap();
        let mut view = View {
            window,
            hide: 0x10..0x20,
            writes: false,
        };
        let mut buf = [0u8; 0x30];
        view.read(0x8, &mut buf).unwrap();
        assert!(buf[..8].iter().all(|&b| b == 7));
        assert!(buf[8..0x18].iter().all(|&b| b == 0));
        assert!(buf[0x18..].iter().all(|&b| b == 7));
        view.store(0x40, &[1; 8]).unwrap();
        view.store_u64(0x48, u64::MAX).unwrap();
        view.write_back(0x40, 0x10).unwrap();
        view.fence();
        assert_eq!(
            view.window.region().read_u64(0x1040).unwrap(),
            0x0707_0707_0707_0707
        );
        view.writes = true;
        view.store_u64(0x48, 5).unwrap();
        assert_eq!(view.window.region().read_u64(0x1048).unwrap(), 5);
        assert!(view.read(0xff8, &mut buf).is_err());
    }

    #[test]
    fn an_undamaged_pool_is_unchanged_and_a_foreign_region_refused() {
        let size = 4 << 20;
        let config = Config::for_region(size);
        let mut work = vec![0u8; config.geometry(size).unwrap().work_area_bytes()];
        let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).unwrap();
        let d = pool.create(DomainUuid::new(1), "a", 8).unwrap();
        pool.populate(d, crate::Gfn::new(0).unwrap(), 8).unwrap();
        let before = pool.into_region().into_bytes();
        let mut mem = MemPmem::from_bytes(before.clone());
        let (_, report) = NvPool::salvage(&mut mem, &mut work, &[], |_| {}).unwrap();
        assert_eq!(report, SalvageReport::Unchanged);
        assert!(mem.as_bytes() == &before[..]);
        let mut foreign = MemPmem::new(size as usize);
        let e = NvPool::salvage(&mut foreign, &mut work, &[], |_| {}).unwrap_err();
        assert_eq!(e, SalvageError::Pool(RecoverError::NotAPool));
        assert!(e.to_string().starts_with("nothing to salvage"));
    }

    #[test]
    fn reasons_name_what_happened() {
        let extent = Extent::trusted(0x10, 0x10, 2);
        let moved = QuarantineReason::Moved {
            from: DomainUuid::new(2),
            extent,
        };
        assert!(moved.to_string().contains("gpfn=0x10 order=2"));
        assert_eq!(
            QuarantineReason::LaterRecord { seq: 9 }.to_string(),
            "added by dropped record seq 9"
        );
        assert_eq!(QuarantineReason::Written.to_string(), "free but written");
        let epoch = SalvageError::Epoch {
            checkpoint: 3,
            highest: 4,
        };
        assert!(epoch.to_string().contains("epoch 3"));
    }
}
