//! Where table frames come from and how they are reached.
//!
//! # Why atomics and no unsafe code
//!
//! A table is shared with the processor's page walker, which reads entries
//! at any moment and sets accessed/dirty bits with locked read-modify-write
//! cycles. A `&mut [u64; 512]` would promise the compiler that nobody else
//! touches the memory (false: the walker does) and leaves it free to tear,
//! merge or defer stores. `&[AtomicU64; 512]` states the truth: every store
//! is one 8-byte `mov` the walker sees whole, changes to live entries are
//! compare-exchanges that cannot lose a concurrently set dirty bit, and a
//! release store orders a new table's contents before the entry that links
//! it. The caller's [`PhysMem`] hands out these views (a bare-metal
//! implementation turns its direct map into references once, in its own
//! unsafe block); this crate itself needs no unsafe code at all.

use crate::addr::host_addr;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::error::FrameError;
use crate::{HostPhysAddr, Level};

/// One paging structure as the tables see it.
pub type TableView = [AtomicU64; Level::ENTRIES];

/// Supplies 4 KiB frames for paging structures, e.g. from a buddy heap.
pub trait FrameSource {
    /// A 4 KiB-aligned frame, or `None` when exhausted. Its contents do not
    /// matter: every entry is written before the frame is linked.
    fn alloc_table(&mut self) -> Option<HostPhysAddr>;

    /// Takes back a frame from [`alloc_table`](Self::alloc_table). The
    /// tables free a frame only when no walker can reach it any more: at
    /// once if it was never linked, otherwise from
    /// [`Tables::reclaim`](crate::Tables::reclaim) after the caller's
    /// invalidation.
    fn free_table(&mut self, frame: HostPhysAddr);
}

impl<T: FrameSource + ?Sized> FrameSource for &mut T {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        (**self).alloc_table()
    }

    fn free_table(&mut self, frame: HostPhysAddr) {
        (**self).free_table(frame);
    }
}

/// Reaches table frames: host-physical to host-virtual.
pub trait PhysMem {
    /// The table at `frame`. Called only for the root and for frames the
    /// frame source handed out; the view must stay valid while the tables
    /// exist and must alias no other frame's view.
    fn table(&self, frame: HostPhysAddr) -> &TableView;
}

impl<T: PhysMem + ?Sized> PhysMem for &T {
    fn table(&self, frame: HostPhysAddr) -> &TableView {
        (**self).table(frame)
    }
}

/// Frames obtained before a change is applied, so that applying cannot
/// fail halfway. Chained through entry 0 of the frames themselves: no
/// walker can reach them yet.
#[derive(Debug)]
pub(crate) struct Pool {
    head: Option<HostPhysAddr>,
    len: u64,
    /// Frames handed out by `take` minus frames given back by `put`.
    pub(crate) net_taken: i64,
}

/// Entry 0 of a pooled frame: the next frame with bit 0 set, or 0 at the end.
fn encode_next(next: Option<HostPhysAddr>) -> u64 {
    next.map_or(0, |f| f.get() | 1)
}

fn decode_next(raw: u64) -> Option<HostPhysAddr> {
    (raw & 1 != 0).then(|| host_addr(raw & !0xfff))
}

impl Pool {
    pub(crate) const fn empty() -> Self {
        Self {
            head: None,
            len: 0,
            net_taken: 0,
        }
    }

    /// Obtains `needed` frames, all or none.
    pub(crate) fn fill(
        needed: u64,
        mem: &impl PhysMem,
        source: &mut impl FrameSource,
        phys_bits: u8,
    ) -> Result<Self, FrameError> {
        let mut pool = Self::empty();
        while pool.len < needed {
            let Some(frame) = source.alloc_table() else {
                let obtained = pool.len;
                pool.release(mem, source);
                return Err(FrameError::Exhausted { needed, obtained });
            };
            if !frame_ok(frame, phys_bits) {
                source.free_table(frame);
                pool.release(mem, source);
                return Err(FrameError::Invalid { frame });
            }
            pool.push(mem, frame);
        }
        Ok(pool)
    }

    fn push(&mut self, mem: &impl PhysMem, frame: HostPhysAddr) {
        mem.table(frame)[0].store(encode_next(self.head), Ordering::Relaxed);
        self.head = Some(frame);
        self.len += 1;
    }

