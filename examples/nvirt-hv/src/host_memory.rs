//! Which host memory is free for the hypervisor's allocators and which is
//! NVRAM, once the boot loader's leftovers are taken out.
//!
//! Free memory is usable RAM (E820 type 1) shrunk to whole 4 KiB pages,
//! minus the first MiB (BIOS data, EBDA, option ROMs: never worth the risk),
//! minus every reserved range (the hypervisor image, the boot information,
//! the modules, a preloaded guest image) rounded out to pages. NVRAM is
//! every non-volatile range (E820 7, 12, 90, which includes NFIT and
//! `memmap=` ranges once added to the map) shrunk to whole pages. Nothing the
//! boot loader left may lie in NVRAM: an allocator of the NVRAM pool would
//! otherwise hand it out and a guest would overwrite it.

use core::fmt;
use core::ops::Range;

use nvirt_e820::{HostPhysRange, Kind, MemoryMap, PageSize};

use crate::ranges::{HexRange, RangeSet, RangeSetFull};

/// Page size of every range handed on.
pub const PAGE: u64 = nvirt_addr::PAGE_SIZE;
/// Memory below this is never handed out.
pub const LOW_MEMORY_END: u64 = 0x10_0000;
/// Most disjoint free ranges tracked.
pub const FREE_CAPACITY: usize = 64;
/// Most disjoint NVRAM ranges tracked.
pub const NVRAM_CAPACITY: usize = 16;

/// Free RAM and NVRAM, both page aligned.
#[derive(Clone, Debug)]
pub struct HostMemory {
    /// Usable RAM nobody holds.
    pub free: RangeSet<FREE_CAPACITY>,
    /// Non-volatile memory.
    pub nvram: RangeSet<NVRAM_CAPACITY>,
}

/// Why the host memory cannot be laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// A reserved range (boot information, module, image) lies in NVRAM.
    ReservedInNvram(Range<u64>),
    /// Too many disjoint ranges.
    Capacity(RangeSetFull),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedInNvram(r) => write!(
                f,
                "boot data {} lies in NVRAM; move the NVRAM range (memmap=) or the data",
                HexRange(r.clone())
            ),
            Self::Capacity(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for PlanError {}

impl From<RangeSetFull> for PlanError {
    fn from(e: RangeSetFull) -> Self {
        Self::Capacity(e)
    }
}

/// Rounds `range` out to whole pages (saturating at the top of memory).
#[must_use]
pub fn page_round_out(range: &Range<u64>) -> Range<u64> {
    let start = range.start & !(PAGE - 1);
    let end = range
        .end
        .checked_add(PAGE - 1)
        .map_or(!(PAGE - 1), |e| e & !(PAGE - 1));
    start..end
}

/// The bytes of a range of the map (which `aligned_phys_ranges` has cut
/// to the physical address space: what lies beyond is never used, like
/// memory beyond the identity map).
fn bytes(range: HostPhysRange) -> Range<u64> {
    range.start().get()..range.end().get()
}

/// Lays out host memory from the sanitized `map` and the `reserved` ranges.
pub fn plan<const N: usize, const R: usize>(
    map: &MemoryMap<N>,
    reserved: &RangeSet<R>,
) -> Result<HostMemory, PlanError> {
    let mut nvram = RangeSet::<NVRAM_CAPACITY>::new();
    for kind in [Kind::Pmem, Kind::Pram, Kind::VendorNvram] {
        for r in map.aligned_phys_ranges(kind, PageSize::Size4K) {
            nvram.insert(bytes(r))?;
        }
    }
    if let Some(clash) = reserved.iter().find(|r| nvram.overlaps(r)) {
        return Err(PlanError::ReservedInNvram(clash));
    }

    let mut free = RangeSet::<FREE_CAPACITY>::new();
    for r in map.aligned_phys_ranges(Kind::Ram, PageSize::Size4K) {
        free.insert(bytes(r))?;
    }
    free.remove(0..LOW_MEMORY_END)?;
    for r in reserved.iter() {
        free.remove(page_round_out(&r))?;
    }
    free.remove_all(&nvram)?;
    Ok(HostMemory { free, nvram })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvirt_e820::Entry;

    fn map() -> MemoryMap<16> {
        MemoryMap::from_entries([
            Entry::new(0, 0x9_fc00, Kind::Ram).unwrap(),
            Entry::new(0x9_fc00, 0xa_0000, Kind::Reserved).unwrap(),
            Entry::new(0x10_0000, 0x1000_0000, Kind::Ram).unwrap(),
            Entry::new(0x1_0000_0000, 0x1_0400_0000, Kind::Pmem).unwrap(),
            Entry::new(0x1_0400_0000, 0x1_0400_1800, Kind::VendorNvram).unwrap(),
        ])
        .unwrap()
    }

    #[test]
    fn takes_out_the_low_mib_reservations_and_nvram() {
        let mut map = map();
        map.apply_cmdline("memmap=16M!64M").unwrap();
        let mut reserved = RangeSet::<8>::new();
        reserved.insert(0x10_0000..0x13_2345).unwrap(); // image
        reserved.insert(0x13_5000..0x13_5010).unwrap(); // boot info
        let host = plan(&map, &reserved).unwrap();
        assert_eq!(
            host.free.ranges(),
            [
                0x13_3000..0x13_5000,
                0x13_6000..0x400_0000,
                0x500_0000..0x1000_0000
            ]
        );
        assert_eq!(
            host.nvram.ranges(),
            [0x400_0000..0x500_0000, 0x1_0000_0000..0x1_0400_1000]
        );
    }

    #[test]
    fn refuses_boot_data_inside_nvram() {
        let mut map = map();
        map.apply_cmdline("memmap=16M!64M").unwrap();
        let mut reserved = RangeSet::<8>::new();
        reserved.insert(0x4ff_f000..0x500_1000).unwrap();
        assert_eq!(
            plan(&map, &reserved).err(),
            Some(PlanError::ReservedInNvram(0x4ff_f000..0x500_1000))
        );
    }

    #[test]
    fn leaves_out_memory_beyond_the_physical_address_space() {
        let top = 1u64 << 52;
        let mut without = map();
        without
            .extend([Entry::new(top - 0x40_0000, top - 0x20_0000, Kind::Ram).unwrap()])
            .unwrap();
        let mut with = map();
        with.extend([Entry::new(top - 0x40_0000, top + 0x10_0000, Kind::Ram).unwrap()])
            .unwrap();
        // RAM that straddles 2^52 keeps its part below, less the last page
        // (a range's end is an address); beyond is not used and no error.
        let a = plan(&without, &RangeSet::<8>::new()).unwrap();
        let b = plan(&with, &RangeSet::<8>::new()).unwrap();
        assert_eq!(
            a.free.ranges().last(),
            Some(&(top - 0x40_0000..top - 0x20_0000))
        );
        assert_eq!(
            b.free.ranges().last(),
            Some(&(top - 0x40_0000..top - 0x1000))
        );
    }

    #[test]
    fn rounds_out_to_pages() {
        assert_eq!(page_round_out(&(0x1001..0x2001)), 0x1000..0x3000);
        assert_eq!(page_round_out(&(0..u64::MAX)), 0..!0xfff);
    }
}
