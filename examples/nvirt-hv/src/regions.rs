//! The guest frames each kind of a guest's memory may occupy: where the
//! balloon may back and release frames.

use nvirt_addr::{GfnRange, GuestPhysRange};
use nvirt_buddy::MemKind;
use nvirt_e820::MemoryMap;

/// Most RAM regions of a guest map.
const MAX_RAM_REGIONS: usize = 4;

/// The guest frames each kind of memory may occupy at the guest's request:
/// the RAM entries of its E820 map and its NVRAM entry, shrunk to whole
/// pages. The legacy area below 1 MiB is backed from the start but shown
/// reserved, so it is not among them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Regions {
    ram: [GfnRange; MAX_RAM_REGIONS],
    ram_len: usize,
    nvram: Option<GfnRange>,
}

impl Regions {
    /// The regions of a guest's E820 map (as frame ranges).
    #[must_use]
    pub fn from_map<const N: usize>(map: &MemoryMap<N>) -> Self {
        let mut r = Self::default();
        for e in map.iter() {
            // An entry beyond the guest-physical space holds no frame.
            let Some(bytes) = GuestPhysRange::from_numbers(e.start(), e.end()) else {
                continue;
            };
            let frames = bytes.frames_within();
            if frames.is_empty() {
                continue;
            }
            if e.kind().is_ram() {
                if let Some(slot) = r.ram.get_mut(r.ram_len) {
                    *slot = frames;
                    r.ram_len += 1;
                }
            } else if e.kind().is_nonvolatile() && r.nvram.is_none() {
                r.nvram = Some(frames);
            }
        }
        r
    }

    /// The regions of `kind`.
    pub fn of(&self, kind: MemKind) -> impl Iterator<Item = &GfnRange> + '_ {
        let (ram, nvram): (&[GfnRange], Option<&GfnRange>) = match kind {
            MemKind::Volatile => (&self.ram[..self.ram_len], None),
            MemKind::NonVolatile => (&[], self.nvram.as_ref()),
        };
        ram.iter().chain(nvram)
    }

    /// Whether every frame of `gfns` lies in one region of `kind`.
    #[must_use]
    pub fn contain(&self, kind: MemKind, gfns: &GfnRange) -> bool {
        self.of(kind).any(|r| r.contains_range(*gfns))
    }
}
