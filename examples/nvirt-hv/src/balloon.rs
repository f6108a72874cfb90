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

use nvirt_addr::{Gfn, GfnRange, GuestPhysRange};
use nvirt_buddy::{MemKind, Order};

use crate::guest_memory::{GuestMemory, HostMem, MemoryError};
use crate::heaps::TableFrames;
use crate::p2m::BlockMapping;
use crate::pool::FramePool;

/// The largest order a block may have to back guest frames from `gfn`
/// with `frames` frames left: bounded by the guest address's alignment,
/// the remaining size and the largest page.
#[must_use]
pub fn order_for(gfn: Gfn, frames: u64) -> Order {
    let fits = Order::fitting_in(frames).unwrap_or(Order::SIZE_4K);
    gfn.alignment().min(fits)
}

/// The guest frames of guest-physical `gpa`, which must be page aligned
/// and inside the guest-physical space.
fn frames_of(gpa: &Range<u64>, kind: MemKind) -> Result<GfnRange, MemoryError> {
    match GuestPhysRange::from_numbers(gpa.start, gpa.end) {
        Some(r) if r.is_page_aligned() => Ok(r.frames_within()),
        _ => Err(MemoryError::OutsideRegion {
            gpfn: gpa.start >> nvirt_addr::PAGE_SHIFT,
            frames: gpa.end.saturating_sub(gpa.start) >> nvirt_addr::PAGE_SHIFT,
            kind,
        }),
    }
}

