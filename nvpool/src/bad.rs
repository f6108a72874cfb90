//! Known-bad ranges: media errors the platform reports (ACPI address range
//! scrub, Linux `badblocks`) as byte ranges of the region.
//!
//! The pool does not store them: the platform knows them better, and a
//! list kept on the failing media could itself be lost. The caller passes
//! them at every format and open. The pool then keeps every free frame
//! that touches one out of its heap (never writing to it), keeps it out
//! again when a domain that owned it frees it, reports the domains that own
//! one, and refuses to trust metadata that lies in one.

use core::fmt;

use nvirt_addr::{Mfn, MfnRange, PAGE_SIZE};

use crate::config::{Geometry, LOG_OFFSET, POOL_SUPERBLOCKS, SCRUB_WORD};
use crate::pool::Dom;
use crate::types::{DomainUuid, Extent};

/// Distinct bad frame runs a pool keeps (after merging overlapping and
/// adjacent ranges); more is refused, as such media should be retired.
pub const MAX_BAD_RANGES: usize = 64;

/// Bytes of a pool superblock copy.
const SUPERBLOCK_BYTES: u64 = 64;

/// A known-bad byte range of the region: `start .. end`, `end` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BadRange {
    start: u64,
    end: u64,
}

impl BadRange {
    /// The bytes `start .. end`; an empty or inverted range is refused
    /// (it names no byte, so it is more likely a mistake than a report).
    pub const fn new(start: u64, end: u64) -> Result<Self, BadRangeError> {
        if start >= end {
            return Err(BadRangeError::Empty { start, end });
        }
        Ok(Self { start, end })
    }

    /// The first bad byte.
    #[must_use]
    pub const fn start(self) -> u64 {
        self.start
    }

    /// One past the last bad byte.
    #[must_use]
    pub const fn end(self) -> u64 {
        self.end
    }

    /// Whether it shares a byte with `start .. end`.
    const fn overlaps(self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

impl fmt::Display for BadRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

/// The metadata a bad range lies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataPart {
    /// A pool superblock copy.
    Superblock {
        /// Which copy.
        copy: usize,
    },
    /// The scrub word.
    ScrubWord,
    /// The log (its superblocks, checkpoints and records).
    Log,
}

impl fmt::Display for MetadataPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Superblock { copy } => write!(
                f,
                "pool superblock copy {copy} at {:#x}",
                POOL_SUPERBLOCKS[copy % 2]
            ),
            Self::ScrubWord => write!(f, "the scrub word at {SCRUB_WORD:#x}"),
            Self::Log => write!(f, "the log at {LOG_OFFSET:#x}"),
        }
    }
}

/// A list of known-bad ranges the pool cannot take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRangeError {
    /// A range holds no byte.
    Empty {
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// A range ends past the region.
    OutsideRegion {
        /// The range.
        range: BadRange,
        /// Bytes the region has.
        size: u64,
    },
    /// More distinct runs of bad frames than the pool keeps.
    TooMany {
        /// The most it keeps.
        max: usize,
    },
    /// A range lies on the pool's metadata: what it says cannot be
    /// trusted (or, at format, written).
    Metadata {
        /// The range.
        range: BadRange,
        /// What lies there.
        part: MetadataPart,
    },
}

impl fmt::Display for BadRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty { start, end } => {
                write!(f, "bad range {start:#x}-{end:#x} is empty")
            }
            Self::OutsideRegion { range, size } => write!(
                f,
                "bad range {range} ends past the region ({size:#x} bytes)"
            ),
            Self::TooMany { max } => write!(
                f,
                "more than {max} separate bad ranges: retire the media rather than use it"
            ),
            Self::Metadata { range, part } => write!(
                f,
                "bad range {range} lies on {part}: the pool's metadata is damaged there"
            ),
        }
    }
}

impl core::error::Error for BadRangeError {}

/// The metadata part `start .. end` overlaps, if any.
fn metadata_part(geo: &Geometry, range: BadRange) -> Option<MetadataPart> {
    for (copy, &at) in POOL_SUPERBLOCKS.iter().enumerate() {
        if range.overlaps(at, at + SUPERBLOCK_BYTES) {
            return Some(MetadataPart::Superblock { copy });
        }
    }
    if range.overlaps(SCRUB_WORD, SCRUB_WORD + 8) {
        return Some(MetadataPart::ScrubWord);
    }
    let log_end = LOG_OFFSET.saturating_add(geo.log_len);
    range
        .overlaps(LOG_OFFSET, log_end)
        .then_some(MetadataPart::Log)
}

/// The bad data frames of a pool: sorted, disjoint, non-adjacent runs of
/// machine frames inside the data span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadFrames {
    runs: [MfnRange; MAX_BAD_RANGES],
    len: usize,
}

impl BadFrames {
    /// No bad frames.
    pub(crate) const NONE: Self = Self {
        runs: [MfnRange::EMPTY; MAX_BAD_RANGES],
        len: 0,
    };

