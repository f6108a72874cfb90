//! One memory-map entry: a half-open physical address range and its kind.

use core::fmt;

use nvirt_addr::HostPhysRange;

use crate::error::RangeError;
use crate::kind::Kind;

/// A range `[start, end)` of physical address space and its [`Kind`].
///
/// The end is exclusive and at most `u64::MAX`: Linux refuses an entry whose
/// end reaches 2^64, and so does every constructor here. An entry may be empty
/// (`start == end`); sanitizing drops empty entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    start: u64,
    end: u64,
    kind: Kind,
}

impl Entry {
    /// An empty placeholder, used to initialise fixed-capacity storage.
    pub(crate) const VOID: Self = Self {
        start: 0,
        end: 0,
        kind: Kind::Other(0),
    };

    /// The entry `[start, end)`. Fails if `end < start`.
    pub const fn new(start: u64, end: u64, kind: Kind) -> Result<Self, RangeError> {
        if end < start {
            return Err(RangeError::EndBeforeStart {
                start,
                last: end.wrapping_sub(1),
            });
        }
        Ok(Self { start, end, kind })
    }

    /// The entry of `size` bytes from `base`, as firmware tables give it.
    /// Fails if the end would reach 2^64.
    pub const fn from_base_size(base: u64, size: u64, kind: Kind) -> Result<Self, RangeError> {
        match base.checked_add(size) {
            Some(end) => Ok(Self {
                start: base,
                end,
                kind,
            }),
            None => Err(RangeError::EndOverflow { start: base, size }),
        }
    }

    /// The entry `[start, last]` with an inclusive last byte, as Linux prints
    /// it. `last == start - 1` is an empty entry; anything lower is an error,
    /// and so is `last == u64::MAX` (the end would be 2^64).
    pub const fn from_inclusive(start: u64, last: u64, kind: Kind) -> Result<Self, RangeError> {
        if last == u64::MAX {
            return Err(RangeError::EndOverflow {
                start,
                size: (last - start).wrapping_add(1),
            });
        }
        let end = last + 1;
        if end < start {
            return Err(RangeError::EndBeforeStart { start, last });
        }
        Ok(Self { start, end, kind })
    }

    /// First byte address.
    #[must_use]
    pub const fn start(&self) -> u64 {
        self.start
    }

    /// One past the last byte address.
    #[must_use]
    pub const fn end(&self) -> u64 {
        self.end
    }

    /// Length in bytes.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.end - self.start
    }

    /// Last byte address, or `None` for an empty entry.
    #[must_use]
    pub const fn last(&self) -> Option<u64> {
        if self.is_empty() {
            None
        } else {
            Some(self.end - 1)
        }
    }

    /// What the range is.
    #[must_use]
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the entry covers no byte.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether `addr` lies inside the entry.
    #[must_use]
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The entry's bytes as a host-physical range, or `None` if it reaches
    /// beyond the physical address space (`2^52`, where no processor
    /// translates): the entry stays firmware data, the range is what a
    /// hypervisor can use.
    #[must_use]
    pub const fn phys_range(&self) -> Option<HostPhysRange> {
        HostPhysRange::from_numbers(self.start, self.end)
    }

    /// The same range with another kind.
    #[must_use]
    pub const fn with_kind(self, kind: Kind) -> Self {
        Self { kind, ..self }
    }

    /// The part of this entry inside `[start, end)`, possibly empty.
    #[must_use]
    pub(crate) fn clamp(self, start: u64, end: u64) -> Self {
        let s = self.start.max(start);
        let e = self.end.min(end).max(s);
        Self {
            start: s,
            end: e,
            kind: self.kind,
        }
    }
}

/// Formats the entry exactly as Linux's `e820__print_table()` does:
/// `[mem 0x%016llx-0x%016llx] kind`, with an inclusive end.
impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[mem {:#018x}-{:#018x}] {}",
            self.start,
            self.end.wrapping_sub(1),
            self.kind
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_check_the_end() {
        let e = Entry::from_base_size(0x1000, 0x2000, Kind::Ram).unwrap();
        assert_eq!(
            (e.start(), e.end(), e.size(), e.last()),
            (0x1000, 0x3000, 0x2000, Some(0x2fff))
        );
        assert_eq!(Entry::from_inclusive(0x1000, 0x2fff, Kind::Ram).unwrap(), e);
        assert!(
            Entry::from_inclusive(0x1000, 0xfff, Kind::Ram)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            Entry::from_inclusive(0x1000, 0xffe, Kind::Ram),
            Err(RangeError::EndBeforeStart {
                start: 0x1000,
                last: 0xffe
            })
        );
        assert!(matches!(
            Entry::from_inclusive(0, u64::MAX, Kind::Ram),
            Err(RangeError::EndOverflow { .. })
        ));
        assert!(Entry::from_base_size(u64::MAX, 1, Kind::Ram).is_err());
        assert!(Entry::from_base_size(u64::MAX - 1, 1, Kind::Ram).is_ok());
        assert!(Entry::new(2, 1, Kind::Ram).is_err());
    }

    #[test]
    fn displays_like_linux() {
        let e = Entry::from_inclusive(0x9fc00, 0x9ffff, Kind::Reserved).unwrap();
        assert_eq!(
            e.to_string(),
            "[mem 0x000000000009fc00-0x000000000009ffff] reserved"
        );
        let nv = Entry::from_base_size(0x1_0000_0000, 1 << 30, Kind::Other(12)).unwrap();
        assert_eq!(
            nv.to_string(),
            "[mem 0x0000000100000000-0x000000013fffffff] persistent (type 12)"
        );
    }
}
