//! Operation sequences with crashes: appends, group commits, abandoned
//! groups, checkpoints (with the log filling up) and crashes at arbitrary
//! points with arbitrary surviving subsets of the pending stores (the x86
//! persistence model, through the simulator). After each crash the
//! recovered state must be the state after a prefix of the operations since
//! the last recovery that includes every operation that had returned; the
//! run then continues from the crash image.

use arbitrary::Arbitrary;
use nvirt_persist_meta::sim::{PayloadLog, Payloads, ReadOnly, Scenario, SimPmem, Subject};
use nvirt_persist_meta::{AppendError, Log, MemPmem, Raw, RecordKind, replay};

type State = Vec<Vec<u8>>;

const KIND: RecordKind = match RecordKind::new(7) {
    Some(k) => k,
    None => unreachable!(),
};

/// One step of a run.
#[derive(Arbitrary, Debug)]
pub enum Op {
    Append(u8),
    Group(Vec<u8>),
    Abandon(Vec<u8>),
    Checkpoint,
    Crash { at: u16, seed: u64 },
}

fn recover(image: &[u8]) -> State {
    let mut state = State::new();
    replay(&ReadOnly(image), &mut Payloads::new(&mut state, None)).expect("a crash image recovers");
    state
}

/// A payload: a unique id, then filler that depends only on the length.
fn payload(id: u32, len: u8) -> Vec<u8> {
    let mut p: Vec<u8> = (0..usize::from(len % 120) + 4)
        .map(|i| (i * 7) as u8)
        .collect();
    p[..4].copy_from_slice(&id.to_le_bytes());
    p
}

/// The operations since the last recovery (the first is that recovery),
/// noted by the crash-test harness.
struct Runner(Scenario<PayloadLog>);

impl Runner {
    /// Recovers `image`, whose state is `before`.
    fn open(image: Vec<u8>, before: State) -> Self {
        let scenario = Scenario::open(SimPmem::from_image(image), before, |sim| {
            PayloadLog::open(sim, None)
        });
        Self(scenario.expect("open"))
    }

    fn state(&self) -> &State {
        &self.0.subject().state
    }

    fn sim(&self) -> &SimPmem {
        self.0.subject().sim()
    }

    fn run(&mut self, op: &Op, id: &mut u32) {
        let mut next = |len: u8| {
            *id += 1;
            payload(*id, len)
        };
        self.0.run(|o| match op {
            Op::Append(len) => {
                let p = next(*len);
                let raw = Raw {
                    kind: KIND,
                    payload: &p,
                };
                if let Err(AppendError::LogFull { .. }) = o.log.append(&raw) {
                    o.checkpoint().expect("checkpoint");
                    o.log.append(&raw).expect("append after checkpoint");
                }
                o.state.push(p);
            }
            Op::Group(lens) => {
                let ps: Vec<Vec<u8>> = lens.iter().take(8).map(|&l| next(l)).collect();
                let raws: Vec<Raw<'_>> = ps
                    .iter()
                    .map(|p| Raw {
                        kind: KIND,
                        payload: p,
                    })
                    .collect();
                if let Err(AppendError::LogFull { .. }) = o.log.append_group(&raws) {
                    o.checkpoint().expect("checkpoint");
                    o.log.append_group(&raws).expect("group after checkpoint");
                }
                o.state.extend(ps);
            }
            Op::Abandon(lens) => {
                let mut group = o.log.group();
                for &l in lens.iter().take(8) {
                    if group
                        .push(&Raw {
                            kind: KIND,
                            payload: &next(l),
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            }
            Op::Checkpoint => {
                o.checkpoint().expect("checkpoint");
            }
            Op::Crash { .. } => unreachable!(),
        });
    }

    /// Crashes at `point` (a crash point since the last recovery, taken
    /// modulo their number) with a random survivor set; checks the
    /// recovered state against the prefix rule; returns the image and
    /// that state.
    fn crash(&self, point: usize, seed: u64) -> (Vec<u8>, State) {
        let point = point % (self.sim().point() + 1);
        let image = self.sim().random_crash_image(point, seed);
        let recovered = recover(&image);
        if let Err(e) = self.0.trace().check(point, &recovered) {
            panic!("{e}");
        }
        (image, recovered)
    }
}

/// What the fuzzer generates.
pub type Input = Vec<Op>;

/// Runs one decoded input.
pub fn run(ops: Input) {
    let log = Log::format(MemPmem::new(0x2000 + 0x2000 + 2048), 4000).expect("format");
    let mut runner = Runner::open(log.into_pmem().into_bytes(), State::new());
    let mut id = 0;
    for op in ops.iter().take(64) {
        if Payloads::snapshot(runner.state()).len() > 3000 {
            break; // keep within the checkpoint slot
        }
        match op {
            Op::Crash { at, seed } => {
                let (image, recovered) = runner.crash(usize::from(*at), *seed);
                runner = Runner::open(image, recovered);
            }
            op => runner.run(op, &mut id),
        }
    }
    // A crash right at the end, after everything returned.
    runner.crash(runner.sim().point(), 0);
    assert_eq!(&recover(runner.sim().image()), runner.state());
}

/// Runs one input: decodes it as `cargo fuzz` does, then [`run`].
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