    /// The data frames `ranges` touch in a region of `size` bytes holding
    /// a pool of geometry `geo`. Bytes outside the pool's region but
    /// inside the region (after its last whole frame) hold nothing and are
    /// ignored; the unused bytes between metadata parts too.
    pub(crate) fn new(
        geo: &Geometry,
        size: u64,
        ranges: &[BadRange],
    ) -> Result<Self, BadRangeError> {
        let mut out = Self::NONE;
        let data_start = geo.meta_len;
        let data_end = geo.region_frames() * PAGE_SIZE;
        for &range in ranges {
            // `new` refuses empty ranges, but the fields are checked again
            // so that no caller can slip one past.
            if range.start >= range.end {
                return Err(BadRangeError::Empty {
                    start: range.start,
                    end: range.end,
                });
            }
            if range.end > size {
                return Err(BadRangeError::OutsideRegion { range, size });
            }
            if let Some(part) = metadata_part(geo, range) {
                return Err(BadRangeError::Metadata { range, part });
            }
            let (start, end) = (range.start.max(data_start), range.end.min(data_end));
            if start >= end {
                continue;
            }
            let first = geo.frame_base + start / PAGE_SIZE;
            let last = geo.frame_base + end.div_ceil(PAGE_SIZE);
            let run = MfnRange::from_numbers(first, last)
                .ok_or(BadRangeError::OutsideRegion { range, size })?;
            out.insert(run)?;
        }
        Ok(out)
    }

    /// Adds `run`, merging it with the runs it overlaps or touches.
    fn insert(&mut self, run: MfnRange) -> Result<(), BadRangeError> {
        let runs = &mut self.runs[..self.len];
        let (s, e) = (run.start().get(), run.end().get());
        // Runs i..j overlap or touch `run`.
        let i = runs.partition_point(|r| r.end().get() < s);
        let j = runs.partition_point(|r| r.start().get() <= e);
        if i == j {
            if self.len == MAX_BAD_RANGES {
                return Err(BadRangeError::TooMany {
                    max: MAX_BAD_RANGES,
                });
            }
            self.runs.copy_within(i..self.len, i + 1);
            self.runs[i] = run;
            self.len += 1;
            return Ok(());
        }
        let start = s.min(self.runs[i].start().get());
        let end = e.max(self.runs[j - 1].end().get());
        self.runs[i] = MfnRange::from_numbers(start, end).unwrap_or(run);
        self.runs.copy_within(j..self.len, i + 1);
        self.len -= j - i - 1;
        Ok(())
    }

    /// The runs, by frame.
    pub(crate) fn runs(&self) -> &[MfnRange] {
        &self.runs[..self.len]
    }

    /// Bad frames in all.
    #[cfg(test)]
    pub(crate) fn frames(&self) -> u64 {
        self.runs().iter().map(|r| r.len()).sum()
    }

    /// Whether frame `mfn` is bad.
    pub(crate) fn contains(&self, mfn: Mfn) -> bool {
        let runs = self.runs();
        let i = runs.partition_point(|r| r.end() <= mfn);
        runs.get(i).is_some_and(|r| r.contains(mfn))
    }

    /// The bad parts of `range`, by frame.
    pub(crate) fn within(&self, range: MfnRange) -> impl Iterator<Item = MfnRange> + '_ {
        let runs = self.runs();
        let i = runs.partition_point(|r| r.end() <= range.start());
        runs[i..]
            .iter()
            .take_while(move |r| r.start() < range.end())
            .filter_map(move |r| r.intersection(range))
    }

    /// The good parts of `range`, by frame.
    pub(crate) fn good_parts(&self, range: MfnRange, mut f: impl FnMut(MfnRange)) {
        let mut at = range.start();
        for bad in self.within(range) {
            if let Some(good) = MfnRange::new(at, bad.start()).filter(|g| !g.is_empty()) {
                f(good);
            }
            at = bad.end();
        }
        if let Some(good) = MfnRange::new(at, range.end()).filter(|g| !g.is_empty()) {
            f(good);
        }
    }
}

/// A domain that owns frames in a known-bad range: its data there is
/// likely lost (see [`NvPool::bad_range_owners`](crate::NvPool::bad_range_owners)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadRangeReport {
    /// The domain.
    pub dom: Dom,
    /// Its id.
    pub id: DomainUuid,
    /// The extent holding bad frames.
    pub extent: Extent,
    /// Its bad machine frames (a run inside the extent).
    pub frames: MfnRange,
}

impl BadRangeReport {
    /// The first guest frame the bad run backs.
    #[must_use]
    pub fn first_gfn(&self) -> nvirt_addr::Gfn {
        let off = self.frames.start().get() - self.extent.mfn().get();
        nvirt_addr::Gfn::new(self.extent.gfn().get() + off).unwrap_or(self.extent.gfn())
    }
}

