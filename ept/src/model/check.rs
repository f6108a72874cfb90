//! Runs operation sequences on real tables and on the model side by side
//! and checks, after every step, everything the tables promise. Shared by
//! the property tests and the fuzz target.

use crate::addr::{guest_addr, host_addr};
use std::collections::BTreeSet;
use std::format;
use std::vec::Vec;

use super::{Layout, Model, RawLeaf, Walker, layout_of, runs_of};
use crate::attrs::{Attrs, MemType, Perms};
use crate::config::{Config, Invalidate, Merge};
use crate::error::{FrameError, MapError, UnmapError, UpdateError};
use crate::format::Format;
use crate::host::HostFrames;
use crate::tables::Tables;

/// One operation of a sequence. Addresses are guest addresses; a map's
/// host address is `host_base + gpa + delta`.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// `map`, or `replace` if `replace`.
    Map {
        /// Guest address.
        gpa: u64,
        /// Host minus guest address (before `host_base`).
        delta: u64,
        /// Bytes.
        len: u64,
        /// Permissions (must be encodable by the format).
        perms: Perms,
        /// Memory type (must be encodable by the format).
        mem: MemType,
        /// Overwrite existing mappings.
        replace: bool,
    },
    /// `unmap`.
    Unmap {
        /// Guest address.
        gpa: u64,
        /// Bytes.
        len: u64,
    },
    /// `protect`.
    Protect {
        /// Guest address.
        gpa: u64,
        /// Bytes.
        len: u64,
        /// New permissions.
        perms: Perms,
    },
    /// `set_mem_type`.
    SetMem {
        /// Guest address.
        gpa: u64,
        /// Bytes.
        len: u64,
        /// New type.
        mem: MemType,
    },
    /// `promote`.
    Promote {
        /// Guest address.
        gpa: u64,
        /// Bytes.
        len: u64,
    },
    /// `reclaim` (the invalidation is assumed done).
    Reclaim,
    /// Let the next step obtain at most this many frames.
    Starve(usize),
}

impl Step {
    fn range(&self) -> Option<(u64, u64)> {
        match *self {
            Self::Map { gpa, len, .. }
            | Self::Unmap { gpa, len }
            | Self::Protect { gpa, len, .. }
            | Self::SetMem { gpa, len, .. }
            | Self::Promote { gpa, len } => Some((gpa, len)),
            Self::Reclaim | Self::Starve(_) => None,
        }
    }
}

/// Real tables, the model, and the expected page decomposition.
#[derive(Debug)]
pub struct Checker<'a, F: Format> {
    tables: Tables<F, &'a HostFrames>,
    frames: &'a HostFrames,
    walker: Walker,
    model: Model,
    layout: Layout,
    eager: bool,
    pages_1g: bool,
    host_base: u64,
    starve: Option<usize>,
}

fn leaf_key(l: &RawLeaf) -> (u64, u64, u64, u8, u8) {
    (
        l.gpa,
        l.size.bytes(),
        l.hpa,
        l.attrs.perms.bits(),
        l.attrs.mem.code(),
    )
}

impl<'a, F: Format> Checker<'a, F> {
    /// Empty tables of `format` over `frames`, checked by `walker`.
    ///
    /// # Panics
    /// If the tables cannot be created.
    pub fn new(
        format: F,
        walker: Walker,
        config: Config,
        frames: &'a HostFrames,
        host_base: u64,
    ) -> Self {
        let tables = match Tables::new(format, frames, config, &mut &*frames) {
            Ok(t) => t,
            Err(e) => panic!("creating tables: {e}"),
        };
        Self {
            tables,
            frames,
            walker,
            model: Model::new(),
            layout: Layout::default(),
            eager: config.merge_policy() == Merge::Eager,
            pages_1g: config.uses_1g(),
            host_base,
            starve: None,
        }
    }

    /// Applies `step` to both sides and checks every promise.
    ///
    /// # Panics
    /// On the first broken promise, with a description.
    pub fn step(&mut self, step: &Step) {
        if let Step::Starve(n) = *step {
            self.starve = Some(n);
            return;
        }
        let before = self.scan();
        self.frames
            .set_limit(self.starve.take().map(|n| self.frames.live() + n));
        let outcome = self.apply(step);
        self.frames.set_limit(None);
        match outcome {
            Some(verdict) => self.check_verdict(verdict, &before.leaves),
            None => {
                let after = self.scan();
                assert!(
                    after.snapshot == before.snapshot,
                    "a failed {step:?} changed the tables"
                );
            }
        }
        self.check(step);
    }

