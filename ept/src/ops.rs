//! The first pass of every change: validate it against the current tables
//! and count the table frames applying it will take, without writing.
//!
//! The count is exact except when a split page is merged back within the
//! same change (then the spare frame is returned unused), so the apply pass
//! never runs dry.

use crate::addr::host_addr;
use core::sync::atomic::Ordering;

use crate::attrs::{Attrs, MemType, Perms};
use crate::config::{Invalidate, Merge};
use crate::error::AttrError;
use crate::format::{Decoded, Format};
use crate::frames::{PhysMem, Pool};
use crate::tables::Tables;
use crate::{GuestPhysAddr, HostPhysAddr, Level};

/// What a change does to each page of its range.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change {
    /// Map guest page `g` to host page `hpa + (g - gpa)`.
    Map {
        gpa: u64,
        hpa: u64,
        attrs: Attrs,
        replace: bool,
    },
    /// Remove the mapping.
    Unmap,
    /// Change permissions and/or memory type of mapped pages.
    Update {
        perms: Option<Perms>,
        mem: Option<MemType>,
    },
    /// Change nothing; merge what is uniform.
    Promote,
}

/// A change over the guest range `[start, end)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op {
    pub(crate) change: Change,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Op {
    /// The caller has checked that `gpa + len` does not overflow.
    pub(crate) fn new(change: Change, gpa: GuestPhysAddr, len: u64) -> Self {
        let start = gpa.get();
        Self {
            change,
            start,
            end: start.saturating_add(len),
        }
    }

    /// Whether the entry at `base` of `level` lies wholly inside the range.
    pub(crate) fn covers(&self, level: Level, base: u64) -> bool {
        self.start <= base && base + level.entry_span() <= self.end
    }

    /// The attributes an update gives a page that had `old`.
    pub(crate) fn updated(&self, old: Attrs) -> Attrs {
        match self.change {
            Change::Update { perms, mem } => {
                Attrs::new(perms.unwrap_or(old.perms), mem.unwrap_or(old.mem))
            }
            _ => old,
        }
    }

    /// Whether merging follows this change under `policy`.
    pub(crate) fn merges(&self, policy: Merge) -> bool {
        match self.change {
            Change::Promote => true,
            Change::Unmap => false,
            Change::Map { .. } | Change::Update { .. } => policy == Merge::Eager,
        }
    }
}

/// Why a change cannot be applied.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stop {
    /// A page is already mapped (map without replace).
    Overlap(u64),
    /// A page is not mapped (update).
    NotMapped(u64),
    /// The updated attributes of some page cannot be encoded.
    Attrs(AttrError),
}

/// A table as the planner sees it: real, or one the change would create.
#[derive(Clone, Copy, Debug)]
enum Source {
    Live(HostPhysAddr),
    /// A new table: every entry empty.
    Fresh,
    /// A new table splitting a leaf that mapped `hpa` with `attrs`.
    Split {
        hpa: u64,
        attrs: Attrs,
    },
}

/// State of the apply pass.
#[derive(Debug)]
pub(crate) struct Work {
    pub(crate) pool: Pool,
    pub(crate) scope: Invalidate,
    pub(crate) retired: Option<(HostPhysAddr, Level)>,
    pub(crate) retired_frames: u64,
}

impl Work {
    pub(crate) fn new(pool: Pool, retired: Option<(HostPhysAddr, Level)>) -> Self {
        Self {
            pool,
            scope: Invalidate::Nothing,
            retired,
            retired_frames: 0,
        }
    }
}

impl<F: Format, M: PhysMem> Tables<F, M> {
    /// Whether a map change can place a leaf at the entry at `base` of
    /// `level`: the level holds pages (1 GiB ones only if enabled) and the
    /// host address there is aligned to the page.
    pub(crate) fn leaf_ok(&self, op: &Op, level: Level, base: u64) -> bool {
        let Change::Map { gpa, hpa, .. } = op.change else {
            return false;
        };
        self.leaf_allowed(level)
            && (hpa.wrapping_add(base.wrapping_sub(gpa))) % level.entry_span() == 0
    }

    /// Whether entries of `level` may be leaves.
    pub(crate) fn leaf_allowed(&self, level: Level) -> bool {
        match level {
            Level::Pt | Level::Pd => true,
            Level::Pdpt => self.config.uses_1g(),
            Level::Pml4 => false,
        }
    }

