//! The second pass: apply a planned change with frames already in hand.
//!
//! Write order keeps every state a concurrent walker can observe valid:
//! - a new table is filled completely, then linked by one release store;
//! - a large page is split by building the full child table with the same
//!   translation (and the leaf's accessed/dirty bits), applying the change
//!   inside it while it is still private, then swapping the parent entry in
//!   one compare-exchange;
//! - a merge writes the large leaf over the table reference in one
//!   compare-exchange, after which the old table is retired, not freed;
//! - a live leaf is changed by compare-exchange so that an accessed or
//!   dirty bit the processor sets meanwhile is kept.
//!
//! A table is "live" once a walker can reach it; tables built during this
//! change stay private until linked, and need neither atomic exchanges nor
//! retirement.

use crate::addr::host_addr;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::attrs::Attrs;
use crate::format::{Decoded, Format};
use crate::frames::{PhysMem, write_link};
use crate::ops::{Change, Op, Work};
use crate::tables::Tables;
use crate::{HostPhysAddr, Level, PageSize};

impl<F: Format, M: PhysMem> Tables<F, M> {
    pub(crate) fn apply_root(&self, op: &Op, work: &mut Work) {
        self.apply_table(op, Level::Pml4, self.root, 0, true, work);
    }

    fn apply_table(
        &self,
        op: &Op,
        level: Level,
        table: HostPhysAddr,
        base: u64,
        live: bool,
        work: &mut Work,
    ) {
        let lo = op.start.max(base);
        let hi = op.end.min(base + level.table_span());
        if lo >= hi {
            return;
        }
        let view = self.mem.table(table);
        let (first, last) = (level.index(lo), level.index(hi - 1));
        for (i, slot) in view.iter().enumerate().take(last + 1).skip(first) {
            let entry_base = base + i as u64 * level.entry_span();
            self.apply_entry(op, level, slot, entry_base, live, work);
        }
    }

