//! `mem_flags` of `xen_memory_reservation`: Xen's `XENMEMF_*` fields plus
//! nvirt's NVRAM bit.
//!
//! Xen's layout (`xen/include/public/memory.h`, interface ≥ 0x00030209),
//! checked against xen-project/xen master:
//!
//! | bits | Xen name | meaning |
//! |---|---|---|
//! | 0–7 | `XENMEMF_address_bits(x)` | highest usable address bit; 0 = no limit |
//! | 8–15 | `XENMEMF_node(x)` = `(x + 1) << 8` | NUMA node + 1; 0 = any node |
//! | 16 | `XENMEMF_populate_on_demand` | populate-on-demand entries |
//! | 17 | `XENMEMF_exact_node_request` | only the named node will do |
//! | 18 | `XENMEMF_vnode` | the node is a virtual (guest) node |
//! | 19 | `XENMEMF_force_heap_alloc` | proposed on xen-devel in 2024, see [`XENMEMF_FORCE_HEAP_ALLOC`] |
//! | 31 | — | nvirt: [`NVIRT_MEMF_NVRAM`] |
//!
//! Every other bit is unknown and rejected: a guest that sets a bit this
//! hypervisor does not implement learns so at once, instead of getting
//! memory of a kind it did not ask for.

use core::fmt;

use nvirt_addr::MemKind;

/// `XENMEMF_address_bits(x)` / `XENMEMF_get_address_bits(x)`: the low byte.
pub const XENMEMF_ADDRESS_BITS_MASK: u32 = 0xff;
/// `XENMEMF_node(x)` is `(x + 1) << 8`.
pub const XENMEMF_NODE_SHIFT: u32 = 8;
/// The node field (bits 8–15).
pub const XENMEMF_NODE_MASK: u32 = 0xff << XENMEMF_NODE_SHIFT;
/// `XENMEMF_populate_on_demand` (`1<<16`).
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// `XENMEMF_exact_node_request` (`1<<17`).
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// `XENMEMF_vnode` (`1<<18`).
pub const XENMEMF_VNODE: u32 = 1 << 18;
/// `XENMEMF_force_heap_alloc` (`1<<19`): proposed in Henry Wang's xen-devel
/// series "DOMCTL-based guest magic region allocation for 11 domUs"
/// (March–April 2024, `[PATCH v2 5/5] xen/memory, tools: Make init-dom0less
/// consume XEN_DOMCTL_get_mem_map`) for populate_physmap on Arm dom0less
/// domains. It is not in xen-project/xen master's `memory.h`, but the bit is
/// spoken for, so nvirt neither reuses it nor accepts it.
pub const XENMEMF_FORCE_HEAP_ALLOC: u32 = 1 << 19;

/// nvirt's flag: the extents are non-volatile memory (NVRAM), from the
/// hypervisor's NVRAM pool instead of its RAM pool.
///
/// Bit 31, the top of the word, because Xen has always allocated `XENMEMF_*`
/// bits upward from the low end (address bits 0–7, node 8–15, then 16, 17,
/// 18 and the 2024 proposal's 19): the top bit is the last one Xen would
/// reach, so it is the least likely to collide with a future Xen flag. A
/// guest that runs on real Xen and sets it gets what every unknown bit gets
/// there — ignored — and therefore ordinary RAM, never a misread flag.
pub const NVIRT_MEMF_NVRAM: u32 = 1 << 31;

/// Every bit this crate knows, accepted or not.
pub const KNOWN_MEMF_BITS: u32 = XENMEMF_ADDRESS_BITS_MASK
    | XENMEMF_NODE_MASK
    | XENMEMF_POPULATE_ON_DEMAND
    | XENMEMF_EXACT_NODE_REQUEST
    | XENMEMF_VNODE
    | XENMEMF_FORCE_HEAP_ALLOC
    | NVIRT_MEMF_NVRAM;

