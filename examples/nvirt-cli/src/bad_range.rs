//! `--bad-range START-END`: known-bad byte ranges of the image file (as
//! `badblocks` or the platform's address range scrub report them, turned
//! into byte offsets), `END` exclusive, each number as `--offset` takes it.

use std::fmt::Write as _;

use nvirt_nvpool::{BadRange, NvPool};
use nvirt_persist_meta::Pmem;

use crate::size::parse_size;

/// A known-bad byte range of the image file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageRange {
    start: u64,
    end: u64,
}

/// Parses `START-END` (e.g. `0x7000-0x8000`, `28K-32K`).
pub fn parse_bad_range(text: &str) -> Result<ImageRange, String> {
    let bad = || format!("invalid bad range {text:?} (expected START-END, e.g. 0x7000-0x8000)");
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start = parse_size(start).map_err(|e| format!("{}: {e}", bad()))?;
    let end = parse_size(end).map_err(|e| format!("{}: {e}", bad()))?;
    if start >= end {
        return Err(format!(
            "bad range {text:?} is empty: END is exclusive and must exceed START"
        ));
    }
    Ok(ImageRange { start, end })
}

/// The ranges as the pool at `offset` in the image sees them (region
/// offsets); the parts before the pool, and after `end` (a pool that
/// stops short of the file's end), are none of its business.
pub(crate) fn for_pool(ranges: &[ImageRange], offset: u64, end: Option<u64>) -> Vec<BadRange> {
    let end = end.unwrap_or(u64::MAX);
    ranges
        .iter()
        .filter(|r| r.end > offset && r.start < end)
        .filter_map(|r| BadRange::new(r.start.max(offset) - offset, r.end.min(end) - offset).ok())
        .collect()
}

/// Refuses ranges past the end of an image file of `len` bytes.
pub(crate) fn check_within(ranges: &[ImageRange], len: u64) -> Result<(), String> {
    match ranges.iter().find(|r| r.end > len) {
        Some(r) => Err(format!(
            "bad range {:#x}-{:#x} ends past the image ({len:#x} bytes)",
            r.start, r.end
        )),
        None => Ok(()),
    }
}

/// Lines for the pool's bad frames and their owners (image offsets):
///
/// ```text
/// bad-range offset=<hex> len=<bytes> mfn=<hex> frames=<n>
///   owned domain slot=<n> id=<uuid> gpfn=<hex> mfn=<hex> frames=<n> extent-gpfn=<hex> extent-mfn=<hex> order=<n>
/// ```
///
/// Returns how many owned runs it listed.
pub(crate) fn describe<P: Pmem>(pool: &NvPool<'_, P>, offset: u64, out: &mut String) -> u64 {
    let base = pool.geometry().frame_base().get();
    let at = |mfn: u64| offset + ((mfn - base) << 12);
    for run in pool.bad_frames() {
        let _ = writeln!(
            out,
            "bad-range offset={:#x} len={} mfn={:#x} frames={}",
            at(run.start().get()),
            run.len() << 12,
            run.start().get(),
            run.len()
        );
    }
    let mut owned = 0;
    pool.bad_range_owners(|r| {
        owned += 1;
        let _ = writeln!(
            out,
            "  owned domain slot={} id={} gpfn={:#x} mfn={:#x} frames={} extent-gpfn={:#x} extent-mfn={:#x} order={}",
            r.dom.slot(),
            r.id,
            r.first_gfn().get(),
            r.frames.start().get(),
            r.frames.len(),
            r.extent.gfn().get(),
            r.extent.mfn().get(),
            r.extent.order().get()
        );
    });
    owned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_in_hex_decimal_and_sizes() {
        let r = |start, end| ImageRange { start, end };
        assert_eq!(parse_bad_range("0x7000-0x8000"), Ok(r(0x7000, 0x8000)));
        assert_eq!(parse_bad_range("4096-8193"), Ok(r(4096, 8193)));
        assert_eq!(parse_bad_range("28K-1M"), Ok(r(28 << 10, 1 << 20)));
        for bad in ["", "0x10", "-5", "5-", "0x10-0x10", "9-8", "a-b", "1-2-3"] {
            assert!(parse_bad_range(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ranges_before_the_pool_are_dropped_and_straddling_ones_clipped() {
        let r = |start, end| ImageRange { start, end };
        let list = [r(0, 0x1000), r(0x1800, 0x3000), r(0x5000, 0x6000)];
        assert_eq!(
            for_pool(&list, 0x2000, None),
            [
                BadRange::new(0, 0x1000).unwrap(),
                BadRange::new(0x3000, 0x4000).unwrap()
            ]
        );
        assert_eq!(
            for_pool(&list, 0x2000, Some(0x5800)),
            [
                BadRange::new(0, 0x1000).unwrap(),
                BadRange::new(0x3000, 0x3800).unwrap()
            ]
        );
        assert_eq!(
            for_pool(&list, 0x2000, Some(0x2800)),
            [BadRange::new(0, 0x800).unwrap()]
        );
        assert!(check_within(&list, 0x6000).is_ok());
        assert_eq!(
            check_within(&list, 0x5fff),
            Err("bad range 0x5000-0x6000 ends past the image (0x5fff bytes)".into())
        );
    }
}
