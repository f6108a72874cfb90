//! The hypervisor's two buddy heaps (`nvirt-buddy`): a volatile one over
//! free RAM and a non-volatile one over NVRAM, and where their metadata
//! lives.
//!
//! Every frame the hypervisor uses comes from one of them: nested tables,
//! VMCB/VMCS pages and guest RAM from the volatile heap, guest NVRAM from
//! the non-volatile one (through [`crate::pool::FramePool`]). The metadata
//! of both heaps (about 3.5 bits per frame) is RAM carved out of the free
//! ranges before the volatile heap is given them, so no heap ever hands out
//! its own bookkeeping and NVRAM is never written by it.

use core::fmt;
use core::ops::Range;

use nvirt_buddy::{
    AddError, Constraints, Heap, HostPhysAddr, HostPhysRange, MemKind, Mfn, MfnRange, NewError,
    Order, metadata_bytes,
};
use nvirt_ept::FrameSource;

use crate::host_memory::{FREE_CAPACITY, HostMemory, PAGE};
use crate::ranges::{RangeSet, RangeSetFull};

/// What one heap covers and where its metadata goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeapSpec {
    /// The frames between the lowest and the highest managed frame.
    pub span: MfnRange,
    /// Metadata bytes the heap needs ([`metadata_bytes`] of the span).
    pub metadata_len: usize,
    /// The RAM reserved for the metadata: page aligned, taken out of the
    /// free RAM.
    pub metadata: Range<u64>,
}

/// The layout of both heaps.
#[derive(Clone, Debug)]
pub struct HeapPlan {
    /// The volatile heap.
    pub ram: HeapSpec,
    /// The non-volatile heap, if there is NVRAM.
    #[allow(
        dead_code,
        reason = "the hypervisor gives NVRAM to the NV pool, not a heap; the tests build an NVRAM heap from the plan"
    )]
    pub nvram: Option<HeapSpec>,
    /// Free RAM for the volatile heap: the free ranges minus both metadata
    /// areas.
    pub free: RangeSet<FREE_CAPACITY>,
}

/// Why the heaps cannot be laid out or built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapError {
    /// There is no free RAM.
    NoRam,
    /// No free RAM range holds a heap's metadata.
    NoRoomForMetadata {
        /// The heap.
        kind: MemKind,
        /// Bytes needed.
        bytes: u64,
    },
    /// A range is not made of whole frames inside the frame-number space.
    BadRange {
        /// The byte range.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// Too many disjoint free ranges.
    Capacity(RangeSetFull),
    /// The heap refused its metadata buffer.
    New(NewError),
    /// The heap refused a range.
    Add(AddError),
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRam => f.write_str("no free RAM for the volatile heap"),
            Self::NoRoomForMetadata { kind, bytes } => write!(
                f,
                "no free RAM range holds the {bytes} bytes of {kind} heap metadata"
            ),
            Self::BadRange { start, end } => {
                write!(f, "range {start:#x}..{end:#x} is not made of whole frames")
            }
            Self::Capacity(e) => e.fmt(f),
            Self::New(e) => write!(f, "heap: {e}"),
            Self::Add(e) => write!(f, "heap: {e}"),
        }
    }
}

impl core::error::Error for HeapError {}

impl From<RangeSetFull> for HeapError {
    fn from(e: RangeSetFull) -> Self {
        Self::Capacity(e)
    }
}

/// The frames of a page-aligned byte range.
pub fn pfn_range(range: &Range<u64>) -> Result<MfnRange, HeapError> {
    let bad = HeapError::BadRange {
        start: range.start,
        end: range.end,
    };
    match HostPhysRange::from_numbers(range.start, range.end) {
        Some(bytes) if bytes.is_page_aligned() => Ok(bytes.frames_within()),
        _ => Err(bad),
    }
}

/// The frames from the first to the last byte of `set`.
fn span_of<const N: usize>(set: &RangeSet<N>) -> Result<Option<MfnRange>, HeapError> {
    match (set.ranges().first(), set.ranges().last()) {
        (Some(first), Some(last)) => pfn_range(&(first.start..last.end)).map(Some),
        _ => Ok(None),
    }
}

