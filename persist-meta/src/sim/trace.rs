//! The prefix rule of crash testing, for any owner's state.
//!
//! A scenario runs operations on a [`SimPmem`], noting for each the crash
//! point where it started and where it returned, and the owner's state
//! after it. Every crash image at crash point `p` must then recover to the
//! state after some prefix of the operations that includes every
//! operation that had returned by `p` and none that had not started.
//! [`Trace`] keeps those notes and checks recovered states against them;
//! the owner supplies its recovery and its notion of state.

use std::fmt::Debug;
use std::format;
use std::ops::ControlFlow;
use std::string::String;
use std::vec::Vec;

use super::{Crash, CrashConfig, CrashStats, SimPmem};

/// The operations of a crash-test scenario: where each started and
/// returned in a [`SimPmem`]'s trace, and the owner's state after each.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    spans: Vec<(usize, usize)>,
    states: Vec<S>,
}

impl<S: PartialEq + Debug> Trace<S> {
    /// A scenario whose state before any operation is `initial`.
    pub fn new(initial: S) -> Self {
        Self {
            spans: Vec::new(),
            states: std::vec![initial],
        }
    }

    /// Notes an operation that started at crash point `start`, returned at
    /// `end`, and left state `after`.
    pub fn push(&mut self, start: usize, end: usize, after: S) {
        self.spans.push((start, end));
        self.states.push(after);
    }

    /// The states: before any operation, then after each.
    pub fn states(&self) -> &[S] {
        &self.states
    }

    /// Operations noted.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether no operation was noted.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// How many operations had returned, and how many had started (or
    /// returned), at crash point `point`.
    pub fn window(&self, point: usize) -> (usize, usize) {
        let returned = self.spans.iter().filter(|s| s.1 <= point).count();
        let started = self
            .spans
            .iter()
            .filter(|s| s.0 < point || s.1 <= point)
            .count();
        (returned, started)
    }

    /// The longest allowed prefix whose state is `recovered`, for a crash
    /// at `point`; an error describing the allowed prefixes otherwise.
    pub fn check(&self, point: usize, recovered: &S) -> Result<usize, String> {
        let (returned, started) = self.window(point);
        (returned..=started)
            .rev()
            .find(|&j| self.states.get(j) == Some(recovered))
            .ok_or_else(|| {
                format!(
                    "crash at point {point}: recovered a state that is not the state after \
                     {returned}..={started} operations:\n recovered {recovered:?}\n after \
                     {returned}: {:?}",
                    self.states.get(returned)
                )
            })
    }

    /// Visits every crash image of `sim` at every crash point (as `config`
    /// allows); `recover` turns an image into a state (or an error, which
    /// fails the check), which must satisfy the prefix rule. `also` sees
    /// every image with the prefix it recovered to, for deeper checks.
    /// Stops at the first failure and returns it.
    pub fn check_crashes(
        &self,
        sim: &SimPmem,
        config: &CrashConfig,
        mut recover: impl FnMut(&Crash<'_>) -> Result<S, String>,
        mut also: impl FnMut(&Crash<'_>, usize, &S) -> Result<(), String>,
    ) -> Result<CrashStats, String> {
        let mut failure = None;
        let stats = sim.crash_images(0..usize::MAX, config, |crash| {
            let outcome = recover(crash).and_then(|state| {
                let j = self.check(crash.point, &state)?;
                also(crash, j, &state)
            });
            match outcome {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failure = Some(format!("crash point {}: {e}", crash.point));
                    ControlFlow::Break(())
                }
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }
}

/// One greppable line with a test's crash-image counts:
/// `crash images: <test>: <n> images at <n> crash points (…)`.
pub fn report_line(test: &str, stats: &CrashStats) -> String {
    format!(
        "crash images: {test}: {} images at {} crash points ({} exhaustive, {} sampled; \
         at most {} lines pending)",
        stats.images,
        stats.points,
        stats.exhaustive_points,
        stats.sampled_points,
        stats.max_pending_lines
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pmem::Pmem;

    #[test]
    fn the_window_follows_the_spans() {
        let mut trace = Trace::new(0u32);
        trace.push(0, 3, 1);
        trace.push(3, 6, 2);
        assert_eq!(trace.window(0), (0, 0));
        assert_eq!(trace.window(1), (0, 1));
        assert_eq!(trace.window(3), (1, 1));
        assert_eq!(trace.window(4), (1, 2));
        assert_eq!(trace.window(6), (2, 2));
        assert_eq!(trace.check(4, &2), Ok(2));
        assert_eq!(trace.check(4, &1), Ok(1));
        assert!(trace.check(4, &0).is_err());
        assert_eq!(trace.len(), 2);
    }

    #[test]
    fn crashes_are_checked_against_prefixes() {
        let mut sim = SimPmem::new(64);
        let mut trace = Trace::new(0u64);
        let start = sim.point();
        sim.store_u64(0, 7).unwrap();
        sim.write_back(0, 8).unwrap();
        sim.fence();
        trace.push(start, sim.point(), 7);
        let read = |c: &Crash<'_>| -> Result<u64, String> {
            let mut w = [0; 8];
            w.copy_from_slice(&c.image[..8]);
            Ok(u64::from_le_bytes(w))
        };
        let stats = trace
            .check_crashes(&sim, &CrashConfig::default(), read, |_, _, _| Ok(()))
            .unwrap();
        assert_eq!(stats.points, 4);
        // A wrong recovery is caught.
        let wrong = |_: &Crash<'_>| -> Result<u64, String> { Ok(3) };
        assert!(
            trace
                .check_crashes(&sim, &CrashConfig::default(), wrong, |_, _, _| Ok(()))
                .is_err()
        );
        assert!(report_line("t", &stats).starts_with("crash images: t: "));
    }
}
