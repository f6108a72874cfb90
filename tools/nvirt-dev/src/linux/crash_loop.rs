//! The Linux crash loop, over any launcher of the guest (QEMU directly,
//! or the hypervisor): boot in crashloop mode, SIGKILL the emulator at a
//! seeded random moment, again and again over the same NVRAM; then one
//! clean boot that must PASS.
//!
//! Every boot's console is held against what earlier boots announced: the
//! boot counter rises, the guest verifies at least every record it called
//! committed (and at most one more: the one whose header landed just
//! before the kill), and it commits records one after the other. Kills
//! land during the kernel's boot (every third, timed against the last boot
//! that verified) or, the others, up to [`Config::work_ms`] after the
//! guest's verification line, while it appends records.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use super::markers::{self, Marker};
use super::{End, Mode, Running, run_to_end};
use crate::crash_loop::Rng;
use crate::process::TimedLine;

/// Starts one boot of the guest in the given mode, over the NVRAM of the
/// boots before it.
pub(crate) type Launch<'a> = dyn FnMut(Mode) -> Result<Running, String> + 'a;

/// The loop's parameters.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) kills: u32,
    pub(crate) seed: u64,
    /// Longest a boot may take to reach its kill point or its end.
    pub(crate) boot_timeout: Duration,
    /// Work kills land this many milliseconds after the verification line.
    pub(crate) work_ms: (u64, u64),
    /// Stream every boot's console.
    pub(crate) echo: bool,
    /// Lines of the launcher's own that end a boot as failed (e.g. a
    /// hypervisor's verdict), besides the guest's `FAIL` and kernel panics.
    pub(crate) failure: fn(&str) -> bool,
    /// The launcher ends a finished boot itself (see [`run_to_end`]); the
    /// clean boot must then also show `success` among its lines.
    pub(crate) ends_itself: Option<fn(&str) -> bool>,
}

impl Config {
    pub(crate) fn new(kills: u32, seed: u64) -> Self {
        Self {
            kills,
            seed,
            boot_timeout: Duration::from_secs(120),
            work_ms: (0, 3000),
            echo: false,
            failure: |_| false,
            ends_itself: None,
        }
    }
}

/// Where a kill landed, from the guest's last marker before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Before `/dev/pmem0`: firmware, kernel, modules.
    Boot,
    /// `/dev/pmem0` found, its records being verified.
    Verify,
    /// A record or the header counting it being written.
    Write,
    /// Between a commit (or the verification) and the next record.
    Idle,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Boot => "boot",
            Self::Verify => "verify",
            Self::Write => "record-write",
            Self::Idle => "idle",
        })
    }
}

/// What the NVRAM must hold, from everything announced so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Known {
    /// The highest boot counter seen.
    pub(crate) boot: u64,
    /// Records known committed: verified at a boot or announced since.
    pub(crate) records: u64,
}

/// What one boot's console showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) phase: Phase,
    /// The records the boot verified, if it got that far.
    pub(crate) verified: Option<u64>,
    pub(crate) committed: u64,
    pub(crate) passed: bool,
}

/// Holds one boot's console against `known` and moves `known` on.
pub(crate) fn check_boot(
    lines: &[String],
    known: &mut Known,
    failure: fn(&str) -> bool,
) -> Result<Seen, String> {
    let mut seen = Seen {
        phase: Phase::Boot,
        verified: None,
        committed: 0,
        passed: false,
    };
    for line in lines {
        if markers::is_failure(line) || failure(line) {
            return Err(format!("the guest failed: {line}"));
        }
        let Some(marker) = markers::parse(line) else {
            continue;
        };
        let counted = seen.verified.is_some();
        match marker {
            Marker::Pmem { .. } => seen.phase = Phase::Verify,
            Marker::Verified { boot, records } => {
                if counted {
                    return Err(format!("a second verification line: {line}"));
                }
                if boot <= known.boot {
                    return Err(format!(
                        "boot counter {boot} after {}: not rising",
                        known.boot
                    ));
                }
                // One more than announced: its header landed, the kill
                // came before the line saying so.
                if records < known.records || records > known.records + 1 {
                    return Err(format!(
                        "verified {records} records where {} were committed",
                        known.records
                    ));
                }
                *known = Known { boot, records };
                seen.verified = Some(records);
                seen.phase = Phase::Idle;
            }
            Marker::Writing(n) | Marker::Committed(n) if !counted || n != known.records + 1 => {
                return Err(format!(
                    "out of order after {} records (verified: {counted}): {line}",
                    known.records
                ));
            }
            Marker::Writing(_) => seen.phase = Phase::Write,
            Marker::Committed(n) => {
                known.records = n;
                seen.committed += 1;
                seen.phase = Phase::Idle;
            }
            Marker::Pass => seen.passed = true,
            Marker::Iomem(_) | Marker::Fail(_) | Marker::Other(_) => {}
        }
    }
    Ok(seen)
}

