//! The machine-frame index: which extent node starts at a machine frame.
//!
//! An open-addressing hash table of node numbers keyed by the extent's
//! first machine frame, at most half full, with linear probing and
//! backward-shift deletion (no tombstones, so lookups stay short however
//! long the pool lives). Extents are aligned blocks, so the extent holding
//! any frame starts at that frame rounded down to its order: `owner_of`
//! looks up at most one candidate per order.

use nvirt_addr::Order;

use crate::work::{NIL, Node};

/// The index, over the table the work area provides.
pub(crate) struct MfnIndex<'w> {
    table: &'w mut [u32],
    shift: u32,
    len: usize,
}

/// Fibonacci hashing: the top bits of the product spread aligned keys.
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
/// Log2 of the frames whose slots stay together: 16 slots of 4 bytes, one
/// cache line.
const RUN_BITS: u32 = 4;
const RUN: u64 = 1 << RUN_BITS;

impl<'w> MfnIndex<'w> {
    /// An empty index over `table`, whose length is a power of two (at
    /// least 2).
    pub(crate) fn new(table: &'w mut [u32]) -> Self {
        table.fill(NIL);
        // The run number's hash selects one of len / RUN runs (at least 1).
        let runs = (table.len() as u64 >> RUN_BITS).max(2);
        Self {
            table,
            shift: 64 - runs.trailing_zeros(),
            len: 0,
        }
    }

    /// Entries in the index.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot where probing for `mfn` starts: frames of one aligned run
    /// of [`RUN`] share a hashed run of slots, in frame order, so that
    /// extents of neighbouring frames (recovery loads them in that order)
    /// land in the same cache line instead of one line each.
    fn home(&self, mfn: u64) -> usize {
        let run = (mfn >> RUN_BITS).wrapping_mul(MULTIPLIER) >> self.shift;
        ((run << RUN_BITS) as usize | (mfn & (RUN - 1)) as usize) & self.mask()
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    /// Adds node `i` under its machine frame. The caller guarantees no
    /// other node starts there and the table has room (it has twice as
    /// many slots as there are nodes).
    pub(crate) fn insert(&mut self, nodes: &[Node], i: u32) {
        let mut at = self.home(nodes[i as usize].mfn);
        while self.table[at] != NIL {
            at = (at + 1) & self.mask();
        }
        self.table[at] = i;
        self.len += 1;
    }

    fn position(&self, nodes: &[Node], mfn: u64) -> Option<usize> {
        let mut at = self.home(mfn);
        loop {
            let i = self.table[at];
            if i == NIL {
                return None;
            }
            if nodes[i as usize].mfn == mfn {
                return Some(at);
            }
            at = (at + 1) & self.mask();
        }
    }

    /// The node that starts at machine frame `mfn`.
    pub(crate) fn get(&self, nodes: &[Node], mfn: u64) -> Option<u32> {
        self.position(nodes, mfn).map(|at| self.table[at])
    }

    /// The node whose extent holds machine frame `mfn`.
    pub(crate) fn containing(&self, nodes: &[Node], mfn: u64) -> Option<u32> {
        Order::MAX.up_to().find_map(|order| {
            let head = mfn & !(order.frames() - 1);
            self.get(nodes, head)
                .filter(|&i| mfn - head < nodes[i as usize].frames())
        })
    }

    /// Removes the node that starts at `mfn`; returns it.
    pub(crate) fn remove(&mut self, nodes: &[Node], mfn: u64) -> Option<u32> {
        let mut hole = self.position(nodes, mfn)?;
        let removed = self.table[hole];
        let mask = self.mask();
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let i = self.table[at];
            if i == NIL {
                break;
            }
            let home = self.home(nodes[i as usize].mfn);
            // Move the entry back into the hole unless its home lies
            // (cyclically) after the hole and at or before its position.
            let stays = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !stays {
                self.table[hole] = i;
                hole = at;
            }
        }
        self.table[hole] = NIL;
        self.len -= 1;
        Some(removed)
    }

    /// Checks that every entry is found from its home and names a node
    /// starting at a distinct frame; returns the entry count.
    pub(crate) fn check(&self, nodes: &[Node]) -> Result<usize, u32> {
        let mut count = 0;
        for &i in self.table.iter() {
            if i == NIL {
                continue;
            }
            let node = nodes.get(i as usize).ok_or(i)?;
            if self.get(nodes, node.mfn) != Some(i) {
                return Err(i);
            }
            count += 1;
        }
        if count == self.len {
            Ok(count)
        } else {
            Err(NIL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(mfn: u64, order: u8) -> Node {
        Node {
            gpfn: 0,
            mfn,
            left: NIL,
            right: NIL,
            link: NIL,
            dom: 0,
            order,
            height: 0,
        }
    }

    #[test]
    fn insert_find_remove_with_collisions() {
        // Aligned keys collide most under weak hashes.
        let nodes: Vec<Node> = (0..200).map(|i| node(i << 9, 9)).collect();
        let mut table = vec![0; 512];
        let mut index = MfnIndex::new(&mut table);
        for i in 0..200 {
            index.insert(&nodes, i);
        }
        assert_eq!(index.check(&nodes), Ok(200));
        assert_eq!(index.containing(&nodes, (7 << 9) + 100), Some(7));
        assert_eq!(index.containing(&nodes, 200 << 9), None);
        for i in (0..200).step_by(3) {
            assert_eq!(index.remove(&nodes, u64::from(i) << 9), Some(i));
            assert_eq!(index.remove(&nodes, u64::from(i) << 9), None);
        }
        assert_eq!(index.check(&nodes), Ok(133));
        for i in 0..200u32 {
            let found = index.get(&nodes, u64::from(i) << 9);
            assert_eq!(found.is_some(), i % 3 != 0, "{i}");
        }
    }

    #[test]
    fn containing_finds_the_extent_of_any_frame() {
        let nodes = vec![node(0x1000, 12), node(0x3000, 0), node(0x3002, 1)];
        let mut table = vec![0; 8];
        let mut index = MfnIndex::new(&mut table);
        for i in 0..3 {
            index.insert(&nodes, i);
        }
        assert_eq!(index.containing(&nodes, 0x1fff), Some(0));
        assert_eq!(index.containing(&nodes, 0x3000), Some(1));
        assert_eq!(index.containing(&nodes, 0x3001), None);
        assert_eq!(index.containing(&nodes, 0x3003), Some(2));
        assert_eq!(index.len(), 3);
    }
}
