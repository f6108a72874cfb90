//! The crash tests' pool views and operations, on persist-meta's public
//! crash-test harness (`sim::Scenario`).
//!
//! A scenario starts from a durable image (format and some setup in plain
//! memory), recovers it on persist-meta's crash simulator (operation 0:
//! recovery writes too), then runs its operations, noting in a
//! [`Trace`] where each started and returned and the pool's state after
//! it. Every crash image at every crash point must then recover to the
//! state after a prefix of the operations that includes every operation
//! that had returned — and, after recovery, every free data frame must
//! read as zeros (no frame reaches another domain unscrubbed) and every
//! invariant must hold.

#![allow(dead_code, reason = "each test file uses part of the harness")]
#![allow(unreachable_pub, reason = "shared by several test crates")]

use nvirt_nvpool::{Config, DomainState, DomainUuid, Gfn, Mfn, NvPool, Owner, RecoveryReport};
use nvirt_persist_meta::MemPmem;
use nvirt_persist_meta::Pmem;
use nvirt_persist_meta::sim::{
    Crash, CrashConfig, CrashStats, Scenario, SimPmem, Subject, Trace, check_recovery_crashes,
    report_line,
};

/// A domain as the tests compare it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainView {
    pub id: u128,
    pub name: String,
    pub quota: u64,
    /// Marked running (persistently).
    pub running: bool,
    pub incomplete: bool,
    /// (gpfn, mfn, order) by gpfn.
    pub extents: Vec<(u64, u64, u8)>,
}

/// A pool as the tests compare it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// `None`: not a pool.
    pub domains: Option<Vec<DomainView>>,
    pub free_frames: u64,
}

/// Data frames of the test pools.
pub const DATA_FRAMES: u64 = 64;

/// The test pools' layout: 4 domains, 64 extents, the smallest record
/// area (so that automatic checkpoints happen), an odd frame base.
pub fn config() -> Config {
    Config::for_region(0)
        .with_max_domains(4)
        .with_max_extents(64)
        .with_record_area(0x2000)
        .with_frame_base(Mfn::new(0x1_0003).unwrap())
}

/// Bytes of the test region.
pub fn region_len(config: Config) -> u64 {
    config.geometry(1 << 30).unwrap().metadata_bytes() + DATA_FRAMES * 4096
}

pub fn view<P: Pmem>(pool: &NvPool<'_, P>) -> View {
    let mut domains: Vec<DomainView> = pool
        .domains()
        .map(|d| DomainView {
            id: d.id.get(),
            name: d.name.into(),
            quota: d.quota,
            running: matches!(
                d.state,
                DomainState::Running | DomainState::CrashedWhileRunning
            ),
            incomplete: d.state == DomainState::Incomplete,
            extents: pool
                .extents(d.dom)
                .map(|e| (e.gfn().get(), e.mfn().get(), e.order().get()))
                .collect(),
        })
        .collect();
    domains.sort_by_key(|d| d.id);
    View {
        domains: Some(domains),
        free_frames: pool.stats().free_frames,
    }
}

/// The state of "no pool".
pub fn no_pool() -> View {
    View {
        domains: None,
        free_frames: 0,
    }
}

/// The data `Op::Write` puts at the start of a frame of domain `id`.
pub fn pattern(id: u128) -> [u8; 16] {
    [(id as u8) | 0x80; 16]
}