    /// Destroys the tables and checks that every frame came back.
    ///
    /// # Panics
    /// If frames leaked.
    pub fn finish(self) {
        let frames = self.frames;
        self.tables.destroy(&mut &*frames);
        assert_eq!(frames.live(), 0, "frames leaked");
    }

    fn scan(&self) -> super::Scan {
        match self.walker.scan(&self.frames, self.tables.root()) {
            Ok(scan) => scan,
            Err(e) => panic!("invalid tables: {e}"),
        }
    }

    /// `Some(verdict)` on success, `None` on a failure the model predicts.
    fn apply(&mut self, step: &Step) -> Option<Invalidate> {
        let frames = &mut &*self.frames;
        let pages_1g = self.pages_1g;
        match *step {
            Step::Map {
                gpa,
                delta,
                len,
                perms,
                mem,
                replace,
            } => {
                let (end, hpa) = (gpa + len, self.host_base + gpa + delta);
                let (g, h) = (guest_addr(gpa), host_addr(hpa));
                let result = if replace {
                    self.tables.replace(frames, g, h, len, perms, mem)
                } else {
                    self.tables.map(frames, g, h, len, perms, mem)
                };
                let overlap = if replace {
                    None
                } else {
                    self.model.first_mapped(gpa, end)
                };
                match (result, overlap) {
                    (Ok(v), None) => {
                        self.model.map(gpa, end, hpa, Attrs::new(perms, mem));
                        self.layout.remove(gpa, end);
                        self.layout.insert_greedy(gpa, end, hpa, pages_1g);
                        if self.eager {
                            self.layout.promote(&self.model, gpa, end, pages_1g);
                        }
                        Some(v)
                    }
                    (Err(MapError::Overlap { gpa: at }), Some(first)) => {
                        assert_eq!(
                            at.get(),
                            first,
                            "{step:?}: overlap reported at the wrong page"
                        );
                        None
                    }
                    (Err(MapError::Frames(FrameError::Exhausted { .. })), None) => None,
                    (r, o) => panic!("{step:?}: got {r:?}, the model expected overlap {o:?}"),
                }
            }
            Step::Unmap { gpa, len } => match self.tables.unmap(frames, guest_addr(gpa), len) {
                Ok(v) => {
                    self.model.unmap(gpa, gpa + len);
                    self.layout.remove(gpa, gpa + len);
                    Some(v)
                }
                Err(UnmapError::Frames(FrameError::Exhausted { .. })) => None,
                Err(e) => panic!("{step:?}: {e}"),
            },
            Step::Protect { gpa, len, perms } => self.update(step, gpa, len, Some(perms), None),
            Step::SetMem { gpa, len, mem } => self.update(step, gpa, len, None, Some(mem)),
            Step::Promote { gpa, len } => match self.tables.promote(guest_addr(gpa), len) {
                Ok(v) => {
                    self.layout.promote(&self.model, gpa, gpa + len, pages_1g);
                    Some(v)
                }
                Err(e) => panic!("{step:?}: {e}"),
            },
            Step::Reclaim => {
                let pending = self.tables.pending_reclaim();
                let live = self.frames.live() as u64;
                let freed = self.tables.reclaim(frames);
                assert_eq!(
                    freed, pending,
                    "reclaim freed a different count than pending"
                );
                assert_eq!(self.frames.live() as u64, live - freed);
                Some(Invalidate::Nothing)
            }
            Step::Starve(_) => Some(Invalidate::Nothing),
        }
    }

    fn update(
        &mut self,
        step: &Step,
        gpa: u64,
        len: u64,
        perms: Option<Perms>,
        mem: Option<MemType>,
    ) -> Option<Invalidate> {
        let end = gpa + len;
        let frames = &mut &*self.frames;
        let g = guest_addr(gpa);
        let result = match (perms, mem) {
            (Some(p), _) => self.tables.protect(frames, g, len, p),
            (None, Some(m)) => self.tables.set_mem_type(frames, g, len, m),
            (None, None) => return Some(Invalidate::Nothing),
        };
        match (result, self.model.first_hole(gpa, end)) {
            (Ok(v), None) => {
                // A leaf the range cuts is split only if its attributes change.
                for at in [gpa, end] {
                    if let Some((_, old)) = self.model.lookup(at) {
                        let new = Attrs::new(perms.unwrap_or(old.perms), mem.unwrap_or(old.mem));
                        if new != old {
                            self.layout.cut(at);
                        }
                    }
                }
                self.model.update(gpa, end, perms, mem);
                if self.eager {
                    self.layout.promote(&self.model, gpa, end, self.pages_1g);
                }
                Some(v)
            }
            (Err(UpdateError::NotMapped { gpa: at }), Some(hole)) => {
                assert_eq!(at.get(), hole, "{step:?}: hole reported at the wrong page");
                None
            }
            (Err(UpdateError::Frames(FrameError::Exhausted { .. })), None) => None,
            (r, h) => panic!("{step:?}: got {r:?}, the model expected hole {h:?}"),
        }
    }