    /// Validates `op` and counts the frames it needs.
    pub(crate) fn plan(&self, op: &Op) -> Result<u64, Stop> {
        self.plan_table(op, Level::Pml4, Source::Live(self.root), 0)
    }

    fn plan_table(&self, op: &Op, level: Level, src: Source, base: u64) -> Result<u64, Stop> {
        let span = level.entry_span();
        let lo = op.start.max(base);
        let hi = op.end.min(base + level.table_span());
        if lo >= hi {
            return Ok(0);
        }
        let (first, last) = (level.index(lo), level.index(hi - 1));
        let at = |i: usize| base + i as u64 * span;
        match src {
            Source::Live(table) => {
                let view = self.mem.table(table);
                let mut needed = 0;
                for (i, entry) in view.iter().enumerate().take(last + 1).skip(first) {
                    let decoded = self.format.decode(level, entry.load(Ordering::Relaxed));
                    needed += self.plan_entry(op, level, decoded, at(i))?;
                }
                Ok(needed)
            }
            Source::Fresh | Source::Split { .. } => {
                // Every entry of a table the change creates looks alike, so
                // the inner entries (all wholly covered) cost the same: plan
                // the boundary entries and one inner entry.
                let entry = |i: usize| match src {
                    Source::Split { hpa, attrs } => Decoded::Leaf {
                        hpa: host_addr(hpa + i as u64 * span),
                        attrs,
                        hardware: 0,
                    },
                    _ => Decoded::Empty,
                };
                let mut needed = self.plan_entry(op, level, entry(first), at(first))?;
                if last > first {
                    let inner = (last - first - 1) as u64;
                    if inner > 0 {
                        let each = self.plan_entry(op, level, entry(first + 1), at(first + 1))?;
                        needed += inner * each;
                    }
                    needed += self.plan_entry(op, level, entry(last), at(last))?;
                }
                Ok(needed)
            }
        }
    }

    fn plan_entry(&self, op: &Op, level: Level, entry: Decoded, base: u64) -> Result<u64, Stop> {
        let full = op.covers(level, base);
        let first = op.start.max(base);
        let Some(below) = level.below() else {
            // A page-table entry is always wholly covered (4 KiB granule).
            return match (op.change, entry) {
                (Change::Map { replace: false, .. }, Decoded::Leaf { .. }) => {
                    Err(Stop::Overlap(first))
                }
                (Change::Update { .. }, Decoded::Empty) => Err(Stop::NotMapped(first)),
                (Change::Update { .. }, Decoded::Leaf { attrs, .. }) => self
                    .format
                    .check(op.updated(attrs))
                    .map(|()| 0)
                    .map_err(Stop::Attrs),
                _ => Ok(0),
            };
        };
        let split = |hpa: HostPhysAddr, attrs| Source::Split {
            hpa: hpa.get(),
            attrs,
        };
        match op.change {
            Change::Map { replace, .. } => {
                let leaf_ok = full && self.leaf_ok(op, level, base);
                match entry {
                    Decoded::Leaf { .. } if !replace => Err(Stop::Overlap(first)),
                    // Without replace, any mapping below is an overlap.
                    Decoded::Table(t) if !replace || !leaf_ok => {
                        self.plan_table(op, below, Source::Live(t), base)
                    }
                    _ if leaf_ok => Ok(0),
                    Decoded::Leaf { hpa, attrs, .. } if !full => {
                        Ok(1 + self.plan_table(op, below, split(hpa, attrs), base)?)
                    }
                    _ => Ok(1 + self.plan_table(op, below, Source::Fresh, base)?),
                }
            }
            Change::Unmap => match entry {
                _ if full => Ok(0),
                Decoded::Empty => Ok(0),
                Decoded::Table(t) => self.plan_table(op, below, Source::Live(t), base),
                Decoded::Leaf { hpa, attrs, .. } => {
                    Ok(1 + self.plan_table(op, below, split(hpa, attrs), base)?)
                }
            },
            Change::Update { .. } => match entry {
                Decoded::Empty => Err(Stop::NotMapped(first)),
                Decoded::Table(t) => self.plan_table(op, below, Source::Live(t), base),
                Decoded::Leaf { hpa, attrs, .. } => {
                    let new = op.updated(attrs);
                    self.format.check(new).map_err(Stop::Attrs)?;
                    if full || new == attrs {
                        Ok(0)
                    } else {
                        Ok(1 + self.plan_table(op, below, split(hpa, attrs), base)?)
                    }
                }
            },
            Change::Promote => Ok(0),
        }
    }
}