    fn apply_entry(
        &self,
        op: &Op,
        level: Level,
        slot: &AtomicU64,
        base: u64,
        live: bool,
        work: &mut Work,
    ) {
        let raw = slot.load(Ordering::Relaxed);
        let entry = self.format.decode(level, raw);
        let full = op.covers(level, base);
        let Some(below) = level.below() else {
            // Page-table entries: always wholly covered.
            self.apply_pte(op, slot, raw, entry, base, live, work);
            return;
        };
        match (op.change, entry) {
            (Change::Map { replace, attrs, .. }, _) => {
                let leaf_ok = full && self.leaf_ok(op, level, base);
                match entry {
                    Decoded::Table(t) if !replace || !leaf_ok => {
                        self.apply_table(op, below, t, base, live, work);
                        self.after_child(op, level, slot, t, base, live, work);
                    }
                    _ if leaf_ok => {
                        let hpa = self.map_target(op, base);
                        let size = level.page_size().unwrap_or(PageSize::Size4K);
                        self.replace_entry(
                            level,
                            slot,
                            self.format.leaf(size, hpa, attrs),
                            live,
                            work,
                        );
                    }
                    Decoded::Leaf {
                        hpa,
                        attrs: old,
                        hardware,
                    } if !full => {
                        self.split(op, level, slot, raw, (hpa, old, hardware), base, live, work);
                    }
                    _ => {
                        let Some(child) = self.take(work) else { return };
                        self.build(op, below, child, base, work);
                        self.replace_entry(level, slot, self.format.table(child), live, work);
                    }
                }
            }
            (_, Decoded::Empty) => {}
            (Change::Unmap, _) if full => {
                self.replace_entry(level, slot, self.format.empty(), live, work);
            }
            (_, Decoded::Table(t)) => {
                self.apply_table(op, below, t, base, live, work);
                self.after_child(op, level, slot, t, base, live, work);
            }
            (Change::Promote, Decoded::Leaf { .. }) => {}
            (
                Change::Unmap,
                Decoded::Leaf {
                    hpa,
                    attrs,
                    hardware,
                },
            ) => {
                self.split(
                    op,
                    level,
                    slot,
                    raw,
                    (hpa, attrs, hardware),
                    base,
                    live,
                    work,
                );
            }
            (
                Change::Update { .. },
                Decoded::Leaf {
                    hpa,
                    attrs,
                    hardware,
                },
            ) => {
                let new = op.updated(attrs);
                if new == attrs {
                    return;
                }
                if full {
                    let size = level.page_size().unwrap_or(PageSize::Size4K);
                    self.update_leaf(slot, raw, self.format.leaf(size, hpa, new), live, work);
                } else {
                    self.split(
                        op,
                        level,
                        slot,
                        raw,
                        (hpa, attrs, hardware),
                        base,
                        live,
                        work,
                    );
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments, reason = "one entry's whole context")]
    fn apply_pte(
        &self,
        op: &Op,
        slot: &AtomicU64,
        raw: u64,
        entry: Decoded,
        base: u64,
        live: bool,
        work: &mut Work,
    ) {
        let size = PageSize::Size4K;
        match (op.change, entry) {
            (Change::Map { attrs, .. }, _) => {
                let new = self.format.leaf(size, self.map_target(op, base), attrs);
                self.replace_entry(Level::Pt, slot, new, live, work);
            }
            (Change::Unmap, Decoded::Leaf { .. }) => {
                self.replace_entry(Level::Pt, slot, self.format.empty(), live, work);
            }
            (Change::Update { .. }, Decoded::Leaf { hpa, attrs, .. }) => {
                let new = op.updated(attrs);
                if new != attrs {
                    self.update_leaf(slot, raw, self.format.leaf(size, hpa, new), live, work);
                }
            }
            _ => {}
        }
    }

    /// The host address a map change gives the guest address `gpa`.
    fn map_target(&self, op: &Op, gpa: u64) -> HostPhysAddr {
        match op.change {
            Change::Map {
                gpa: start, hpa, ..
            } => host_addr(hpa + (gpa - start)),
            _ => host_addr(0),
        }
    }

    /// A planned frame. The plan counted it, so the pool is never empty; if
    /// it were, the entry is left as it was rather than half-changed.
    fn take(&self, work: &mut Work) -> Option<HostPhysAddr> {
        let frame = work.pool.take(&self.mem);
        debug_assert!(frame.is_some(), "plan undercounted table frames");
        frame
    }

    /// Fills the private table `table` of `level` for a map change: every
    /// entry written once, new child tables built before they are linked.
    fn build(&self, op: &Op, level: Level, table: HostPhysAddr, base: u64, work: &mut Work) {
        let Change::Map { attrs, .. } = op.change else {
            return;
        };
        let view = self.mem.table(table);
        let span = level.entry_span();
        let empty = self.format.empty();
        let lo = op.start.max(base);
        let hi = op.end.min(base + level.table_span());
        let (first, last) = (level.index(lo), level.index(hi - 1));
        for slot in view.iter().take(first) {
            slot.store(empty, Ordering::Relaxed);
        }
        let mut i = first;
        while i <= last {
            let entry_base = base + i as u64 * span;
            let below = level.below();
            if op.covers(level, entry_base) && self.leaf_ok(op, level, entry_base) {
                // A run of leaves: consecutive pages differ only in the
                // address field, so step the raw value.
                // Every entry up to `last` is wholly covered except perhaps
                // `last` itself.
                let last_full = if op.covers(level, base + last as u64 * span) {
                    last
                } else {
                    last - 1
                };
                let run_end = last_full.max(i);
                let size = level.page_size().unwrap_or(PageSize::Size4K);
                let first_raw = self
                    .format
                    .leaf(size, self.map_target(op, entry_base), attrs);
                for (k, slot) in view[i..=run_end].iter().enumerate() {
                    slot.store(first_raw + k as u64 * span, Ordering::Relaxed);
                }
                i = run_end + 1;
                continue;
            }
            let value = match (below, self.take(work)) {
                (Some(below), Some(child)) => {
                    self.build(op, below, child, entry_base, work);
                    self.format.table(child)
                }
                _ => empty,
            };
            view[i].store(value, Ordering::Relaxed);
            i += 1;
        }
        for slot in view.iter().skip(last + 1) {
            slot.store(empty, Ordering::Relaxed);
        }
    }

    /// Splits the leaf `(hpa, attrs, hardware)` in `slot` (raw value `raw`)
    /// of `level` for a change that cuts it.
    #[allow(clippy::too_many_arguments, reason = "one entry's whole context")]
    fn split(
        &self,
        op: &Op,
        level: Level,
        slot: &AtomicU64,
        raw: u64,
        (hpa, attrs, hardware): (HostPhysAddr, Attrs, u64),
        base: u64,
        live: bool,
        work: &mut Work,
    ) {
        let (Some(below), Some(size)) = (level.below(), level.below().and_then(Level::page_size))
        else {
            return;
        };
        let Some(child) = self.take(work) else { return };
        let view = self.mem.table(child);
        let first_raw = self.format.leaf(size, hpa, attrs) | hardware;
        for (i, entry) in view.iter().enumerate() {
            entry.store(first_raw + i as u64 * size.bytes(), Ordering::Relaxed);
        }
        self.apply_table(op, below, child, base, false, work);
        if op.merges(self.config.merge_policy()) {
            if let Some(leaf) = self.mergeable(level, child, base, op) {
                // The change restored the page: keep the leaf, drop the copy.
                self.dispose(child, below, false, work);
                self.replace_entry(level, slot, leaf, live, work);
                return;
            }
        }
        let link = self.format.table(child);
        if !live {
            slot.store(link, Ordering::Relaxed);
            return;
        }
        let mut expected = raw;
        while let Err(now) =
            slot.compare_exchange(expected, link, Ordering::Release, Ordering::Relaxed)
        {
            // The processor set accessed/dirty in the leaf meanwhile: the
            // copies inherit them before the swap.
            let gained = now & self.format.hardware_bits() & !expected;
            self.or_into_leaves(child, below, gained);
            expected = now;
        }
        work.scope = work.scope.max(self.config.changed_scope());
    }

    fn or_into_leaves(&self, table: HostPhysAddr, level: Level, bits: u64) {
        for entry in self.mem.table(table) {
            match self.format.decode(level, entry.load(Ordering::Relaxed)) {
                Decoded::Leaf { .. } => {
                    entry.fetch_or(bits, Ordering::Relaxed);
                }
                Decoded::Table(t) => {
                    if let Some(below) = level.below() {
                        self.or_into_leaves(t, below, bits);
                    }
                }
                Decoded::Empty => {}
            }
        }
    }

    /// After a change inside the child table `child` of the entry `slot`:
    /// drop the child if it became empty, or merge it if it became uniform.
    #[allow(clippy::too_many_arguments, reason = "one entry's whole context")]
    fn after_child(
        &self,
        op: &Op,
        level: Level,
        slot: &AtomicU64,
        child: HostPhysAddr,
        base: u64,
        live: bool,
        work: &mut Work,
    ) {
        let Some(below) = level.below() else { return };
        if matches!(op.change, Change::Unmap) {
            let empty = self.format.empty();
            let view = self.mem.table(child);
            if view
                .iter()
                .all(|e| self.format.decode(below, e.load(Ordering::Relaxed)) == Decoded::Empty)
            {
                self.replace_entry(level, slot, empty, live, work);
            }
            return;
        }
        if op.merges(self.config.merge_policy()) {
            if let Some(leaf) = self.mergeable(level, child, base, op) {
                self.replace_entry(level, slot, leaf, live, work);
            }
        }
    }

    /// Writes `new` into `slot` of `level`, disposing of a table the entry
    /// referenced. Live entries change by compare-exchange (the processor
    /// may be setting accessed bits); a new mapping does not inherit them.
    fn replace_entry(&self, level: Level, slot: &AtomicU64, new: u64, live: bool, work: &mut Work) {
        let hw = self.format.hardware_bits();
        let mut old = slot.load(Ordering::Relaxed);
        loop {
            if old & !hw == new {
                // The same entry: keep it, with its accessed/dirty bits.
                return;
            }
            if !live {
                slot.store(new, Ordering::Relaxed);
                break;
            }
            match slot.compare_exchange(old, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        let old_entry = self.format.decode(level, old);
        if live && old_entry != Decoded::Empty {
            work.scope = work.scope.max(self.config.changed_scope());
        }
        if let (Decoded::Table(t), Some(below)) = (old_entry, level.below()) {
            self.dispose(t, below, live, work);
        }
    }

    /// Rewrites a leaf's attributes, keeping accessed/dirty.
    fn update_leaf(&self, slot: &AtomicU64, raw: u64, new: u64, live: bool, work: &mut Work) {
        let hw = self.format.hardware_bits();
        let mut old = raw;
        while let Err(now) =
            slot.compare_exchange(old, new | (old & hw), Ordering::Release, Ordering::Relaxed)
        {
            old = now;
        }
        if live {
            work.scope = work.scope.max(self.config.changed_scope());
        }
    }

    /// A table unlinked from the tree: a live one is retired (a walker may
    /// still use it until the caller invalidates), a private one goes back
    /// to the pool with its private subtables.
    fn dispose(&self, table: HostPhysAddr, level: Level, live: bool, work: &mut Work) {
        if live {
            work.retired_frames += self.subtree_tables(table, level);
            write_link(self.mem.table(table), work.retired);
            work.retired = Some((table, level));
            return;
        }
        if let Some(below) = level.below() {
            for entry in self.mem.table(table) {
                if let Decoded::Table(t) = self.format.decode(level, entry.load(Ordering::Relaxed))
                {
                    self.dispose(t, below, false, work);
                }
            }
        }
        work.pool.put(&self.mem, table);
    }

    fn subtree_tables(&self, table: HostPhysAddr, level: Level) -> u64 {
        let Some(below) = level.below() else { return 1 };
        let mut count = 1;
        for entry in self.mem.table(table) {
            if let Decoded::Table(t) = self.format.decode(level, entry.load(Ordering::Relaxed)) {
                count += self.subtree_tables(t, below);
            }
        }
        count
    }

    /// The large leaf that can replace the entry of `level` referencing
    /// `child`, if every entry of `child` is a leaf with the same attributes
    /// and contiguous host addresses aligned to the large page. Accessed
    /// and dirty bits are the union of the small pages'.
    fn mergeable(&self, level: Level, child: HostPhysAddr, base: u64, op: &Op) -> Option<u64> {
        if !self.leaf_allowed(level) {
            return None;
        }
        let below = level.below()?;
        let size = level.page_size()?;
        let view = self.mem.table(child);
        let raw0 = view[0].load(Ordering::Relaxed);
        let Decoded::Leaf { hpa, attrs, .. } = self.format.decode(below, raw0) else {
            return None;
        };
        if !hpa.is_aligned(size) {
            return None;
        }
        let hw = self.format.hardware_bits();
        let template = raw0 & !hw;
        let step = below.entry_span();
        let matches = |i: usize| {
            let raw = view[i].load(Ordering::Relaxed);
            (raw & !hw == template + i as u64 * step).then_some(raw & hw)
        };
        // Entries next to the change are the likeliest to differ: look at
        // them first, so a non-uniform table is rejected in O(1).
        let first = below.index(op.start.max(base));
        let last = below.index(op.end.min(base + level.entry_span()) - 1);
        matches(first)?;
        matches(last)?;
        matches(Level::ENTRIES - 1)?;
        let mut hardware = raw0 & hw;
        for i in 1..Level::ENTRIES {
            hardware |= matches(i)?;
        }
        Some(self.format.leaf(size, hpa, attrs) | hardware)
    }
}
