//! The driver: one operation sequence on a pool in plain memory and on the
//! model, every result and the whole state compared after every step, the
//! pool's invariants checked after every step, and every freed frame read
//! back as zeros (the scrub).

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use nvirt_persist_meta::{MemPmem, Pmem};

use super::Model;
use crate::config::Config;
use crate::pool::{Dom, DomainState, NvPool, Owner};
use crate::types::{DomainUuid, Extent};
use nvirt_addr::{Gfn, Mfn};

/// One step of a sequence. Domains are named by an index into the ids
/// the sequence has created (wrapping; from 200 up, a domain that never
/// existed).
#[derive(Clone, Debug)]
pub enum Op {
    /// Create a domain with a fresh id (or, if `reuse`, the id of domain
    /// `reuse - 1`), a name of `name_len` bytes and a quota.
    Create {
        /// Reuse an id (0: a fresh one).
        reuse: u8,
        /// Name length.
        name_len: u8,
        /// Quota in frames.
        quota: u16,
    },
    /// Populate `frames` frames at `gpfn`.
    Populate {
        /// Domain index.
        dom: u8,
        /// First guest frame.
        gpfn: u32,
        /// Frames.
        frames: u16,
    },
    /// Increase by one extent of `order` at each of `gpfns`.
    Increase {
        /// Domain index.
        dom: u8,
        /// Guest frames.
        gpfns: Vec<u32>,
        /// Extent order.
        order: u8,
    },
    /// Decrease the blocks of `order` at each of `gpfns`.
    Decrease {
        /// Domain index.
        dom: u8,
        /// Guest frames (taken modulo a small range, so they hit).
        gpfns: Vec<u32>,
        /// Block order.
        order: u8,
    },
    /// Destroy a domain.
    Destroy {
        /// Domain index.
        dom: u8,
    },
    /// Mark running (`true`) or shut down.
    Mark {
        /// Domain index.
        dom: u8,
        /// Running?
        running: bool,
    },
    /// Set the quota.
    SetQuota {
        /// Domain index.
        dom: u8,
        /// Quota in frames.
        quota: u16,
    },
    /// Write a pattern into the `nth` owned frame of a domain.
    Write {
        /// Domain index.
        dom: u8,
        /// Which owned frame.
        nth: u16,
    },
    /// Take a checkpoint.
    Checkpoint,
    /// Stop (as a crash would: the work area is forgotten) and recover.
    Recover,
}

/// What a run did, for tests that want to know their sequences did work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations refused (as the model predicted).
    pub refused: u64,
    /// Recoveries.
    pub recoveries: u64,
    /// Checkpoints (explicit and automatic).
    pub checkpoints: u64,
}

/// Guest frames `Decrease` and `Write` aim at: where `Populate` and
/// `Increase` put frames.
const GPFN_SPACE: u32 = 1 << 12;

fn gpfn(g: u64) -> Gfn {
    Gfn::new(g).unwrap_or_default()
}

struct Driver {
    model: Model,
    ids: Vec<u128>,
    next_id: u128,
    tally: Tally,
}

impl Driver {
    /// The id domain index `dom` names: indices from 200 up (and any
    /// index before the first create) name a domain that never existed.
    fn id(&self, dom: u8) -> u128 {
        if self.ids.is_empty() || dom >= 200 {
            return u128::MAX;
        }
        self.ids[usize::from(dom) % self.ids.len()]
    }

    fn handle<P: Pmem>(&self, pool: &NvPool<'_, P>, id: u128) -> Dom {
        // A handle for an unknown id: a slot and generation nobody has.
        pool.find(DomainUuid::new(id)).unwrap_or_else(|| {
            pool.find(DomainUuid::new(self.ids.first().copied().unwrap_or(0)))
                .map_or(BOGUS, stale)
        })
    }

    fn outcome<T, E: PartialEq + core::fmt::Debug>(
        &mut self,
        what: &str,
        pool: Result<T, E>,
        model: Result<(), E>,
    ) -> Result<Option<T>, String> {
        match (pool, model) {
            (Ok(v), Ok(())) => {
                self.tally.ok += 1;
                Ok(Some(v))
            }
            (Err(p), Err(m)) if p == m => {
                self.tally.refused += 1;
                Ok(None)
            }
            (Err(p), m) => Err(format!("{what}: pool refused with {p:?}, model says {m:?}")),
            (Ok(_), Err(m)) => Err(format!("{what}: pool accepted, model says {m:?}")),
        }
    }

