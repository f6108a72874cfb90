//! Backing and releasing guest frames: the guest's initial memory and the
//! balloon operations `memory_op` serves (populate_physmap,
//! increase_reservation, decrease_reservation).
//!
//! Which guest frames the balloon may touch: only frames inside the
//! guest's own regions of the kind asked for, as its E820 map lays them out
//! (RAM entries for RAM, the NVRAM entry for NVRAM). A guest can give any
//! of those frames back and back them again, but never back frames
//! elsewhere (the legacy area, the PCI hole, past its map) nor hold more
//! than its map describes — so its reservation never exceeds what it was
//! configured with. NVRAM frames are refused in RAM regions and the other
//! way round.
//!
//! Every change is all or nothing: checks first, then the pool, the map
//! and the tables; a failure part-way undoes what was done. Frames the
//! guest gets back are zeroed first (they may have held another guest's
//! data); frames it gives back return to their pool as they are and are
//! zeroed when next handed out.

use core::ops::Range;

use nvirt_addr::{Gfn, GfnRange, GuestPhysAddr};
use nvirt_buddy::{MemKind, Order};

use crate::guest_memory::{GuestMemory, HostMem, MemoryError, PAGE};
use crate::heaps::TableFrames;
use crate::p2m::Extent;
use crate::pool::FramePool;

/// The largest order a block may have to back guest frames from `gpfn`
/// with `frames` frames left: bounded by the guest address's alignment,
/// the remaining size and the largest page.
#[must_use]
pub fn order_for(gpfn: u64, frames: u64) -> Order {
    let align = if gpfn == 0 { 63 } else { gpfn.trailing_zeros() };
    let fits = 63 - frames.max(1).leading_zeros();
    Order::new(align.min(fits).min(u32::from(Order::MAX.get())) as u8).unwrap_or(Order::SIZE_4K)
}

/// The guest-physical address of guest frame `gpfn`, which must start
/// `frames` frames of a region of `kind`: a frame beyond the guest-physical
/// space lies in no region.
fn guest_addr(gpfn: u64, frames: u64, kind: MemKind) -> Result<GuestPhysAddr, MemoryError> {
    Gfn::new(gpfn)
        .map(Gfn::addr)
        .ok_or(MemoryError::OutsideRegion { gpfn, frames, kind })
}

