//! The volatile state of a pool and the changes every operation is made
//! of. Live operations and recovery's replay share these functions, so
//! replaying a record rebuilds exactly what the operation built.
//!
//! A domain's extents are nodes in its tree (by guest frame) and in the
//! machine-frame index; their frames are allocated blocks of the buddy heap.
//! (Frees are in `release.rs`.)
//! Frames being freed wait on the *pending* list (or, for a destroyed
//! domain, in its tree with the slot marked destroying), still allocated in
//! the heap, until their scrub is durable; only then do they return to the
//! heap.

use nvirt_addr::{MemKind, Mfn, Order};
use nvirt_buddy::Heap;

use crate::avl;
use crate::bad::BadFrames;
use crate::config::Geometry;
use crate::damage::Damage;
use crate::index::MfnIndex;
use crate::types::DomainUuid;
use crate::work::{DomSlot, NIL, Node, Tables, WorkAreaError, slot_state};

/// Persistent domain flags.
pub(crate) mod flags {
    /// Marked running and not yet shut down cleanly.
    pub(crate) const RUNNING: u8 = 1;
    /// Being imported: its data is not all there yet.
    pub(crate) const INCOMPLETE: u8 = 2;
    /// Every flag this version knows.
    pub(crate) const KNOWN: u8 = RUNNING | INCOMPLETE;
}

/// The volatile state of a pool.
pub(crate) struct State<'w> {
    pub(crate) geo: Geometry,
    pub(crate) domains: &'w mut [DomSlot],
    pub(crate) nodes: &'w mut [Node],
    pub(crate) index: MfnIndex<'w>,
    pub(crate) heap: Heap<'w>,
    /// Nodes from here on were never used.
    fresh: u32,
    /// Released nodes, threaded through `link`.
    free_list: u32,
    pub(crate) used_nodes: u32,
    pub(crate) live_domains: u32,
    /// Slots marked destroying.
    pub(crate) destroying: u32,
    /// Extents being freed, threaded through `link`.
    pub(crate) pending: u32,
    pub(crate) pending_frames: u64,
    /// Frames owned by domains (destroying ones included).
    pub(crate) owned_frames: u64,
    /// The known-bad data frames the caller reported at format or open.
    pub(crate) bad: BadFrames,
    /// Bad frames kept out of the heap (the others are owned or pending).
    pub(crate) bad_kept_out: u64,
}

impl<'w> State<'w> {
    /// An empty pool: every data frame free.
    pub(crate) fn new(geo: Geometry, tables: Tables<'w>) -> Result<Self, WorkAreaError> {
        let err = WorkAreaError {
            needed: geo.work_area_bytes(),
            given: 0,
        };
        let span = geo.data_span();
        let mut heap =
            Heap::new(MemKind::NonVolatile, span, Order::MAX, tables.heap).map_err(|_| err)?;
        heap.add(span).map_err(|_| err)?;
        Ok(Self {
            geo,
            domains: tables.domains,
            nodes: tables.nodes,
            index: MfnIndex::new(tables.hash),
            heap,
            fresh: 0,
            free_list: NIL,
            used_nodes: 0,
            live_domains: 0,
            destroying: 0,
            pending: NIL,
            pending_frames: 0,
            owned_frames: 0,
            bad: BadFrames::NONE,
            bad_kept_out: 0,
        })
    }

    // ---- nodes ----

    /// Nodes not in use.
    pub(crate) fn free_nodes(&self) -> u32 {
        self.nodes.len() as u32 - self.used_nodes
    }

    /// A node for the extent `gpfn -> mfn, order` of slot `dom`.
    pub(crate) fn alloc_node(&mut self, dom: u16, gpfn: u64, mfn: u64, order: u8) -> Option<u32> {
        let i = if self.free_list != NIL {
            let i = self.free_list;
            self.free_list = self.nodes[i as usize].link;
            i
        } else if (self.fresh as usize) < self.nodes.len() {
            self.fresh += 1;
            self.fresh - 1
        } else {
            return None;
        };
        self.nodes[i as usize] = Node {
            gpfn,
            mfn,
            left: NIL,
            right: NIL,
            link: NIL,
            dom,
            order,
            height: 1,
        };
        self.used_nodes += 1;
        Some(i)
    }

