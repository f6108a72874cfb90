//! An intrusive AVL tree of extent nodes keyed by first guest frame: one
//! per domain, its root in the domain slot, its links in the nodes.
//!
//! No recursion on the update paths (a hypervisor's stack may be small): an
//! AVL tree of 2^32 nodes is at most 46 levels deep, so a fixed 64-entry
//! path suffices. Node identity never changes (the machine-frame index
//! refers to nodes by number), so removal relinks the successor instead of
//! copying it.

use crate::work::{NIL, Node};

/// Deepest path an update keeps.
const MAX_DEPTH: usize = 64;

/// A tree update that could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TreeError {
    /// A node with the same key is in the tree already.
    Duplicate(u32),
    /// The tree is deeper than an AVL tree can be: damaged.
    TooDeep,
}

fn height(nodes: &[Node], i: u32) -> i32 {
    if i == NIL {
        0
    } else {
        i32::from(nodes[i as usize].height)
    }
}

fn update(nodes: &mut [Node], i: u32) {
    let h = 1 + height(nodes, nodes[i as usize].left).max(height(nodes, nodes[i as usize].right));
    nodes[i as usize].height = h as u8;
}

fn rotate_right(nodes: &mut [Node], y: u32) -> u32 {
    let x = nodes[y as usize].left;
    nodes[y as usize].left = nodes[x as usize].right;
    nodes[x as usize].right = y;
    update(nodes, y);
    update(nodes, x);
    x
}

fn rotate_left(nodes: &mut [Node], x: u32) -> u32 {
    let y = nodes[x as usize].right;
    nodes[x as usize].right = nodes[y as usize].left;
    nodes[y as usize].left = x;
    update(nodes, x);
    update(nodes, y);
    y
}

/// Restores the balance at `i` (whose subtrees are AVL trees differing in
/// height by at most 2); returns the subtree's new root.
fn balance(nodes: &mut [Node], i: u32) -> u32 {
    update(nodes, i);
    let (l, r) = (nodes[i as usize].left, nodes[i as usize].right);
    let bf = height(nodes, l) - height(nodes, r);
    if bf > 1 {
        if height(nodes, nodes[l as usize].left) < height(nodes, nodes[l as usize].right) {
            nodes[i as usize].left = rotate_left(nodes, l);
        }
        return rotate_right(nodes, i);
    }
    if bf < -1 {
        if height(nodes, nodes[r as usize].right) < height(nodes, nodes[r as usize].left) {
            nodes[i as usize].right = rotate_right(nodes, r);
        }
        return rotate_left(nodes, i);
    }
    i
}

fn set_child(nodes: &mut [Node], parent: u32, left: bool, child: u32) {
    if left {
        nodes[parent as usize].left = child;
    } else {
        nodes[parent as usize].right = child;
    }
}

/// Rebalances from the bottom of `path` up, hanging `child` under the last
/// entry on the side `left[..]` says; returns the new root.
fn rebalance_up(nodes: &mut [Node], path: &[u32], left: &[bool], mut child: u32) -> u32 {
    for (&p, &l) in path.iter().zip(left).rev() {
        set_child(nodes, p, l, child);
        child = balance(nodes, p);
    }
    child
}

/// Inserts node `x` (its `gpfn` is the key) into the tree at `root`.
pub(crate) fn insert(nodes: &mut [Node], root: &mut u32, x: u32) -> Result<(), TreeError> {
    let key = nodes[x as usize].gpfn;
    let mut path = [NIL; MAX_DEPTH];
    let mut left = [false; MAX_DEPTH];
    let mut n = 0;
    let mut cur = *root;
    while cur != NIL {
        if n == MAX_DEPTH {
            return Err(TreeError::TooDeep);
        }
        let k = nodes[cur as usize].gpfn;
        if key == k {
            return Err(TreeError::Duplicate(cur));
        }
        path[n] = cur;
        left[n] = key < k;
        n += 1;
        cur = if key < k {
            nodes[cur as usize].left
        } else {
            nodes[cur as usize].right
        };
    }
    let node = &mut nodes[x as usize];
    node.left = NIL;
    node.right = NIL;
    node.height = 1;
    *root = rebalance_up(nodes, &path[..n], &left[..n], x);
    Ok(())
}

