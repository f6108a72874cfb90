//! Making a region a log (format) and a log ready after a crash (open).

use crate::checkpoint::Header as CheckpointHeader;
use crate::checksum::Crc32c;
use crate::error::{AppendError, FormatError};
use crate::image::Superblocks;
use crate::layout::{
    CHECKPOINT_HEADER, Layout, SUPERBLOCK_OFFSETS, SUPERBLOCKS, SWITCH_WORD, encode_switch,
};
use crate::log::{FIRST_SEQ, Log, store_words};
use crate::pmem::{CACHE_LINE, Pmem, PmemError, WORD};
use crate::recover::{RecoverError, Recovery, Replay, recover};
use crate::scan::Cursor;

/// Bytes of a superblock copy (static line and switch-word line).
const SUPERBLOCK_LEN: u64 = 2 * CACHE_LINE;

/// Zeros for clearing the record area at format.
static ZEROS: [u8; 4096] = [0; 4096];

/// What [`Log::open`] wrote to make the region ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Superblock copies whose static line was rewritten from the other.
    pub superblocks: [bool; 2],
    /// Switch words rewritten to the active generation.
    pub switch_words: [bool; 2],
    /// Whether an epoch record was appended (see [`Log`]); false only when
    /// the log was full, in which case the next checkpoint starts the epoch.
    pub epoch_record: bool,
}

impl<P: Pmem> Log<P> {
    /// Makes `pmem` an empty log whose checkpoints hold snapshots of up to
    /// `checkpoint_capacity` bytes. Destroys whatever the region held.
    ///
    /// A crash during format leaves a region that [`open`](Self::open)
    /// rejects (no valid superblock) or an empty log, never a mix.
    pub fn format(mut pmem: P, checkpoint_capacity: u64) -> Result<Self, FormatError> {
        let layout = Layout::new(pmem.size(), checkpoint_capacity)?;
        // First make the old log unreadable, so that a crash below cannot
        // leave an old superblock naming half-cleared areas.
        for at in SUPERBLOCK_OFFSETS {
            pmem.store(at, &ZEROS[..SUPERBLOCK_LEN as usize])?;
            pmem.write_back(at, SUPERBLOCK_LEN)?;
        }
        pmem.fence();
        // Clear the record area: records of an earlier log could otherwise
        // match the new chain's sequence numbers and epochs.
        let area = layout.record_area();
        let mut at = area.start;
        while at < area.end {
            let n = (area.end - at).min(ZEROS.len() as u64);
            pmem.store(at, &ZEROS[..n as usize])?;
            at += n;
        }
        pmem.write_back(area.start, area.end - area.start)?;
        pmem.store(layout.slot_offset(1), &ZEROS[..CHECKPOINT_HEADER as usize])?;
        pmem.write_back(layout.slot_offset(1), CHECKPOINT_HEADER)?;
        let mut header = CheckpointHeader {
            generation: 0,
            epoch: 0,
            next_seq: FIRST_SEQ,
            len: 0,
            reserved: 0,
            crc: 0,
        };
        header.crc = header.checksum(Crc32c::new());
        store_words(&mut pmem, layout.slot_offset(0), &header.words())?;
        pmem.write_back(layout.slot_offset(0), CHECKPOINT_HEADER)?;
        pmem.fence();
        for at in SUPERBLOCK_OFFSETS {
            pmem.store_u64(at + SWITCH_WORD, encode_switch(0))?;
            pmem.write_back(at + SWITCH_WORD, WORD)?;
        }
        SUPERBLOCKS.format(&mut pmem, &layout)?;
        let start = Cursor {
            pos: 0,
            seq: FIRST_SEQ,
            epoch: 0,
        };
        Ok(Self::from_parts(pmem, layout, 0, start, false))
    }

    /// Recovers the log in `pmem` (the owner rebuilds its state through
    /// `replay`) and makes it ready for appends: repairs a damaged or stale
    /// superblock copy and appends an epoch record, all under one fence.
    /// A crash during `open` leaves a region that recovers to the same
    /// state.
    ///
    /// An image that is not a valid log is an error; `open` never formats.
    pub fn open<R: Replay>(
        mut pmem: P,
        replay: &mut R,
    ) -> Result<(Self, Recovery, Repairs), RecoverError<R::Error>> {
        let (recovery, superblocks) = recover(&pmem, replay)?;
        let layout = recovery.layout;
        let generation = recovery.checkpoint.generation;
        let damaged = superblocks.choose()?.repair;
        let mut repairs =
            repair_superblocks(&mut pmem, &layout, generation, &superblocks, damaged)?;
        let area_start = layout.record_area().start;
        let end = Cursor {
            pos: recovery.end.append_offset - area_start,
            seq: recovery.end.next_seq,
            epoch: recovery.end.epoch,
        };
        // Until the epoch record below is durable, nothing may be appended.
        let mut log = Self::from_parts(pmem, layout, generation, end, true);
        let raised = match log.store_epoch_record() {
            Ok(epoch) => Some(epoch),
            Err(AppendError::Pmem(e)) => return Err(e.into()),
            // No room or no numbers left: appends fail until a checkpoint,
            // which starts a fresh epoch itself.
            Err(_) => None,
        };
        repairs.epoch_record = raised.is_some();
        if repairs != Repairs::default() {
            log.pmem_mut().fence();
        }
        if let Some(epoch) = raised {
            log.finish_epoch_record(epoch);
        }
        Ok((log, recovery, repairs))
    }
}

/// Rewrites (without fencing: [`Log::open`] fences once, after its epoch
/// record) a superblock copy whose static line is damaged and a switch word
/// that does not name `generation`.
fn repair_superblocks<P: Pmem>(
    pmem: &mut P,
    layout: &Layout,
    generation: u64,
    found: &Superblocks,
    damaged: [bool; 2],
) -> Result<Repairs, PmemError> {
    let mut repairs = Repairs::default();
    let switch = encode_switch(generation);
    for (i, &at) in SUPERBLOCK_OFFSETS.iter().enumerate() {
        if found.switch_words[i] != switch {
            pmem.store_u64(at + SWITCH_WORD, switch)?;
            pmem.write_back(at + SWITCH_WORD, WORD)?;
            repairs.switch_words[i] = true;
        }
    }
    SUPERBLOCKS.repair_unfenced(pmem, layout, damaged)?;
    repairs.superblocks = damaged;
    Ok(repairs)
}