    /// "Nothing to invalidate" must mean that no present entry changed:
    /// every old leaf is still there, unchanged.
    fn check_verdict(&self, verdict: Invalidate, before: &[RawLeaf]) {
        if verdict != Invalidate::Nothing {
            return;
        }
        let after: BTreeSet<_> = self.scan().leaves.iter().map(leaf_key).collect();
        for l in before {
            assert!(
                after.contains(&leaf_key(l)),
                "verdict Nothing, but leaf {l:?} changed"
            );
        }
    }

    fn check(&self, step: &Step) {
        let scan = self.scan();
        // Every page translates as the model says: the walker decoded every
        // entry of every table.
        assert!(
            runs_of(&scan.leaves) == self.model.runs(),
            "mappings differ from the model after {step:?}"
        );
        let layout = layout_of(&scan.leaves);
        assert!(
            layout == self.layout,
            "unexpected page decomposition after {step:?}"
        );
        if self.eager {
            let minimal = self.model.minimal_leaves(self.pages_1g);
            assert!(
                layout == minimal,
                "decomposition not minimal after {step:?}"
            );
        }
        assert_eq!(
            scan.tables,
            layout.tables(),
            "not the fewest tables after {step:?}"
        );
        assert_eq!(
            self.tables.table_count(),
            scan.tables,
            "table_count after {step:?}"
        );
        assert_eq!(
            self.frames.live() as u64,
            self.tables.table_count() + self.tables.pending_reclaim(),
            "frames leaked after {step:?}"
        );
        let counts = self.tables.page_counts();
        assert_eq!(
            (counts.size_1g, counts.size_2m, counts.size_4k),
            layout.counts()
        );
        // The crate's extents are maximal runs of the walker's leaves.
        let mut from_extents = Vec::new();
        let mut previous: Option<crate::walk::PageRun> = None;
        for e in self.tables.page_runs() {
            if let Some(p) = previous {
                let continues = p.gpa.get() + p.len == e.gpa.get()
                    && p.hpa.get() + p.len == e.hpa.get()
                    && p.page == e.page
                    && p.attrs == e.attrs;
                assert!(!continues, "extents {p:?} and {e:?} are not maximal");
            }
            let mut at = 0;
            while at < e.len {
                let gpa = e.gpa.get() + at;
                from_extents.push(RawLeaf {
                    gpa,
                    size: e.page,
                    hpa: e.hpa.get() + at,
                    attrs: e.attrs,
                });
                at += e.page.bytes();
            }
            previous = Some(e);
        }
        assert!(
            from_extents == scan.leaves,
            "extents differ from the walker's leaves after {step:?}"
        );
        // Pages the step touched, through the walker and `translate`.
        let Some((gpa, len)) = step.range() else {
            return;
        };
        let pages = len >> 12;
        let sampled = |k: u64| pages <= 4096 || k < 64 || pages - k <= 64 || k % 509 == 0;
        for k in (0..pages).filter(|&k| sampled(k)) {
            let page = gpa + (k << 12);
            let expected = self.model.lookup(page);
            let walked = match self
                .walker
                .translate(&self.frames, self.tables.root(), page)
            {
                Ok(w) => w.map(|(h, a, _)| (h, a)),
                Err(e) => panic!("walk of {page:#x}: {e}"),
            };
            assert!(
                walked == expected,
                "{}",
                format!("walk of {page:#x} after {step:?}: {walked:?}, model {expected:?}")
            );
            let translated = self
                .tables
                .translate(guest_addr(page))
                .map(|t| (t.hpa.get(), t.attrs));
            assert!(
                translated == expected,
                "translate({page:#x}) after {step:?}: {translated:?}, model {expected:?}"
            );
        }
    }
}
