//! The crash loop: QEMU (AMD SVM, TCG) with a file-backed NVDIMM, the test
//! guest running its crash-loop workload (`nvirt.crashloop=0`: balloon
//! NVRAM pages out and in and rewrite their patterns until killed), and
//! QEMU killed with SIGKILL at a random moment, over and over, on the same
//! backing file. At every boot the hypervisor recovers the NV pool and
//! re-attaches the guest's NVRAM; the guest checks that everything its
//! committed record says survived and prints `crashloop: boot=N … result=ok`,
//! which the runner checks (boot counter rising, no damaged page). After
//! the loop, a clean run (a bounded workload, then PASS and a normal
//! shutdown) and `nvirt pool inspect` on the backing file must both pass.
//! Last, both pool superblocks of the image are damaged on purpose: the
//! hypervisor must stop with its error naming the damage, and leave every
//! byte of the image as it was (never format over a damaged pool).
//!
//! Kill times come from a seeded generator (the seed is printed; `--seed`
//! repeats the sequence of delays, though not the emulator's timing). The
//! phase a kill hit is the last console line before it: still booting
//! (hypervisor, recovery, the guest's checks), a hypercall, a pattern
//! write, or a record commit.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::emulator::{self, Emulator, Prepared, Scenario};

const MIB: u64 = 1 << 20;
/// Kill times, from QEMU's start: a quarter of the kills in the boot
/// window (QEMU and the hypervisor starting, the pool's recovery, the
/// guest's checks: the guest's boot line comes 0.1–0.2 s after start), the
/// rest over the guest's workload.
const BOOT_WINDOW_MS: (u64, u64) = (20, 200);
const WORK_WINDOW_MS: (u64, u64) = (150, 1500);
/// Operations of the final clean run.
const FINAL_OPS: u64 = 64;
/// The longest one boot may take to reach its kill or its end.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a kill landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Before the guest's boot line: firmware, hypervisor, pool recovery,
    /// the guest's checks.
    Boot,
    /// A balloon hypercall (the guest asked; the hypervisor may be
    /// committing to the pool).
    Hypercall,
    /// The guest writing a page's pattern.
    PatternWrite,
    /// The guest committing its record.
    Commit,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Boot => "boot",
            Self::Hypercall => "hypercall",
            Self::PatternWrite => "pattern-write",
            Self::Commit => "commit",
        })
    }
}

/// The phase a console whose last lines are `lines` was in.
pub(crate) fn phase_of(lines: &[String]) -> Phase {
    let booted = lines.iter().any(|l| l.contains("crashloop: boot="));
    if !booted {
        return Phase::Boot;
    }
    for line in lines.iter().rev() {
        if line.starts_with("guest: cl: hypercall") || line.starts_with("nvirt-hv: memory_op:") {
            return Phase::Hypercall;
        }
        if line.starts_with("guest: cl: write") {
            return Phase::PatternWrite;
        }
        if line.starts_with("guest: cl: commit") {
            return Phase::Commit;
        }
    }
    Phase::Boot
}

/// The guest's boot line, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BootLine {
    pub(crate) boot: u64,
    pub(crate) verified: u64,
    pub(crate) ok: bool,
}

/// The value of `key=` in `line`.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Reads a `crashloop: boot=N … verified=V … result=R` line.
pub(crate) fn boot_line(line: &str) -> Option<BootLine> {
    let at = line.find("crashloop: boot=")?;
    let rest = &line[at..];
    Some(BootLine {
        boot: field(rest, "boot")?,
        verified: field(rest, "verified")?,
        ok: rest.ends_with("result=ok"),
    })
}

/// splitmix64: the kill times' generator.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// The next kill time in milliseconds.
    pub(crate) fn kill_ms(&mut self) -> u64 {
        let (lo, hi) = if self.next() % 4 == 0 {
            BOOT_WINDOW_MS
        } else {
            WORK_WINDOW_MS
        };
        self.between(lo, hi)
    }
}

/// A seed from the clock, when none is given.
pub(crate) fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64)
}

