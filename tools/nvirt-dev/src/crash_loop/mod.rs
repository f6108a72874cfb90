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

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::emulator::{self, Emulator, Prepared, Scenario};

mod console;
pub(crate) mod vms;

use console::{BOOT_WINDOW_MS, WORK_WINDOW_MS, boot_line, field, phase_of};
pub(crate) use console::{Rng, Summary, clock_seed};

const MIB: u64 = 1 << 20;
/// Operations of the final clean run.
const FINAL_OPS: u64 = 64;
/// The longest one boot may take to reach its kill or its end.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

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
        "nvirt crash loop: {iterations} kills, seed {seed}, every fourth {}..{} ms, the others {}..{} ms after QEMU starts; NVDIMM {}",
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
        let delay = Duration::from_millis(rng.kill_ms(k));
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
            summary
                .verified
                .count(b, k)
                .map_err(|why| context(format!("the guest {why}")))?;
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
    // Kills that all land before the guest verifies anything (a machine
    // too slow for the kill windows) would prove nothing.
    let floor = iterations / 4;
    if summary.verified.boots < floor || summary.recoveries < floor {
        return Err(format!(
            "only {} of {iterations} boots verified the guest's data and {} recovered the pool \
             (at least {floor} each needed): the kills land too early for this machine",
            summary.verified.boots, summary.recoveries
        ));
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
    summary
        .verified
        .count(b, summary.iterations.saturating_add(1))
        .map_err(|w| why(format!("the guest {w}")))?;
    eprintln!(
        "nvirt crash loop: final clean run: boot {} verified {} pages, {}",
        b.boot, b.verified, outcome.reason
    );
    let text = pool_inspect(&prepared.dir.join("pmem.img"))?;
    for line in text.lines().filter(|l| !l.starts_with("  extent")) {
        eprintln!("    {line}");
    }
    Ok(())
}

/// `nvirt pool inspect IMAGE`: its report, or why it found damage.
pub(crate) fn pool_inspect(image: &Path) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find nvirt itself: {e}"))?;
    let out = Command::new(exe)
        .args(["pool", "inspect"])
        .arg(image)
        .output()
        .map_err(|e| format!("cannot run nvirt pool inspect: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "`nvirt pool inspect {}` reports damage ({}):\n{text}{}",
            image.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text)
}

/// Offsets of a byte inside each pool superblock copy, past its magic.
const SUPERBLOCK_BYTES: [u64; 2] = [
    nvirt_nvpool::config::POOL_SUPERBLOCKS[0] + 0x10,
    nvirt_nvpool::config::POOL_SUPERBLOCKS[1] + 0x10,
];

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
        l.starts_with("nvirt-hv: FAILED: nvpool:") && l.contains("damaged pool, not formatted over")
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
