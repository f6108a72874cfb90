//! A read-only report on a region image, for tools (`nvirt log inspect`):
//! what each superblock copy says, which checkpoint is active, every record
//! of the chain, and where and why the chain ends.
//!
//! It decides exactly as recovery does (the same superblock choice,
//! checkpoint checks and group scanner). Format 3 checks each group whole,
//! so the records of a torn last group are not shown: the chain's end
//! says why its bytes are not a group.

use crate::checkpoint::{CheckpointFault, CheckpointInfo, Header as CheckpointHeader};
use crate::image::{ImageError, Superblocks};
use crate::layout::Layout;
use crate::pmem::Pmem;
use crate::record::RecordKind;
use crate::recover::End;
use crate::scan::{BUF, Cursor, RecordView, Scanner};

/// What [`inspect`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// Both superblock copies, if the region could be read.
    pub superblocks: Option<Superblocks>,
    /// The active checkpoint's header, or why it is invalid; `None` if the
    /// superblocks name none.
    pub checkpoint: Option<Result<CheckpointInfo, CheckpointFault>>,
    /// The chain, or why the image is not a valid log.
    pub outcome: Result<Chain, ImageError>,
}

/// The record chain of a valid image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The geometry.
    pub layout: Layout,
    /// Generation of the active checkpoint.
    pub generation: u64,
    /// Owner records in complete groups (what recovery replays).
    pub records: u64,
    /// Complete groups, epoch records included.
    pub groups: u64,
    /// Epoch records.
    pub epoch_records: u64,
    /// Where replay stops, and why.
    pub end: End,
}

/// Inspects the image in `pmem` without writing to it, calling `on_record`
/// for every valid record of the chain in order.
pub fn inspect<P: Pmem, F: FnMut(&RecordView<'_>)>(pmem: &P, mut on_record: F) -> Inspection {
    let superblocks = match Superblocks::read(pmem) {
        Ok(s) => s,
        Err(e) => {
            return Inspection {
                superblocks: None,
                checkpoint: None,
                outcome: Err(e.into()),
            };
        }
    };
    let mut inspection = Inspection {
        superblocks: Some(superblocks),
        checkpoint: None,
        outcome: Err(ImageError::SuperblocksDisagree),
    };
    let chosen = match superblocks.choose() {
        Ok(c) => c,
        Err(e) => {
            inspection.outcome = Err(e);
            return inspection;
        }
    };
    let layout = chosen.layout;
    let checkpoint = match CheckpointHeader::load(pmem, &layout, chosen.generation) {
        Ok(Ok((_, info))) => info,
        Ok(Err(fault)) => {
            inspection.checkpoint = Some(Err(fault));
            inspection.outcome = Err(ImageError::Checkpoint {
                generation: chosen.generation,
                offset: layout.slot_offset(chosen.generation),
                fault,
            });
            return inspection;
        }
        Err(e) => {
            inspection.outcome = Err(e.into());
            return inspection;
        }
    };
    inspection.checkpoint = Some(Ok(checkpoint));
    let area = layout.record_area();
    let start = Cursor {
        pos: 0,
        seq: checkpoint.next_seq,
        epoch: checkpoint.epoch,
    };
    let mut scanner = Scanner::new(pmem, area.clone(), start);
    let mut buf = [0; BUF];
    let mut chain = Chain {
        layout,
        generation: chosen.generation,
        records: 0,
        groups: 0,
        epoch_records: 0,
        end: End {
            append_offset: area.start,
            next_seq: start.seq,
            epoch: start.epoch,
            stop_offset: area.start,
            reason: crate::StopReason::AreaEnd,
            discarded: 0,
        },
    };
    loop {
        match scanner.next(&mut buf) {
            Ok(Ok(record)) => {
                on_record(&record);
                if record.kind() == RecordKind::EPOCH {
                    chain.epoch_records += 1;
                } else {
                    chain.records += 1;
                }
                if record.ends_group() {
                    chain.groups += 1;
                }
            }
            Ok(Err(reason)) => {
                let at = scanner.cursor;
                if let Err(e) = crate::recover::refuse_if_committed(pmem, &area, at, reason) {
                    inspection.outcome = Err(e);
                    return inspection;
                }
                chain.end = End::stopped(area.start, at, reason);
                inspection.outcome = Ok(chain);
                return inspection;
            }
            Err(e) => {
                inspection.outcome = Err(e);
                return inspection;
            }
        }
    }
}