/// When to kill a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// This long after the emulator started.
    At(Duration),
    /// This long after the guest's verification line.
    AfterVerified(Duration),
}

/// The `k`-th kill (from 1): every third during boot, uniform up to when
/// the last verifying boot verified (`verified_at`, known from the first
/// kill on); the others after verification.
fn kill_plan(k: u32, rng: &mut Rng, verified_at: Option<Duration>, work_ms: (u64, u64)) -> Kill {
    match verified_at {
        Some(t) if k % 3 == 2 => {
            Kill::At(Duration::from_millis(rng.between(0, t.as_millis() as u64)))
        }
        _ => Kill::AfterVerified(Duration::from_millis(rng.between(work_ms.0, work_ms.1))),
    }
}

/// What the loop did.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) seed: u64,
    pub(crate) kills: BTreeMap<Phase, u32>,
    /// Boots that printed their verification line (the final one too).
    pub(crate) boots_verified: u32,
    /// Records those boots verified, summed.
    pub(crate) records_verified: u64,
    /// Records committed at the end.
    pub(crate) records: u64,
    pub(crate) last_boot: u64,
    /// Emulator start to `/dev/pmem0`, per boot that got there.
    pub(crate) pmem0_times: Vec<Duration>,
    pub(crate) elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u32 = self.kills.values().sum();
        let kills: Vec<String> = self.kills.iter().map(|(p, n)| format!("{p}={n}")).collect();
        let pmem: Vec<f64> = self.pmem0_times.iter().map(Duration::as_secs_f64).collect();
        let mean = pmem.iter().sum::<f64>() / pmem.len().max(1) as f64;
        write!(
            f,
            "linux crash loop: seed={} kills={total} ({}) boots-verified={} records-verified={} \
             records={} boot-counter={} pmem0-mean={mean:.2}s time={:.1}s",
            self.seed,
            kills.join(" "),
            self.boots_verified,
            self.records_verified,
            self.records,
            self.last_boot,
            self.elapsed.as_secs_f64()
        )
    }
}

fn tail(lines: &[TimedLine], n: usize) -> String {
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("    [{:7.3}] {}\n", l.at.as_secs_f64(), l.text))
        .collect()
}

fn texts(lines: &[TimedLine]) -> Vec<String> {
    lines.iter().map(|l| l.text.clone()).collect()
}

/// One boot in crashloop mode, killed as `kill` says.
fn killed_boot(
    running: &mut Running,
    kill: Kill,
    config: &Config,
) -> Result<Vec<TimedLine>, (String, Vec<TimedLine>)> {
    let (timeout, echo) = (config.boot_timeout, config.echo);
    let started = Instant::now();
    let mut lines: Vec<TimedLine> = Vec::new();
    let mut kill_at = match kill {
        Kill::At(t) => Some(started + t),
        Kill::AfterVerified(_) => None,
    };
    let outcome = loop {
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            break Ok(());
        }
        let wait = kill_at.map_or(Duration::from_millis(50), |t| {
            t.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50))
        });
        match running.lines.recv_timeout(wait) {
            Ok(line) => {
                if echo {
                    println!("{}", line.text);
                }
                if let (Kill::AfterVerified(d), None) = (kill, kill_at) {
                    if matches!(markers::parse(&line.text), Some(Marker::Verified { .. })) {
                        kill_at = Some(Instant::now() + d);
                    }
                }
                let failed = markers::is_failure(&line.text) || (config.failure)(&line.text);
                lines.push(line);
                if failed {
                    break Err("the guest failed".to_owned());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                break Err("the emulator's console closed before the kill".to_owned());
            }
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            break Err(format!(
                "the emulator ended by itself ({status}) before the kill"
            ));
        }
        if started.elapsed() > timeout {
            break Err(format!("no kill point within {} s", timeout.as_secs()));
        }
    };
    // SIGKILL, as `kill -9`: the emulator flushes nothing.
    let _ = running.child.kill();
    let _ = running.child.wait();
    // What was already in the pipe when it died.
    while let Ok(line) = running.lines.recv_timeout(Duration::from_millis(100)) {
        lines.push(line);
    }
    outcome.map(|()| lines.clone()).map_err(|why| (why, lines))
}