    /// The node the next allocation takes while none was ever freed:
    /// loading a snapshot into an empty state numbers nodes consecutively.
    pub(crate) fn next_fresh(&self) -> u32 {
        self.fresh
    }

    /// Counts node `i`, loaded from a snapshot, as an extent of slot `s`
    /// and indexes it; the domain's tree is built once all are loaded.
    pub(crate) fn note_loaded(&mut self, s: u16, i: u32) {
        let frames = self.nodes[i as usize].frames();
        let slot = &mut self.domains[usize::from(s)];
        slot.frames += frames;
        slot.extents += 1;
        self.owned_frames += frames;
        self.index.insert(self.nodes, i);
    }

    /// Gives node `i` back.
    pub(crate) fn free_node(&mut self, i: u32) {
        self.nodes[i as usize].link = self.free_list;
        self.free_list = i;
        self.used_nodes -= 1;
    }

    // ---- domains ----

    /// The slot `s`, if it exists.
    pub(crate) fn slot(&self, s: u16) -> Option<&DomSlot> {
        self.domains.get(usize::from(s))
    }

    /// The live domain with id `id`.
    pub(crate) fn find_id(&self, id: DomainUuid) -> Option<u16> {
        let bytes = id.to_bytes();
        self.domains
            .iter()
            .position(|d| d.state == slot_state::LIVE && d.id == bytes)
            .map(|s| s as u16)
    }

    /// Whether a domain (live or being destroyed) has id `id`.
    pub(crate) fn id_taken(&self, id: DomainUuid) -> bool {
        let bytes = id.to_bytes();
        self.domains
            .iter()
            .any(|d| d.state != slot_state::FREE && d.id == bytes)
    }

    /// The first free slot.
    pub(crate) fn free_slot(&self) -> Option<u16> {
        self.domains
            .iter()
            .position(|d| d.state == slot_state::FREE)
            .map(|s| s as u16)
    }

    /// Fills free slot `s` with a new domain.
    pub(crate) fn create(&mut self, s: u16, id: DomainUuid, name: &[u8], quota: u64, flags: u8) {
        let slot = &mut self.domains[usize::from(s)];
        let generation = slot.generation;
        *slot = DomSlot {
            quota,
            frames: 0,
            extents: 0,
            id: id.to_bytes(),
            name: [0; 32],
            root: NIL,
            generation,
            state: slot_state::LIVE,
            flags,
            name_len: name.len() as u8,
            session_running: 0,
            reissued: 0,
            reserved: [0; 3],
        };
        if let Some(dst) = slot.name.get_mut(..name.len()) {
            dst.copy_from_slice(name);
        }
        self.live_domains += 1;
    }

    /// Marks live slot `s` destroying: its extents wait for their scrub.
    pub(crate) fn begin_destroy(&mut self, s: u16) {
        self.domains[usize::from(s)].state = slot_state::DESTROYING;
        self.live_domains -= 1;
        self.destroying += 1;
    }

    // ---- extents ----

    /// The extent of slot `s` that overlaps guest frames `gpfn .. gpfn +
    /// frames`, if any (extents of a domain are disjoint, so only the one
    /// starting last below the end can).
    pub(crate) fn overlap(&self, s: u16, gpfn: u64, frames: u64) -> Option<u32> {
        let root = self.domains[usize::from(s)].root;
        let last = gpfn.checked_add(frames)?.checked_sub(1)?;
        avl::floor(self.nodes, root, last).filter(|&i| self.nodes[i as usize].gpfn_end() > gpfn)
    }

    /// The extent of slot `s` that holds guest frame `gpfn`.
    pub(crate) fn extent_at(&self, s: u16, gpfn: u64) -> Option<u32> {
        self.overlap(s, gpfn, 1)
    }

    /// Puts node `i` (whose frames the heap has allocated) into its
    /// domain's tree and the index.
    pub(crate) fn link(&mut self, i: u32) -> Result<(), Damage> {
        let node = self.nodes[i as usize];
        let s = usize::from(node.dom);
        let mut root = self.domains[s].root;
        avl::insert(self.nodes, &mut root, i).map_err(|_| Damage::GuestOverlap {
            slot: node.dom.into(),
            gpfn: node.gpfn,
        })?;
        let slot = &mut self.domains[s];
        slot.root = root;
        slot.frames += node.frames();
        slot.extents += 1;
        self.owned_frames += node.frames();
        self.index.insert(self.nodes, i);
        Ok(())
    }

