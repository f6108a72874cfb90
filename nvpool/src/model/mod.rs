//! The reference model: domains as maps from guest frame to (machine
//! frame, order), free frames as a set, every operation written the obvious
//! way; and a driver ([`run`]) that runs an operation sequence on an
//! [`NvPool`](crate::NvPool) and the model side by side, comparing every
//! result and the whole state after every step. The property tests and the
//! fuzz target use it.
//!
//! The model predicts every result exactly, except which free blocks an
//! allocation takes: for those it checks the pool's choice against the
//! documented policy (populate takes, block by block in guest order, the
//! largest free aligned block the guest address and the remaining count
//! allow) and then adopts it.

use std::collections::{BTreeMap, BTreeSet};
use std::string::String;
use std::vec::Vec;

use crate::error::{CreateError, DecreaseError, DomainError, PopulateError};
use crate::types::{DomainUuid, Extent};
use crate::{Geometry, MAX_DECREASE_BATCH, MAX_NAME, Order};
use nvirt_addr::{Gfn, Mfn};

mod run;

pub use run::{Op, Tally, run};

/// A domain of the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelDomain {
    /// Its name.
    pub name: String,
    /// Its quota in frames.
    pub quota: u64,
    /// Marked running (persistent).
    pub running: bool,
    /// Marked running since the last format or recovery.
    pub session: bool,
    /// Extents by first guest frame: (first machine frame, order).
    pub extents: BTreeMap<u64, (u64, u8)>,
}

impl ModelDomain {
    /// Frames owned.
    #[must_use]
    pub fn frames(&self) -> u64 {
        self.extents.values().map(|&(_, o)| 1u64 << o).sum()
    }

    /// The extent holding guest frame `gpfn`: (first gpfn, mfn, order).
    #[must_use]
    pub fn extent_at(&self, gpfn: u64) -> Option<(u64, u64, u8)> {
        let (&g, &(m, o)) = self.extents.range(..=gpfn).next_back()?;
        (gpfn - g < 1u64 << o).then_some((g, m, o))
    }

    /// The extent overlapping `gpfn .. gpfn + frames` that starts last
    /// (the one the pool names).
    #[must_use]
    pub fn overlap(&self, gpfn: u64, frames: u64) -> Option<Extent> {
        let (&g, &(m, o)) = self.extents.range(..gpfn + frames).next_back()?;
        (g + (1u64 << o) > gpfn).then(|| extent(g, m, o))
    }
}

fn extent(gpfn: u64, mfn: u64, order: u8) -> Extent {
    Extent::trusted(gpfn, mfn, order)
}

/// The reference model of a pool.
#[derive(Clone, Debug)]
pub struct Model {
    /// Data frames: machine frame numbers `start .. end`.
    pub span: (u64, u64),
    /// Domain limit.
    pub max_domains: usize,
    /// Extent limit.
    pub max_extents: usize,
    /// Domains by id.
    pub domains: BTreeMap<u128, ModelDomain>,
    /// Free machine frames.
    pub free: BTreeSet<u64>,
}

impl Model {
    /// The model of an empty pool of geometry `geo`.
    #[must_use]
    pub fn new(geo: &Geometry) -> Self {
        let span = geo.data_span();
        let (start, end) = (span.start().get(), span.end().get());
        Self {
            span: (start, end),
            max_domains: geo.max_domains() as usize,
            max_extents: geo.max_extents() as usize,
            domains: BTreeMap::new(),
            free: (start..end).collect(),
        }
    }

    /// Extents of all domains.
    #[must_use]
    pub fn extents(&self) -> usize {
        self.domains.values().map(|d| d.extents.len()).sum()
    }

    /// Whether the aligned block of `order` at `mfn` is free and inside
    /// the data frames.
    #[must_use]
    pub fn block_free(&self, mfn: u64, order: u8) -> bool {
        let n = 1u64 << order;
        mfn % n == 0
            && mfn >= self.span.0
            && mfn + n <= self.span.1
            && self.free.range(mfn..mfn + n).count() as u64 == n
    }

    /// Free aligned blocks of exactly `order` (disjoint by alignment).
    #[must_use]
    pub fn free_blocks(&self, order: u8) -> u64 {
        let n = 1u64 << order;
        let first = self.span.0.div_ceil(n) * n;
        (first..self.span.1)
            .step_by(n as usize)
            .filter(|&m| self.block_free(m, order))
            .count() as u64
    }

    /// The largest order at most `want` of which a free block exists.
    #[must_use]
    pub fn largest_free(&self, want: u8) -> Option<u8> {
        (0..=want).rev().find(|&o| self.free_blocks(o) > 0)
    }

    /// `create`'s result.
    pub fn create(&mut self, id: u128, name: &str, quota: u64) -> Result<(), CreateError> {
        if name.len() > MAX_NAME {
            return Err(CreateError::NameTooLong { len: name.len() });
        }
        if self.domains.contains_key(&id) {
            return Err(CreateError::DuplicateId {
                id: DomainUuid::new(id),
            });
        }
        if self.domains.len() >= self.max_domains {
            return Err(CreateError::DomainsFull {
                max: self.max_domains as u32,
            });
        }
        self.domains.insert(
            id,
            ModelDomain {
                name: name.into(),
                quota,
                ..ModelDomain::default()
            },
        );
        Ok(())
    }

