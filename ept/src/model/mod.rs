//! A reference model and an independent walker for property tests and
//! fuzzers (feature `model`). Deliberately naive: sorted maps, linear
//! scans, raw bit arithmetic written from the manuals rather than shared
//! with the crate, so that it can judge the real implementation.

mod check;
mod walker;

use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

use crate::PageSize;
use crate::attrs::{Attrs, MemType, Perms};

pub use check::{Checker, Step};
pub use walker::{Kind, RawLeaf, Scan, Walker};

/// A mapped run: guest `[start, end)` to host `hpa..`, one attribute set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First guest byte after the run.
    pub end: u64,
    /// Host address of the run's first byte.
    pub hpa: u64,
    /// Attributes of every page.
    pub attrs: Attrs,
}

/// What every 4 KiB guest page maps to, as maximal runs keyed by start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    runs: BTreeMap<u64, Run>,
}

impl Model {
    /// Nothing mapped.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The runs, maximal: neighbours never continue each other.
    #[must_use]
    pub fn runs(&self) -> Vec<(u64, Run)> {
        self.runs.iter().map(|(&s, &r)| (s, r)).collect()
    }

    /// Host address and attributes of the page holding `gpa`.
    #[must_use]
    pub fn lookup(&self, gpa: u64) -> Option<(u64, Attrs)> {
        let (&start, run) = self.runs.range(..=gpa).next_back()?;
        (gpa < run.end).then(|| (run.hpa + (gpa - start), run.attrs))
    }

    /// The first mapped address in `[start, end)`.
    #[must_use]
    pub fn first_mapped(&self, start: u64, end: u64) -> Option<u64> {
        if let Some((_, run)) = self.runs.range(..=start).next_back() {
            if run.end > start {
                return Some(start);
            }
        }
        self.runs.range(start..end).next().map(|(&s, _)| s)
    }

    /// The first unmapped address in `[start, end)`.
    #[must_use]
    pub fn first_hole(&self, start: u64, end: u64) -> Option<u64> {
        let mut at = start;
        while at < end {
            let Some((_, run)) = self.runs.range(..=at).next_back() else {
                return Some(at);
            };
            if run.end <= at {
                return Some(at);
            }
            at = run.end;
        }
        None
    }

    fn cut(&mut self, at: u64) {
        let Some((&s, &run)) = self.runs.range(..at).next_back() else {
            return;
        };
        if run.end > at {
            self.runs.insert(s, Run { end: at, ..run });
            self.runs.insert(
                at,
                Run {
                    hpa: run.hpa + (at - s),
                    ..run
                },
            );
        }
    }

    fn normalize(&mut self) {
        let mut out: BTreeMap<u64, Run> = BTreeMap::new();
        for (&s, &run) in &self.runs {
            if let Some((&ps, prev)) = out.iter_mut().next_back() {
                if prev.end == s && prev.attrs == run.attrs && prev.hpa + (s - ps) == run.hpa {
                    prev.end = run.end;
                    continue;
                }
            }
            out.insert(s, run);
        }
        self.runs = out;
    }

    /// Removes every mapping in `[start, end)`.
    pub fn unmap(&mut self, start: u64, end: u64) {
        self.cut(start);
        self.cut(end);
        let inside: Vec<u64> = self.runs.range(start..end).map(|(&s, _)| s).collect();
        for s in inside {
            self.runs.remove(&s);
        }
        self.normalize();
    }

    /// Maps `[start, end)` to `hpa..`, replacing what was there.
    pub fn map(&mut self, start: u64, end: u64, hpa: u64, attrs: Attrs) {
        self.unmap(start, end);
        self.runs.insert(start, Run { end, hpa, attrs });
        self.normalize();
    }

    /// Changes attributes of the (fully mapped) range.
    pub fn update(&mut self, start: u64, end: u64, perms: Option<Perms>, mem: Option<MemType>) {
        self.cut(start);
        self.cut(end);
        for (_, run) in self.runs.range_mut(start..end) {
            run.attrs = Attrs::new(
                perms.unwrap_or(run.attrs.perms),
                mem.unwrap_or(run.attrs.mem),
            );
        }
        self.normalize();
    }

    /// Whether `[start, start + size)` is one uniform block that a leaf of
    /// `size` could map.
    #[must_use]
    pub fn uniform(&self, start: u64, size: PageSize) -> bool {
        let Some((&s, run)) = self.runs.range(..=start).next_back() else {
            return false;
        };
        run.end >= start + size.bytes() && (run.hpa + (start - s)) % size.bytes() == 0
    }

    /// The fewest leaves for the mapping: the greedy largest-aligned
    /// decomposition of every run.
    #[must_use]
    pub fn minimal_leaves(&self, pages_1g: bool) -> Layout {
        let mut layout = Layout::default();
        for (&start, run) in &self.runs {
            layout.insert_greedy(start, run.end, run.hpa, pages_1g);
        }
        layout
    }
}