    /// Takes node `i` out of its domain's tree and the index (its frames
    /// stay allocated).
    pub(crate) fn unlink(&mut self, i: u32) {
        let node = self.nodes[i as usize];
        let s = usize::from(node.dom);
        let mut root = self.domains[s].root;
        if let Ok(Some(_)) = avl::remove(self.nodes, &mut root, node.gpfn) {
            let slot = &mut self.domains[s];
            slot.root = root;
            slot.frames -= node.frames();
            slot.extents -= 1;
            self.owned_frames -= node.frames();
            self.index.remove(self.nodes, node.mfn);
        }
    }

    /// Adds node `i` to the pending-scrub list.
    pub(crate) fn push_pending(&mut self, i: u32) {
        self.pending_frames += self.nodes[i as usize].frames();
        self.nodes[i as usize].link = self.pending;
        self.pending = i;
    }

    /// Checks that the extent `gpfn -> mfn, order` of slot `s` is possible
    /// and its machine frames are free, and claims them; returns the node
    /// (not yet linked).
    pub(crate) fn claim_extent(
        &mut self,
        s: u16,
        gpfn: u64,
        mfn: u64,
        order: u8,
    ) -> Result<u32, Damage> {
        let bad = Damage::Extent {
            slot: s.into(),
            gpfn,
            mfn,
            order,
        };
        let o = Order::new(order).ok_or(bad)?;
        let frames = o.frames();
        if gpfn & (frames - 1) != 0
            || mfn & (frames - 1) != 0
            || gpfn
                .checked_add(frames)
                .is_none_or(|e| e >= crate::Gfn::LIMIT)
        {
            return Err(bad);
        }
        let span = self.geo.data_span();
        let inside = mfn >= span.start().get()
            && mfn
                .checked_add(frames)
                .is_some_and(|e| e <= span.end().get());
        if !inside {
            return Err(Damage::OutsidePool { mfn, order });
        }
        let pfn = Mfn::new(mfn).ok_or(bad)?;
        if self.heap.claim(pfn, o).is_err() {
            // Name the other owner if an extent holds the first frames
            // (bounded: this is only the error message).
            let other = (0..frames.min(512))
                .find_map(|f| self.index.containing(self.nodes, mfn + f))
                .and_then(|j| self.slot(self.nodes[j as usize].dom))
                .map(|d| DomainUuid::from_bytes(d.id));
            return Err(Damage::FrameOwnedTwice { mfn, order, other });
        }
        match self.alloc_node(s, gpfn, mfn, order) {
            Some(i) => Ok(i),
            None => {
                let _ = self.heap.free(pfn, o);
                Err(Damage::Capacity { what: "extents" })
            }
        }
    }

    /// Adds the extent `gpfn -> mfn, order` to live slot `s` as recovery
    /// does: checked against the domain's other extents and its quota.
    pub(crate) fn add_extent(
        &mut self,
        s: u16,
        gpfn: u64,
        mfn: u64,
        order: u8,
    ) -> Result<(), Damage> {
        let frames = 1u64 << order.min(63);
        if self.overlap(s, gpfn, frames).is_some() {
            return Err(Damage::GuestOverlap {
                slot: s.into(),
                gpfn,
            });
        }
        let slot = &self.domains[usize::from(s)];
        let owned = slot.frames.saturating_add(frames);
        if owned > slot.quota {
            return Err(Damage::Quota {
                slot: s.into(),
                frames: owned,
                quota: slot.quota,
            });
        }
        let i = self.claim_extent(s, gpfn, mfn, order)?;
        self.link(i)
    }
}

/// A free slot.
pub(crate) const fn zero_slot() -> DomSlot {
    DomSlot {
        quota: 0,
        frames: 0,
        extents: 0,
        id: [0; 16],
        name: [0; 32],
        root: NIL,
        generation: 0,
        state: slot_state::FREE,
        flags: 0,
        name_len: 0,
        session_running: 0,
        reissued: 0,
        reserved: [0; 3],
    }
}