impl fmt::Display for BadRangeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "domain slot={} id={} owns bad frames: gpfn={:#x} mfn={:#x} frames={} (extent gpfn={:#x} mfn={:#x} order={})",
            self.dom.slot(),
            self.id,
            self.first_gfn().get(),
            self.frames.start().get(),
            self.frames.len(),
            self.extent.gfn().get(),
            self.extent.mfn().get(),
            self.extent.order().get()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const SIZE: u64 = 16 << 20;

    fn geo() -> Geometry {
        Config::for_region(SIZE).geometry(SIZE).unwrap()
    }

    fn runs(b: &BadFrames) -> Vec<(u64, u64)> {
        b.runs()
            .iter()
            .map(|r| (r.start().get(), r.end().get()))
            .collect()
    }

    #[test]
    fn empty_and_inverted_ranges_are_refused() {
        assert_eq!(
            BadRange::new(5, 5),
            Err(BadRangeError::Empty { start: 5, end: 5 })
        );
        assert!(BadRange::new(6, 5).is_err());
        assert_eq!(
            BadRange::new(5, 5).unwrap_err().to_string(),
            "bad range 0x5-0x5 is empty"
        );
    }

    #[test]
    fn ranges_become_sorted_merged_frame_runs() {
        let g = geo();
        let d = g.meta_len;
        let r = |a: u64, b: u64| BadRange::new(d + a, d + b).unwrap();
        let f = |n: u64| g.frame_base + d / PAGE_SIZE + n;
        // Unsorted, overlapping, adjacent, and partial frames.
        let list = [
            r(0x5000, 0x5001),
            r(0x1000, 0x2000),
            r(0x1800, 0x3001),
            r(0x9fff, 0xa000),
            r(0x4000, 0x5000),
        ];
        let b = BadFrames::new(&g, SIZE, &list).unwrap();
        assert_eq!(runs(&b), [(f(1), f(6)), (f(9), f(10))]);
        assert_eq!(b.frames(), 6);
        assert!(b.contains(Mfn::new(f(5)).unwrap()));
        assert!(!b.contains(Mfn::new(f(6)).unwrap()));
        let all = MfnRange::from_numbers(f(0), f(12)).unwrap();
        let mut good = Vec::new();
        b.good_parts(all, |g| good.push((g.start().get(), g.end().get())));
        assert_eq!(good, [(f(0), f(1)), (f(6), f(9)), (f(10), f(12))]);
    }

    #[test]
    fn metadata_and_outside_ranges_are_refused() {
        let g = geo();
        let e = BadFrames::new(&g, SIZE, &[BadRange::new(0x10, 0x11).unwrap()]).unwrap_err();
        assert_eq!(
            e,
            BadRangeError::Metadata {
                range: BadRange::new(0x10, 0x11).unwrap(),
                part: MetadataPart::Superblock { copy: 0 }
            }
        );
        assert!(e.to_string().contains("pool superblock copy 0"));
        let log = BadRange::new(LOG_OFFSET + 0x3000, LOG_OFFSET + 0x3001).unwrap();
        assert!(matches!(
            BadFrames::new(&g, SIZE, &[log]),
            Err(BadRangeError::Metadata {
                part: MetadataPart::Log,
                ..
            })
        ));
        let word = BadRange::new(SCRUB_WORD + 4, SCRUB_WORD + 5).unwrap();
        assert!(matches!(
            BadFrames::new(&g, SIZE, &[word]),
            Err(BadRangeError::Metadata {
                part: MetadataPart::ScrubWord,
                ..
            })
        ));
        // Unused bytes between metadata parts hold nothing.
        let gap = BadRange::new(0x100, 0x200).unwrap();
        assert_eq!(BadFrames::new(&g, SIZE, &[gap]).unwrap().frames(), 0);
        let past = BadRange::new(SIZE - 1, SIZE + 1).unwrap();
        assert_eq!(
            BadFrames::new(&g, SIZE, &[past]),
            Err(BadRangeError::OutsideRegion {
                range: past,
                size: SIZE
            })
        );
        let huge = BadRange::new(u64::MAX - 1, u64::MAX).unwrap();
        assert!(BadFrames::new(&g, SIZE, &[huge]).is_err());
    }

    #[test]
    fn too_many_runs_are_refused_merged_ones_are_not() {
        let g = geo();
        let d = g.meta_len;
        let apart: Vec<_> = (0..=MAX_BAD_RANGES as u64)
            .map(|i| BadRange::new(d + i * 0x2000, d + i * 0x2000 + 1).unwrap())
            .collect();
        assert_eq!(
            BadFrames::new(&g, SIZE, &apart),
            Err(BadRangeError::TooMany {
                max: MAX_BAD_RANGES
            })
        );
        let touching: Vec<_> = (0..=MAX_BAD_RANGES as u64 * 2)
            .rev()
            .map(|i| BadRange::new(d + i * 0x1000, d + i * 0x1000 + 1).unwrap())
            .collect();
        let b = BadFrames::new(&g, SIZE, &touching).unwrap();
        assert_eq!(b.runs().len(), 1);
        assert_eq!(b.frames(), MAX_BAD_RANGES as u64 * 2 + 1);
    }
}
