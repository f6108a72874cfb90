//! The integration tests' owner and operations, on persist-meta's public
//! crash-test harness (`sim::Scenario`).
//!
//! The owner in these tests is the harness's reference owner
//! (`sim::Payloads`): a list of payloads, its snapshot the list encoded as
//! `u16` length + bytes, each record appending its payload. Every payload in
//! a scenario is distinct, so a recovered state names exactly which
//! operations it contains.
//!
//! A scenario runs its operations on a [`SimPmem`] (after `Log::open`, which
//! is operation 0), and the harness checks that every crash image at every
//! crash point recovers to the state after some prefix of the operations
//! that includes every operation that had returned and no operation that
//! had not started.

#![allow(dead_code, reason = "each test file uses part of the harness")]
#![allow(unreachable_pub, reason = "shared by several test crates")]

use std::convert::Infallible;

pub use nvirt_persist_meta::sim::ReadOnly as Image;
use nvirt_persist_meta::sim::{
    Crash, CrashConfig, CrashStats, PayloadLog, Payloads, Recorded, Scenario, SimPmem, report_line,
};
use nvirt_persist_meta::{AppendError, Log, MemPmem, Pmem, Raw, RecordKind, replay};

/// The owner's state: payloads in commit order.
pub type State = Vec<Vec<u8>>;

/// The kind every test record has.
pub const KIND: RecordKind = match RecordKind::new(0x42) {
    Some(k) => k,
    None => unreachable!(),
};

/// Snapshot capacity of the test logs.
pub const CHECKPOINT_CAPACITY: u64 = 4000;

/// A region with a `record_area`-byte record area (a multiple of 64).
pub fn region_len(record_area: u64) -> usize {
    (0x2000 + 2 * 0x1000 + record_area) as usize
}

/// Encodes a state as a snapshot.
pub fn snapshot(state: &State) -> Vec<u8> {
    Payloads::snapshot(state)
}

/// The test owner's replay: decodes the snapshot, appends payloads.
pub fn owner(state: &mut State) -> impl nvirt_persist_meta::Replay<Error = String> + '_ {
    Payloads::new(state, Some(KIND))
}

/// Recovers an image read-only.
pub fn recover(image: &[u8]) -> Result<State, String> {
    let mut state = State::new();
    replay(&Image(image), &mut owner(&mut state)).map_err(|e| e.to_string())?;
    Ok(state)
}

/// Opens (recovers and readies) a log.
pub fn open<P: Pmem>(pmem: P) -> (Log<P>, State) {
    let mut state = State::new();
    let (log, _, _) = Log::open(pmem, &mut owner(&mut state)).expect("open");
    (log, state)
}

/// One operation of a scenario.
#[derive(Clone, Debug)]
pub enum Op {
    /// Append one record (checkpointing first if the log is full).
    Append(Vec<u8>),
    /// Commit several records as one group (checkpointing first if full).
    Group(Vec<Vec<u8>>),
    /// Checkpoint the current state.
    Checkpoint,
    /// Push these records (as many as fit) into a group, then drop it
    /// uncommitted.
    Abandon(Vec<Vec<u8>>),
}

/// A payload of `len` (at least 4) bytes: `id` in the first four, then a
/// filler that depends only on the length, so that payloads of equal length
/// differ only in their first word (the case where a stale record is most
/// easily completed by a newer one).
pub fn payload(id: u32, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len.max(4)).map(|i| (i * 7 + len) as u8).collect();
    p[..4].copy_from_slice(&id.to_le_bytes());
    p
}