/// Xen refuses an address limit of 12 bits or fewer (`address_bits <=
/// PAGE_SHIFT` in `construct_memop_from_reservation()`,
/// `xen/common/memory.c`): no page fits below it.
const MIN_ADDRESS_BITS: u8 = 13;

/// A NUMA node request: `XENMEMF_node` with its modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeRequest {
    node: u8,
    exact: bool,
    virtual_node: bool,
}

impl NodeRequest {
    /// The largest node the field can name: it holds `node + 1` in 8 bits.
    pub const MAX_NODE: u8 = 254;

    /// Prefer physical node `node`; `None` above [`NodeRequest::MAX_NODE`].
    #[must_use]
    pub const fn new(node: u8) -> Option<Self> {
        if node > Self::MAX_NODE {
            None
        } else {
            Some(Self {
                node,
                exact: false,
                virtual_node: false,
            })
        }
    }

    /// Only this node will do (`XENMEMF_exact_node_request`).
    #[must_use]
    pub const fn exact(self) -> Self {
        Self {
            exact: true,
            ..self
        }
    }

    /// The node is the guest's virtual node (`XENMEMF_vnode`).
    #[must_use]
    pub const fn virtual_node(self) -> Self {
        Self {
            virtual_node: true,
            ..self
        }
    }

    /// The node number.
    #[must_use]
    pub const fn node(self) -> u8 {
        self.node
    }

    /// Whether only this node will do.
    #[must_use]
    pub const fn is_exact(self) -> bool {
        self.exact
    }

    /// Whether the node is a virtual node.
    #[must_use]
    pub const fn is_virtual(self) -> bool {
        self.virtual_node
    }
}

/// A parsed `mem_flags` word. [`MemFlags::parse`] accepts exactly the words
/// [`MemFlags::to_raw`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemFlags {
    address_bits: u8,
    node: Option<NodeRequest>,
    populate_on_demand: bool,
    kind: MemKind,
}

/// No restriction, any node, from the volatile pool.
impl Default for MemFlags {
    fn default() -> Self {
        Self::new(MemKind::Volatile)
    }
}

impl MemFlags {
    /// No restriction, any node, from the pool of `kind`.
    #[must_use]
    pub const fn new(kind: MemKind) -> Self {
        Self {
            address_bits: 0,
            node: None,
            populate_on_demand: false,
            kind,
        }
    }

    /// Restrict the extents below 2^`bits` (0 lifts the limit). Xen's rule:
    /// 1 to 12 are refused, and a limit at or above the machine's width
    /// restricts nothing.
    pub const fn with_address_bits(self, bits: u8) -> Result<Self, FlagError> {
        if bits != 0 && bits < MIN_ADDRESS_BITS {
            return Err(FlagError::AddressBits { bits });
        }
        Ok(Self {
            address_bits: bits,
            ..self
        })
    }

    /// Ask for a NUMA node.
    #[must_use]
    pub const fn with_node(self, node: NodeRequest) -> Self {
        Self {
            node: Some(node),
            ..self
        }
    }

    /// Ask for populate-on-demand entries (`XENMEMF_populate_on_demand`).
    #[must_use]
    pub const fn with_populate_on_demand(self) -> Self {
        Self {
            populate_on_demand: true,
            ..self
        }
    }

    /// The address-width limit, or `None` for no limit.
    #[must_use]
    pub const fn address_bits(&self) -> Option<u8> {
        if self.address_bits == 0 {
            None
        } else {
            Some(self.address_bits)
        }
    }

    /// The NUMA node request, if any.
    #[must_use]
    pub const fn node(&self) -> Option<NodeRequest> {
        self.node
    }

    /// Whether populate-on-demand was asked for.
    #[must_use]
    pub const fn populate_on_demand(&self) -> bool {
        self.populate_on_demand
    }

    /// RAM or NVRAM.
    #[must_use]
    pub const fn kind(&self) -> MemKind {
        self.kind
    }

