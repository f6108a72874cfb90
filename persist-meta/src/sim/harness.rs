//! The crash-test harness: run an owner's operations on a [`SimPmem`],
//! then check that every crash image recovers as the prefix rule says.
//!
//! An owner under test is a [`Subject`]: something that lives on a
//! simulator and can say what its state is. A [`Scenario`] starts it
//! (recovery of a durable image is operation 0: recovery writes too), runs
//! operations noting in a [`Trace`] where each started and returned and the
//! state after it, and hands back a [`Recorded`] run whose
//! [`check_crashes`](Recorded::check_crashes) visits every crash image the
//! x86 persistence model allows (as a [`CrashConfig`] bounds them) and
//! recovers each through the owner's read-only recovery.
//! [`check_recovery_crashes`] does the same for the writes of one recovery:
//! a crash during recovery must recover to what that recovery found.
//! [`ReadOnly`] lets recovery run over a crash image in place;
//! [`Payloads`] is a small reference owner of the log for tests and
//! fuzzers, and [`PayloadLog`] the log it owns, as a [`Subject`].
//!
//! ```
//! use nvirt_persist_meta::sim::{CrashConfig, PayloadLog, Payloads, ReadOnly, Scenario, SimPmem};
//! use nvirt_persist_meta::{Log, MemPmem, Raw, RecordKind, replay};
//!
//! const KIND: RecordKind = match RecordKind::new(1) { Some(k) => k, None => unreachable!() };
//!
//! // The owner's read-only recovery of a crash image.
//! let recover = |image: &[u8]| -> Result<Vec<Vec<u8>>, String> {
//!     let mut state = Vec::new();
//!     replay(&ReadOnly(image), &mut Payloads::new(&mut state, Some(KIND)))
//!         .map_err(|e| e.to_string())?;
//!     Ok(state)
//! };
//!
//! let image = Log::format(MemPmem::new(0x5000), 1000)?.into_pmem().into_bytes();
//! let mut scenario = Scenario::open(SimPmem::from_image(image), Vec::new(), |sim| {
//!     PayloadLog::open(sim, Some(KIND))
//! })?;
//! for id in 0..3u8 {
//!     scenario.run(|owner| {
//!         owner.log.append(&Raw { kind: KIND, payload: &[id; 12] }).expect("room");
//!         owner.state.push(vec![id; 12]);
//!     });
//! }
//! scenario.run(|owner| owner.checkpoint().map(|_| ()).expect("room"));
//! let stats = scenario.finish().check_crashes(&CrashConfig::default(), recover, |_, _, _| Ok(()))?;
//! assert!(stats.images > stats.points);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Debug;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use super::{Crash, CrashConfig, CrashStats, SimPmem, Trace};
use crate::checkpoint::{CheckpointInfo, CheckpointReader, SnapshotError};
use crate::error::CheckpointError;
use crate::log::Log;
use crate::pmem::{Pmem, PmemError};
use crate::record::RecordKind;
use crate::recover::{RecoverError, Replay};
use crate::scan::RecordView;

/// An owner of persistent state, living on a simulator, under crash test.
pub trait Subject {
    /// What the owner's recovery rebuilds, compared between runs.
    type State: Clone + PartialEq + Debug;
    /// The simulator the owner writes.
    fn sim(&self) -> &SimPmem;
    /// The owner's state now.
    fn state(&self) -> Self::State;
}

/// A crash-test scenario being recorded.
#[derive(Debug)]
pub struct Scenario<T: Subject> {
    subject: T,
    trace: Trace<T::State>,
}

impl<T: Subject> Scenario<T> {
    /// Starts a scenario on `sim`, whose durable image recovers to
    /// `before`: `open` recovers it into the subject, and is noted as
    /// operation 0 (recovery writes, and may crash too).
    pub fn open<E>(
        sim: SimPmem,
        before: T::State,
        open: impl FnOnce(SimPmem) -> Result<T, E>,
    ) -> Result<Self, E> {
        let start = sim.point();
        let mut trace = Trace::new(before);
        let subject = open(sim)?;
        trace.push(start, subject.sim().point(), subject.state());
        Ok(Self { subject, trace })
    }

    /// Runs one operation, noting where it started and returned and the
    /// state after it.
    pub fn run<R>(&mut self, op: impl FnOnce(&mut T) -> R) -> R {
        let start = self.subject.sim().point();
        let out = op(&mut self.subject);
        self.trace
            .push(start, self.subject.sim().point(), self.subject.state());
        out
    }

    /// The subject.
    pub fn subject(&self) -> &T {
        &self.subject
    }

    /// What was noted so far.
    pub fn trace(&self) -> &Trace<T::State> {
        &self.trace
    }

    /// Ends the recording.
    pub fn finish(self) -> Recorded<T> {
        Recorded {
            subject: self.subject,
            trace: self.trace,
        }
    }
}

