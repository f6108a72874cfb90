//! The guest-physical → host-physical correspondence of a guest's memory,
//! kept beside the nested tables so the hypervisor can reach guest memory
//! (to load the guest, to read hypercall arguments) without walking them.
//! Every guest-supplied address and length is checked here before any host
//! address is formed.

use core::fmt;
use core::ops::Range;

/// What backs a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Volatile RAM.
    Ram,
    /// Non-volatile RAM.
    Nvram,
}

/// A contiguous guest-physical range backed by contiguous host memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// Guest-physical range.
    pub gpa: Range<u64>,
    /// Host-physical address of `gpa.start`.
    pub hpa: u64,
    /// What backs it.
    pub backing: Backing,
}

/// Most regions per guest.
pub const MAX_REGIONS: usize = 4;

/// A guest access outside its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestAccessError {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length.
    pub len: u64,
}

impl fmt::Display for GuestAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at guest-physical {:#x} are not guest memory",
            self.len, self.gpa
        )
    }
}

impl core::error::Error for GuestAccessError {}

/// Why a region cannot be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// It overlaps a region already present.
    Overlap,
    /// It is empty or its host range wraps.
    Invalid,
    /// [`MAX_REGIONS`] already.
    Full,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Overlap => "guest memory regions overlap",
            Self::Invalid => "guest memory region is empty or wraps",
            Self::Full => "too many guest memory regions",
        })
    }
}

impl core::error::Error for RegionError {}

/// A guest's memory regions.
#[derive(Clone, Debug, Default)]
pub struct GuestMemoryMap {
    regions: [Option<Region>; MAX_REGIONS],
}

impl GuestMemoryMap {
    /// No memory.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            regions: [const { None }; MAX_REGIONS],
        }
    }

    /// Adds a region.
    pub fn add(&mut self, region: Region) -> Result<(), RegionError> {
        let len = region.gpa.end.checked_sub(region.gpa.start);
        if len.is_none_or(|l| l == 0) || len.and_then(|l| region.hpa.checked_add(l)).is_none() {
            return Err(RegionError::Invalid);
        }
        if self
            .regions()
            .any(|r| r.gpa.start < region.gpa.end && region.gpa.start < r.gpa.end)
        {
            return Err(RegionError::Overlap);
        }
        let slot = self
            .regions
            .iter_mut()
            .find(|r| r.is_none())
            .ok_or(RegionError::Full)?;
        *slot = Some(region);
        Ok(())
    }

    /// The regions.
    pub fn regions(&self) -> impl Iterator<Item = &Region> + '_ {
        self.regions.iter().flatten()
    }

    /// The host-physical address of `len` bytes at `gpa`, if all of them lie
    /// in one region.
    pub fn translate(&self, gpa: u64, len: u64) -> Result<u64, GuestAccessError> {
        let error = GuestAccessError { gpa, len };
        let end = gpa.checked_add(len).ok_or(error)?;
        self.regions()
            .find(|r| r.gpa.start <= gpa && end <= r.gpa.end)
            .map(|r| r.hpa + (gpa - r.gpa.start))
            .ok_or(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_inside_regions_only() {
        let mut m = GuestMemoryMap::new();
        m.add(Region {
            gpa: 0..0x400_0000,
            hpa: 0x800_0000,
            backing: Backing::Ram,
        })
        .unwrap();
        m.add(Region {
            gpa: 0x1_0000_0000..0x1_0200_0000,
            hpa: 0x1_0000_0000,
            backing: Backing::Nvram,
        })
        .unwrap();
        assert_eq!(m.translate(0x1000, 8), Ok(0x800_1000));
        assert_eq!(m.translate(0x3ff_fff8, 8), Ok(0xbff_fff8));
        assert!(m.translate(0x3ff_fff8, 9).is_err());
        assert!(m.translate(0x400_0000, 1).is_err());
        assert!(m.translate(u64::MAX, 2).is_err());
        assert_eq!(m.translate(0x1_0000_0010, 16), Ok(0x1_0000_0010));
        let overlap = Region {
            gpa: 0x3ff_0000..0x401_0000,
            hpa: 0,
            backing: Backing::Ram,
        };
        assert_eq!(m.add(overlap), Err(RegionError::Overlap));
        let wraps = Region {
            gpa: 0x5000_0000..0x5000_2000,
            hpa: u64::MAX - 0x1000,
            backing: Backing::Ram,
        };
        assert_eq!(m.add(wraps), Err(RegionError::Invalid));
    }
}