/// Removes the node whose key is `key` from the tree at `root`; returns it.
pub(crate) fn remove(
    nodes: &mut [Node],
    root: &mut u32,
    key: u64,
) -> Result<Option<u32>, TreeError> {
    let mut path = [NIL; MAX_DEPTH];
    let mut left = [false; MAX_DEPTH];
    let mut n = 0;
    let mut cur = *root;
    loop {
        if cur == NIL {
            return Ok(None);
        }
        let k = nodes[cur as usize].gpfn;
        if k == key {
            break;
        }
        if n == MAX_DEPTH {
            return Err(TreeError::TooDeep);
        }
        path[n] = cur;
        left[n] = key < k;
        n += 1;
        cur = if key < k {
            nodes[cur as usize].left
        } else {
            nodes[cur as usize].right
        };
    }
    let z = cur;
    let (zl, zr) = (nodes[z as usize].left, nodes[z as usize].right);
    let hanging;
    if zl == NIL || zr == NIL {
        hanging = if zl != NIL { zl } else { zr };
    } else {
        // Relink the successor y (leftmost of z's right subtree) into z's
        // place; the path then runs through y down to y's old parent.
        if n == MAX_DEPTH {
            return Err(TreeError::TooDeep);
        }
        let zi = n;
        path[n] = z;
        left[n] = false;
        n += 1;
        let mut y = zr;
        while nodes[y as usize].left != NIL {
            if n == MAX_DEPTH {
                return Err(TreeError::TooDeep);
            }
            path[n] = y;
            left[n] = true;
            n += 1;
            y = nodes[y as usize].left;
        }
        hanging = nodes[y as usize].right;
        nodes[y as usize].left = zl;
        nodes[y as usize].right = zr;
        nodes[y as usize].height = nodes[z as usize].height;
        path[zi] = y;
    }
    *root = rebalance_up(nodes, &path[..n], &left[..n], hanging);
    Ok(Some(z))
}

/// The node with the largest key at most `key`.
pub(crate) fn floor(nodes: &[Node], root: u32, key: u64) -> Option<u32> {
    let mut cur = root;
    let mut best = None;
    while cur != NIL {
        let node = &nodes[cur as usize];
        if node.gpfn <= key {
            best = Some(cur);
            cur = node.right;
        } else {
            cur = node.left;
        }
    }
    best
}

/// Builds a balanced tree of the nodes `lo..hi`, whose keys increase with
/// their numbers; returns its root. Recursion depth is log2 of the count.
pub(crate) fn build(nodes: &mut [Node], lo: u32, hi: u32) -> u32 {
    if lo >= hi {
        return NIL;
    }
    let mid = lo + (hi - lo) / 2;
    let l = build(nodes, lo, mid);
    let r = build(nodes, mid + 1, hi);
    let node = &mut nodes[mid as usize];
    node.left = l;
    node.right = r;
    update(nodes, mid);
    mid
}

/// In-order traversal from a lower bound, with an explicit stack.
#[derive(Clone, Debug)]
pub(crate) struct InOrder {
    stack: [u32; MAX_DEPTH],
    len: usize,
}

impl InOrder {
    /// The nodes of the tree at `root` whose keys are at least `from`, in
    /// key order.
    pub(crate) fn from(nodes: &[Node], root: u32, from: u64) -> Self {
        let mut it = Self {
            stack: [NIL; MAX_DEPTH],
            len: 0,
        };
        let mut cur = root;
        while cur != NIL && it.len < MAX_DEPTH {
            let node = &nodes[cur as usize];
            if node.gpfn >= from {
                it.stack[it.len] = cur;
                it.len += 1;
                cur = node.left;
            } else {
                cur = node.right;
            }
        }
        it
    }

    /// The next node, if any.
    pub(crate) fn next(&mut self, nodes: &[Node]) -> Option<u32> {
        let top = self.len.checked_sub(1)?;
        let i = self.stack[top];
        self.len = top;
        let mut cur = nodes[i as usize].right;
        while cur != NIL && self.len < MAX_DEPTH {
            self.stack[self.len] = cur;
            self.len += 1;
            cur = nodes[cur as usize].left;
        }
        Some(i)
    }
}

/// What [`check`] found in a well-formed tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TreeStats {
    pub(crate) nodes: u64,
    pub(crate) frames: u64,
}

/// A tree property that does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TreeFault {
    /// Keys out of order, or extents overlapping, at this node.
    Order(u32),
    /// A stored height or balance is wrong at this node.
    Balance(u32),
    /// A node number outside the table, or a cycle.
    Link(u32),
}