    /// Whether only the kind bit may be set: no address limit, node or
    /// populate-on-demand.
    #[must_use]
    pub const fn is_kind_only(&self) -> bool {
        self.address_bits == 0 && self.node.is_none() && !self.populate_on_demand
    }

    /// The `mem_flags` word.
    #[must_use]
    pub const fn to_raw(&self) -> u32 {
        let mut raw = self.address_bits as u32;
        if let Some(n) = self.node {
            raw |= (n.node as u32 + 1) << XENMEMF_NODE_SHIFT;
            if n.exact {
                raw |= XENMEMF_EXACT_NODE_REQUEST;
            }
            if n.virtual_node {
                raw |= XENMEMF_VNODE;
            }
        }
        if self.populate_on_demand {
            raw |= XENMEMF_POPULATE_ON_DEMAND;
        }
        if matches!(self.kind, MemKind::NonVolatile) {
            raw |= NVIRT_MEMF_NVRAM;
        }
        raw
    }

    /// Parses a `mem_flags` word as the guest passed it.
    pub const fn parse(raw: u32) -> Result<Self, FlagError> {
        let unknown = raw & !KNOWN_MEMF_BITS;
        if unknown != 0 {
            return Err(FlagError::UnknownBits { bits: unknown });
        }
        if raw & XENMEMF_FORCE_HEAP_ALLOC != 0 {
            return Err(FlagError::ForceHeapAlloc);
        }
        let address_bits = (raw & XENMEMF_ADDRESS_BITS_MASK) as u8;
        if address_bits != 0 && address_bits < MIN_ADDRESS_BITS {
            return Err(FlagError::AddressBits { bits: address_bits });
        }
        let field = ((raw & XENMEMF_NODE_MASK) >> XENMEMF_NODE_SHIFT) as u8;
        let exact = raw & XENMEMF_EXACT_NODE_REQUEST != 0;
        let virtual_node = raw & XENMEMF_VNODE != 0;
        let node = if field == 0 {
            // No node: Xen's propagate_node() returns before it looks at
            // the exact-node bit, and its allocator at the vnode bit, so
            // both are accepted and mean nothing.
            None
        } else {
            Some(NodeRequest {
                node: field - 1,
                exact,
                virtual_node,
            })
        };
        Ok(Self {
            address_bits,
            node,
            populate_on_demand: raw & XENMEMF_POPULATE_ON_DEMAND != 0,
            kind: if raw & NVIRT_MEMF_NVRAM != 0 {
                MemKind::NonVolatile
            } else {
                MemKind::Volatile
            },
        })
    }
}

impl From<MemKind> for MemFlags {
    fn from(kind: MemKind) -> Self {
        Self::new(kind)
    }
}

/// A `mem_flags` word that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagError {
    /// Bits neither Xen nor nvirt define (20–30).
    UnknownBits {
        /// The unknown bits that were set.
        bits: u32,
    },
    /// `XENMEMF_force_heap_alloc` (bit 19), which nvirt does not implement.
    ForceHeapAlloc,
    /// An address limit of 1 to 12 bits.
    AddressBits {
        /// The limit given.
        bits: u8,
    },
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownBits { bits } => write!(f, "unknown mem_flags bits {bits:#010x}"),
            Self::ForceHeapAlloc => {
                f.write_str("XENMEMF_force_heap_alloc (bit 19) is not supported")
            }
            Self::AddressBits { bits } => write!(
                f,
                "address limit of {bits} bits leaves no page (need 0 or at least 13)"
            ),
        }
    }
}