    fn quota_check(&self, id: u128, frames: u64) -> Result<(), PopulateError> {
        let d = &self.domains[&id];
        let owned = d.frames();
        if owned + frames > d.quota {
            return Err(PopulateError::Quota {
                frames,
                owned,
                quota: d.quota,
            });
        }
        let free = self.free.len() as u64;
        if frames > free {
            return Err(PopulateError::OutOfMemory { frames, free });
        }
        Ok(())
    }

    /// `populate`'s result before allocation: `Ok(true)` if the pool may
    /// also run out of extents (which depends on its choice of blocks).
    pub fn check_populate(&self, id: u128, gpfn: u64, frames: u64) -> Result<bool, PopulateError> {
        let d = self.domains.get(&id).ok_or(PopulateError::UnknownDomain)?;
        let g = Gfn::new(gpfn).unwrap_or_default();
        if gpfn + frames > Gfn::LIMIT {
            return Err(PopulateError::GpfnRange { gpfn: g, frames });
        }
        self.quota_check(id, frames)?;
        if frames == 0 {
            return Ok(false);
        }
        if let Some(existing) = d.overlap(gpfn, frames) {
            return Err(PopulateError::Overlap { gpfn: g, existing });
        }
        Ok(self.extents() as u64 + frames > self.max_extents as u64)
    }

    /// Checks the extents a populate made against the allocation policy,
    /// then adopts them.
    pub fn adopt_populate(
        &mut self,
        id: u128,
        gpfn: u64,
        frames: u64,
        made: &[Extent],
    ) -> Result<(), String> {
        let (mut at, mut left) = (gpfn, frames);
        for e in made {
            if e.gfn().get() != at {
                return Err(std::format!(
                    "populate: extent {e} where gpfn {at:#x} was next"
                ));
            }
            let align = Gfn::new(at).map_or(0, |g| g.alignment().get());
            let want = align.min(63 - left.leading_zeros() as u8);
            let best = self.largest_free(want);
            if best != Some(e.order().get()) {
                return Err(std::format!(
                    "populate: extent {e}, but the largest free block up to order {want} is {best:?}"
                ));
            }
            if !self.block_free(e.mfn().get(), e.order().get()) {
                return Err(std::format!(
                    "populate: extent {e} takes frames that are not free"
                ));
            }
            self.take(id, e);
            at += e.frames();
            left -= e.frames();
        }
        if left != 0 {
            return Err(std::format!("populate: {left} frames missing"));
        }
        Ok(())
    }

    fn take(&mut self, id: u128, e: &Extent) {
        let m = e.mfn().get();
        for f in m..m + e.frames() {
            self.free.remove(&f);
        }
        if let Some(d) = self.domains.get_mut(&id) {
            d.extents.insert(e.gfn().get(), (m, e.order().get()));
        }
    }