/// Checks, on a recovered pool, every invariant, that every free data
/// frame reads as zeros, and that every owned frame holds zeros or its own
/// domain's data (never another domain's: frees are scrubbed before
/// reuse).
pub fn check_recovered<P: Pmem>(pool: &NvPool<'_, P>) -> Result<(), String> {
    pool.check()
        .map_err(|e| format!("invariant after recovery: {e}"))?;
    let span = pool.geometry().data_span();
    let mut frame = vec![0u8; 4096];
    for mfn in span.start().get()..span.end().get() {
        let mfn = Mfn::new(mfn).unwrap();
        let allowed = match pool.owner_of(mfn) {
            Owner::Free => None,
            Owner::Domain { id, .. } => Some(pattern(id.get())),
            other => return Err(format!("{mfn} is {other:?} after recovery")),
        };
        let offset = pool.region_offset(mfn).unwrap();
        pool.region().read(offset, &mut frame).unwrap();
        // A write may be torn at 8-byte words: each word is zeros or the
        // owner's.
        let head_ok = frame[..16]
            .chunks(8)
            .all(|w| w.iter().all(|&b| b == 0) || allowed.is_some_and(|p| w == &p[..8]));
        if !head_ok || frame[16..].iter().any(|&b| b != 0) {
            return Err(format!(
                "{mfn} ({:?}) holds data that is not its owner's (it starts {:x?}): not scrubbed",
                pool.owner_of(mfn),
                &frame[..16]
            ));
        }
    }
    Ok(())
}

/// Recovers `image` in plain memory: its view (no pool: `no_pool()`),
/// after the checks of [`check_recovered`].
pub fn recover_image(image: &[u8]) -> Result<(View, Option<RecoveryReport>), String> {
    let pmem = MemPmem::from_bytes(image.to_vec());
    let geo = match NvPool::probe(&pmem) {
        Ok(g) => g,
        Err(nvirt_nvpool::RecoverError::NotAPool) => return Ok((no_pool(), None)),
        Err(e) => return Err(format!("probe: {e}")),
    };
    let mut work = vec![0u8; geo.work_area_bytes()];
    let (pool, report) = NvPool::recover(pmem, &mut work).map_err(|e| format!("recover: {e}"))?;
    check_recovered(&pool)?;
    Ok((view(&pool), Some(report)))
}

/// One operation of a scenario.
#[derive(Clone, Debug)]
pub enum Op {
    Create(u128, &'static str, u64),
    Populate(u128, u64, u64),
    Increase(u128, Vec<u64>, u8),
    Decrease(u128, Vec<u64>, u8),
    Destroy(u128),
    Running(u128),
    ShutDown(u128),
    Quota(u128, u64),
    /// Write 16 bytes of data at the start of a guest frame, and persist.
    Write(u128, u64),
    Checkpoint,
}

fn dom<P: Pmem>(pool: &NvPool<'_, P>, id: u128) -> nvirt_nvpool::Dom {
    pool.find(DomainUuid::new(id))
        .expect("scenario names a live domain")
}

fn gpfns(list: &[u64]) -> Vec<Gfn> {
    list.iter().map(|&g| Gfn::new(g).unwrap()).collect()
}

/// Applies a (valid) operation.
pub fn apply<P: Pmem>(pool: &mut NvPool<'_, P>, op: &Op) {
    match op {
        &Op::Create(id, name, quota) => {
            pool.create(DomainUuid::new(id), name, quota).unwrap();
        }
        &Op::Populate(id, gpfn, frames) => {
            let d = dom(pool, id);
            pool.populate(d, Gfn::new(gpfn).unwrap(), frames).unwrap();
        }
        Op::Increase(id, list, order) => {
            let d = dom(pool, *id);
            pool.increase_reservation(d, &gpfns(list), *order).unwrap();
        }
        Op::Decrease(id, list, order) => {
            let d = dom(pool, *id);
            pool.decrease_reservation(d, &gpfns(list), *order).unwrap();
        }
        &Op::Destroy(id) => pool.destroy(dom(pool, id)).unwrap(),
        &Op::Running(id) => pool.mark_running(dom(pool, id)).unwrap(),
        &Op::ShutDown(id) => pool.mark_shut_down(dom(pool, id)).unwrap(),
        &Op::Quota(id, q) => pool.set_quota(dom(pool, id), q).unwrap(),
        &Op::Write(id, gpfn) => {
            let d = dom(pool, id);
            pool.write_guest(d, Gfn::new(gpfn).unwrap(), 0, &pattern(id))
                .unwrap();
            pool.persist();
        }
        Op::Checkpoint => pool.checkpoint().unwrap(),
    }
}

/// A durable image: format, then `setup`, in plain memory.
pub fn base_image(setup: &[Op]) -> Vec<u8> {
    let config = config();
    let size = region_len(config);
    let mut work = vec![0u8; config.geometry(size).unwrap().work_area_bytes()];
    let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).unwrap();
    for op in setup {
        apply(&mut pool, op);
    }
    pool.into_region().into_bytes()
}