/// A recorded scenario: the subject after its operations, and the trace.
#[derive(Debug)]
pub struct Recorded<T: Subject> {
    /// The subject after the last operation.
    pub subject: T,
    /// Where each operation started and returned, and the states.
    pub trace: Trace<T::State>,
}

impl<T: Subject> Recorded<T> {
    /// The simulator, with every event of the scenario.
    pub fn sim(&self) -> &SimPmem {
        self.subject.sim()
    }

    /// The states: before any operation, then after each.
    pub fn states(&self) -> &[T::State] {
        self.trace.states()
    }

    /// Visits every crash image of the scenario (as `config` allows):
    /// `recover` turns each into a state, which must be the state after a
    /// prefix of the operations that includes every operation that had
    /// returned and none that had not started; `also` then sees the image,
    /// the length of that prefix and the state, for deeper checks. Stops at
    /// the first failure and returns it.
    pub fn check_crashes(
        &self,
        config: &CrashConfig,
        recover: impl FnMut(&[u8]) -> Result<T::State, String>,
        also: impl FnMut(&Crash<'_>, usize, &T::State) -> Result<(), String>,
    ) -> Result<CrashStats, String> {
        let mut recover = recover;
        self.trace
            .check_crashes(self.sim(), config, |crash| recover(crash.image), also)
    }
}

/// Checks the crashes of one recovery: `sim` holds a recovery's writes
/// (recovery ran on it from a durable image), and every crash image of
/// them must recover, through `recover`, to `expected`, the state that
/// recovery found.
pub fn check_recovery_crashes<S: PartialEq + Debug + Clone>(
    sim: &SimPmem,
    expected: &S,
    config: &CrashConfig,
    mut recover: impl FnMut(&[u8]) -> Result<S, String>,
) -> Result<CrashStats, String> {
    let mut trace = Trace::new(expected.clone());
    trace.push(0, sim.point(), expected.clone());
    trace
        .check_crashes(sim, config, |crash| recover(crash.image), |_, _, _| Ok(()))
        .map_err(|e| format!("a crash during recovery: {e}"))
}

/// A read-only region over an image, so that recovery runs over crash
/// images in place. A read outside the image is an error (which recovery
/// must never provoke); a store panics, because read-only recovery must
/// not write.
#[derive(Clone, Copy, Debug)]
pub struct ReadOnly<'a>(pub &'a [u8]);

impl Pmem for ReadOnly<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        let err = PmemError::OutOfBounds {
            offset,
            len: buf.len() as u64,
            size: self.size(),
        };
        let start = usize::try_from(offset).map_err(|_| err)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn store_u64(&mut self, offset: u64, _: u64) -> Result<(), PmemError> {
        panic!("read-only recovery stored at {offset:#x}")
    }

    fn store(&mut self, offset: u64, _: &[u8]) -> Result<(), PmemError> {
        panic!("read-only recovery stored at {offset:#x}")
    }

    fn write_back(&mut self, _: u64, _: u64) -> Result<(), PmemError> {
        Ok(())
    }

    fn fence(&mut self) {}
}

/// A reference owner of the log, for tests and fuzzers: its state is the
/// payloads of its records in commit order, and its snapshot (see
/// [`Payloads::snapshot`]) each payload as a little-endian `u16` length
/// and the bytes.
#[derive(Debug)]
pub struct Payloads<'a> {
    state: &'a mut Vec<Vec<u8>>,
    kind: Option<RecordKind>,
}

impl<'a> Payloads<'a> {
    /// Replays into `state`; with `kind`, a record of any other kind is an
    /// error.
    pub fn new(state: &'a mut Vec<Vec<u8>>, kind: Option<RecordKind>) -> Self {
        Self { state, kind }
    }

    /// The snapshot of `state`.
    pub fn snapshot(state: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for payload in state {
            out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
            out.extend_from_slice(payload);
        }
        out
    }
}

impl Replay for Payloads<'_> {
    type Error = String;

    fn checkpoint(&mut self, snapshot: &mut CheckpointReader<'_>) -> Result<(), String> {
        self.state.clear();
        let mut len = [0; 2];
        while snapshot.remaining() > 0 {
            snapshot.read_exact(&mut len).map_err(|e| e.to_string())?;
            let mut payload = std::vec![0; usize::from(u16::from_le_bytes(len))];
            snapshot
                .read_exact(&mut payload)
                .map_err(|e| e.to_string())?;
            self.state.push(payload);
        }
        Ok(())
    }

    fn record(&mut self, record: &RecordView<'_>) -> Result<(), String> {
        if let Some(kind) = self.kind {
            if record.kind() != kind {
                return Err(format!("unexpected kind {}", record.kind()));
            }
        }
        self.state.push(record.payload().to_vec());
        Ok(())
    }
}

