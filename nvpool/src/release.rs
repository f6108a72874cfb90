//! Frees: checking and splitting the blocks a domain gives back, the
//! pending-scrub list, and returning frames (and destroyed domains' slots)
//! to the heap once their scrub is durable.

use nvirt_addr::{Mfn, Order};

use crate::avl::InOrder;
use crate::damage::Damage;
use crate::state::{State, zero_slot};
use crate::work::{DomSlot, NIL, Node, slot_state};

impl State<'_> {
    /// What freeing the aligned block of `2^k` guest frames at `gpfn` from
    /// slot `s` involves: the machine frame backing `gpfn` and the new
    /// nodes the split can take at most. An error if the domain does not
    /// own every frame of the block.
    pub(crate) fn check_block(&self, s: u16, gpfn: u64, k: u8) -> Result<(u64, u32), Damage> {
        let not_populated = |gpfn| Damage::NotPopulated {
            slot: s.into(),
            gpfn,
        };
        if k > Order::MAX.get() || gpfn & ((1u64 << k) - 1) != 0 || gpfn >= crate::Gfn::LIMIT {
            return Err(Damage::Extent {
                slot: s.into(),
                gpfn,
                mfn: 0,
                order: k,
            });
        }
        let e = self.extent_at(s, gpfn).ok_or(not_populated(gpfn))?;
        let node = self.nodes[e as usize];
        let mfn = node.mfn + (gpfn - node.gpfn);
        if node.order >= k {
            return Ok((mfn, u32::from(node.order - k)));
        }
        let end = gpfn + (1u64 << k);
        let mut cursor = node.gpfn_end();
        while cursor < end {
            let next = self
                .extent_at(s, cursor)
                .filter(|&j| self.nodes[j as usize].gpfn == cursor)
                .ok_or(not_populated(cursor))?;
            cursor = self.nodes[next as usize].gpfn_end();
        }
        Ok((mfn, 0))
    }

    /// Frees the aligned block of `2^k` guest frames at `gpfn` (whose first
    /// frame `mfn` backs) from slot `s`: an extent holding it is split into
    /// the block and the largest aligned pieces around it; the block's
    /// extents go to the pending list.
    pub(crate) fn remove_block(
        &mut self,
        s: u16,
        gpfn: u64,
        k: u8,
        mfn: u64,
    ) -> Result<(), Damage> {
        let (found, extra) = self.check_block(s, gpfn, k)?;
        if found != mfn {
            return Err(Damage::MfnMismatch {
                slot: s.into(),
                gpfn,
                recorded: mfn,
                found,
            });
        }
        if extra > self.free_nodes() {
            return Err(Damage::Capacity { what: "extents" });
        }
        let e = self.extent_at(s, gpfn).ok_or(Damage::NotPopulated {
            slot: s.into(),
            gpfn,
        })?;
        let node = self.nodes[e as usize];
        if node.order <= k {
            let end = gpfn + (1u64 << k);
            let mut cursor = gpfn;
            while cursor < end {
                let Some(j) = self.extent_at(s, cursor) else {
                    break;
                };
                cursor = self.nodes[j as usize].gpfn_end();
                self.unlink(j);
                self.push_pending(j);
            }
            return Ok(());
        }
        self.split(e, gpfn - node.gpfn, k)
    }

    /// Splits extent `e` of order K > k around the order-`k` block at
    /// offset `off`: the block (node `e`, reused) goes pending, the K - k
    /// pieces around it become extents of their own.
    fn split(&mut self, e: u32, off: u64, k: u8) -> Result<(), Damage> {
        let node = self.nodes[e as usize];
        let big = Order::new(node.order).unwrap_or(Order::MAX);
        let fail = Damage::Capacity { what: "extents" };
        self.unlink(e);
        let base = Mfn::new(node.mfn).ok_or(fail)?;
        self.heap.free(base, big).map_err(|_| fail)?;
        for j in k..node.order {
            // At each level the buddy of the block's ancestor is a piece.
            let piece = ((off >> j) ^ 1) << j;
            let (g, m) = (node.gpfn + piece, node.mfn + piece);
            let o = Order::new(j).ok_or(fail)?;
            self.heap
                .claim(Mfn::new(m).ok_or(fail)?, o)
                .map_err(|_| fail)?;
            let i = self.alloc_node(node.dom, g, m, j).ok_or(fail)?;
            self.link(i)?;
        }
        let (g, m) = (node.gpfn + off, node.mfn + off);
        let o = Order::new(k).ok_or(fail)?;
        self.heap
            .claim(Mfn::new(m).ok_or(fail)?, o)
            .map_err(|_| fail)?;
        let n = &mut self.nodes[e as usize];
        n.gpfn = g;
        n.mfn = m;
        n.order = k;
        self.push_pending(e);
        Ok(())
    }

    /// Calls `f(mfn, order)` for every extent waiting for its scrub.
    pub(crate) fn for_each_pending(&self, mut f: impl FnMut(u64, u8)) {
        let mut i = self.pending;
        while i != NIL {
            let node = &self.nodes[i as usize];
            f(node.mfn, node.order);
            i = node.link;
        }
        if self.destroying == 0 {
            return;
        }
        for slot in self.domains.iter() {
            if slot.state != slot_state::DESTROYING {
                continue;
            }
            let mut it = InOrder::from(self.nodes, slot.root, 0);
            while let Some(i) = it.next(self.nodes) {
                let node = &self.nodes[i as usize];
                f(node.mfn, node.order);
            }
        }
    }

    /// Returns every pending extent's frames to the heap and frees the
    /// slots of destroyed domains: their scrub is durable.
    pub(crate) fn complete_pending(&mut self) {
        while self.pending != NIL {
            let i = self.pending;
            let node = self.nodes[i as usize];
            self.pending = node.link;
            self.release_frames(&node);
            self.free_node(i);
        }
        self.pending_frames = 0;
        if self.destroying == 0 {
            return;
        }
        for s in 0..self.domains.len() {
            if self.domains[s].state == slot_state::DESTROYING {
                self.release_domain(s as u16);
            }
        }
    }

    fn release_frames(&mut self, node: &Node) {
        if let (Some(pfn), Some(o)) = (Mfn::new(node.mfn), Order::new(node.order)) {
            let _ = self.heap.free(pfn, o);
            // A bad frame a domain gave back must not reach another one.
            if let Some(range) = nvirt_addr::MfnRange::from_len(pfn, node.frames()) {
                self.keep_out_bad(range);
            }
        }
    }

    /// Returns every extent of slot `s` to the heap and frees the slot.
    fn release_domain(&mut self, s: u16) {
        // Thread the tree's nodes on a list first: freeing reuses `link`
        // only, but the traversal needs the tree intact.
        let mut list = NIL;
        let mut it = InOrder::from(self.nodes, self.domains[usize::from(s)].root, 0);
        while let Some(i) = it.next(self.nodes) {
            self.nodes[i as usize].link = list;
            list = i;
        }
        while list != NIL {
            let node = self.nodes[list as usize];
            self.index.remove(self.nodes, node.mfn);
            self.release_frames(&node);
            self.owned_frames -= node.frames();
            self.free_node(list);
            list = node.link;
        }
        let slot = &mut self.domains[usize::from(s)];
        if slot.state == slot_state::DESTROYING {
            self.destroying -= 1;
        } else if slot.state == slot_state::LIVE {
            self.live_domains -= 1;
        }
        let generation = slot.generation.wrapping_add(1);
        *slot = DomSlot {
            generation,
            root: NIL,
            ..zero_slot()
        };
    }
}
