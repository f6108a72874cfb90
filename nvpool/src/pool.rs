//! The pool handle and its queries: domains, extents, owners, addresses.

use core::fmt;

use nvirt_addr::{HostPhysAddr, PAGE_SHIFT};
use nvirt_buddy::FrameState;
use nvirt_persist_meta::{Log, Pmem, Space};

use crate::avl::InOrder;
use crate::check::InvariantError;
use crate::config::Geometry;
use crate::state::{State, flags};
use crate::types::{DomainUuid, Extent, offset_addr};
use crate::window::Window;
use crate::work::{DomSlot, slot_state};
use nvirt_addr::{Gfn, Mfn};

/// A pool of NVRAM frames shared by domains, its bookkeeping kept on the
/// NVRAM itself (see the [crate docs](crate)).
pub struct NvPool<'w, P: Pmem> {
    pub(crate) log: Log<Window<P>>,
    pub(crate) state: State<'w>,
    /// A commit failed half-way: the volatile state may be ahead of the
    /// durable one, so changes are refused.
    pub(crate) poisoned: bool,
}

impl<P: Pmem> fmt::Debug for NvPool<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvPool")
            .field("geometry", &self.state.geo)
            .field("stats", &self.stats())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// A domain of a pool, as long as it lives: a slot number and a generation
/// (so a handle kept past `destroy` is refused, not applied to the next
/// domain in the slot). Handles do not survive recovery; find domains again
/// by id with [`NvPool::find`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dom {
    slot: u16,
    generation: u32,
}

impl Dom {
    /// The handle of slot `slot` at generation `generation`, valid or not.
    #[cfg_attr(
        not(feature = "model"),
        allow(dead_code, reason = "the model forges stale handles")
    )]
    pub(crate) const fn raw(slot: u16, generation: u32) -> Self {
        Self { slot, generation }
    }

    /// The slot's generation the handle was made for.
    #[cfg_attr(
        not(feature = "model"),
        allow(dead_code, reason = "the model forges stale handles")
    )]
    pub(crate) fn generation(self) -> u32 {
        self.generation
    }

    /// The domain's slot in the pool (stable while it lives, reused after).
    #[must_use]
    pub fn slot(self) -> u16 {
        self.slot
    }
}

/// A domain's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// Not running (or shut down cleanly).
    ShutDown,
    /// Marked running since the pool was formatted or recovered.
    Running,
    /// Was marked running when the pool last stopped (a crash or power
    /// failure while it ran) and has not been marked since.
    CrashedWhileRunning,
    /// Being imported; its data is not all there yet.
    Incomplete,
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ShutDown => "shut-down",
            Self::Running => "running",
            Self::CrashedWhileRunning => "crashed-while-running",
            Self::Incomplete => "incomplete",
        })
    }
}

/// What a domain is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo<'a> {
    /// Its handle.
    pub dom: Dom,
    /// Its stable id.
    pub id: DomainUuid,
    /// Its name.
    pub name: &'a str,
    /// Its quota in frames.
    pub quota: u64,
    /// Frames it owns.
    pub frames: u64,
    /// Extents it owns.
    pub extents: u64,
    /// Its state.
    pub state: DomainState,
}

/// Who a machine frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A domain, at this guest frame, as part of this extent.
    Domain {
        /// The domain.
        dom: Dom,
        /// Its id.
        id: DomainUuid,
        /// The guest frame the machine frame backs.
        gpfn: Gfn,
        /// The extent.
        extent: Extent,
    },
    /// Free.
    Free,
    /// Freed by a domain and being scrubbed.
    Freeing,
    /// Not a data frame: pool metadata, or outside the region.
    NotData,
    /// A known-bad data frame, kept out of the pool.
    Bad,
}

/// A pool's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Data frames.
    pub data_frames: u64,
    /// Free data frames.
    pub free_frames: u64,
    /// Frames owned by domains.
    pub owned_frames: u64,
    /// Domains.
    pub domains: u32,
    /// Extents of all domains.
    pub extents: u32,
    /// Bytes of metadata at the start of the region.
    pub metadata_bytes: u64,
    /// The log's record area.
    pub log: Space,
    /// Generation of the active checkpoint.
    pub checkpoint_generation: u64,
    /// Known-bad data frames kept out of the pool (neither free nor
    /// owned).
    pub bad_frames: u64,
}