    fn step<P: Pmem>(&mut self, pool: &mut NvPool<'_, P>, op: &Op) -> Result<(), String> {
        match op {
            &Op::Create {
                reuse,
                name_len,
                quota,
            } => {
                let id = if reuse == 0 {
                    self.next_id += 1;
                    self.next_id
                } else {
                    self.id(reuse - 1)
                };
                let name: String = (0..name_len % 40)
                    .map(|i| char::from(b'a' + i % 26))
                    .collect();
                let q = u64::from(quota);
                let model = self.model.create(id, &name, q);
                let got = pool.create(DomainUuid::new(id), &name, q);
                if self.outcome("create", got, model)?.is_some() && !self.ids.contains(&id) {
                    self.ids.push(id);
                }
            }
            &Op::Populate {
                dom,
                gpfn: g,
                frames,
            } => {
                let id = self.id(dom);
                let (g, n) = (u64::from(g % GPFN_SPACE), u64::from(frames % 600));
                let may_fill = self.model.check_populate(id, g, n);
                let got = pool.populate(self.handle(pool, id), gpfn(g), n);
                match (got, may_fill) {
                    (Ok(_), Ok(_)) => {
                        let d = self.handle(pool, id);
                        let made: Vec<Extent> = pool
                            .extents_from(d, gpfn(g))
                            .take_while(|e| e.gfn().get() < g + n)
                            .collect();
                        self.model.adopt_populate(id, g, n, &made)?;
                        self.tally.ok += 1;
                    }
                    (Err(crate::PopulateError::ExtentsFull { .. }), Ok(true)) => {
                        self.tally.refused += 1;
                    }
                    (got, may_fill) => {
                        self.outcome("populate", got.map(|_| ()), may_fill.map(|_| ()))?;
                    }
                }
            }
            Op::Increase { dom, gpfns, order } => {
                let id = self.id(*dom);
                let order = *order % 12;
                let gs: Vec<u64> = gpfns
                    .iter()
                    .map(|&g| u64::from(g % GPFN_SPACE) >> order << order)
                    .collect();
                let model = self.model.check_increase(id, &gs, order);
                let list: Vec<Gfn> = gs.iter().map(|&g| gpfn(g)).collect();
                let got = pool.increase_reservation(self.handle(pool, id), &list, order);
                if self.outcome("increase", got, model)?.is_some() {
                    let d = self.handle(pool, id);
                    let made: Vec<Extent> = gs
                        .iter()
                        .filter_map(|&g| pool.extent_at(d, gpfn(g)))
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    self.model.adopt_increase(id, &gs, order, &made)?;
                }
            }
            Op::Decrease { dom, gpfns, order } => {
                let id = self.id(*dom);
                let order = *order % 12;
                let gs: Vec<u64> = gpfns
                    .iter()
                    .map(|&g| u64::from(g % GPFN_SPACE) >> order << order)
                    .collect();
                let list: Vec<Gfn> = gs.iter().map(|&g| gpfn(g)).collect();
                let model = self.model.decrease(id, &gs, order);
                let got = pool.decrease_reservation(self.handle(pool, id), &list, order);
                let freed = model.clone().unwrap_or_default();
                let got = got.map(|n| (n == freed.len() as u64).then_some(()).ok_or(n));
                let model = model.map(|_| ());
                match got {
                    Ok(Err(n)) => {
                        return Err(format!("decrease freed {n} frames, model {}", freed.len()));
                    }
                    Ok(Ok(())) => self.outcome("decrease", Ok(()), model)?,
                    Err(e) => self.outcome::<(), _>("decrease", Err(e), model)?,
                };
                check_zero(pool, &freed)?;
            }
            &Op::Destroy { dom } => {
                let id = self.id(dom);
                let model = self.model.destroy(id);
                let freed = model.clone().unwrap_or_default();
                let got = pool.destroy(self.handle(pool, id));
                if self.outcome("destroy", got, model.map(|_| ()))?.is_some() {
                    self.ids.retain(|&i| i != id);
                }
                check_zero(pool, &freed)?;
            }
            &Op::Mark { dom, running } => {
                let id = self.id(dom);
                let d = self.handle(pool, id);
                let got = if running {
                    pool.mark_running(d)
                } else {
                    pool.mark_shut_down(d)
                };
                let model = self.model.mark(id, running);
                self.outcome("mark", got, model)?;
            }
            &Op::SetQuota { dom, quota } => {
                let id = self.id(dom);
                let got = pool.set_quota(self.handle(pool, id), quota.into());
                let model = self.model.set_quota(id, quota.into());
                self.outcome("set quota", got, model)?;
            }
            &Op::Write { dom, nth } => {
                let id = self.id(dom);
                let Some(d) = self.model.domains.get(&id) else {
                    return Ok(());
                };
                let frames: Vec<u64> = d
                    .extents
                    .iter()
                    .flat_map(|(&g, &(_, o))| g..g + (1u64 << o))
                    .collect();
                if let Some(&g) = frames.get(usize::from(nth) % frames.len().max(1)) {
                    let data = vec![0xa5u8; 4096];
                    pool.write_guest(self.handle(pool, id), gpfn(g), 0, &data)
                        .map_err(|e| format!("write: {e}"))?;
                    pool.persist();
                    let mut back = vec![0u8; 4096];
                    pool.read_guest(self.handle(pool, id), gpfn(g), 0, &mut back)
                        .map_err(|e| format!("read: {e}"))?;
                    if back != data {
                        return Err("read back differs".into());
                    }
                }
            }
            Op::Checkpoint => {
                pool.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
            }
            Op::Recover => {}
        }
        compare(pool, &self.model)
    }
}

/// A handle that names nothing: slot 0 of a generation never reached.
const BOGUS: Dom = Dom::raw(0, u32::MAX);