impl core::error::Error for FlagError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_positions_are_xens() {
        // Xen: XENMEMF_node(x) (((x) + 1) << 8); exact_node(n) adds 1<<17.
        let xen_exact_node_3 = ((3 + 1) << 8) | (1 << 17);
        let flags =
            MemFlags::new(MemKind::Volatile).with_node(NodeRequest::new(3).unwrap().exact());
        assert_eq!(flags.to_raw(), xen_exact_node_3);
        assert_eq!(XENMEMF_POPULATE_ON_DEMAND, 0x1_0000);
        assert_eq!(XENMEMF_EXACT_NODE_REQUEST, 0x2_0000);
        assert_eq!(XENMEMF_VNODE, 0x4_0000);
        assert_eq!(XENMEMF_FORCE_HEAP_ALLOC, 0x8_0000);
        assert_eq!(NVIRT_MEMF_NVRAM, 0x8000_0000);
        assert_eq!(KNOWN_MEMF_BITS, 0x800f_ffff);
    }

    #[test]
    fn parses_what_guests_send() {
        // Linux's balloon driver: mem_flags 0 (address_bits 0).
        assert_eq!(MemFlags::parse(0), Ok(MemFlags::new(MemKind::Volatile)));
        let nv = MemFlags::parse(NVIRT_MEMF_NVRAM).unwrap();
        assert_eq!(nv.kind(), MemKind::NonVolatile);
        assert!(nv.is_kind_only());
        let dma32 = MemFlags::parse(32).unwrap();
        assert_eq!(dma32.address_bits(), Some(32));
        assert!(!dma32.is_kind_only());
        let v = MemFlags::parse((1 << 8) | XENMEMF_VNODE).unwrap();
        assert_eq!(
            v.node().map(|n| (n.node(), n.is_virtual(), n.is_exact())),
            Some((0, true, false))
        );
        let top = MemFlags::parse(0xff << 8).unwrap();
        assert_eq!(top.node().map(NodeRequest::node), Some(254));
        assert!(
            MemFlags::parse(XENMEMF_POPULATE_ON_DEMAND)
                .unwrap()
                .populate_on_demand()
        );
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert_eq!(
            MemFlags::parse(1 << 20 | 1 << 30),
            Err(FlagError::UnknownBits {
                bits: 1 << 20 | 1 << 30
            })
        );
        assert_eq!(
            MemFlags::parse(XENMEMF_FORCE_HEAP_ALLOC),
            Err(FlagError::ForceHeapAlloc)
        );
        assert_eq!(
            MemFlags::parse(12),
            Err(FlagError::AddressBits { bits: 12 })
        );
        assert_eq!(MemFlags::parse(1), Err(FlagError::AddressBits { bits: 1 }));
        assert!(MemFlags::parse(13).is_ok());
        assert!(MemFlags::parse(255).is_ok());
        // Without a node, the modifiers are accepted and mean nothing.
        for raw in [XENMEMF_EXACT_NODE_REQUEST, XENMEMF_VNODE] {
            assert_eq!(MemFlags::parse(raw).map(|f| f.node()), Ok(None), "{raw:#x}");
        }
        assert_eq!(NodeRequest::new(255), None);
        assert!(
            MemFlags::new(MemKind::Volatile)
                .with_address_bits(5)
                .is_err()
        );
    }

    #[test]
    fn every_word_round_trips_or_is_refused() {
        // Walk all values of the low 20 bits with and without the NVRAM bit,
        // plus each higher bit alone.
        let mut accepted = 0u32;
        for low in 0..1u32 << 20 {
            for raw in [low, low | NVIRT_MEMF_NVRAM] {
                if let Ok(f) = MemFlags::parse(raw) {
                    // Without a node the modifiers mean nothing and are
                    // dropped.
                    let meaningful = if raw & XENMEMF_NODE_MASK == 0 {
                        raw & !(XENMEMF_EXACT_NODE_REQUEST | XENMEMF_VNODE)
                    } else {
                        raw
                    };
                    assert_eq!(f.to_raw(), meaningful, "{raw:#x}");
                    accepted += 1;
                }
            }
        }
        // Address bits: 0 and 13..=255 (244 values); node field 0..=255
        // with any of 4 modifier sets; PoD on/off; force-heap-alloc never;
        // NVRAM on/off.
        assert_eq!(accepted, 244 * (256 * 4) * 2 * 2);
        for bit in 20..31 {
            assert!(MemFlags::parse(1 << bit).is_err(), "bit {bit}");
        }
    }
}