fn info(s: usize, slot: &DomSlot) -> DomainInfo<'_> {
    let state = if slot.flags & flags::INCOMPLETE != 0 {
        DomainState::Incomplete
    } else if slot.flags & flags::RUNNING == 0 {
        DomainState::ShutDown
    } else if slot.session_running != 0 {
        DomainState::Running
    } else {
        DomainState::CrashedWhileRunning
    };
    DomainInfo {
        dom: Dom {
            slot: s as u16,
            generation: slot.generation,
        },
        id: DomainUuid::from_bytes(slot.id),
        name: slot.name(),
        quota: slot.quota,
        frames: slot.frames,
        extents: slot.extents,
        state,
    }
}

impl<'w, P: Pmem> NvPool<'w, P> {
    /// The slot of a live domain's handle.
    pub(crate) fn live(&self, dom: Dom) -> Option<u16> {
        let slot = self.state.slot(dom.slot)?;
        (slot.state == slot_state::LIVE && slot.generation == dom.generation).then_some(dom.slot)
    }

    /// The pool's geometry.
    #[must_use]
    pub fn geometry(&self) -> &Geometry {
        &self.state.geo
    }

    /// The pool's figures.
    #[must_use]
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            data_frames: self.state.geo.data_frames(),
            free_frames: self.state.heap.free_frames(),
            owned_frames: self.state.owned_frames,
            domains: self.state.live_domains,
            extents: self.state.used_nodes,
            metadata_bytes: self.state.geo.meta_len,
            log: self.log.space(),
            checkpoint_generation: self.log.generation(),
            bad_frames: self.state.bad_kept_out,
        }
    }

    /// The domain with id `id`.
    #[must_use]
    pub fn find(&self, id: DomainUuid) -> Option<Dom> {
        let s = self.state.find_id(id)?;
        self.state.slot(s).map(|slot| Dom {
            slot: s,
            generation: slot.generation,
        })
    }

    /// The domain with name `name` (the first, if several have it).
    #[must_use]
    pub fn find_name(&self, name: &str) -> Option<Dom> {
        self.domains().find(|d| d.name == name).map(|d| d.dom)
    }

    /// What domain `dom` is.
    #[must_use]
    pub fn domain(&self, dom: Dom) -> Option<DomainInfo<'_>> {
        let s = self.live(dom)?;
        self.state.slot(s).map(|slot| info(usize::from(s), slot))
    }

    /// Every domain, by slot.
    pub fn domains(&self) -> impl Iterator<Item = DomainInfo<'_>> + '_ {
        self.state
            .domains
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.state == slot_state::LIVE)
            .map(|(s, slot)| info(s, slot))
    }

    /// The domains that were running when the pool last stopped and have
    /// not been marked running or shut down since.
    pub fn crashed(&self) -> impl Iterator<Item = DomainInfo<'_>> + '_ {
        self.domains()
            .filter(|d| d.state == DomainState::CrashedWhileRunning)
    }

    /// Domain `dom`'s extents, by guest frame.
    #[must_use]
    pub fn extents(&self, dom: Dom) -> Extents<'_> {
        self.extents_from(dom, Gfn::default())
    }

    /// Domain `dom`'s extents that start at or after guest frame `gpfn`,
    /// by guest frame (empty for an unknown handle).
    #[must_use]
    pub fn extents_from(&self, dom: Dom, gpfn: Gfn) -> Extents<'_> {
        let root = self
            .live(dom)
            .and_then(|s| self.state.slot(s))
            .map_or(crate::work::NIL, |slot| slot.root);
        Extents {
            nodes: self.state.nodes,
            walk: InOrder::from(self.state.nodes, root, gpfn.get()),
        }
    }

    /// The extent of domain `dom` that holds guest frame `gpfn`.
    #[must_use]
    pub fn extent_at(&self, dom: Dom, gpfn: Gfn) -> Option<Extent> {
        let s = self.live(dom)?;
        let i = self.state.extent_at(s, gpfn.get())?;
        let node = &self.state.nodes[i as usize];
        Some(Extent::trusted(node.gpfn, node.mfn, node.order))
    }

    /// The machine frame that backs guest frame `gpfn` of domain `dom`.
    #[must_use]
    pub fn lookup(&self, dom: Dom, gpfn: Gfn) -> Option<Mfn> {
        self.extent_at(dom, gpfn)?.translate(gpfn)
    }

    /// Who machine frame `mfn` belongs to.
    #[must_use]
    pub fn owner_of(&self, mfn: Mfn) -> Owner {
        let state = &self.state;
        if !state.geo.data_span().contains(mfn) {
            return Owner::NotData;
        }
        match state.heap.frame_state(mfn) {
            FrameState::Free => return Owner::Free,
            FrameState::Unmanaged if state.bad.contains(mfn) => return Owner::Bad,
            FrameState::Unmanaged => return Owner::NotData,
            FrameState::Allocated => {}
        }
        let Some(i) = state.index.containing(state.nodes, mfn.get()) else {
            return Owner::Freeing;
        };
        let node = &state.nodes[i as usize];
        let Some(slot) = state.slot(node.dom) else {
            return Owner::Freeing;
        };
        if slot.state != slot_state::LIVE {
            return Owner::Freeing;
        }
        let extent = Extent::trusted(node.gpfn, node.mfn, node.order);
        Owner::Domain {
            dom: Dom {
                slot: node.dom,
                generation: slot.generation,
            },
            id: DomainUuid::from_bytes(slot.id),
            gpfn: Gfn::new(node.gpfn + (mfn.get() - node.mfn)).unwrap_or_default(),
            extent,
        }
    }

    /// Byte offset of machine frame `mfn` in the region, if it is one of
    /// the region's frames.
    #[must_use]
    pub fn region_offset(&self, mfn: Mfn) -> Option<u64> {
        let index = mfn.get().checked_sub(self.state.geo.frame_base)?;
        (index < self.state.geo.region_frames()).then_some(index << PAGE_SHIFT)
    }

    /// The host-physical address of machine frame `mfn` when the region is
    /// mapped at host-physical `region_base`.
    #[must_use]
    pub fn host_addr(&self, mfn: Mfn, region_base: HostPhysAddr) -> Option<HostPhysAddr> {
        offset_addr(region_base, self.region_offset(mfn)?)
    }

    /// The machine frame at host-physical `addr` when the region is mapped
    /// at `region_base`, if it is one of the region's frames.
    #[must_use]
    pub fn mfn_at(&self, addr: HostPhysAddr, region_base: HostPhysAddr) -> Option<Mfn> {
        let offset = addr.get().checked_sub(region_base.get())?;
        let index = offset >> PAGE_SHIFT;
        if index >= self.state.geo.region_frames() {
            return None;
        }
        Mfn::new(self.state.geo.frame_base.checked_add(index)?)
    }

    /// Checks every invariant (see [`InvariantError`]): O(frames +
    /// extents).
    pub fn check(&self) -> Result<(), InvariantError> {
        self.state.check_all()
    }

    /// The region.
    #[must_use]
    pub fn region(&self) -> &P {
        self.log.pmem().region()
    }

    /// Gives the region back (the work area is free again).
    #[must_use]
    pub fn into_region(self) -> P {
        self.log.into_pmem().into_region()
    }
}

/// A domain's extents, by guest frame (see [`NvPool::extents`]).
#[derive(Clone, Debug)]
pub struct Extents<'a> {
    nodes: &'a [crate::work::Node],
    walk: InOrder,
}

impl Iterator for Extents<'_> {
    type Item = Extent;

    fn next(&mut self) -> Option<Extent> {
        let i = self.walk.next(self.nodes)?;
        let node = &self.nodes[i as usize];
        Some(Extent::trusted(node.gpfn, node.mfn, node.order))
    }
}