/// Applies `op` to `log` and `state`.
pub fn apply<P: Pmem>(log: &mut Log<P>, state: &mut State, op: &Op) {
    match op {
        Op::Append(p) => {
            let rec = Raw {
                kind: KIND,
                payload: p,
            };
            match log.append(&rec) {
                Ok(_) => {}
                Err(AppendError::LogFull { .. }) => {
                    log.checkpoint_bytes(&snapshot(state)).expect("checkpoint");
                    log.append(&rec).expect("append after checkpoint");
                }
                Err(e) => panic!("append: {e}"),
            }
            state.push(p.clone());
        }
        Op::Group(ps) => {
            let recs: Vec<Raw<'_>> = ps
                .iter()
                .map(|p| Raw {
                    kind: KIND,
                    payload: p,
                })
                .collect();
            match log.append_group(&recs) {
                Ok(_) => {}
                Err(AppendError::LogFull { .. }) => {
                    log.checkpoint_bytes(&snapshot(state)).expect("checkpoint");
                    log.append_group(&recs).expect("group after checkpoint");
                }
                Err(e) => panic!("group: {e}"),
            }
            state.extend(ps.iter().cloned());
        }
        Op::Checkpoint => {
            log.checkpoint_bytes(&snapshot(state)).expect("checkpoint");
        }
        Op::Abandon(ps) => {
            let mut group = log.group();
            for p in ps {
                let raw = Raw {
                    kind: KIND,
                    payload: p,
                };
                match group.push(&raw) {
                    Ok(()) => {}
                    Err(AppendError::LogFull { .. }) => break,
                    Err(e) => panic!("push: {e}"),
                }
            }
            drop(group);
        }
    }
}

/// Builds a durable starting image: format, then `setup` applied in
/// plain memory.
pub fn base_image(record_area: u64, setup: &[Op]) -> (Vec<u8>, State) {
    let pmem = MemPmem::new(region_len(record_area));
    let mut log = Log::format(pmem, CHECKPOINT_CAPACITY).expect("format");
    let mut state = State::new();
    for op in setup {
        apply(&mut log, &mut state, op);
    }
    (log.into_pmem().into_bytes(), state)
}

/// A history of several opens: format, then for each of `opens` a
/// recovery (which must give the state so far) and its operations. The
/// image, the final state and the state before the final operation.
pub fn multi_open(record_area: u64, opens: &[Vec<Op>]) -> (Vec<u8>, State, State) {
    let pmem = MemPmem::new(region_len(record_area));
    let log = Log::format(pmem, CHECKPOINT_CAPACITY).expect("format");
    let mut image = log.into_pmem().into_bytes();
    let mut before_last = State::new();
    let mut state = State::new();
    for ops in opens {
        let (mut log, recovered) = open(MemPmem::from_bytes(image));
        assert_eq!(recovered, state);
        for op in ops {
            before_last = state.clone();
            apply(&mut log, &mut state, op);
        }
        image = log.into_pmem().into_bytes();
    }
    assert_eq!(recover(&image), Ok(state.clone()));
    (image, state, before_last)
}

/// A recorded run: the simulator after the operations and where each
/// started and returned, with the state after each (`states()[0]` before
/// any).
pub struct Run(pub Recorded<PayloadLog>);

/// Opens `image` on a simulator (operation 0) and applies `ops`.
pub fn record(image: Vec<u8>, ops: &[Op]) -> Run {
    let sim = SimPmem::from_image(image);
    let before = recover(sim.image()).expect("starting image recovers");
    let mut scenario =
        Scenario::open(sim, before.clone(), |sim| PayloadLog::open(sim, Some(KIND))).expect("open");
    assert_eq!(scenario.subject().state, before);
    for op in ops {
        scenario.run(|o| apply(&mut o.log, &mut o.state, op));
    }
    Run(scenario.finish())
}

impl Run {
    /// The simulator, with every event of the run.
    pub fn sim(&self) -> &SimPmem {
        self.0.sim()
    }

    /// The states: before any operation, then after each.
    pub fn states(&self) -> &[State] {
        self.0.states()
    }

    /// Checks every crash image of the run; `also` sees each image with
    /// the prefix it recovered to (for deeper checks on some of them).
    pub fn check_crashes(
        &self,
        config: &CrashConfig,
        mut also: impl FnMut(&[u8], usize, &State),
    ) -> CrashStats {
        self.0
            .check_crashes(config, recover, |crash: &Crash<'_>, j, state| {
                also(crash.image, j, state);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Prints a test's counts in one greppable line.
pub fn report(test: &str, stats: &CrashStats) {
    println!("{}", report_line(test, stats));
}

/// The infallible error of a replay that cannot fail.
pub type Never = Infallible;
