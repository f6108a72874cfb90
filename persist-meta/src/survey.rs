//! Every damaged range of an image, for tools (`nvirt log check`, `nvirt
//! pool check`): where recovery stops at the first damage, a survey goes
//! on past each one and lists them all, without writing anything.
//!
//! Damage is what recovery would refuse or repair: a superblock static
//! line or switch word that fails its checks, the active checkpoint, and
//! commit groups that a later group proves committed (see `committed.rs`).
//! Past a damaged group the survey resumes at the first intact group of a
//! later sequence number, so the records in between are the ones lost;
//! records after them are intact but were written on top of the lost ones.
//! A torn final group is not damage: recovery drops it by design.

use core::fmt;

use crate::checkpoint::{CheckpointFault, Header as CheckpointHeader};
use crate::image::{ImageError, Superblocks};
use crate::layout::{Layout, SUPERBLOCK_OFFSETS, SWITCH_WORD, SuperblockError};
use crate::pmem::{CACHE_LINE, Pmem, WORD};
use crate::recover::End;
use crate::scan::{BUF, Cursor, RecordView, Scanner, StopReason};

/// One damaged range of the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Damaged {
    /// Its first byte (a region offset).
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// What lies there and what is wrong with it.
    pub what: DamagedPart,
}

/// What a damaged range held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DamagedPart {
    /// A superblock copy's static line (the other copy can replace it).
    Superblock {
        /// Which copy.
        copy: usize,
        /// Why it was rejected.
        fault: SuperblockError,
    },
    /// A superblock copy's switch word (the other copy can replace it).
    SwitchWord {
        /// Which copy.
        copy: usize,
        /// The raw word.
        word: u64,
    },
    /// The active checkpoint: its snapshot holds the state every record
    /// builds on, so nothing after it can be trusted.
    Checkpoint {
        /// Its generation.
        generation: u64,
        /// What is wrong.
        fault: CheckpointFault,
    },
    /// Committed records: those with sequence numbers `first_seq` up to
    /// (not including) `resume_seq` are lost.
    Records {
        /// Sequence number of the first lost record (the first of the
        /// damaged group).
        first_seq: u64,
        /// Sequence number of the first intact record after the damage, or
        /// `None` if nothing intact follows.
        resume_seq: Option<u64>,
        /// Offset of the group whose checks failed.
        failed_offset: u64,
        /// Why it failed them.
        reason: StopReason,
    },
}

impl fmt::Display for DamagedPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Superblock { copy, fault } => {
                write!(
                    f,
                    "log superblock copy {copy}: {fault} (the other copy can replace it)"
                )
            }
            Self::SwitchWord { copy, word } => write!(
                f,
                "log superblock copy {copy}: invalid switch word {word:#018x} (the other copy can replace it)"
            ),
            Self::Checkpoint { generation, fault } => {
                write!(f, "active checkpoint generation {generation}: {fault}")
            }
            Self::Records {
                first_seq,
                resume_seq,
                failed_offset,
                reason,
            } => {
                write!(
                    f,
                    "committed record at {failed_offset:#x} is damaged ({reason}); lost records: seq {first_seq}"
                )?;
                match resume_seq {
                    Some(r) if r > first_seq + 1 => write!(f, "..={}", r - 1),
                    Some(_) => Ok(()),
                    None => write!(f, " and every later one"),
                }
            }
        }
    }
}

/// What a survey found besides the damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Survey {
    /// The geometry, if a superblock copy was readable.
    pub layout: Option<Layout>,
    /// Damaged ranges found.
    pub damaged: u64,
    /// Where the last stretch of the chain ends (a torn final group is
    /// not damage), if the chain could be walked.
    pub end: Option<End>,
    /// Why the survey could not go on, if it stopped early (no superblock,
    /// or the checkpoint: nothing after it can be read).
    pub stopped: Option<ImageError>,
}

