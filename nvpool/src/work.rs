//! The volatile tables, carved out of the caller's work area: the domain
//! table, the extent nodes, the machine-frame index and the buddy heap's
//! bitmaps. Nothing here survives a power failure; recovery rebuilds it all
//! from the log.
//!
//! The work area is a plain `&mut [u8]` (the hypervisor has no allocator);
//! the tables are `zerocopy` views of it, so no unsafe code is needed.

use core::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::config::Geometry;

/// No node: the null link.
pub(crate) const NIL: u32 = u32::MAX;

/// One extent of one domain, or a free or pending node.
///
/// A live extent is in its domain's tree (by `gpfn`, through `left` and
/// `right`) and in the machine-frame index. `link` threads the lists a node
/// can be on outside a tree: the free list, an operation's plan, the
/// pending-scrub list.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct Node {
    pub(crate) gpfn: u64,
    pub(crate) mfn: u64,
    pub(crate) left: u32,
    pub(crate) right: u32,
    pub(crate) link: u32,
    pub(crate) dom: u16,
    pub(crate) order: u8,
    pub(crate) height: u8,
}

/// Bytes of a [`Node`].
pub(crate) const NODE_BYTES: usize = 32;
const _: () = assert!(size_of::<Node>() == NODE_BYTES);

impl Node {
    /// Frames of the extent.
    pub(crate) const fn frames(&self) -> u64 {
        1 << self.order
    }

    /// One past the extent's last guest frame.
    pub(crate) const fn gpfn_end(&self) -> u64 {
        self.gpfn + self.frames()
    }
}

/// What a domain slot holds.
pub(crate) mod slot_state {
    /// Nobody.
    pub(crate) const FREE: u8 = 0;
    /// A domain.
    pub(crate) const LIVE: u8 = 1;
    /// A domain whose destruction is committed and whose frames are being
    /// scrubbed.
    pub(crate) const DESTROYING: u8 = 2;
}

/// One domain slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct DomSlot {
    pub(crate) quota: u64,
    /// Frames owned.
    pub(crate) frames: u64,
    /// Extents owned.
    pub(crate) extents: u64,
    pub(crate) id: [u8; 16],
    pub(crate) name: [u8; 32],
    /// Root of the extent tree.
    pub(crate) root: u32,
    /// Bumped whenever the slot is freed, so stale handles are refused.
    pub(crate) generation: u32,
    pub(crate) state: u8,
    /// Persistent flags (see [`crate::state::flags`]).
    pub(crate) flags: u8,
    pub(crate) name_len: u8,
    /// Marked running since this pool was formatted or recovered.
    pub(crate) session_running: u8,
    /// Salvage only: a record dropped by the salvage creates a domain in
    /// this slot, so the slot's later records are that domain's, not the
    /// salvaged one's.
    pub(crate) reissued: u8,
    pub(crate) reserved: [u8; 3],
}

/// Bytes of a [`DomSlot`].
pub(crate) const DOMAIN_SLOT_BYTES: usize = 88;
const _: () = assert!(size_of::<DomSlot>() == DOMAIN_SLOT_BYTES);

impl DomSlot {
    /// The domain's name as stored (at most 32 bytes of UTF-8).
    pub(crate) fn name(&self) -> &str {
        let len = usize::from(self.name_len).min(self.name.len());
        self.name
            .get(..len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

/// The work area is too small for the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkAreaError {
    /// Bytes the pool needs
    /// ([`Geometry::work_area_bytes`]).
    pub needed: usize,
    /// Bytes given.
    pub given: usize,
}

impl fmt::Display for WorkAreaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "work area of {} bytes is too small: the pool needs {}",
            self.given, self.needed
        )
    }
}

impl core::error::Error for WorkAreaError {}

/// The tables of a pool, in the caller's work area.
pub(crate) struct Tables<'w> {
    pub(crate) domains: &'w mut [DomSlot],
    pub(crate) nodes: &'w mut [Node],
    pub(crate) hash: &'w mut [u32],
    pub(crate) heap: &'w mut [u8],
}

/// Splits `work` into the tables of a pool of geometry `geo`; the domain
/// table is zeroed (every slot free), the rest is initialised by its owner.
pub(crate) fn carve<'w>(work: &'w mut [u8], geo: &Geometry) -> Result<Tables<'w>, WorkAreaError> {
    let err = WorkAreaError {
        needed: geo.work_area_bytes(),
        given: work.len(),
    };
    if work.len() < err.needed {
        return Err(err);
    }
    let skip = work.as_ptr().align_offset(8).min(8);
    let (_, rest) = work.split_at_mut(skip);
    let domains_len = geo.max_domains as usize * DOMAIN_SLOT_BYTES;
    let nodes_len = geo.max_extents as usize * NODE_BYTES;
    let hash_len = geo.hash_slots() * 4;
    let (domains, rest) = rest.split_at_mut(domains_len);
    let (nodes, rest) = rest.split_at_mut(nodes_len);
    let (hash, rest) = rest.split_at_mut(hash_len.next_multiple_of(8));
    let domains = <[DomSlot]>::mut_from_bytes(domains).map_err(|_| err)?;
    let nodes = <[Node]>::mut_from_bytes(nodes).map_err(|_| err)?;
    let hash = <[u32]>::mut_from_bytes(hash.get_mut(..hash_len).ok_or(err)?).map_err(|_| err)?;
    domains.as_mut_bytes().fill(0);
    Ok(Tables {
        domains,
        nodes,
        hash,
        heap: rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_work_area_is_carved_at_any_alignment() {
        let geo = Config::for_region(4 << 20).geometry(4 << 20).unwrap();
        let mut work = vec![0xffu8; geo.work_area_bytes() + 8];
        for shift in 0..8 {
            let tables = carve(&mut work[shift..shift + geo.work_area_bytes()], &geo).unwrap();
            assert_eq!(tables.domains.len(), geo.max_domains as usize);
            assert_eq!(tables.nodes.len(), geo.max_extents as usize);
            assert_eq!(tables.hash.len(), geo.hash_slots());
            assert!(tables.domains.iter().all(|d| d.state == slot_state::FREE));
        }
        let short = geo.work_area_bytes() - 1;
        assert_eq!(
            carve(&mut work[..short], &geo).err(),
            Some(WorkAreaError {
                needed: short + 1,
                given: short
            })
        );
    }
}