fn stale(d: Dom) -> Dom {
    Dom::raw(d.slot(), d.generation().wrapping_add(0x8000_0000))
}

/// Every frame in `freed` reads as zeros: the scrub happened.
fn check_zero<P: Pmem>(pool: &NvPool<'_, P>, freed: &[u64]) -> Result<(), String> {
    let mut frame = vec![0u8; 4096];
    for &mfn in freed {
        let offset = Mfn::new(mfn)
            .and_then(|m| pool.region_offset(m))
            .ok_or("freed frame outside the region")?;
        pool.region()
            .read(offset, &mut frame)
            .map_err(|e| format!("{e}"))?;
        if frame.iter().any(|&b| b != 0) {
            return Err(format!("freed mfn {mfn:#x} was not scrubbed"));
        }
    }
    Ok(())
}

/// The pool's whole state against the model's.
fn compare<P: Pmem>(pool: &NvPool<'_, P>, model: &Model) -> Result<(), String> {
    pool.check().map_err(|e| format!("invariant: {e}"))?;
    let domains: Vec<_> = pool.domains().collect();
    if domains.len() != model.domains.len() {
        return Err(format!(
            "{} domains, model {}",
            domains.len(),
            model.domains.len()
        ));
    }
    for d in &domains {
        let m = model
            .domains
            .get(&d.id.get())
            .ok_or_else(|| format!("domain {} not in the model", d.id))?;
        let state = match (m.running, m.session) {
            (false, _) => DomainState::ShutDown,
            (true, true) => DomainState::Running,
            (true, false) => DomainState::CrashedWhileRunning,
        };
        if d.name != m.name || d.quota != m.quota || d.frames != m.frames() || d.state != state {
            return Err(format!("domain {} is {d:?}, model {m:?}", d.id));
        }
        let extents: Vec<(u64, (u64, u8))> = pool
            .extents(d.dom)
            .map(|e| (e.gfn().get(), (e.mfn().get(), e.order().get())))
            .collect();
        let expected: Vec<(u64, (u64, u8))> = m.extents.iter().map(|(&g, &v)| (g, v)).collect();
        if extents != expected {
            return Err(format!(
                "domain {}: extents {extents:x?}, model {expected:x?}",
                d.id
            ));
        }
        for &(g, (mfn, _)) in extents.iter().take(4) {
            if pool.lookup(d.dom, gpfn(g)) != Mfn::new(mfn) {
                return Err(format!("lookup of gpfn {g:#x} wrong"));
            }
            match pool.owner_of(Mfn::new(mfn).unwrap_or_default()) {
                Owner::Domain { id, gpfn: og, .. } if id == d.id && og.get() == g => {}
                other => return Err(format!("owner of mfn {mfn:#x}: {other:?}")),
            }
        }
    }
    let stats = pool.stats();
    if stats.free_frames != model.free.len() as u64 {
        return Err(format!(
            "{} free frames, model {}",
            stats.free_frames,
            model.free.len()
        ));
    }
    for &mfn in model.free.iter().step_by(7) {
        let owner = pool.owner_of(Mfn::new(mfn).unwrap_or_default());
        if owner != Owner::Free {
            return Err(format!("free mfn {mfn:#x} is {owner:?}"));
        }
    }
    Ok(())
}

/// Runs `ops` on a pool formatted with `config` in a region of
/// `region_bytes` (plain memory) and on the model; the first difference,
/// broken invariant or unscrubbed freed frame is an error.
pub fn run(region_bytes: u64, config: Config, ops: &[Op]) -> Result<Tally, String> {
    let geo = config
        .geometry(region_bytes)
        .map_err(|e| format!("config: {e}"))?;
    let mut work = vec![0u8; geo.work_area_bytes()];
    let mut driver = Driver {
        model: Model::new(&geo),
        ids: Vec::new(),
        next_id: 0x1000,
        tally: Tally::default(),
    };
    let mut region = Some(MemPmem::new(region_bytes as usize));
    let mut rest = ops;
    let mut first = true;
    while let Some(pmem) = region.take() {
        let mut pool = if first {
            first = false;
            NvPool::format(pmem, config, &mut work).map_err(|e| format!("format: {e}"))?
        } else {
            driver.tally.recoveries += 1;
            driver.model.recovered();
            let (pool, report) =
                NvPool::recover(pmem, &mut work).map_err(|e| format!("recover: {e}"))?;
            if report.scrubbed_frames != 0 {
                return Err("a clean stop left frees to finish".into());
            }
            pool
        };
        compare(&pool, &driver.model)?;
        let generation = pool.stats().checkpoint_generation;
        let split = rest
            .iter()
            .position(|op| matches!(op, Op::Recover))
            .unwrap_or(rest.len());
        for (n, op) in rest[..split].iter().enumerate() {
            driver
                .step(&mut pool, op)
                .map_err(|e| format!("step {n} ({op:?}): {e}"))?;
        }
        driver.tally.checkpoints += pool.stats().checkpoint_generation - generation;
        if split < rest.len() {
            rest = &rest[split + 1..];
            region = Some(pool.into_region());
        }
    }
    Ok(driver.tally)
}