    /// A frame for a new table.
    pub(crate) fn take(&mut self, mem: &impl PhysMem) -> Option<HostPhysAddr> {
        let frame = self.head?;
        self.head = decode_next(mem.table(frame)[0].load(Ordering::Relaxed));
        self.len -= 1;
        self.net_taken += 1;
        Some(frame)
    }

    /// Gives back a frame that was taken but never became reachable.
    pub(crate) fn put(&mut self, mem: &impl PhysMem, frame: HostPhysAddr) {
        self.push(mem, frame);
        self.net_taken -= 1;
    }

    /// Returns the unused frames to the source.
    pub(crate) fn release(mut self, mem: &impl PhysMem, source: &mut impl FrameSource) {
        while let Some(frame) = self.head {
            self.head = decode_next(mem.table(frame)[0].load(Ordering::Relaxed));
            source.free_table(frame);
        }
        self.len = 0;
    }
}

/// Whether a frame from the source is usable: 4 KiB aligned, inside the
/// physical-address width.
pub(crate) fn frame_ok(frame: HostPhysAddr, phys_bits: u8) -> bool {
    frame.get() & 0xfff == 0 && frame.get() >> phys_bits == 0
}

/// Bits ignored by the walker in every entry form of both formats, present
/// or not: bit 11 and bits 56:52 (SDM Vol. 3C tables 29-1 to 29-6 list them
/// as ignored in EPT entries; AMD APM Vol. 2 5.3.3 makes bits 11:9 and 58:52
/// available to software). Retired tables — unlinked but possibly still
/// walked through stale paging-structure caches until the invalidation —
/// are chained through them, so a stale walk still sees the same
/// translation and no memory is needed for the list.
pub(crate) const LINK_BITS: u64 = (1 << 11) | (0x1f << 52);
/// Entries of a retired table that carry the link: 6 bits each, 48 bits
/// for the next table's frame number plus one (at most 41 bits) and its
/// level (2 bits, from bit 41).
const LINK_ENTRIES: usize = 8;
const LINK_LEVEL_SHIFT: u32 = 41;

/// Chains the retired table `next` (of its level) into the retired
/// `table`. Read-modify-write: a walker may be setting accessed/dirty bits
/// in the same entries.
pub(crate) fn write_link(table: &TableView, next: Option<(HostPhysAddr, Level)>) {
    let value = next.map_or(0, |(f, level)| {
        ((f.get() >> 12) + 1) | ((level as u64) << LINK_LEVEL_SHIFT)
    });
    for (k, entry) in table.iter().take(LINK_ENTRIES).enumerate() {
        let chunk = (value >> (6 * k)) & 0x3f;
        let bits = ((chunk & 1) << 11) | ((chunk >> 1) << 52);
        if bits != 0 {
            entry.fetch_or(bits, Ordering::Relaxed);
        }
    }
}

/// The retired table chained after `table`.
pub(crate) fn read_link(table: &TableView) -> Option<(HostPhysAddr, Level)> {
    let mut value = 0;
    for (k, entry) in table.iter().take(LINK_ENTRIES).enumerate() {
        let raw = entry.load(Ordering::Relaxed);
        let chunk = ((raw >> 11) & 1) | (((raw >> 52) & 0x1f) << 1);
        value |= chunk << (6 * k);
    }
    let frame = (value & ((1 << LINK_LEVEL_SHIFT) - 1)).checked_sub(1)?;
    let level = match value >> LINK_LEVEL_SHIFT {
        1 => Level::Pt,
        2 => Level::Pd,
        _ => Level::Pdpt,
    };
    Some((host_addr(frame << 12), level))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableView {
        core::array::from_fn(|i| AtomicU64::new(i as u64 * 0x1003))
    }

    #[test]
    fn links_round_trip_without_touching_other_bits() {
        let last = host_addr(0x000f_ffff_ffff_f000);
        for next in [
            None,
            Some((host_addr(0), Level::Pt)),
            Some((last, Level::Pdpt)),
        ] {
            let t = table();
            write_link(&t, next);
            assert_eq!(read_link(&t), next);
            for (i, e) in t.iter().enumerate() {
                assert_eq!(
                    e.load(Ordering::Relaxed) & !LINK_BITS,
                    (i as u64 * 0x1003) & !LINK_BITS
                );
            }
        }
    }

    #[test]
    fn frame_checks() {
        assert!(frame_ok(host_addr(0x1000), 32));
        assert!(!frame_ok(host_addr(0x1800), 52));
        assert!(!frame_ok(host_addr(1 << 32), 32));
    }
}
