//! Half-open ranges of addresses or frames of one space.
//!
//! A range is `start..end` with `start <= end`, both of the same type, so a
//! guest range is never compared with a host range and a length is never
//! taken across spaces.

use core::fmt;

use crate::{Gfn, Mfn};
use crate::{GuestPhysAddr, HostPhysAddr, PAGE_SIZE, PageSize};

macro_rules! range {
    ($(#[$doc:meta])* $name:ident, $item:ident, $unit:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            start: $item,
            end: $item,
        }

        impl $name {
            /// The empty range at zero (what `Default` gives, usable in
            /// `const` items).
            pub const EMPTY: Self = Self { start: $item::ZERO, end: $item::ZERO };

            /// `start..end`, if `start <= end`.
            #[must_use]
            pub const fn new(start: $item, end: $item) -> Option<Self> {
                if start.get() <= end.get() { Some(Self { start, end }) } else { None }
            }

            /// `start..end` from raw numbers (firmware tables, log records,
            /// configuration), if both lie in the space and `start <= end`.
            #[must_use]
            pub const fn from_numbers(start: u64, end: u64) -> Option<Self> {
                match ($item::new(start), $item::new(end)) {
                    (Some(start), Some(end)) => Self::new(start, end),
                    _ => None,
                }
            }

            /// The range of `len` starting at `start`, if its end exists.
            #[must_use]
            pub const fn from_len(start: $item, len: u64) -> Option<Self> {
                match start.checked_add(len) {
                    Some(end) => Some(Self { start, end }),
                    None => None,
                }
            }

            /// The first element.
            #[must_use]
            pub const fn start(self) -> $item {
                self.start
            }

            /// One past the last element.
            #[must_use]
            pub const fn end(self) -> $item {
                self.end
            }

            #[doc = concat!("The number of ", $unit, " in the range.")]
            #[must_use]
            pub const fn len(self) -> u64 {
                self.end.get() - self.start.get()
            }

            /// Whether the range holds nothing.
            #[must_use]
            pub const fn is_empty(self) -> bool {
                self.start.get() == self.end.get()
            }

            /// Whether `item` lies inside.
            #[must_use]
            pub const fn contains(self, item: $item) -> bool {
                self.start.get() <= item.get() && item.get() < self.end.get()
            }

            /// Whether all of `other` lies inside (an empty `other` lies
            /// inside any range that contains or ends at its start).
            #[must_use]
            pub const fn contains_range(self, other: Self) -> bool {
                self.start.get() <= other.start.get() && other.end.get() <= self.end.get()
            }

            /// Whether the two ranges share an element (an empty range
            /// shares none).
            #[must_use]
            pub const fn overlaps(self, other: Self) -> bool {
                !self.is_empty()
                    && !other.is_empty()
                    && self.start.get() < other.end.get()
                    && other.start.get() < self.end.get()
            }

            /// The elements both ranges hold, if any.
            #[must_use]
            pub const fn intersection(self, other: Self) -> Option<Self> {
                let start = if self.start.get() > other.start.get() { self.start } else { other.start };
                let end = if self.end.get() < other.end.get() { self.end } else { other.end };
                if start.get() < end.get() { Some(Self { start, end }) } else { None }
            }

            /// The range split at `at`: `start..at` and `at..end`, if `at`
            /// lies within `start..=end`.
            #[must_use]
            pub const fn split_at(self, at: $item) -> Option<(Self, Self)> {
                if self.start.get() <= at.get() && at.get() <= self.end.get() {
                    Some((Self { start: self.start, end: at }, Self { start: at, end: self.end }))
                } else {
                    None
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}..{:?}", self.start, self.end)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}..{:#x}", self.start, self.end)
            }
        }
    };
}

