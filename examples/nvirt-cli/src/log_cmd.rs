//! `nvirt log inspect IMAGE`: validate a persist-meta region image offline
//! and show what recovery would see; `nvirt log check IMAGE`: list its
//! damage.
//!
//! Output, one fact per line (a contract for scripts):
//!
//! ```text
//! image: <bytes> bytes
//! superblock <0|1> offset=<hex>: ok version=<v> region=<hex> slot=<hex> records=<hex>+<hex>
//! superblock <0|1> offset=<hex>: invalid: <why>
//! switch <0|1>: generation=<n>            (or: switch <0|1>: invalid word=<hex>)
//! checkpoint: generation=<n> offset=<hex> epoch=<n> next-seq=<n> len=<n> crc=ok
//! record offset=<hex> seq=<n> kind=<hex|epoch> len=<n> crc=ok [end] [discarded]
//! stop offset=<hex>: <why>
//! replay: <n> records in <n> groups (<n> epoch records); next append offset=<hex> seq=<n> epoch=<n>; <n> of <n> record bytes used
//! ```
//!
//! `nvirt log check IMAGE` lists every damaged range (read-only; exit 0 if
//! there is none, 2 otherwise):
//!
//! ```text
//! image: <bytes> bytes
//! damaged offset=<hex> len=<n>: <what lies there and what is lost>
//!   affected record seq=<n> offset=<hex> kind=<hex|epoch> len=<n>
//! check: ok                               (or: check: <n> damaged ranges)
//! ```
//!
//! An `affected record` is intact but was committed after lost records.
//!
//! A `record` line is printed for every record recovery validates; its
//! offset is that of its entry header in its group. Format 2 images showed
//! the intact records of an incomplete last group marked `discarded`;
//! format 3 checks each group whole, so a torn group shows only as the
//! `stop` line, and `discarded` no longer appears.
//! An image that is not a valid log prints what it could, then the reason
//! on stderr, and exits with status 2.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::process::ExitCode;

use clap::Subcommand;
use nvirt_persist_meta::layout::SUPERBLOCK_OFFSETS;
use nvirt_persist_meta::{MemPmem, RecordView, inspect, survey};

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Validate a region image: superblocks, checkpoint, every record, and
    /// where and why replay stops. Exit status 2 if it is not a valid log.
    Inspect {
        /// The image (a file holding the whole log region).
        image: String,
    },
    /// List every damaged range of a region image and the records it
    /// affects, without writing. Exit status 2 if anything is damaged.
    Check {
        /// The image (a file holding the whole log region).
        image: String,
    },
}

pub(crate) fn run(cmd: LogCommand) -> Result<ExitCode, String> {
    match cmd {
        LogCommand::Inspect { image } => inspect_image(&image),
        LogCommand::Check { image } => check_image(&image),
    }
}

fn check_image(path: &str) -> Result<ExitCode, String> {
    let bytes = fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = format!("image: {} bytes\n", bytes.len());
    let pmem = MemPmem::from_bytes(bytes);
    let lines = std::cell::RefCell::new(String::new());
    let found = survey(
        &pmem,
        |d| {
            let _ = writeln!(
                lines.borrow_mut(),
                "damaged offset={:#x} len={}: {}",
                d.offset,
                d.len,
                d.what
            );
        },
        |r, past| {
            if past {
                let _ = writeln!(
                    lines.borrow_mut(),
                    "  affected record seq={} offset={:#x} kind={} len={}",
                    r.seq(),
                    r.offset(),
                    r.kind(),
                    r.payload().len()
                );
            }
        },
    );
    out.push_str(&lines.into_inner());
    let result = match (found.damaged, found.stopped) {
        (0, None) => {
            out.push_str("check: ok\n");
            Ok(ExitCode::SUCCESS)
        }
        (n, None) => {
            let _ = writeln!(out, "check: {n} damaged ranges");
            Err(format!("{path}: {n} damaged ranges"))
        }
        (n, Some(e)) => {
            let _ = writeln!(out, "check: {n} damaged ranges; cannot read further: {e}");
            Err(format!("{path}: not a readable log: {e}"))
        }
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing output: {e}"))?;
    result
}

/// What a `record` line shows.
struct Seen {
    offset: u64,
    line: String,
}

fn seen(record: &RecordView<'_>) -> Seen {
    let mut line = format!(
        "record offset={:#x} seq={} kind={} len={} crc=ok",
        record.offset(),
        record.seq(),
        record.kind(),
        record.payload().len()
    );
    if record.ends_group() {
        line.push_str(" end");
    }
    Seen {
        offset: record.offset(),
        line,
    }
}

fn inspect_image(path: &str) -> Result<ExitCode, String> {
    let bytes = fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let size = bytes.len();
    let pmem = MemPmem::from_bytes(bytes);
    let mut records = Vec::new();
    let report = inspect(&pmem, |r| records.push(seen(r)));
    let mut out = format!("image: {size} bytes\n");
    if let Some(superblocks) = report.superblocks {
        for (i, copy) in superblocks.copies.iter().enumerate() {
            let _ = match copy {
                Ok(layout) => {
                    let area = layout.record_area();
                    writeln!(
                        out,
                        "superblock {i} offset={:#x}: ok version={} region={:#x} slot={:#x} records={:#x}+{:#x}",
                        SUPERBLOCK_OFFSETS[i],
                        nvirt_persist_meta::layout::FORMAT_VERSION,
                        layout.region_len(),
                        layout.slot_len(),
                        area.start,
                        area.end - area.start
                    )
                }
                Err(e) => writeln!(
                    out,
                    "superblock {i} offset={:#x}: invalid: {e}",
                    SUPERBLOCK_OFFSETS[i]
                ),
            };
        }
        for i in 0..2 {
            let _ = match superblocks.generation(i) {
                Some(g) => writeln!(out, "switch {i}: generation={g}"),
                None => writeln!(
                    out,
                    "switch {i}: invalid word={:#018x}",
                    superblocks.switch_words[i]
                ),
            };
        }
    }
    match report.checkpoint {
        Some(Ok(c)) => {
            let _ = writeln!(
                out,
                "checkpoint: generation={} offset={:#x} epoch={} next-seq={} len={} crc=ok",
                c.generation, c.offset, c.epoch, c.next_seq, c.len
            );
        }
        Some(Err(fault)) => {
            let _ = writeln!(out, "checkpoint: invalid: {fault}");
        }
        None => {}
    }
    let outcome = report.outcome;
    // Records of an incomplete last group were validated but are dropped.
    let discarded_from = outcome
        .as_ref()
        .ok()
        .filter(|chain| chain.end.discarded > 0)
        .map_or(u64::MAX, |chain| chain.end.append_offset);
    for record in &records {
        out.push_str(&record.line);
        if record.offset >= discarded_from {
            out.push_str(" discarded");
        }
        out.push('\n');
    }
    let result = match outcome {
        Ok(chain) => {
            let end = chain.end;
            let _ = writeln!(out, "stop offset={:#x}: {}", end.stop_offset, end.reason);
            let area = chain.layout.record_area();
            let _ = writeln!(
                out,
                "replay: {} records in {} groups ({} epoch records); next append offset={:#x} seq={} epoch={}; {} of {} record bytes used",
                chain.records,
                chain.groups,
                chain.epoch_records,
                end.append_offset,
                end.next_seq,
                end.epoch,
                end.append_offset - area.start,
                area.end - area.start
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(format!("{path}: not a valid log: {e}")),
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing output: {e}"))?;
    result
}