impl<N: FramePool, M: HostMem + Copy> GuestMemory<'_, '_, '_, N, M> {
    fn pool(&mut self, kind: MemKind) -> Result<&mut dyn FramePool, MemoryError> {
        match kind {
            MemKind::Volatile => Ok(&mut *self.ram),
            MemKind::NonVolatile => match self.nvram.as_deref_mut() {
                Some(pool) => Ok(pool),
                None => Err(MemoryError::NoPool { kind }),
            },
        }
    }

    /// Backs guest-physical `gpa` (page aligned) with memory of `kind`,
    /// zeroed if `zero`: the guest's initial memory. No region check: the
    /// legacy area is backed too.
    pub fn back(&mut self, gpa: &Range<u64>, kind: MemKind, zero: bool) -> Result<(), MemoryError> {
        let gpfns = gpa.start / PAGE..gpa.end / PAGE;
        if self.p2m.any_backed(&gpfns) {
            return Err(MemoryError::Backed { gpfn: gpfns.start });
        }
        self.fill(&gpfns, kind, zero)
    }

    /// Backs the frames of guest-physical `gpa` (page aligned) that are not
    /// backed yet with memory of `kind`, zeroed if `zero`, largest block
    /// first: after [`attach_owned`](Self::attach_owned), the frames the
    /// guest had given back. Returns the frames backed.
    pub fn back_holes(
        &mut self,
        gpa: &Range<u64>,
        kind: MemKind,
        zero: bool,
    ) -> Result<u64, MemoryError> {
        let (start, end) = (gpa.start / PAGE, gpa.end / PAGE);
        let mut at = start;
        let mut backed = 0;
        while at < end {
            if let Some(e) = self.p2m.lookup(at) {
                at = e.end();
                continue;
            }
            let next = self
                .p2m
                .extents()
                .iter()
                .find(|e| e.gpfn > at)
                .map_or(end, |e| e.gpfn.min(end));
            self.fill(&(at..next), kind, zero)?;
            backed += next - at;
            at = next;
        }
        Ok(backed)
    }

    /// Maps every block the pool of `kind` already holds for the guest
    /// inside guest-physical `gpa` at its guest frames, contents kept: a
    /// guest's NVRAM found in the NV pool at boot. Returns the blocks.
    pub fn attach_owned(&mut self, gpa: &Range<u64>, kind: MemKind) -> Result<u64, MemoryError> {
        let (start, end) = (gpa.start / PAGE, gpa.end / PAGE);
        let mut at = start;
        let mut blocks = 0;
        while let Some((gpfn, block)) = self.pool(kind)?.next_owned(at) {
            if gpfn >= end {
                break;
            }
            if gpfn < at || gpfn + block.frames() > end {
                return Err(MemoryError::OutsideRegion {
                    gpfn,
                    frames: block.frames(),
                    kind,
                });
            }
            self.attach(gpfn, block, kind)?;
            blocks += 1;
            at = gpfn + block.frames();
        }
        Ok(blocks)
    }

    /// Records and maps `block`, which the pool of `kind` holds for the
    /// guest, at guest frame `gpfn`.
    fn attach(
        &mut self,
        gpfn: u64,
        block: nvirt_buddy::Block,
        kind: MemKind,
    ) -> Result<(), MemoryError> {
        if gpfn % block.frames() != 0 {
            return Err(MemoryError::OutsideRegion {
                gpfn,
                frames: block.frames(),
                kind,
            });
        }
        let gpa = guest_addr(gpfn, block.frames(), kind)?;
        self.p2m.insert(Extent { gpfn, block, kind })?;
        let (hpa, bytes) = (block.start().addr(), block.order().bytes());
        match self.tables.map(&mut TableFrames(self.ram), gpa, hpa, bytes) {
            Ok(v) => {
                self.pending = self.pending.and(v);
                Ok(())
            }
            Err(e) => {
                let one = gpfn..gpfn + block.frames();
                if let Ok(cover) = self.p2m.covering(&one, kind) {
                    self.p2m.remove(&one, cover)?;
                }
                Err(match e {
                    nvirt_ept::MapError::Frames(_) => MemoryError::NoTableFrame,
                    other => MemoryError::TablesMap(other),
                })
            }
        }
    }

    /// Backs the unbacked frames `gpfns` largest block first; undoes
    /// everything on failure.
    fn fill(&mut self, gpfns: &Range<u64>, kind: MemKind, zero: bool) -> Result<(), MemoryError> {
        let mut at = gpfns.start;
        while at < gpfns.end {
            if let Err(e) = self.fill_one(at, gpfns.end, kind, zero) {
                if at > gpfns.start {
                    // What was done can be undone: these extents are
                    // exactly what was just added.
                    if self.release(&(gpfns.start..at), kind).is_err() {
                        return Err(MemoryError::UndoFailed { gpfn: gpfns.start });
                    }
                }
                return Err(e);
            }
            at = self.p2m.lookup(at).map_or(gpfns.end, Extent::end);
        }
        Ok(())
    }

    /// Backs frames from `at` with one block; the map and the tables take
    /// it or nothing changes.
    fn fill_one(
        &mut self,
        at: u64,
        end: u64,
        kind: MemKind,
        zero: bool,
    ) -> Result<(), MemoryError> {
        let order = order_for(at, end - at);
        let gpa = guest_addr(at, order.frames(), kind)?;
        let pool = self.pool(kind)?;
        let block = pool.alloc_for(at, order).map_err(|e| {
            if pool.is_broken(&e) {
                MemoryError::Inconsistent(e)
            } else {
                MemoryError::NoMemory { kind }
            }
        })?;
        let (hpa, bytes) = (block.start().addr(), block.order().bytes());
        let give_back = |this: &mut Self| {
            let range = crate::pool::block_range(block);
            this.pool(kind).and_then(|p| {
                p.release(at, block, range)
                    .map_err(MemoryError::Inconsistent)
            })
        };
        if zero {
            self.mem.zero(hpa.get(), bytes);
        }
        let extent = Extent {
            gpfn: at,
            block,
            kind,
        };
        if let Err(e) = self.p2m.insert(extent) {
            give_back(self)?;
            return Err(e.into());
        }
        match self.tables.map(&mut TableFrames(self.ram), gpa, hpa, bytes) {
            Ok(v) => {
                self.pending = self.pending.and(v);
                Ok(())
            }
            Err(e) => {
                let one = at..at + block.frames();
                if let Ok(cover) = self.p2m.covering(&one, kind) {
                    self.p2m.remove(&one, cover)?;
                }
                give_back(self)?;
                Err(match e {
                    nvirt_ept::MapError::Frames(_) => MemoryError::NoTableFrame,
                    other => MemoryError::TablesMap(other),
                })
            }
        }
    }

    /// Releases the frames `gpfns`, every one backed by `kind`: out of the
    /// tables, back to the pool, off the map.
    fn release(&mut self, gpfns: &Range<u64>, kind: MemKind) -> Result<(), MemoryError> {
        let cover = self.p2m.covering(gpfns, kind)?;
        if !self.p2m.can_remove(gpfns, &cover) {
            return Err(MemoryError::Map(crate::p2m::P2mError::Full {
                capacity: self.p2m.capacity(),
            }));
        }
        // The pool's room too, before the tables change: a refusal after
        // the unmap would leave the guest's map and its tables apart.
        for i in cover.clone() {
            let Some(&e) = self.p2m.extents().get(i) else {
                continue;
            };
            let part = self.p2m.part_of(&e, gpfns);
            if !self.pool(kind)?.can_release(e.block, part) {
                return Err(MemoryError::NoMemory { kind });
            }
        }
        let bytes = GfnRange::from_numbers(gpfns.start, gpfns.end)
            .map(GfnRange::addrs)
            .ok_or(MemoryError::Map(crate::p2m::P2mError::NotBacked {
                gpfn: gpfns.start,
            }))?;
        let (gpa, len) = (bytes.start(), bytes.len());
        let v = self
            .tables
            .unmap(&mut TableFrames(self.ram), gpa, len)
            .map_err(|e| match e {
                nvirt_ept::UnmapError::Frames(_) => MemoryError::NoTableFrame,
                other => MemoryError::TablesUnmap(other),
            })?;
        self.pending = self.pending.and(v);
        for i in cover.clone() {
            let Some(&e) = self.p2m.extents().get(i) else {
                continue;
            };
            let part = self.p2m.part_of(&e, gpfns);
            self.pool(kind)?
                .release(e.gpfn, e.block, part)
                .map_err(MemoryError::Inconsistent)?;
        }
        self.p2m.remove(gpfns, cover)?;
        Ok(())
    }

    /// `populate_physmap` of one extent: backs guest frames `gpfn..gpfn +
    /// 2^order` (all unbacked, inside a region of `kind`) with fresh,
    /// zeroed memory of `kind`.
    pub fn populate(&mut self, gpfn: u64, order: Order, kind: MemKind) -> Result<(), MemoryError> {
        let gpfns = self.extent(gpfn, order, kind)?;
        if self.p2m.any_backed(&gpfns) {
            return Err(MemoryError::Backed { gpfn });
        }
        self.fill(&gpfns, kind, true)
    }

    /// `decrease_reservation` of one extent: gives back guest frames `gpfn..gpfn
    /// + 2^order`, all backed by `kind`.
    pub fn decrease(&mut self, gpfn: u64, order: Order, kind: MemKind) -> Result<(), MemoryError> {
        let gpfns = self.extent(gpfn, order, kind)?;
        self.release(&gpfns, kind)
    }

    /// `increase_reservation` of one extent: backs the lowest aligned run
    /// of `2^order` unbacked frames in the guest's regions of `kind` with
    /// fresh, zeroed memory and returns its first frame.
    pub fn increase(&mut self, order: Order, kind: MemKind) -> Result<u64, MemoryError> {
        self.pool(kind)?;
        let hole = self
            .regions
            .of(kind)
            .find_map(|r| self.p2m.first_hole(r, order))
            .ok_or(MemoryError::NoMemory { kind })?;
        self.populate(hole, order, kind)?;
        Ok(hole)
    }

    /// The frames of an extent, if inside one region of `kind`.
    fn extent(
        &mut self,
        gpfn: u64,
        order: Order,
        kind: MemKind,
    ) -> Result<Range<u64>, MemoryError> {
        self.pool(kind)?;
        let frames = order.frames();
        let outside = MemoryError::OutsideRegion { gpfn, frames, kind };
        let end = gpfn.checked_add(frames).ok_or(outside)?;
        if !self.regions.contain(kind, &(gpfn..end)) {
            return Err(outside);
        }
        Ok(gpfn..end)
    }
}

#[cfg(test)]
#[path = "balloon_tests.rs"]
pub(crate) mod tests;
