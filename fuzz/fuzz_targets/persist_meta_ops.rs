//! Operation sequences with crashes: appends, group commits, abandoned
//! groups, checkpoints (with the log filling up) and crashes at arbitrary
//! points with arbitrary surviving subsets of the pending stores (the x86
//! persistence model, through the simulator). After each crash the
//! recovered state must be the state after a prefix of the operations since
//! the last recovery that includes every operation that had returned; the
//! run then continues from the crash image.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nvirt_persist_meta::sim::SimPmem;
use nvirt_persist_meta::{
    AppendError, Log, MemPmem, Raw, RecordKind, Replay, Replayed, replay, replay_fn,
};

type State = Vec<Vec<u8>>;

const KIND: RecordKind = match RecordKind::new(7) {
    Some(k) => k,
    None => unreachable!(),
};

#[derive(Arbitrary, Debug)]
enum Op {
    Append(u8),
    Group(Vec<u8>),
    Abandon(Vec<u8>),
    Checkpoint,
    Crash { at: u16, seed: u64 },
}

fn snapshot(state: &State) -> Vec<u8> {
    state
        .iter()
        .flat_map(|p| {
            (p.len() as u16)
                .to_le_bytes()
                .into_iter()
                .chain(p.iter().copied())
        })
        .collect()
}

fn owner(state: &mut State) -> impl Replay<Error = String> + '_ {
    replay_fn(move |event| match event {
        Replayed::Checkpoint(r) => {
            state.clear();
            let mut len = [0; 2];
            while r.remaining() > 0 {
                r.read_exact(&mut len).map_err(|e| e.to_string())?;
                let mut p = vec![0; usize::from(u16::from_le_bytes(len))];
                r.read_exact(&mut p).map_err(|e| e.to_string())?;
                state.push(p);
            }
            Ok(())
        }
        Replayed::Record(r) => {
            state.push(r.payload().to_vec());
            Ok(())
        }
    })
}

fn recover(image: &[u8]) -> State {
    let mut state = State::new();
    replay(&MemPmem::from_bytes(image.to_vec()), &mut owner(&mut state))
        .expect("a crash image recovers");
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

struct Runner {
    log: Log<SimPmem>,
    state: State,
    /// States since the last recovery (the first is what it recovered).
    states: Vec<State>,
    /// Crash points where each operation since then started and returned.
    spans: Vec<(usize, usize)>,
}

impl Runner {
    fn open(image: Vec<u8>) -> Self {
        let sim = SimPmem::from_image(image);
        let start = sim.point();
        let mut state = State::new();
        let (log, _, _) = Log::open(sim, &mut owner(&mut state)).expect("open");
        let end = log.pmem().point();
        Self {
            states: vec![state.clone(), state.clone()],
            spans: vec![(start, end)],
            log,
            state,
        }
    }

    fn checkpoint(&mut self) {
        self.log
            .checkpoint_bytes(&snapshot(&self.state))
            .expect("checkpoint");
    }

    fn run(&mut self, op: &Op, id: &mut u32) {
        let start = self.log.pmem().point();
        let mut next = |len: u8| {
            *id += 1;
            payload(*id, len)
        };
        match op {
            Op::Append(len) => {
                let p = next(*len);
                let raw = Raw {
                    kind: KIND,
                    payload: &p,
                };
                if let Err(AppendError::LogFull { .. }) = self.log.append(&raw) {
                    self.checkpoint();
                    self.log.append(&raw).expect("append after checkpoint");
                }
                self.state.push(p);
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
                if let Err(AppendError::LogFull { .. }) = self.log.append_group(&raws) {
                    self.checkpoint();
                    self.log
                        .append_group(&raws)
                        .expect("group after checkpoint");
                }
                self.state.extend(ps);
            }
            Op::Abandon(lens) => {
                let mut group = self.log.group();
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
            Op::Checkpoint => self.checkpoint(),
            Op::Crash { .. } => unreachable!(),
        }
        self.spans.push((start, self.log.pmem().point()));
        self.states.push(self.state.clone());
    }

    /// Crashes at `point` (a crash point since the last recovery, taken
    /// modulo their number) with a random survivor set; checks the
    /// recovered state; returns the image.
    fn crash(&self, point: usize, seed: u64) -> Vec<u8> {
        let sim = self.log.pmem();
        let point = point % (sim.point() + 1);
        let image = sim.random_crash_image(point, seed);
        let recovered = recover(&image);
        let returned = self.spans.iter().filter(|s| s.1 <= point).count();
        let started = self
            .spans
            .iter()
            .filter(|s| s.0 < point || s.1 <= point)
            .count();
        assert!(
            (returned..=started).any(|j| self.states[j] == recovered),
            "crash at point {point}: recovered {} payloads, allowed {returned}..={started} operations",
            recovered.len()
        );
        image
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let log = Log::format(MemPmem::new(0x2000 + 0x2000 + 2048), 4000).expect("format");
    let mut runner = Runner::open(log.into_pmem().into_bytes());
    let mut id = 0;
    for op in ops.iter().take(64) {
        if snapshot(&runner.state).len() > 3000 {
            break; // keep within the checkpoint slot
        }
        match op {
            Op::Crash { at, seed } => {
                let image = runner.crash(usize::from(*at), *seed);
                runner = Runner::open(image);
            }
            op => runner.run(op, &mut id),
        }
    }
    // A crash right at the end, after everything returned.
    runner.crash(runner.log.pmem().point(), 0);
    assert_eq!(recover(runner.log.pmem().image()), runner.state);
});