/// What a crash loop did.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) seed: u64,
    pub(crate) iterations: u32,
    pub(crate) kills: BTreeMap<Phase, u32>,
    /// Boots whose guest printed its boot line (all checked ok).
    pub(crate) boots_verified: u32,
    /// Pages those boots found intact, summed.
    pub(crate) pages_verified: u64,
    /// Boots whose hypervisor recovered the pool.
    pub(crate) recoveries: u32,
    /// Recoveries that found the guest's domain running at the crash.
    pub(crate) crashed_found: u32,
    /// Frames of interrupted frees recovery scrubbed and reclaimed.
    pub(crate) reclaimed: u64,
    /// The highest boot counter seen.
    pub(crate) last_boot: u64,
    pub(crate) elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kills: Vec<String> = self.kills.iter().map(|(p, n)| format!("{p}={n}")).collect();
        write!(
            f,
            "crash loop: seed={} iterations={} kills: {} boots-verified={} pages-verified={} \
             recoveries={} (domain running at the crash: {}, frames reclaimed: {}) \
             boot-counter={} time={:.1}s",
            self.seed,
            self.iterations,
            kills.join(" "),
            self.boots_verified,
            self.pages_verified,
            self.recoveries,
            self.crashed_found,
            self.reclaimed,
            self.last_boot,
            self.elapsed.as_secs_f64()
        )
    }
}

/// The crash loop's scenario: QEMU, AMD-V, 16 MiB of RAM and 16 MiB of
/// NVRAM, the guest running `ops` operations of its workload (0: until
/// killed).
pub(crate) fn scenario(ops: u64) -> Scenario {
    let mut s = Scenario::new(Emulator::Qemu);
    s.ram = 16 * MIB;
    s.nvram = 16 * MIB;
    s.name = "crash-loop".to_owned();
    s.timeout = BOOT_TIMEOUT;
    s.lint = false;
    s.extra = format!("guest_crashloop={ops}");
    s
}

/// The console of one boot, killed after `delay` (or ended by itself).
struct Boot {
    lines: Vec<String>,
    killed: bool,
    status: Option<i32>,
}