/// Runs the loop: `config.kills` killed boots, then a clean one. The
/// caller hands `launch` a fresh or kept NVRAM as it likes; the checks
/// start from what the first boot verifies.
pub(crate) fn run(launch: &mut Launch<'_>, config: &Config) -> Result<Summary, String> {
    let started = Instant::now();
    let mut rng = Rng::new(config.seed);
    let mut summary = Summary {
        seed: config.seed,
        ..Summary::default()
    };
    let mut known: Option<Known> = None;
    let mut verified_at: Option<Duration> = None;
    for k in 1..=config.kills {
        let kill = kill_plan(k, &mut rng, verified_at, config.work_ms);
        let mut running = launch(Mode::Crashloop)?;
        let context = |why: &str, lines: &[TimedLine]| {
            format!(
                "kill {k} of {} (seed {}, {kill:?}): {why}\n{}",
                config.kills,
                config.seed,
                tail(lines, 30)
            )
        };
        let lines = killed_boot(&mut running, kill, config)
            .map_err(|(why, lines)| context(&why, &lines))?;
        // The first boot finds whatever the NVRAM held: that is the start.
        let mut k_known = known.unwrap_or_else(|| first_known(&lines));
        let seen = check_boot(&texts(&lines), &mut k_known, config.failure)
            .map_err(|why| context(&why, &lines))?;
        if seen.verified.is_some() {
            known = Some(k_known);
            summary.boots_verified += 1;
            summary.records_verified += seen.verified.unwrap_or(0);
            verified_at = lines
                .iter()
                .find(|l| matches!(markers::parse(&l.text), Some(Marker::Verified { .. })))
                .map(|l| l.at);
        }
        if let Some(t) = pmem0_at(&lines) {
            summary.pmem0_times.push(t);
        }
        *summary.kills.entry(seen.phase).or_default() += 1;
        eprintln!(
            "nvirt linux crash loop: kill {k}/{}: {kill:?}, in {}{}; {} committed",
            config.kills,
            seen.phase,
            seen.verified
                .map(|r| format!(", boot {} verified {r} records", k_known.boot))
                .unwrap_or_default(),
            seen.committed
        );
    }
    let running = launch(Mode::Boot)?;
    final_boot(running, config, known, &mut summary)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// What the first boot of a loop may find: its own verification line says
/// what the NVRAM held.
fn first_known(lines: &[TimedLine]) -> Known {
    lines
        .iter()
        .find_map(|l| match markers::parse(&l.text) {
            Some(Marker::Verified { boot, records }) => Some(Known {
                boot: boot - 1,
                records,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

fn pmem0_at(lines: &[TimedLine]) -> Option<Duration> {
    lines
        .iter()
        .find(|l| matches!(markers::parse(&l.text), Some(Marker::Pmem { .. })))
        .map(|l| l.at)
}

/// The clean boot after the kills: it verifies, commits one record and
/// passes.
fn final_boot(
    running: Running,
    config: &Config,
    known: Option<Known>,
    summary: &mut Summary,
) -> Result<(), String> {
    let finished = run_to_end(
        running,
        config.boot_timeout,
        config.echo,
        config.ends_itself.is_some(),
    );
    let why = |what: String| format!("final clean boot: {what}\n{}", tail(&finished.lines, 30));
    if finished.end == End::TimedOut {
        return Err(why("timed out".into()));
    }
    if let Some(success) = config.ends_itself {
        if !finished.lines.iter().any(|l| success(&l.text)) {
            return Err(why("the launcher did not confirm the clean boot".into()));
        }
    }
    let mut k = known.unwrap_or_else(|| first_known(&finished.lines));
    let seen = check_boot(&texts(&finished.lines), &mut k, config.failure).map_err(why)?;
    let Some(records) = seen.verified else {
        return Err(why("no verification line".into()));
    };
    if !seen.passed || seen.committed != 1 {
        return Err(why(format!(
            "committed {} records, PASS {}",
            seen.committed, seen.passed
        )));
    }
    summary.boots_verified += 1;
    summary.records_verified += records;
    summary.records = k.records;
    summary.last_boot = k.boot;
    if let Some(t) = finished.pmem0_at() {
        summary.pmem0_times.push(t);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(_: &str) -> bool {
        false
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| format!("nvirt-linux: {s}")).collect()
    }

    #[test]
    fn a_good_boot_moves_what_is_known() {
        let mut known = Known {
            boot: 2,
            records: 5,
        };
        let boot = lines(&[
            "pmem0 bytes=16777216 at 5.8",
            "boot=3 verified=5 records ok",
            "record 6 writing",
            "record 6 committed",
            "record 7 writing",
        ]);
        let seen = check_boot(&boot, &mut known, no).unwrap();
        assert_eq!(
            seen,
            Seen {
                phase: Phase::Write,
                verified: Some(5),
                committed: 1,
                passed: false
            }
        );
        assert_eq!(
            known,
            Known {
                boot: 3,
                records: 6
            }
        );
        // Record 7's header landed before the kill: one more is fine.
        let next = lines(&[
            "boot=5 verified=7 records ok",
            "record 8 writing",
            "record 8 committed",
        ]);
        let seen = check_boot(&next, &mut known, no).unwrap();
        assert_eq!((seen.phase, seen.verified), (Phase::Idle, Some(7)));
        assert_eq!(known.records, 8);
    }

    #[test]
    fn phases_follow_the_last_marker() {
        let phase = |l: &[&str]| {
            check_boot(&lines(l), &mut Known::default(), no)
                .unwrap()
                .phase
        };
        assert_eq!(phase(&[]), Phase::Boot);
        assert_eq!(phase(&["pmem0 bytes=1 at 1.0"]), Phase::Verify);
        assert_eq!(
            phase(&["pmem0 bytes=1 at 1.0", "boot=1 verified=0 records ok"]),
            Phase::Idle
        );
        assert_eq!(
            phase(&["boot=1 verified=0 records ok", "record 1 writing"]),
            Phase::Write
        );
    }

    #[test]
    fn lost_records_and_a_stuck_counter_are_caught() {
        let known = Known {
            boot: 4,
            records: 9,
        };
        for (boot, why) in [
            (
                &["boot=5 verified=8 records ok"][..],
                "verified 8 records where 9",
            ),
            (
                &["boot=5 verified=11 records ok"],
                "verified 11 records where 9",
            ),
            (&["boot=4 verified=9 records ok"], "not rising"),
            (
                &["boot=5 verified=9 records ok", "record 11 writing"],
                "out of order",
            ),
            (
                &[
                    "boot=5 verified=9 records ok",
                    "record 10 committed",
                    "record 10 committed",
                ],
                "out of order",
            ),
            (&["record 10 writing"], "out of order"),
            (
                &[
                    "boot=5 verified=9 records ok",
                    "boot=6 verified=9 records ok",
                ],
                "second",
            ),
            (&["FAIL record 3 of 9 damaged (boot 5)"], "failed"),
        ] {
            let mut k = known;
            let err = check_boot(&lines(boot), &mut k, no).unwrap_err();
            assert!(err.contains(why), "{boot:?}: {err}");
        }
        let mut k = known;
        let panic = vec!["[ 1.2] Kernel panic - not syncing".to_owned()];
        assert!(check_boot(&panic, &mut k, no).is_err());
        let hv = vec!["nvirt-hv: verdict: FAIL".to_owned()];
        assert!(check_boot(&hv, &mut k, no).is_ok());
        let err = check_boot(&hv, &mut k, |l| l.contains("verdict: FAIL")).unwrap_err();
        assert!(err.contains("nvirt-hv: verdict: FAIL"), "{err}");
    }

    #[test]
    fn kills_land_in_boot_every_third_once_a_boot_time_is_known() {
        let mut rng = Rng::new(9);
        let t = Duration::from_millis(6000);
        assert!(matches!(
            kill_plan(2, &mut rng, None, (0, 10)),
            Kill::AfterVerified(_)
        ));
        for k in 1..=30 {
            match kill_plan(k, &mut rng, Some(t), (100, 200)) {
                Kill::At(d) => assert!(k % 3 == 2 && d <= t, "{k}: {d:?}"),
                Kill::AfterVerified(d) => {
                    assert!(k % 3 != 2 && (100..=200).contains(&(d.as_millis() as u64)));
                }
            }
        }
    }

    #[test]
    fn summary_names_every_figure() {
        let mut s = Summary {
            seed: 7,
            records: 12,
            pmem0_times: vec![Duration::from_secs(5), Duration::from_secs(6)],
            ..Summary::default()
        };
        s.kills.insert(Phase::Boot, 2);
        s.kills.insert(Phase::Write, 3);
        let text = s.to_string();
        for want in [
            "seed=7",
            "kills=5",
            "boot=2",
            "record-write=3",
            "records=12",
            "pmem0-mean=5.50s",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }
}