/// Lists every damaged range of the log in `pmem` through `on_damage`, and
/// every intact record of the chain through `on_record` (with whether it
/// comes after damage: such a record was written on top of lost ones).
/// Never writes.
pub fn survey<P: Pmem>(
    pmem: &P,
    mut on_damage: impl FnMut(&Damaged),
    mut on_record: impl FnMut(&RecordView<'_>, bool),
) -> Survey {
    let mut out = Survey {
        layout: None,
        damaged: 0,
        end: None,
        stopped: None,
    };
    let mut report = |d: Damaged, out: &mut Survey| {
        out.damaged += 1;
        on_damage(&d);
    };
    let superblocks = match Superblocks::read(pmem) {
        Ok(s) => s,
        Err(e) => {
            out.stopped = Some(e.into());
            return out;
        }
    };
    for (copy, &at) in SUPERBLOCK_OFFSETS.iter().enumerate() {
        if let Err(fault) = superblocks.copies[copy] {
            let what = DamagedPart::Superblock { copy, fault };
            report(
                Damaged {
                    offset: at,
                    len: CACHE_LINE,
                    what,
                },
                &mut out,
            );
        }
        if superblocks.generation(copy).is_none() {
            let word = superblocks.switch_words[copy];
            let what = DamagedPart::SwitchWord { copy, word };
            report(
                Damaged {
                    offset: at + SWITCH_WORD,
                    len: WORD,
                    what,
                },
                &mut out,
            );
        }
    }
    let chosen = match superblocks.choose() {
        Ok(c) => c,
        Err(e) => {
            out.stopped = Some(e);
            return out;
        }
    };
    let layout = chosen.layout;
    out.layout = Some(layout);
    let generation = chosen.generation;
    let checkpoint = match CheckpointHeader::load(pmem, &layout, generation) {
        Ok(Ok((_, info))) => info,
        Ok(Err(fault)) => {
            let offset = layout.slot_offset(generation);
            let what = DamagedPart::Checkpoint { generation, fault };
            let len = layout.slot_len();
            report(Damaged { offset, len, what }, &mut out);
            out.stopped = Some(ImageError::Checkpoint {
                generation,
                offset,
                fault,
            });
            return out;
        }
        Err(e) => {
            out.stopped = Some(e.into());
            return out;
        }
    };
    let area = layout.record_area();
    let mut scanner = Scanner::new(
        pmem,
        area.clone(),
        Cursor {
            pos: 0,
            seq: checkpoint.next_seq,
            epoch: checkpoint.epoch,
        },
    );
    let mut buf = [0; BUF];
    let mut after_damage = false;
    loop {
        let reason = match scanner.next(&mut buf) {
            Ok(Ok(record)) => {
                on_record(&record, after_damage);
                continue;
            }
            Ok(Err(reason)) => reason,
            Err(e) => {
                out.stopped = Some(e);
                return out;
            }
        };
        // A failure is always at a group's start (the scanner checks
        // groups whole).
        let failed = scanner.cursor;
        let end = End {
            append_offset: area.start + failed.pos,
            next_seq: failed.seq,
            epoch: failed.epoch,
            stop_offset: area.start + failed.pos,
            reason,
            discarded: 0,
        };
        if crate::recover::refuse_if_committed(pmem, &area, failed, reason).is_ok() {
            out.end = Some(end);
            return out;
        }
        let resume = match crate::committed::resume_after(pmem, &area, failed) {
            Ok(r) => r,
            Err(e) => {
                out.stopped = Some(e.into());
                return out;
            }
        };
        let resume_pos = resume.map_or(area.end - area.start, |(pos, _)| pos);
        let what = DamagedPart::Records {
            first_seq: failed.seq,
            resume_seq: resume.map(|(_, c)| c.seq),
            failed_offset: area.start + failed.pos,
            reason,
        };
        let offset = area.start + failed.pos;
        let len = resume_pos - failed.pos;
        report(Damaged { offset, len, what }, &mut out);
        let Some((pos, cursor)) = resume else {
            out.end = Some(end);
            return out;
        };
        after_damage = true;
        scanner = Scanner::new(pmem, area.clone(), Cursor { pos, ..cursor });
    }
}