/// A page decomposition: leaf start → size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The leaves.
    pub leaves: BTreeMap<u64, PageSize>,
}

fn smaller(size: PageSize) -> Option<PageSize> {
    match size {
        PageSize::Size4K => None,
        PageSize::Size2M => Some(PageSize::Size4K),
        PageSize::Size1G => Some(PageSize::Size2M),
    }
}

impl Layout {
    /// Adds the greedy decomposition of guest `[start, end)` mapped from
    /// host `hpa`.
    pub fn insert_greedy(&mut self, start: u64, end: u64, hpa: u64, pages_1g: bool) {
        let mut at = start;
        while at < end {
            let host = hpa + (at - start);
            let size = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K]
                .into_iter()
                .filter(|&s| pages_1g || s != PageSize::Size1G)
                .find(|s| at % s.bytes() == 0 && host % s.bytes() == 0 && at + s.bytes() <= end)
                .unwrap_or(PageSize::Size4K);
            self.leaves.insert(at, size);
            at += size.bytes();
        }
    }

    /// Splits every leaf that `at` falls strictly inside, as the tables
    /// split a large page a change cuts: into pages of the next size, again
    /// where `at` still cuts one.
    pub fn cut(&mut self, at: u64) {
        while let Some((&s, &size)) = self.leaves.range(..at).next_back() {
            if s + size.bytes() <= at {
                return;
            }
            let Some(child) = smaller(size) else { return };
            self.leaves.remove(&s);
            for i in 0..512 {
                self.leaves.insert(s + i * child.bytes(), child);
            }
        }
    }

    /// Removes the leaves of `[start, end)` after cutting at its ends.
    pub fn remove(&mut self, start: u64, end: u64) {
        self.cut(start);
        self.cut(end);
        let inside: Vec<u64> = self.leaves.range(start..end).map(|(&s, _)| s).collect();
        for s in inside {
            self.leaves.remove(&s);
        }
    }

    /// Merges, as `promote` does, every 2 MiB and then 1 GiB block touching
    /// `[start, end)` that `model` says is uniform and that is made of leaves
    /// of the next smaller size only (or, for 2 MiB, of 4 KiB leaves).
    pub fn promote(&mut self, model: &Model, start: u64, end: u64, pages_1g: bool) {
        for size in [PageSize::Size2M, PageSize::Size1G] {
            if size == PageSize::Size1G && !pages_1g {
                continue;
            }
            let child = smaller(size).unwrap_or(PageSize::Size4K);
            let mut block = start & !(size.bytes() - 1);
            while block < end {
                let inside: Vec<(u64, PageSize)> = self
                    .leaves
                    .range(block..block + size.bytes())
                    .map(|(&s, &z)| (s, z))
                    .collect();
                let all_children = inside.len() == 512 && inside.iter().all(|&(_, z)| z == child);
                if all_children && model.uniform(block, size) {
                    for (s, _) in inside {
                        self.leaves.remove(&s);
                    }
                    self.leaves.insert(block, size);
                }
                block += size.bytes();
            }
        }
    }

    /// Leaves per size: (1 GiB, 2 MiB, 4 KiB).
    #[must_use]
    pub fn counts(&self) -> (u64, u64, u64) {
        let count = |z| self.leaves.values().filter(|&&s| s == z).count() as u64;
        (
            count(PageSize::Size1G),
            count(PageSize::Size2M),
            count(PageSize::Size4K),
        )
    }

    /// The paging-structure pages these leaves need, root included: one
    /// PDPT per 512 GiB region with leaves, one PD per 1 GiB region with
    /// smaller leaves, one PT per 2 MiB region with 4 KiB leaves.
    #[must_use]
    pub fn tables(&self) -> u64 {
        let regions = |shift: u32, below: PageSize| -> u64 {
            let set: BTreeSet<u64> = self
                .leaves
                .iter()
                .filter(|&(_, &z)| z <= below)
                .map(|(&s, _)| s >> shift)
                .collect();
            set.len() as u64
        };
        1 + regions(39, PageSize::Size1G)
            + regions(30, PageSize::Size2M)
            + regions(21, PageSize::Size4K)
    }
}

/// The runs a set of leaves maps, merged maximally like [`Model::runs`].
#[must_use]
pub fn runs_of(leaves: &[RawLeaf]) -> Vec<(u64, Run)> {
    let mut model = Model::new();
    for leaf in leaves {
        model.runs.insert(
            leaf.gpa,
            Run {
                end: leaf.gpa + leaf.size.bytes(),
                hpa: leaf.hpa,
                attrs: leaf.attrs,
            },
        );
    }
    model.normalize();
    model.runs()
}

/// The layout a set of leaves forms.
#[must_use]
pub fn layout_of(leaves: &[RawLeaf]) -> Layout {
    Layout {
        leaves: leaves.iter().map(|l| (l.gpa, l.size)).collect(),
    }
}