macro_rules! frame_range {
    ($(#[$doc:meta])* $name:ident, $frame:ident, $addr_range:ident) => {
        range!($(#[$doc])* $name, $frame, "frames");

        impl $name {
            /// The bytes the frames cover.
            #[must_use]
            pub const fn addrs(self) -> $addr_range {
                $addr_range { start: self.start.addr(), end: self.end.addr() }
            }

            /// The frames in order.
            pub fn iter(self) -> impl DoubleEndedIterator<Item = $frame> + Clone {
                (self.start.get()..self.end.get()).map($frame)
            }
        }
    };
}

macro_rules! addr_range {
    ($(#[$doc:meta])* $name:ident, $addr:ident, $frame:ident, $frame_range:ident) => {
        range!($(#[$doc])* $name, $addr, "bytes");

        impl $name {
            /// The whole frames inside the range (its start rounded up, its
            /// end rounded down); empty if it holds no whole frame.
            #[must_use]
            pub const fn frames_within(self) -> $frame_range {
                let start = match self.start.align_up(PageSize::Size4K) {
                    Some(a) => a.frame(),
                    None => self.end.frame(),
                };
                let end = self.end.frame();
                if start.get() <= end.get() {
                    $frame_range { start, end }
                } else {
                    $frame_range { start: end, end }
                }
            }

            /// The frames that hold any byte of the range (its start
            /// rounded down, its end rounded up), if the last frame ends
            /// within the address space.
            #[must_use]
            pub const fn frames_covering(self) -> Option<$frame_range> {
                let end = match self.end.align_up(PageSize::Size4K) {
                    Some(a) => a.frame(),
                    None => return None,
                };
                Some($frame_range { start: self.start.frame(), end })
            }

            /// Whether both ends are 4 KiB aligned.
            #[must_use]
            pub const fn is_page_aligned(self) -> bool {
                self.start.get() % PAGE_SIZE == 0 && self.end.get() % PAGE_SIZE == 0
            }
        }
    };
}

addr_range!(
    /// A half-open range of guest-physical addresses.
    GuestPhysRange,
    GuestPhysAddr,
    Gfn,
    GfnRange
);
addr_range!(
    /// A half-open range of host-physical addresses.
    HostPhysRange,
    HostPhysAddr,
    Mfn,
    MfnRange
);
frame_range!(
    /// A half-open range of guest frames.
    GfnRange,
    Gfn,
    GuestPhysRange
);
frame_range!(
    /// A half-open range of machine frames.
    MfnRange,
    Mfn,
    HostPhysRange
);

#[cfg(test)]
mod tests {
    use super::*;

    fn gfn(n: u64) -> Gfn {
        Gfn::new(n).expect("frame")
    }

    fn gpa(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a).expect("address")
    }

    #[test]
    fn ranges_are_ordered_and_checked() {
        assert_eq!(GfnRange::new(gfn(2), gfn(1)), None);
        assert_eq!(GfnRange::from_len(Gfn::MAX, 2), None);
        let r = GfnRange::from_len(gfn(10), 5).expect("range");
        assert_eq!(r.len(), 5);
        assert!(r.contains(gfn(14)) && !r.contains(gfn(15)));
        let s = GfnRange::new(gfn(12), gfn(20)).expect("range");
        assert!(r.overlaps(s));
        assert_eq!(r.intersection(s), GfnRange::new(gfn(12), gfn(15)));
        assert_eq!(
            r.intersection(GfnRange::from_len(gfn(15), 1).expect("r")),
            None
        );
        assert_eq!(r.split_at(gfn(16)), None);
        let (a, b) = r.split_at(gfn(11)).expect("split");
        assert_eq!((a.len(), b.len()), (1, 4));
        assert_eq!(r.iter().count(), 5);
        assert_eq!(r.addrs().len(), 5 * PAGE_SIZE);
        assert_eq!(GfnRange::from_numbers(10, 15), Some(r));
        assert_eq!(GfnRange::from_numbers(15, 10), None);
        assert_eq!(GfnRange::from_numbers(0, Gfn::LIMIT), None);
        assert_eq!(GfnRange::EMPTY, GfnRange::default());
    }

    #[test]
    fn address_ranges_round_to_frames() {
        let r = GuestPhysRange::new(gpa(0x1001), gpa(0x3fff)).expect("range");
        assert_eq!(r.frames_within().len(), 1);
        assert_eq!(r.frames_covering().map(GfnRange::len), Some(3));
        let tiny = GuestPhysRange::new(gpa(0x1001), gpa(0x1002)).expect("range");
        assert!(tiny.frames_within().is_empty());
        let top = GuestPhysRange::new(gpa(0x1000), GuestPhysAddr::MAX).expect("range");
        assert_eq!(top.frames_covering(), None);
        assert!(!r.is_page_aligned());
    }
}