    /// `increase_reservation`'s result before allocation.
    pub fn check_increase(&self, id: u128, gpfns: &[u64], order: u8) -> Result<(), PopulateError> {
        let d = self.domains.get(&id).ok_or(PopulateError::UnknownDomain)?;
        let o = Order::new(order).ok_or(PopulateError::OrderTooLarge { order })?;
        let frames = gpfns.len() as u64 * o.frames();
        self.quota_check(id, frames)?;
        for &g in gpfns {
            let gpfn = Gfn::new(g).unwrap_or_default();
            if g % o.frames() != 0 {
                return Err(PopulateError::Misaligned { gpfn, order: o });
            }
            if g + o.frames() > Gfn::LIMIT {
                return Err(PopulateError::GpfnRange {
                    gpfn,
                    frames: o.frames(),
                });
            }
            if let Some(existing) = d.overlap(g, o.frames()) {
                return Err(PopulateError::Overlap { gpfn, existing });
            }
        }
        let blocks = self.free_blocks(order);
        for (n, &g) in gpfns.iter().enumerate() {
            if n as u64 >= blocks {
                return Err(PopulateError::OutOfMemory {
                    frames,
                    free: self.free.len() as u64,
                });
            }
            if self.extents() + n >= self.max_extents {
                return Err(PopulateError::ExtentsFull {
                    max: self.max_extents as u32,
                });
            }
            if gpfns[..n].contains(&g) {
                return Err(PopulateError::Duplicate {
                    gpfn: Gfn::new(g).unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// Checks the extents an increase made, then adopts them.
    pub fn adopt_increase(
        &mut self,
        id: u128,
        gpfns: &[u64],
        order: u8,
        made: &[Extent],
    ) -> Result<(), String> {
        let mut wanted: Vec<u64> = gpfns.to_vec();
        wanted.sort_unstable();
        let got: Vec<u64> = made.iter().map(|e| e.gfn().get()).collect();
        if got != wanted || made.iter().any(|e| e.order().get() != order) {
            return Err(std::format!(
                "increase: made {made:?} for {gpfns:?} order {order}"
            ));
        }
        for e in made {
            if !self.block_free(e.mfn().get(), order) {
                return Err(std::format!(
                    "increase: extent {e} takes frames that are not free"
                ));
            }
            self.take(id, e);
        }
        Ok(())
    }

    /// `decrease_reservation`'s result, applied: the machine frames freed.
    pub fn decrease(
        &mut self,
        id: u128,
        gpfns: &[u64],
        order: u8,
    ) -> Result<Vec<u64>, DecreaseError> {
        let d = self.domains.get(&id).ok_or(DecreaseError::UnknownDomain)?;
        let o = Order::new(order).ok_or(DecreaseError::OrderTooLarge { order })?;
        if gpfns.len() > MAX_DECREASE_BATCH {
            return Err(DecreaseError::BatchTooLarge {
                n: gpfns.len(),
                max: MAX_DECREASE_BATCH,
            });
        }
        let mut needed = 0;
        for (n, &g) in gpfns.iter().enumerate() {
            let gpfn = Gfn::new(g).unwrap_or_default();
            if g % o.frames() != 0 {
                return Err(DecreaseError::Misaligned { gpfn, order: o });
            }
            if gpfns[..n].contains(&g) {
                return Err(DecreaseError::Duplicate { gpfn });
            }
            let mut at = g;
            while at < g + o.frames() {
                match d.extent_at(at) {
                    Some((eg, _, eo)) => at = eg + (1u64 << eo),
                    None => break,
                }
            }
            if at < g + o.frames() {
                return Err(DecreaseError::NotPopulated {
                    gpfn: Gfn::new(at).unwrap_or_default(),
                });
            }
            if let Some((_, _, eo)) = d.extent_at(g) {
                needed += u64::from(eo.saturating_sub(order));
            }
        }
        let free = (self.max_extents - self.extents()) as u32;
        if needed > u64::from(free) {
            return Err(DecreaseError::ExtentsFull { needed, free });
        }
        let mut freed = Vec::new();
        for &g in gpfns {
            self.remove_block(id, g, order, &mut freed);
        }
        Ok(freed)
    }

    fn remove_block(&mut self, id: u128, g: u64, k: u8, freed: &mut Vec<u64>) {
        let Some(d) = self.domains.get_mut(&id) else {
            return;
        };
        let end = g + (1u64 << k);
        let Some((eg, em, eo)) = d.extent_at(g) else {
            return;
        };
        if eo > k {
            // Split: every aligned piece of the extent but the block.
            d.extents.remove(&eg);
            let off = g - eg;
            for j in k..eo {
                let piece = ((off >> j) ^ 1) << j;
                d.extents.insert(eg + piece, (em + piece, j));
            }
            freed.extend(em + off..em + off + (1u64 << k));
        } else {
            let mut at = g;
            while at < end {
                let Some((m, o)) = d.extents.remove(&at) else {
                    break;
                };
                freed.extend(m..m + (1u64 << o));
                at += 1u64 << o;
            }
        }
        self.free.extend(freed.iter().copied());
    }

    /// `destroy`'s result, applied: the machine frames freed.
    pub fn destroy(&mut self, id: u128) -> Result<Vec<u64>, DomainError> {
        let d = self.domains.remove(&id).ok_or(DomainError::UnknownDomain)?;
        let freed: Vec<u64> = d
            .extents
            .values()
            .flat_map(|&(m, o)| m..m + (1u64 << o))
            .collect();
        self.free.extend(freed.iter().copied());
        Ok(freed)
    }

    /// `set_quota`'s result, applied.
    pub fn set_quota(&mut self, id: u128, quota: u64) -> Result<(), DomainError> {
        let d = self
            .domains
            .get_mut(&id)
            .ok_or(DomainError::UnknownDomain)?;
        let frames = d.frames();
        if quota < frames {
            return Err(DomainError::QuotaBelowUsage { frames, quota });
        }
        d.quota = quota;
        Ok(())
    }

    /// `mark_running` / `mark_shut_down`'s result, applied.
    pub fn mark(&mut self, id: u128, running: bool) -> Result<(), DomainError> {
        let d = self
            .domains
            .get_mut(&id)
            .ok_or(DomainError::UnknownDomain)?;
        d.running = running;
        d.session = running;
        Ok(())
    }

    /// What recovery changes: nothing is marked running in the new session.
    pub fn recovered(&mut self) {
        for d in self.domains.values_mut() {
            d.session = false;
        }
    }

    /// The machine frame that backs guest frame `gpfn` of domain `id`.
    #[must_use]
    pub fn lookup(&self, id: u128, gpfn: u64) -> Option<Mfn> {
        let (g, m, _) = self.domains.get(&id)?.extent_at(gpfn)?;
        Mfn::new(m + (gpfn - g))
    }
}