/// A recorded run: the simulator after the operations and the trace.
pub struct Run {
    pub sim: SimPmem,
    pub trace: Trace<View>,
}

/// A pool on the simulator, as the harness sees it.
struct Subjected<'w>(NvPool<'w, SimPmem>);

impl Subject for Subjected<'_> {
    type State = View;
    fn sim(&self) -> &SimPmem {
        self.0.region()
    }
    fn state(&self) -> View {
        view(&self.0)
    }
}

/// Recovers `image` on a simulator (operation 0) and applies `ops`.
pub fn record(image: Vec<u8>, ops: &[Op]) -> Run {
    let sim = SimPmem::from_image(image);
    let (before, _) = recover_image(sim.image()).expect("the starting image recovers");
    let geo = NvPool::probe(&sim).unwrap();
    let mut work = vec![0u8; geo.work_area_bytes()];
    let work = &mut work[..];
    let mut scenario = Scenario::open(sim, before, move |sim| {
        NvPool::recover(sim, work).map(|(pool, _)| Subjected(pool))
    })
    .unwrap();
    for op in ops {
        scenario.run(|pool| apply(&mut pool.0, op));
    }
    let run = scenario.finish();
    Run {
        sim: run.subject.0.into_region(),
        trace: run.trace,
    }
}

/// `config` as this build runs it: unoptimized builds (`cargo test`)
/// visit every crash point but fewer images per point, unless
/// `NVPOOL_CRASH=full`; optimized builds (`cargo test --release`) all of
/// them. The printed counts are what was visited.
pub fn scaled(config: CrashConfig) -> CrashConfig {
    let full = !cfg!(debug_assertions) || std::env::var("NVPOOL_CRASH").is_ok_and(|v| v == "full");
    if full {
        return config;
    }
    CrashConfig {
        exhaustive_limit: (config.exhaustive_limit / 16).max(8),
        samples: (config.samples / 4).max(1),
        seed: config.seed,
    }
}

/// The crash configuration of metadata-only scenarios.
pub fn meta_config() -> CrashConfig {
    scaled(CrashConfig::default())
}

/// The crash configuration where scrubs store thousands of words: fewer
/// samples per point.
pub fn scrub_config() -> CrashConfig {
    scaled(CrashConfig {
        exhaustive_limit: 64,
        samples: 6,
        seed: 0x5c_2b_0b,
    })
}

impl Run {
    /// Checks every crash image of the run; `also` sees each image with
    /// the prefix it recovered to.
    pub fn check_crashes(
        &self,
        config: &CrashConfig,
        mut also: impl FnMut(&Crash<'_>, usize, &View),
    ) -> CrashStats {
        self.trace
            .check_crashes(
                &self.sim,
                config,
                |crash| recover_image(crash.image).map(|(v, _)| v),
                |crash, j, view| {
                    also(crash, j, view);
                    Ok(())
                },
            )
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Recovers `image` on a simulator and checks every crash image of that
/// recovery's own writes: each recovers to `expected` (the state the first
/// recovery found). Returns the counts.
pub fn check_second_crash(image: &[u8], expected: &View, config: &CrashConfig) -> CrashStats {
    let sim = SimPmem::from_image(image.to_vec());
    let geo = NvPool::probe(&sim).unwrap();
    let mut work = vec![0u8; geo.work_area_bytes()];
    let (pool, _) = NvPool::recover(sim, &mut work).unwrap();
    assert_eq!(&view(&pool), expected, "recovery on the simulator");
    let sim = pool.into_region();
    check_recovery_crashes(&sim, expected, config, |image| {
        recover_image(image).map(|(v, _)| v)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Prints a test's counts in one greppable line.
pub fn report(test: &str, stats: &CrashStats) {
    println!("{}", report_line(&format!("nvpool {test}"), stats));
}
