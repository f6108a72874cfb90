//! The guest frames each kind of a guest's memory may occupy: where the
//! balloon may back and release frames.

use core::ops::Range;

use nvirt_buddy::MemKind;
use nvirt_e820::MemoryMap;

use crate::guest_memory::PAGE;

/// Most RAM regions of a guest map.
const MAX_RAM_REGIONS: usize = 4;

/// The guest frames each kind of memory may occupy at the guest's request:
/// the RAM entries of its E820 map and its NVRAM entry, shrunk to whole
/// pages. The legacy area below 1 MiB is backed from the start but shown
/// reserved, so it is not among them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Regions {
    ram: [Range<u64>; MAX_RAM_REGIONS],
    ram_len: usize,
    nvram: Option<Range<u64>>,
}

impl Regions {
    /// The regions of a guest's E820 map (as frame ranges).
    #[must_use]
    pub fn from_map<const N: usize>(map: &MemoryMap<N>) -> Self {
        let mut r = Self::default();
        for e in map.iter() {
            let start = e.start().div_ceil(PAGE);
            let end = e.end() / PAGE;
            if start >= end {
                continue;
            }
            if e.kind().is_ram() {
                if let Some(slot) = r.ram.get_mut(r.ram_len) {
                    *slot = start..end;
                    r.ram_len += 1;
                }
            } else if e.kind().is_nonvolatile() && r.nvram.is_none() {
                r.nvram = Some(start..end);
            }
        }
        r
    }

    /// The regions of `kind`.
    pub fn of(&self, kind: MemKind) -> impl Iterator<Item = &Range<u64>> + '_ {
        let (ram, nvram): (&[Range<u64>], Option<&Range<u64>>) = match kind {
            MemKind::Volatile => (&self.ram[..self.ram_len], None),
            MemKind::NonVolatile => (&[], self.nvram.as_ref()),
        };
        ram.iter().chain(nvram)
    }

    /// Whether every frame of `gpfns` lies in one region of `kind`.
    #[must_use]
    pub fn contain(&self, kind: MemKind, gpfns: &Range<u64>) -> bool {
        self.of(kind)
            .any(|r| r.start <= gpfns.start && gpfns.end <= r.end)
    }
}