fn boot_once(s: &Scenario, prepared: &Prepared, delay: Duration) -> Result<Boot, String> {
    let mut started = emulator::launch(s, prepared)?;
    let at = Instant::now();
    let mut lines = Vec::new();
    let mut killed = false;
    loop {
        let left = delay.saturating_sub(at.elapsed());
        if left.is_zero() {
            // SIGKILL, as `kill -9`: no chance to flush anything.
            let _ = started.child.kill();
            killed = true;
            break;
        }
        match started
            .lines
            .recv_timeout(left.min(Duration::from_millis(20)))
        {
            Ok(line) => lines.push(line.trim_end_matches(['\r', '\n']).to_owned()),
            Err(RecvTimeoutError::Timeout) => {
                if let Ok(Some(_)) = started.child.try_wait() {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = started.child.wait().ok().and_then(|s| s.code());
    started.exited.store(true, Ordering::Release);
    // What was already in the pipe when QEMU died.
    while let Ok(line) = started.lines.recv_timeout(Duration::from_millis(100)) {
        lines.push(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    Ok(Boot {
        lines,
        killed,
        status,
    })
}

fn failure_in(lines: &[String]) -> Option<&String> {
    lines.iter().find(|l| {
        l.starts_with("guest: FAILED:")
            || l.starts_with("guest: FAIL")
            || l.starts_with("nvirt-hv: FAILED:")
            || l.contains("PANIC")
            || l.starts_with("nvirt-hv: verdict: FAIL")
    })
}

fn tail(lines: &[String], n: usize) -> String {
    let from = lines.len().saturating_sub(n);
    lines[from..].iter().map(|l| format!("    {l}\n")).collect()
}

/// Counts a boot's recovery line into `summary`.
fn count_recovery(lines: &[String], summary: &mut Summary) {
    if let Some(l) = lines
        .iter()
        .find(|l| l.starts_with("nvirt-hv: nvpool: recovered:"))
    {
        summary.recoveries += 1;
        summary.crashed_found += u32::from(field(l, "crashed").unwrap_or(0) > 0);
        summary.reclaimed += field(l, "reclaimed").unwrap_or(0);
    }
}

/// Runs `iterations` kills and the final checks; `Err` says what failed.
/// `echo` streams every boot's console.
pub(crate) fn run(root: &Path, iterations: u32, seed: u64, echo: bool) -> Result<Summary, String> {
    let started = Instant::now();
    let looping = scenario(0);
    let prepared = emulator::prepare(root, &looping)?;
    for stale in ["pmem.img", "pmem.layout"] {
        let _ = fs::remove_file(prepared.dir.join(stale));
    }
    eprintln!(
        "nvirt crash loop: {iterations} kills, seed {seed}, each {}..{} ms (a quarter) or {}..{} ms after QEMU starts; NVDIMM {}",
        BOOT_WINDOW_MS.0,
        BOOT_WINDOW_MS.1,
        WORK_WINDOW_MS.0,
        WORK_WINDOW_MS.1,
        prepared.dir.join("pmem.img").display()
    );
    let mut rng = Rng::new(seed);
    let mut summary = Summary {
        seed,
        ..Summary::default()
    };
    for k in 1..=iterations {
        let delay = Duration::from_millis(rng.kill_ms());
        let boot = boot_once(&looping, &prepared, delay)?;
        if echo {
            for l in &boot.lines {
                println!("{l}");
            }
        }
        let context = |why: String| {
            format!(
                "iteration {k} (seed {seed}, kill after {} ms): {why}\n{}",
                delay.as_millis(),
                tail(&boot.lines, 30)
            )
        };
        if let Some(bad) = failure_in(&boot.lines) {
            return Err(context(format!("failure reported: {bad}")));
        }
        if !boot.killed {
            return Err(context(format!(
                "QEMU ended by itself (status {:?}) before the kill",
                boot.status
            )));
        }
        count_recovery(&boot.lines, &mut summary);
        if let Some(b) = boot.lines.iter().find_map(|l| boot_line(l)) {
            if !b.ok {
                return Err(context("the guest found committed data damaged".into()));
            }
            if b.boot <= summary.last_boot || b.boot > u64::from(k) {
                return Err(context(format!(
                    "boot counter {} after {} (boot {k} of the loop): not rising",
                    b.boot, summary.last_boot
                )));
            }
            summary.last_boot = b.boot;
            summary.boots_verified += 1;
            summary.pages_verified += b.verified;
        }
        let phase = phase_of(&boot.lines);
        *summary.kills.entry(phase).or_default() += 1;
        summary.iterations = k;
        eprintln!(
            "nvirt crash loop: {k}/{iterations}: killed after {} ms in {phase}{}",
            delay.as_millis(),
            boot.lines
                .iter()
                .find_map(|l| boot_line(l))
                .map(|b| format!(", boot {} verified {} pages", b.boot, b.verified))
                .unwrap_or_default()
        );
    }
    final_run(&prepared, &mut summary, echo)?;
    damaged_image_refused(&prepared)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The clean run after the loop, then `nvirt pool inspect` of the image.
fn final_run(prepared: &Prepared, summary: &mut Summary, echo: bool) -> Result<(), String> {
    let clean = scenario(FINAL_OPS);
    let outcome = emulator::run_prepared(&clean, prepared, echo)?;
    let why = |what: String| format!("final clean run: {what}\n{}", tail(&outcome.console, 30));
    if !outcome.passed {
        return Err(why(outcome.reason.clone()));
    }
    count_recovery(&outcome.console, summary);
    let Some(b) = outcome.console.iter().find_map(|l| boot_line(l)) else {
        return Err(why("no crashloop boot line".into()));
    };
    if !b.ok || b.boot <= summary.last_boot {
        return Err(why(format!(
            "boot line {b:?} after boot counter {}",
            summary.last_boot
        )));
    }
    summary.last_boot = b.boot;
    summary.boots_verified += 1;
    summary.pages_verified += b.verified;
    eprintln!(
        "nvirt crash loop: final clean run: boot {} verified {} pages, {}",
        b.boot, b.verified, outcome.reason
    );
    let image = prepared.dir.join("pmem.img");
    let exe = std::env::current_exe().map_err(|e| format!("cannot find nvirt itself: {e}"))?;
    let out = Command::new(exe)
        .args(["pool", "inspect"])
        .arg(&image)
        .output()
        .map_err(|e| format!("cannot run nvirt pool inspect: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "`nvirt pool inspect {}` reports damage ({}):\n{text}{}",
            image.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for line in text.lines().filter(|l| !l.starts_with("  extent")) {
        eprintln!("    {line}");
    }
    Ok(())
}

/// Offsets of a byte inside each pool superblock copy, past its magic.
const SUPERBLOCK_BYTES: [u64; 2] = [0x10, 0x1010];

/// Damages both superblock copies of the image and boots it: the
/// hypervisor must refuse it with a message naming the damage and change
/// nothing.
fn damaged_image_refused(prepared: &Prepared) -> Result<(), String> {
    let image = prepared.dir.join("pmem.img");
    let mut bytes = fs::read(&image).map_err(|e| format!("{}: {e}", image.display()))?;
    for at in SUPERBLOCK_BYTES {
        if let Some(b) = bytes.get_mut(at as usize) {
            *b ^= 0xff;
        }
    }
    fs::write(&image, &bytes).map_err(|e| format!("{}: {e}", image.display()))?;
    let outcome = emulator::run_prepared(&scenario(FINAL_OPS), prepared, false)?;
    let refusal = outcome.console.iter().find(|l| {
        l.starts_with("nvirt-hv: FAILED: nvpool:") && l.contains("damaged pool, left untouched")
    });
    let after = fs::read(&image).map_err(|e| format!("{}: {e}", image.display()))?;
    let why = |what: &str| format!("damaged image: {what}\n{}", tail(&outcome.console, 20));
    if outcome.passed || outcome.console.iter().any(|l| l.contains("PANIC")) {
        return Err(why("not refused cleanly"));
    }
    let Some(refusal) = refusal else {
        return Err(why("no message naming the damage"));
    };
    if after != bytes {
        return Err(why("the image changed"));
    }
    eprintln!("nvirt crash loop: damaged image refused, left unchanged: {refusal}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn phases_follow_the_last_line() {
        assert_eq!(phase_of(&lines(&["nvirt-hv: booted"])), Phase::Boot);
        let booted = "guest: ok: crashloop: boot=3 seq=9 verified=2 damaged=0 whole=1 result=ok";
        assert_eq!(phase_of(&lines(&[booted])), Phase::Boot);
        assert_eq!(
            phase_of(&lines(&[booted, "guest: cl: hypercall give 3"])),
            Phase::Hypercall
        );
        assert_eq!(
            phase_of(&lines(&[
                booted,
                "guest: cl: hypercall take 3",
                "nvirt-hv: memory_op: populate_physmap"
            ])),
            Phase::Hypercall
        );
        assert_eq!(
            phase_of(&lines(&[booted, "guest: cl: write page 3 stamp 0x1"])),
            Phase::PatternWrite
        );
        assert_eq!(
            phase_of(&lines(&[
                booted,
                "guest: cl: write page 3",
                "guest: cl: commit page 3"
            ])),
            Phase::Commit
        );
    }

    #[test]
    fn reads_boot_lines() {
        let l = "guest: ok: crashloop: boot=3 seq=9 verified=2 damaged=0 whole=1 result=ok";
        assert_eq!(
            boot_line(l),
            Some(BootLine {
                boot: 3,
                verified: 2,
                ok: true
            })
        );
        let bad = "guest: FAILED: crashloop: boot=3 seq=9 verified=1 damaged=1 whole=1 result=FAIL";
        assert!(!boot_line(bad).unwrap().ok);
        assert_eq!(boot_line("guest: cl: commit page 3"), None);
        assert_eq!(field("a=1 b=x c=3", "c"), Some(3));
        assert_eq!(field("a=1 b=x", "b"), None);
        assert_eq!(field("ab=1", "a"), None);
    }

    #[test]
    fn the_generator_is_seeded_and_stays_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.between(20, 1500);
            assert_eq!(x, b.between(20, 1500));
            assert!((20..=1500).contains(&x));
        }
        assert_ne!(Rng::new(1).next(), Rng::new(2).next());
        let mut r = Rng::new(3);
        let kills: Vec<u64> = (0..400).map(|_| r.kill_ms()).collect();
        assert!(
            kills
                .iter()
                .all(|&k| (BOOT_WINDOW_MS.0..=WORK_WINDOW_MS.1).contains(&k))
        );
        let early = kills.iter().filter(|&&k| k < WORK_WINDOW_MS.0).count();
        assert!(
            (40..160).contains(&early),
            "about a fifth land early: {early}"
        );
    }

    #[test]
    fn summary_names_every_figure() {
        let mut s = Summary {
            seed: 42,
            iterations: 3,
            ..Summary::default()
        };
        s.kills.insert(Phase::Boot, 1);
        s.kills.insert(Phase::Commit, 2);
        let text = s.to_string();
        for want in [
            "seed=42",
            "iterations=3",
            "boot=1",
            "commit=2",
            "pages-verified=0",
        ] {
            assert!(text.contains(want), "{text}");
        }
    }
}