/// `frames` guest frames from `gfn`, if they lie in the guest frame space.
fn run(gfn: Gfn, frames: u64, kind: MemKind) -> Result<GfnRange, MemoryError> {
    GfnRange::from_len(gfn, frames).ok_or(MemoryError::OutsideRegion {
        gpfn: gfn.get(),
        frames,
        kind,
    })
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
        let gfns = frames_of(gpa, kind)?;
        if self.p2m.any_backed(&gfns) {
            return Err(MemoryError::Backed {
                gpfn: gfns.start().get(),
            });
        }
        self.fill(&gfns, kind, zero)
    }

    /// Backs guest memory where the guest first touched it (thin
    /// provisioning): the largest aligned block around guest-physical
    /// `gpa` — 1 GiB where the tables may use such pages, then 2 MiB, then
    /// 4 KiB — that lies inside one of the guest's regions of `kind` and is
    /// wholly unbacked. Returns the frames backed. Frames come as the pool
    /// hands them out, not zeroed again: a pool hands out only scrubbed
    /// frames. `MemoryError::NoMemory` when not even one frame is free;
    /// `MemoryError::OutsideRegion` when `gpa` is in no region of `kind`
    /// or already backed.
    pub fn back_on_touch(&mut self, gpa: u64, kind: MemKind) -> Result<u64, MemoryError> {
        let gfn = gpa >> nvirt_addr::PAGE_SHIFT;
        let outside = MemoryError::OutsideRegion {
            gpfn: gfn,
            frames: 1,
            kind,
        };
        let orders: &[u32] = if self.pages_1g { &[18, 9, 0] } else { &[9, 0] };
        let mut tried = false;
        for &order in orders {
            let frames = 1u64 << order;
            let start = gfn & !(frames - 1);
            let Some(gfns) = Gfn::new(start)
                .zip(start.checked_add(frames).and_then(Gfn::new))
                .and_then(|(from, to)| GfnRange::new(from, to))
            else {
                continue;
            };
            if !self.regions.contain(kind, &gfns) || self.p2m.any_backed(&gfns) {
                continue;
            }
            tried = true;
            match self.fill(&gfns, kind, false) {
                Ok(()) => return Ok(frames),
                Err(MemoryError::NoMemory { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(if tried {
            MemoryError::NoMemory { kind }
        } else {
            outside
        })
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
        let gfns = frames_of(gpa, kind)?;
        let end = gfns.end();
        let mut at = gfns.start();
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
                .find(|e| e.gfn() > at)
                .map_or(end, |e| e.gfn().min(end));
            let hole = GfnRange::new(at, next).unwrap_or_default();
            self.fill(&hole, kind, zero)?;
            backed += hole.len();
            at = next;
        }
        Ok(backed)
    }

    /// Maps every block the pool of `kind` already holds for the guest
    /// inside guest-physical `gpa` at its guest frames, contents kept: a
    /// guest's NVRAM found in the NV pool at boot. Returns the blocks.
    pub fn attach_owned(&mut self, gpa: &Range<u64>, kind: MemKind) -> Result<u64, MemoryError> {
        let gfns = frames_of(gpa, kind)?;
        let mut at = gfns.start();
        let mut blocks = 0;
        while let Some((gfn, block)) = self.pool(kind)?.next_owned(at) {
            if gfn >= gfns.end() {
                break;
            }
            let owned = run(gfn, block.frames(), kind)?;
            if gfn < at || !gfns.contains_range(owned) {
                return Err(MemoryError::OutsideRegion {
                    gpfn: gfn.get(),
                    frames: block.frames(),
                    kind,
                });
            }
            self.attach(gfn, block, kind)?;
            blocks += 1;
            at = owned.end();
        }
        Ok(blocks)
    }

    /// Records and maps `block`, which the pool of `kind` holds for the
    /// guest, at guest frame `gfn`.
    fn attach(
        &mut self,
        gfn: Gfn,
        block: nvirt_buddy::Block,
        kind: MemKind,
    ) -> Result<(), MemoryError> {
        let outside = MemoryError::OutsideRegion {
            gpfn: gfn.get(),
            frames: block.frames(),
            kind,
        };
        let extent = BlockMapping::new(gfn, block, kind).ok_or(outside)?;
        self.p2m.insert(extent)?;
        let (hpa, bytes) = (block.start().addr(), block.order().bytes());
        match self
            .tables
            .map(&mut TableFrames(self.ram), gfn.addr(), hpa, bytes)
        {
            Ok(v) => {
                self.pending = self.pending.and(v);
                Ok(())
            }
            Err(e) => {
                let one = extent.gfns();
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

    /// Backs the unbacked frames `gfns` largest block first; undoes
    /// everything on failure.
    fn fill(&mut self, gfns: &GfnRange, kind: MemKind, zero: bool) -> Result<(), MemoryError> {
        let mut at = gfns.start();
        while at < gfns.end() {
            if let Err(e) = self.fill_one(at, gfns.end(), kind, zero) {
                if at > gfns.start() {
                    // What was done can be undone: these extents are
                    // exactly what was just added.
                    let done = GfnRange::new(gfns.start(), at).unwrap_or_default();
                    if self.release(&done, kind).is_err() {
                        return Err(MemoryError::UndoFailed {
                            gpfn: gfns.start().get(),
                        });
                    }
                }
                return Err(e);
            }
            at = self.p2m.lookup(at).map_or(gfns.end(), BlockMapping::end);
        }
        Ok(())
    }

    /// Backs frames from `at` with one block; the map and the tables take
    /// it or nothing changes.
    fn fill_one(
        &mut self,
        at: Gfn,
        end: Gfn,
        kind: MemKind,
        zero: bool,
    ) -> Result<(), MemoryError> {
        let order = order_for(at, end.frames_from(at).unwrap_or(0));
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
            self.mem.zero(hpa, bytes);
        }
        let Some(extent) = BlockMapping::new(at, block, kind) else {
            // A pool hands out blocks no larger than the guest frame's
            // alignment allows; this one would not map.
            give_back(self)?;
            return Err(MemoryError::OutsideRegion {
                gpfn: at.get(),
                frames: block.frames(),
                kind,
            });
        };
        if let Err(e) = self.p2m.insert(extent) {
            give_back(self)?;
            return Err(e.into());
        }
        match self
            .tables
            .map(&mut TableFrames(self.ram), at.addr(), hpa, bytes)
        {
            Ok(v) => {
                self.pending = self.pending.and(v);
                Ok(())
            }
            Err(e) => {
                let one = extent.gfns();
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

    /// Releases the frames `gfns`, every one backed by `kind`: out of the
    /// tables, back to the pool, off the map.
    fn release(&mut self, gfns: &GfnRange, kind: MemKind) -> Result<(), MemoryError> {
        let cover = self.p2m.covering(gfns, kind)?;
        if !self.p2m.can_remove(gfns, &cover) {
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
            let part = self.p2m.part_of(&e, gfns);
            if !self.pool(kind)?.can_release(e.block(), part) {
                return Err(MemoryError::NoMemory { kind });
            }
        }
        let bytes = gfns.addrs();
        let v = self
            .tables
            .unmap(&mut TableFrames(self.ram), bytes.start(), bytes.len())
            .map_err(|e| match e {
                nvirt_ept::UnmapError::Frames(_) => MemoryError::NoTableFrame,
                other => MemoryError::TablesUnmap(other),
            })?;
        self.pending = self.pending.and(v);
        for i in cover.clone() {
            let Some(&e) = self.p2m.extents().get(i) else {
                continue;
            };
            let part = self.p2m.part_of(&e, gfns);
            self.pool(kind)?
                .release(e.gfn(), e.block(), part)
                .map_err(MemoryError::Inconsistent)?;
        }
        self.p2m.remove(gfns, cover)?;
        Ok(())
    }

    /// `populate_physmap` of one extent: backs guest frames `gfn..gfn +
    /// 2^order` (all unbacked, inside a region of `kind`) with fresh,
    /// zeroed memory of `kind`.
    pub fn populate(&mut self, gfn: Gfn, order: Order, kind: MemKind) -> Result<(), MemoryError> {
        let gfns = self.extent(gfn, order, kind)?;
        if self.p2m.any_backed(&gfns) {
            return Err(MemoryError::Backed { gpfn: gfn.get() });
        }
        self.fill(&gfns, kind, true)
    }

    /// `decrease_reservation` of one extent: gives back guest frames `gfn..gfn
    /// + 2^order`, all backed by `kind`.
    pub fn decrease(&mut self, gfn: Gfn, order: Order, kind: MemKind) -> Result<(), MemoryError> {
        let gfns = self.extent(gfn, order, kind)?;
        self.release(&gfns, kind)
    }

    /// `increase_reservation` of one extent: backs the lowest aligned run
    /// of `2^order` unbacked frames in the guest's regions of `kind` with
    /// fresh, zeroed memory and returns its first frame.
    pub fn increase(&mut self, order: Order, kind: MemKind) -> Result<Gfn, MemoryError> {
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
    fn extent(&mut self, gfn: Gfn, order: Order, kind: MemKind) -> Result<GfnRange, MemoryError> {
        self.pool(kind)?;
        let gfns = run(gfn, order.frames(), kind)?;
        if !self.regions.contain(kind, &gfns) {
            return Err(MemoryError::OutsideRegion {
                gpfn: gfn.get(),
                frames: order.frames(),
                kind,
            });
        }
        Ok(gfns)
    }
}

#[cfg(test)]
#[path = "balloon_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "touch_tests.rs"]
mod touch_tests;