/// A log on the simulator and its [`Payloads`] owner's state: the
/// [`Subject`] of crash tests of the log itself.
#[derive(Debug)]
pub struct PayloadLog {
    /// The log.
    pub log: Log<SimPmem>,
    /// The payloads committed, in commit order.
    pub state: Vec<Vec<u8>>,
}

impl PayloadLog {
    /// Opens (recovers and readies) the log on `sim`, replaying into a
    /// [`Payloads`] owner that accepts records of `kind` (any, if `None`).
    pub fn open(sim: SimPmem, kind: Option<RecordKind>) -> Result<Self, RecoverError<String>> {
        let mut state = Vec::new();
        let (log, _, _) = Log::open(sim, &mut Payloads::new(&mut state, kind))?;
        Ok(Self { log, state })
    }

    /// Checkpoints the state.
    pub fn checkpoint(&mut self) -> Result<CheckpointInfo, CheckpointError<SnapshotError>> {
        self.log.checkpoint_bytes(&Payloads::snapshot(&self.state))
    }
}

impl Subject for PayloadLog {
    type State = Vec<Vec<u8>>;

    fn sim(&self) -> &SimPmem {
        self.log.pmem()
    }

    fn state(&self) -> Vec<Vec<u8>> {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pmem::MemPmem;
    use crate::record::Raw;
    use crate::recover::replay;

    const KIND: RecordKind = match RecordKind::new(3) {
        Some(k) => k,
        None => unreachable!(),
    };

    fn recover(image: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut state = Vec::new();
        replay(&ReadOnly(image), &mut Payloads::new(&mut state, Some(KIND)))
            .map_err(|e| e.to_string())?;
        Ok(state)
    }

    fn open(sim: SimPmem) -> Result<PayloadLog, String> {
        PayloadLog::open(sim, Some(KIND)).map_err(|e| e.to_string())
    }

    fn formatted() -> Vec<u8> {
        Log::format(MemPmem::new(0x5000), 1000)
            .unwrap()
            .into_pmem()
            .into_bytes()
    }

    #[test]
    fn a_scenario_notes_every_operation_and_its_crashes_recover() {
        let mut scenario =
            Scenario::open(SimPmem::from_image(formatted()), Vec::new(), open).unwrap();
        for id in 0..3u8 {
            scenario.run(|o| {
                o.log
                    .append(&Raw {
                        kind: KIND,
                        payload: &[id; 40],
                    })
                    .unwrap();
                o.state.push(vec![id; 40]);
            });
        }
        scenario.run(|o| o.checkpoint().unwrap());
        assert_eq!(scenario.trace().len(), 5);
        let run = scenario.finish();
        assert_eq!(run.states().len(), 6);
        let mut seen = [0u64; 6];
        let stats = run
            .check_crashes(&CrashConfig::default(), recover, |_, j, _| {
                seen[j] += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(stats.points as usize, run.sim().point() + 1);
        assert!(seen[1..].iter().all(|&n| n > 0), "{seen:?}");
        // A recovery that forgets the last record is caught.
        let forgetful = |image: &[u8]| {
            recover(image).map(|mut s| {
                if s.len() == 3 {
                    s.pop();
                }
                s
            })
        };
        assert!(
            run.check_crashes(&CrashConfig::default(), forgetful, |_, _, _| Ok(()))
                .is_err()
        );
    }

    #[test]
    fn crashes_of_a_recovery_recover_to_what_it_found() {
        let mut log = Log::format(MemPmem::new(0x5000), 1000).unwrap();
        log.append(&Raw {
            kind: KIND,
            payload: b"kept",
        })
        .unwrap();
        let owner = open(SimPmem::from_image(log.into_pmem().into_bytes())).unwrap();
        let stats =
            check_recovery_crashes(owner.sim(), &owner.state, &CrashConfig::default(), recover)
                .unwrap();
        assert!(stats.images > 1);
        let wrong =
            check_recovery_crashes(owner.sim(), &Vec::new(), &CrashConfig::default(), recover);
        assert!(wrong.is_err());
    }

    #[test]
    fn the_reference_owner_checks_kinds_and_reads_its_snapshot() {
        let mut log = Log::format(MemPmem::new(0x5000), 1000).unwrap();
        let state = vec![b"one".to_vec(), Vec::new(), b"three".to_vec()];
        log.checkpoint_bytes(&Payloads::snapshot(&state)).unwrap();
        log.append(&Raw {
            kind: RecordKind::new(9).unwrap(),
            payload: b"other",
        })
        .unwrap();
        let image = log.into_pmem().into_bytes();
        assert!(recover(&image).unwrap_err().contains("unexpected kind"));
        let mut any = Vec::new();
        replay(&ReadOnly(&image), &mut Payloads::new(&mut any, None)).unwrap();
        assert_eq!(any.len(), 4);
        assert_eq!(&any[..3], &state[..]);
        let mut buf = [0; 4];
        assert!(
            ReadOnly(&image)
                .read(image.len() as u64 - 2, &mut buf)
                .is_err()
        );
    }
}
