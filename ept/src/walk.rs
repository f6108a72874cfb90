//! Reading the tables: translation, mapped extents, statistics.

use crate::addr::{guest_addr, host_addr};
use core::iter::FusedIterator;
use core::sync::atomic::Ordering;

use crate::attrs::Attrs;
use crate::format::{Decoded, Format};
use crate::frames::PhysMem;
use crate::tables::Tables;
use crate::{GUEST_BITS, GuestPhysAddr, HostPhysAddr, Level, PageSize};

/// Where a guest address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The host address of the guest address translated.
    pub hpa: HostPhysAddr,
    /// The page that maps it.
    pub page: PageSize,
    /// Permissions and memory type of the page.
    pub attrs: Attrs,
}

/// A maximal run of pages of one size with consecutive guest and host
/// addresses and the same attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    /// First guest address.
    pub gpa: GuestPhysAddr,
    /// First host address.
    pub hpa: HostPhysAddr,
    /// Bytes: a multiple of the page size.
    pub len: u64,
    /// Size of every page in the run.
    pub page: PageSize,
    /// Permissions and memory type of every page in the run.
    pub attrs: Attrs,
}

/// Leaves of each size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageCounts {
    /// 1 GiB pages.
    pub size_1g: u64,
    /// 2 MiB pages.
    pub size_2m: u64,
    /// 4 KiB pages.
    pub size_4k: u64,
}

/// One leaf found by a walk.
#[derive(Clone, Copy, Debug)]
struct Leaf {
    gpa: u64,
    size: PageSize,
    hpa: HostPhysAddr,
    attrs: Attrs,
}

impl<F: Format, M: PhysMem> Tables<F, M> {
    /// The translation of `gpa`, if mapped.
    pub fn translate(&self, gpa: GuestPhysAddr) -> Option<Translation> {
        let gpa = gpa.get();
        if gpa >> GUEST_BITS != 0 {
            return None;
        }
        let mut table = self.root;
        let mut level = Level::Pml4;
        loop {
            let raw = self.mem.table(table)[level.index(gpa)].load(Ordering::Relaxed);
            match self.format.decode(level, raw) {
                Decoded::Empty => return None,
                Decoded::Table(t) => {
                    table = t;
                    level = level.below()?;
                }
                Decoded::Leaf { hpa, attrs, .. } => {
                    let page = level.page_size()?;
                    let offset = gpa & (page.bytes() - 1);
                    return Some(Translation {
                        hpa: host_addr(hpa.get() + offset),
                        page,
                        attrs,
                    });
                }
            }
        }
    }

    /// The maximal runs of mapped pages in guest-address order.
    pub fn page_runs(&self) -> PageRuns<'_, F, M> {
        PageRuns {
            tables: self,
            cursor: 0,
            ahead: None,
            done: false,
        }
    }

    /// How many leaves of each size map the guest.
    pub fn page_counts(&self) -> PageCounts {
        let mut counts = PageCounts::default();
        self.count_leaves(self.root, Level::Pml4, &mut counts);
        counts
    }

    fn count_leaves(&self, table: HostPhysAddr, level: Level, counts: &mut PageCounts) {
        for entry in self.mem.table(table) {
            match self.format.decode(level, entry.load(Ordering::Relaxed)) {
                Decoded::Empty => {}
                Decoded::Table(t) => {
                    if let Some(below) = level.below() {
                        self.count_leaves(t, below, counts);
                    }
                }
                Decoded::Leaf { .. } => match level {
                    Level::Pt => counts.size_4k += 1,
                    Level::Pd => counts.size_2m += 1,
                    Level::Pdpt | Level::Pml4 => counts.size_1g += 1,
                },
            }
        }
    }

    /// The first leaf that maps an address at or after `from`.
    fn leaf_from(&self, from: u64) -> Option<Leaf> {
        self.leaf_in(self.root, Level::Pml4, 0, from)
    }

    fn leaf_in(&self, table: HostPhysAddr, level: Level, base: u64, from: u64) -> Option<Leaf> {
        let start = if from <= base { 0 } else { level.index(from) };
        let view = self.mem.table(table);
        for (i, entry) in view.iter().enumerate().skip(start) {
            let entry_base = base + i as u64 * level.entry_span();
            match self.format.decode(level, entry.load(Ordering::Relaxed)) {
                Decoded::Empty => {}
                Decoded::Table(t) => {
                    let below = level.below()?;
                    if let Some(leaf) = self.leaf_in(t, below, entry_base, from.max(entry_base)) {
                        return Some(leaf);
                    }
                }
                Decoded::Leaf { hpa, attrs, .. } => {
                    let size = level.page_size()?;
                    return Some(Leaf {
                        gpa: entry_base,
                        size,
                        hpa,
                        attrs,
                    });
                }
            }
        }
        None
    }
}

/// Iterator over mapped runs of pages: see [`Tables::page_runs`].
#[derive(Debug)]
pub struct PageRuns<'a, F: Format, M: PhysMem> {
    tables: &'a Tables<F, M>,
    cursor: u64,
    ahead: Option<Leaf>,
    done: bool,
}

impl<F: Format, M: PhysMem> Iterator for PageRuns<'_, F, M> {
    type Item = PageRun;

    fn next(&mut self) -> Option<PageRun> {
        if self.done {
            return None;
        }
        let Some(first) = self
            .ahead
            .take()
            .or_else(|| self.tables.leaf_from(self.cursor))
        else {
            self.done = true;
            return None;
        };
        let mut extent = PageRun {
            gpa: guest_addr(first.gpa),
            hpa: first.hpa,
            len: first.size.bytes(),
            page: first.size,
            attrs: first.attrs,
        };
        loop {
            let end = extent.gpa.get() + extent.len;
            self.cursor = end;
            if end >> GUEST_BITS != 0 {
                self.done = true;
                break;
            }
            match self.tables.leaf_from(end) {
                Some(next)
                    if next.gpa == end
                        && next.size == extent.page
                        && next.attrs == extent.attrs
                        && extent.hpa.checked_add(extent.len) == Some(next.hpa) =>
                {
                    extent.len += next.size.bytes();
                }
                Some(next) => {
                    self.ahead = Some(next);
                    break;
                }
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        Some(extent)
    }
}

impl<F: Format, M: PhysMem> FusedIterator for PageRuns<'_, F, M> {}