/// Takes `bytes` (rounded up to pages) from the lowest free range that
/// holds them (heap metadata, the NV pool's work area). Low RAM is the most fragmented and the heaps allocate from
/// the top, so the large blocks guests want stay whole.
pub fn carve(
    free: &mut RangeSet<FREE_CAPACITY>,
    bytes: usize,
    kind: MemKind,
) -> Result<Range<u64>, HeapError> {
    let no_room = HeapError::NoRoomForMetadata {
        kind,
        bytes: bytes as u64,
    };
    let frames = (bytes as u64).div_ceil(PAGE);
    let taken = free
        .iter()
        .filter_map(|r| HostPhysRange::from_numbers(r.start, r.end))
        .find_map(|r| {
            let run = MfnRange::from_len(r.frames_within().start(), frames)?;
            r.contains_range(run.addrs()).then_some(run.addrs())
        })
        .ok_or(no_room)?;
    let taken = taken.start().get()..taken.end().get();
    free.remove(taken.clone())?;
    Ok(taken)
}

/// Lays out both heaps over `host`: spans, metadata sizes, and the RAM
/// their metadata takes.
pub fn plan(host: &HostMemory) -> Result<HeapPlan, HeapError> {
    let ram_span = span_of(&host.free)?.ok_or(HeapError::NoRam)?;
    let nv_span = span_of(&host.nvram)?;
    let mut free = host.free.clone();
    let ram_len = metadata_bytes(ram_span, Order::MAX);
    let ram = HeapSpec {
        span: ram_span,
        metadata_len: ram_len,
        metadata: carve(&mut free, ram_len, MemKind::Volatile)?,
    };
    let nvram = match nv_span {
        Some(span) => {
            let len = metadata_bytes(span, Order::MAX);
            Some(HeapSpec {
                span,
                metadata_len: len,
                metadata: carve(&mut free, len, MemKind::NonVolatile)?,
            })
        }
        None => None,
    };
    Ok(HeapPlan { ram, nvram, free })
}

/// A heap of `kind` over `spec`, its metadata in `metadata`, holding every
/// range of `ranges`.
pub fn build<'m>(
    kind: MemKind,
    spec: &HeapSpec,
    metadata: &'m mut [u8],
    ranges: impl IntoIterator<Item = Range<u64>>,
) -> Result<Heap<'m>, HeapError> {
    let mut heap = Heap::new(kind, spec.span, Order::MAX, metadata).map_err(HeapError::New)?;
    for r in ranges {
        heap.add(pfn_range(&r)?).map_err(HeapError::Add)?;
    }
    Ok(heap)
}

/// Blocks of a size in bytes, for control structures (VMCB, VMCS, I/O and
/// MSR permission maps).
pub trait FrameAlloc {
    /// A block of at least `size` bytes aligned to its own size (a power of
    /// two of pages), or `None`. Not zeroed.
    fn alloc_bytes(&mut self, size: u64) -> Option<u64>;
    /// Gives back the block `alloc_bytes(size)` returned at `addr`; false
    /// if the allocator refuses it (it was not such a block).
    fn free_bytes(&mut self, addr: u64, size: u64) -> bool;
}

impl FrameAlloc for Heap<'_> {
    fn alloc_bytes(&mut self, size: u64) -> Option<u64> {
        let order = Order::for_frames(size.div_ceil(PAGE))?;
        let block = self.alloc(order, Constraints::ANY).ok()?;
        Some(block.start().addr().get())
    }

    fn free_bytes(&mut self, addr: u64, size: u64) -> bool {
        let (Some(order), Some(pfn)) = (
            Order::for_frames(size.div_ceil(PAGE)),
            HostPhysAddr::new(addr).and_then(Mfn::from_addr),
        ) else {
            return false;
        };
        self.free(pfn, order).is_ok()
    }
}

/// Nested-table frames from the volatile heap: the `nvirt-ept` frame source.
#[derive(Debug)]
pub struct TableFrames<'a, 'm>(pub &'a mut Heap<'m>);

