//! What lies beyond the end of the record chain: telling a torn tail from
//! a damaged committed record, and the epochs a new epoch must exceed.
//!
//! Both fail a record's checks (its CRC, most often), and recovery must
//! not treat them alike: a torn tail is a commit the crash interrupted,
//! correctly dropped; a damaged committed record is lost metadata, and
//! truncating there would silently drop every later commit too.
//!
//! The writer stores a group only after every earlier group's fence, and
//! a new writer (an open, or the writer after an abandoned group) first
//! appends an epoch record at the end of the chain it found. So an intact
//! group (its CRC matches) beyond the failing one proves the failing one
//! was durable, and has been damaged since, when
//!
//! - it is of the chain's epoch at the failure and its sequence number
//!   (that of its first record) is higher than the failing group's: it
//!   was written after the failing group was fenced; or
//! - it is of a later epoch, with a higher sequence number: a later writer
//!   began beyond the failing group, and every writer begins where the
//!   chain it recovered ended (the epoch record is the record of where an
//!   open began), so the failing group was part of a chain that had been
//!   recovered, i.e. committed. A writer that began before the failing
//!   group would have overwritten the chain there with its own, later
//!   epoch; the chain reaching the failure in an earlier epoch rules that
//!   out.
//!
//! Stale groups (from before a checkpoint: lower epochs, as every
//! checkpoint raises the epoch) and groups of an earlier writer (lower
//! epochs) never qualify: only the last group of the last writer can be
//! torn. So recovery asks for evidence whatever check the chain failed,
//! an intact group of another sequence number or epoch too (a blank
//! header excepted, which salvage relies on): where nothing can be torn,
//! nothing can be stale either.
//!
//! Format 3 has one header and one CRC per group, so the failing group is
//! always checked whole; there is no part of it that could testify for
//! the rest. Its CRC is the plain CRC-32C of the group's bytes (see
//! `checksum.rs`), which no pair of equal flips cancels.

use core::ops::Range;

use crate::pmem::{Pmem, PmemError};
use crate::record::{GROUP_HEADER, Header, RECORD_ALIGN};
use crate::scan::{BUF, Cursor, walk};

/// Bytes read at a time while looking for evidence.
const CHUNK: u64 = 4096;
/// A blank chunk.
static BLANK: [u8; CHUNK as usize] = [0; CHUNK as usize];
/// A blank header.
const BLANK_HEADER: [u8; GROUP_HEADER as usize] = [0; GROUP_HEADER as usize];

/// The area offset of a record proving that the records before it, up to
/// `failed` (the cursor where the chain's checks failed), had been
/// committed; `None` if the failure can be a torn tail.
pub(crate) fn evidence<P: Pmem + ?Sized>(
    pmem: &P,
    area: &Range<u64>,
    failed: Cursor,
) -> Result<Option<u64>, PmemError> {
    let mut payload = [0u8; BUF];
    let start = failed.pos.saturating_add(RECORD_ALIGN);
    headers(pmem, area, start, |pos, header| {
        // Cheap filters before any CRC is computed.
        let proves = header.seq > failed.seq && header.epoch >= failed.epoch;
        if !proves {
            return Ok(false);
        }
        intact(pmem, area, pos, header, &mut payload)
    })
}

/// Where a walk of the chain can go on past damage at `failed`: the first
/// intact group beyond it of a later sequence number and the same or a
/// later epoch, and the cursor to read it with. `None` if no
/// such record follows.
pub(crate) fn resume_after<P: Pmem + ?Sized>(
    pmem: &P,
    area: &Range<u64>,
    failed: Cursor,
) -> Result<Option<(u64, Cursor)>, PmemError> {
    let mut payload = [0u8; BUF];
    let mut found = None;
    let start = failed.pos.saturating_add(RECORD_ALIGN);
    headers(pmem, area, start, |pos, header| {
        let begins = header.seq > failed.seq && header.epoch >= failed.epoch;
        if !begins || !intact(pmem, area, pos, header, &mut payload)? {
            return Ok(false);
        }
        // An epoch record must raise the cursor's epoch to be read.
        let first = pmem.read_u64(area.start + pos + GROUP_HEADER)? as u32;
        let is_epoch = crate::record::Entry::parse(first.to_le_bytes()).kind
            == crate::record::RecordKind::EPOCH.raw();
        let epoch = if is_epoch {
            header.epoch.saturating_sub(1).min(failed.epoch)
        } else {
            header.epoch
        };
        found = Some((
            pos,
            Cursor {
                pos,
                seq: header.seq,
                epoch,
            },
        ));
        Ok(true)
    })?;
    Ok(found)
}

/// Whether the group whose header lies at area offset `pos` fits in the
/// area and its CRC matches.
fn intact<P: Pmem + ?Sized>(
    pmem: &P,
    area: &Range<u64>,
    pos: u64,
    header: &Header,
    buf: &mut [u8; BUF],
) -> Result<bool, PmemError> {
    let len = area.end - area.start;
    let fits = header
        .size()
        .and_then(|size| pos.checked_add(size))
        .is_some_and(|end| end <= len);
    if !fits {
        return Ok(false);
    }
    let walked = walk(pmem, area.start + pos, header, false, buf)?;
    Ok(walked.is_ok_and(|w| w.crc == header.crc))
}

/// The largest epoch of an intact group header (its checksum matches) at or
/// after area offset `from` whose epoch is at least `at_least`: what an
/// epoch record written at `from` must rise above, so that nothing already
/// beyond it, however it got there, can join the chain or testify for it.
pub(crate) fn highest_epoch_beyond<P: Pmem + ?Sized>(
    pmem: &P,
    area: &Range<u64>,
    from: u64,
    at_least: u64,
) -> Result<Option<u64>, PmemError> {
    let mut payload = [0u8; BUF];
    let mut highest = None;
    headers(pmem, area, from, |pos, header| {
        if header.epoch < at_least || highest.is_some_and(|h| header.epoch <= h) {
            return Ok(false);
        }
        if intact(pmem, area, pos, header, &mut payload)? {
            highest = Some(header.epoch);
        }
        Ok(false)
    })?;
    Ok(highest)
}

/// Calls `visit` with every record-aligned header position at or after
/// area offset `from` and its header, in order, reading the area in
/// chunks; returns the first position `visit` accepts.
fn headers<P: Pmem + ?Sized>(
    pmem: &P,
    area: &Range<u64>,
    from: u64,
    mut visit: impl FnMut(u64, &Header) -> Result<bool, PmemError>,
) -> Result<Option<u64>, PmemError> {
    let len = area.end - area.start;
    let mut chunk = [0u8; CHUNK as usize];
    let mut pos = from.div_ceil(RECORD_ALIGN).saturating_mul(RECORD_ALIGN);
    while pos.saturating_add(GROUP_HEADER) <= len {
        let n = (len - pos).min(CHUNK);
        pmem.read(area.start + pos, &mut chunk[..n as usize])?;
        // Most of an area beyond the chain is blank: skip it a chunk at a
        // time (a slice comparison, so a memcmp even in debug builds).
        if chunk[..n as usize] == BLANK[..n as usize] {
            pos += n;
            continue;
        }
        let mut at = 0;
        while at + GROUP_HEADER <= n {
            let mut raw = [0u8; GROUP_HEADER as usize];
            raw.copy_from_slice(&chunk[at as usize..(at + GROUP_HEADER) as usize]);
            if raw != BLANK_HEADER && visit(pos + at, &Header::parse(&raw))? {
                return Ok(Some(pos + at));
            }
            at += RECORD_ALIGN;
        }
        pos += n;
    }
    Ok(None)
}
