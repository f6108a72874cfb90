//! What lies beyond the end of the record chain: telling a torn tail from
//! a damaged committed record, and the epochs a new epoch must exceed.
//!
//! Both fail a record's checks (its CRC, most often), and recovery must
//! not treat them alike: a torn tail is a commit the crash interrupted,
//! correctly dropped; a damaged committed record is lost metadata, and
//! truncating there would silently drop every later commit too.
//!
//! The writer stores a group's records only after every earlier group's
//! fence. So if, beyond the failing record, the area holds an intact
//! record of the chain's epoch with a higher sequence number that ends a
//! group, directly followed by the intact first record of the next group,
//! that next group was being written, hence the group before it was fenced,
//! hence every record up to it, the failing one included, was durable when
//! it failed its checks: it was damaged afterwards. Stale records (from
//! before a checkpoint: lower sequence numbers) and records of an earlier
//! writer (another epoch) never qualify.

use core::ops::Range;

use crate::checksum::Crc32c;
use crate::pmem::{Pmem, PmemError};
use crate::record::{Header, MAX_PAYLOAD, RECORD_ALIGN, RECORD_HEADER, record_size};
use crate::scan::{Cursor, Scanner};

/// Bytes read at a time while looking for evidence.
const CHUNK: u64 = 4096;

/// The area offset of a record proving that the records before it, up to
/// `failed` (the cursor where the chain's checks failed), had been
/// committed; `None` if the failure can be a torn tail.
pub(crate) fn evidence<P: Pmem + ?Sized>(
    pmem: &P,
    area: &Range<u64>,
    failed: Cursor,
) -> Result<Option<u64>, PmemError> {
    let mut buf = [0u8; MAX_PAYLOAD];
    let start = failed.pos.saturating_add(RECORD_ALIGN);
    let found = headers(pmem, area, start, |pos, header| {
        // Cheap filters before any CRC is computed.
        if !header.ends_group() || header.epoch != failed.epoch || header.seq <= failed.seq {
            return Ok(false);
        }
        let cursor = Cursor {
            pos,
            seq: header.seq,
            epoch: failed.epoch,
        };
        let mut scanner = Scanner::new(pmem, area.clone(), cursor);
        let ends_group = matches!(scanner.next(&mut buf, false)?, Ok(r) if r.ends_group());
        Ok(ends_group && scanner.next(&mut buf, false)?.is_ok())
    })?;
    Ok(found)
}

/// The largest epoch of an intact record header (its CRC matches) at or
/// after area offset `from` whose epoch is at least `at_least`: what an
/// epoch record written at `from` must rise above, so that nothing already
/// beyond it, however it got there, can join the chain or testify for it.
pub(crate) fn highest_epoch_beyond<P: Pmem + ?Sized>(
    pmem: &P,
    area: &Range<u64>,
    from: u64,
    at_least: u64,
) -> Result<Option<u64>, PmemError> {
    let mut payload = [0u8; MAX_PAYLOAD];
    let mut highest = None;
    let len = area.end - area.start;
    headers(pmem, area, from, |pos, header| {
        if header.epoch < at_least || highest.is_some_and(|h| header.epoch <= h) {
            return Ok(false);
        }
        let fits = record_size(u64::from(header.len))
            .and_then(|size| pos.checked_add(size))
            .is_some_and(|end| header.len as usize <= MAX_PAYLOAD && end <= len);
        if !fits {
            return Ok(false);
        }
        let body = &mut payload[..header.len as usize];
        pmem.read(area.start + pos + RECORD_HEADER, body)?;
        let mut crc = Crc32c::new();
        crc.update(body);
        if header.checksum(crc) == header.crc {
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
    while pos.saturating_add(RECORD_HEADER) <= len {
        let n = (len - pos).min(CHUNK);
        pmem.read(area.start + pos, &mut chunk[..n as usize])?;
        let mut at = 0;
        while at + RECORD_HEADER <= n {
            let mut raw = [0u8; RECORD_HEADER as usize];
            raw.copy_from_slice(&chunk[at as usize..(at + RECORD_HEADER) as usize]);
            let blank = raw.iter().all(|&b| b == 0);
            if !blank && visit(pos + at, &Header::parse(&raw))? {
                return Ok(Some(pos + at));
            }
            at += RECORD_ALIGN;
        }
        pos += n;
    }
    Ok(None)
}