impl FrameSource for TableFrames<'_, '_> {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        let block = self.0.alloc(Order::SIZE_4K, Constraints::ANY).ok()?;
        Some(block.start().addr())
    }

    fn free_table(&mut self, frame: HostPhysAddr) {
        // The tables free only frames `alloc_table` gave them; a refusal
        // would mean such a frame is already free, and changes nothing.
        if let Some(pfn) = Mfn::from_addr(frame) {
            let _ = self.0.free(pfn, Order::SIZE_4K);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostMemory {
        let mut free = RangeSet::new();
        free.insert(0x13_3000..0x13_5000).unwrap();
        free.insert(0x20_0000..0x1000_0000).unwrap();
        let mut nvram = RangeSet::new();
        nvram.insert(0x1_0000_0000..0x1_4000_0000).unwrap();
        HostMemory { free, nvram }
    }

    #[test]
    fn carves_metadata_from_the_lowest_range_that_holds_it() {
        let plan = plan(&host()).unwrap();
        assert_eq!(
            plan.ram.span,
            MfnRange::from_numbers(0x133, 0x1_0000).unwrap()
        );
        assert_eq!(
            plan.ram.metadata_len,
            metadata_bytes(plan.ram.span, Order::MAX)
        );
        // 8 KiB at 0x133000 is too small for either metadata area.
        assert_eq!(plan.ram.metadata.start, 0x20_0000);
        let nv = plan.nvram.clone().unwrap();
        assert_eq!(nv.metadata.start, plan.ram.metadata.end);
        assert!(nv.metadata.end - nv.metadata.start >= nv.metadata_len as u64);
        assert_eq!(
            plan.free.total(),
            host().free.total()
                - (plan.ram.metadata.end - plan.ram.metadata.start)
                - (nv.metadata.end - nv.metadata.start)
        );
        assert!(!plan.free.overlaps(&plan.ram.metadata));
        assert!(!plan.free.overlaps(&nv.metadata));
    }

    #[test]
    fn builds_heaps_that_hand_out_only_their_ranges() {
        let plan = plan(&host()).unwrap();
        let mut meta = vec![0u8; plan.ram.metadata_len + 8];
        let mut ram = build(MemKind::Volatile, &plan.ram, &mut meta, plan.free.iter()).unwrap();
        assert_eq!(ram.free_frames() * PAGE, plan.free.total());
        let nv = plan.nvram.clone().unwrap();
        let mut nv_meta = vec![0u8; nv.metadata_len + 8];
        let mut nvram =
            build(MemKind::NonVolatile, &nv, &mut nv_meta, host().nvram.iter()).unwrap();
        assert_eq!(nvram.free_frames(), 0x4_0000);
        let vmcb = ram.alloc_bytes(3 * PAGE).unwrap();
        assert_eq!(
            vmcb % (4 * PAGE),
            0,
            "12 KiB come as an aligned 16 KiB block"
        );
        assert!(plan.free.overlaps(&(vmcb..vmcb + 3 * PAGE)));
        let mut frames = TableFrames(&mut nvram);
        let t = frames.alloc_table().unwrap();
        assert!(t.get() >= 0x1_0000_0000);
        frames.free_table(t);
        assert_eq!(nvram.free_frames(), 0x4_0000);
        ram.check_invariants().unwrap();
    }

    #[test]
    fn refuses_what_it_cannot_lay_out() {
        let mut h = host();
        h.free = RangeSet::new();
        assert_eq!(plan(&h).err(), Some(HeapError::NoRam));
        let mut h = host();
        h.free = RangeSet::new();
        h.free.insert(0x10_0000..0x10_1000).unwrap();
        h.free.insert(0x1000_0000..0x1000_1000).unwrap();
        assert!(matches!(
            plan(&h),
            Err(HeapError::NoRoomForMetadata {
                kind: MemKind::Volatile,
                ..
            })
        ));
        assert!(pfn_range(&(0x1001..0x2000)).is_err());
        let backwards = Range {
            start: 0x2000,
            end: 0x1000,
        };
        assert!(pfn_range(&backwards).is_err());
    }
}
