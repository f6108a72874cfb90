//! The model the balloon driver checks a guest's memory against: which
//! guest frames are backed, by which kind, holding which byte; and what
//! each single-extent operation must answer.

use std::collections::BTreeMap;
use std::ops::Range;

use nvirt_addr::{Gfn, GfnRange};
use nvirt_buddy::{Heap, MemKind, Order};

use super::Arena;
use crate::guest_memory::{GuestMemory, MemoryError, PAGE};
use crate::p2m::P2mError;
use crate::regions::Regions;

/// Where in each page the model's byte lives.
pub(super) const TAG: u64 = 0x7f8;

/// The model: which frames are backed, by which kind, holding which byte.
#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) frames: BTreeMap<u64, (MemKind, u8)>,
}

pub(super) type Guest<'a, 'm, 's> = GuestMemory<'a, 'm, 's, Heap<'m>, &'a Arena>;

pub(super) fn read_tag(g: &Guest<'_, '_, '_>, gpfn: u64) -> Option<u8> {
    let mut b = [0u8];
    g.read(gpfn * PAGE + TAG, &mut b).ok().map(|()| b[0])
}

impl Model {
    pub(super) fn sync_from(&mut self, g: &Guest<'_, '_, '_>) {
        self.frames.clear();
        for e in g.extents() {
            for f in e.gfns().iter().map(Gfn::get) {
                let tag = read_tag(g, f).unwrap_or_else(|| panic!("frame {f:#x} unreadable"));
                self.frames.insert(f, (e.kind(), tag));
            }
        }
    }

    pub(super) fn check(&self, g: &Guest<'_, '_, '_>) {
        let mut seen = 0usize;
        for e in g.extents() {
            for f in e.gfns().iter().map(Gfn::get) {
                let want = self.frames.get(&f);
                assert_eq!(
                    want.map(|w| w.0),
                    Some(e.kind()),
                    "frame {f:#x} backed by {} in the map",
                    e.kind()
                );
                assert_eq!(
                    read_tag(g, f),
                    want.map(|w| w.1),
                    "frame {f:#x} holds the model's byte"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, self.frames.len(), "every modelled frame is backed");
    }

    pub(super) fn back(&mut self, gpfn: u64, order: Order, kind: MemKind) {
        for f in gpfn..gpfn + order.frames() {
            self.frames.insert(f, (kind, 0));
        }
    }

    pub(super) fn unback(&mut self, gpfn: u64, order: Order) {
        for f in gpfn..gpfn + order.frames() {
            self.frames.remove(&f);
        }
    }

    /// Where increase_reservation must put an extent.
    pub(super) fn hole(&self, regions: &Regions, order: Order, kind: MemKind) -> Option<u64> {
        let size = order.frames();
        regions.of(kind).find_map(|r| {
            let mut at = r.start().get().div_ceil(size) * size;
            while at + size <= r.end().get() {
                if self.all_free(&(at..at + size)) {
                    return Some(at);
                }
                at += size;
            }
            None
        })
    }

    /// Whether every frame of `range` is unbacked.
    pub(super) fn all_free(&self, range: &Range<u64>) -> bool {
        self.frames.range(range.clone()).next().is_none()
    }

    /// Whether every frame of `range` is backed by `kind`.
    pub(super) fn all_backed(&self, range: &Range<u64>, kind: MemKind) -> bool {
        range
            .clone()
            .all(|f| self.frames.get(&f).is_some_and(|w| w.0 == kind))
    }
}

/// Whether the frames `range` lie in one region of `kind`.
fn in_region(regions: &Regions, kind: MemKind, range: &Range<u64>) -> bool {
    GfnRange::from_numbers(range.start, range.end).is_some_and(|r| regions.contain(kind, &r))
}

pub(super) fn order_of(order: u8) -> Order {
    Order::new(order % 11).unwrap_or(Order::SIZE_4K)
}

pub(super) fn expect_populate(
    model: &Model,
    regions: &Regions,
    gpfn: u64,
    order: Order,
    kind: MemKind,
) -> Result<(), MemoryError> {
    let range = gpfn..gpfn + order.frames();
    if !in_region(regions, kind, &range) {
        Err(MemoryError::OutsideRegion {
            gpfn,
            frames: order.frames(),
            kind,
        })
    } else if !model.all_free(&range) {
        Err(MemoryError::Backed { gpfn })
    } else {
        Ok(())
    }
}

pub(super) fn expect_decrease(
    model: &Model,
    regions: &Regions,
    gpfn: u64,
    order: Order,
    kind: MemKind,
) -> Result<(), MemoryError> {
    let range = gpfn..gpfn + order.frames();
    if !in_region(regions, kind, &range) {
        Err(MemoryError::OutsideRegion {
            gpfn,
            frames: order.frames(),
            kind,
        })
    } else if let Some(f) = range.clone().find(|f| !model.frames.contains_key(f)) {
        let gpfn = Gfn::new(f).unwrap_or(Gfn::MAX);
        Err(MemoryError::Map(P2mError::NotBacked { gpfn }))
    } else if model.all_backed(&range, kind) {
        Ok(())
    } else {
        panic!("regions of the two kinds overlap");
    }
}

/// The guest's answer equals the model's, or ran out of map room (which
/// the model does not predict and which must change nothing).
pub(super) fn agree(
    got: &Result<(), MemoryError>,
    expected: &Result<(), MemoryError>,
    what: &str,
    gpfn: u64,
    order: Order,
    kind: MemKind,
) {
    if !matches!(
        (got, expected),
        (Err(MemoryError::Map(P2mError::Full { .. })), Ok(()))
    ) {
        assert_eq!(got, expected, "{what} {gpfn:#x} order {order} {kind}");
    }
}