/// Checks order (extents sorted and disjoint), heights and balance.
pub(crate) fn check(nodes: &[Node], root: u32) -> Result<TreeStats, TreeFault> {
    let mut stats = TreeStats::default();
    let mut prev_end = None;
    let h = check_at(nodes, root, 0, &mut prev_end, &mut stats)?;
    let _ = h;
    Ok(stats)
}

fn check_at(
    nodes: &[Node],
    i: u32,
    depth: usize,
    prev_end: &mut Option<u64>,
    stats: &mut TreeStats,
) -> Result<i32, TreeFault> {
    if i == NIL {
        return Ok(0);
    }
    let node = nodes.get(i as usize).ok_or(TreeFault::Link(i))?;
    if depth >= MAX_DEPTH || stats.nodes > nodes.len() as u64 {
        return Err(TreeFault::Link(i));
    }
    let hl = check_at(nodes, node.left, depth + 1, prev_end, stats)?;
    if prev_end.is_some_and(|end| node.gpfn < end) {
        return Err(TreeFault::Order(i));
    }
    *prev_end = Some(node.gpfn_end());
    stats.nodes += 1;
    stats.frames += node.frames();
    let hr = check_at(nodes, node.right, depth + 1, prev_end, stats)?;
    if (hl - hr).abs() > 1 || i32::from(node.height) != 1 + hl.max(hr) {
        return Err(TreeFault::Balance(i));
    }
    Ok(1 + hl.max(hr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(gpfn: u64) -> Node {
        Node {
            gpfn,
            mfn: 0,
            left: NIL,
            right: NIL,
            link: NIL,
            dom: 0,
            order: 0,
            height: 0,
        }
    }

    fn keys(nodes: &[Node], root: u32, from: u64) -> Vec<u64> {
        let mut it = InOrder::from(nodes, root, from);
        let mut out = Vec::new();
        while let Some(i) = it.next(nodes) {
            out.push(nodes[i as usize].gpfn);
        }
        out
    }

    #[test]
    fn inserts_and_removes_keep_order_and_balance() {
        // A pseudo-random permutation of 0..500 as keys (times 2).
        let n = 500u64;
        let mut nodes: Vec<Node> = (0..n).map(|i| node((i * 263 % n) * 2)).collect();
        let mut root = NIL;
        for i in 0..n as u32 {
            insert(&mut nodes, &mut root, i).unwrap();
            assert_eq!(check(&nodes, root).unwrap().nodes, u64::from(i) + 1);
        }
        assert_eq!(
            insert(&mut nodes, &mut root, 7),
            Err(TreeError::Duplicate(7))
        );
        let mut expected: Vec<u64> = (0..n).map(|i| i * 2).collect();
        assert_eq!(keys(&nodes, root, 0), expected);
        assert_eq!(keys(&nodes, root, 901), &expected[451..]);
        assert_eq!(
            floor(&nodes, root, 777).map(|i| nodes[i as usize].gpfn),
            Some(776)
        );
        assert_eq!(floor(&nodes, NIL, 777), None);
        for k in (0..n).map(|i| (i * 71 % n) * 2) {
            let i = remove(&mut nodes, &mut root, k).unwrap().unwrap();
            assert_eq!(nodes[i as usize].gpfn, k);
            expected.retain(|&e| e != k);
            check(&nodes, root).unwrap();
            assert_eq!(remove(&mut nodes, &mut root, k), Ok(None));
        }
        assert_eq!(root, NIL);
    }

    #[test]
    fn bulk_built_trees_are_balanced() {
        for n in [0u32, 1, 2, 3, 10, 1000] {
            let mut nodes: Vec<Node> = (0..n).map(|i| node(u64::from(i) * 4)).collect();
            let mut root = build(&mut nodes, 0, n);
            assert_eq!(check(&nodes, root).unwrap().nodes, u64::from(n));
            if n > 0 {
                remove(&mut nodes, &mut root, 0).unwrap();
                check(&nodes, root).unwrap();
            }
        }
    }

    #[test]
    fn overlap_is_a_fault() {
        let mut nodes = vec![node(0), node(1)];
        nodes[0].order = 1;
        let mut root = NIL;
        insert(&mut nodes, &mut root, 0).unwrap();
        insert(&mut nodes, &mut root, 1).unwrap();
        assert!(matches!(check(&nodes, root), Err(TreeFault::Order(_))));
    }
}
