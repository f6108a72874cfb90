//! The crash loop with three VMs on one hypervisor (`emulator/qemu-vms-crash-loop`,
//! `nvirt run --vm-crash-loop N`): QEMU killed with SIGKILL at random
//! moments while the VMs boot, fault their thin NVRAM in, balloon and
//! commit records, or shut down, all on the same NVDIMM file. After every
//! restart the hypervisor recovers the pool and re-attaches every domain,
//! saying which were running when the machine died; each guest checks
//! that everything its committed record says survived. Then a clean boot
//! of all three and `nvirt pool inspect` of the image.
//!
//! - `alpha`: NVRAM backed at start, the crash-loop workload until killed;
//! - `beta`: NVRAM on first touch (its records are read and written through
//!   first-touch faults), the same workload;
//! - `gamma`: a short workload, then a normal power-off in every boot, so
//!   kills also land in a guest's shutdown and in boots where one domain is
//!   shut down while the others crashed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::emulator::{self, Emulator, Prepared, Scenario};

use super::console::{BOOT_WINDOW_MS, Rng, Verified, WORK_WINDOW_MS, boot_line};
use super::{boot_once, pool_inspect, tail};

/// Operations gamma runs before it powers off; and each VM in the clean
/// boot at the end.
const GAMMA_OPS: u64 = 12;
const FINAL_OPS: u64 = 32;
/// The NVDIMM: the three VMs' 8 MiB of NVRAM each and the pool's metadata.
const NVDIMM: u64 = 26 << 20;
/// The longest one boot may take to reach its kill or its end.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// The VMs.
const VMS: [(&str, &str); 3] = [("alpha", "eager"), ("beta", "touch"), ("gamma", "eager")];

/// What the loop saw.
#[derive(Debug, Default)]
pub(crate) struct VmLoopSummary {
    pub(crate) seed: u64,
    pub(crate) kills: u32,
    /// Kills by what was last seen happening.
    pub(crate) phases: BTreeMap<&'static str, u32>,
    /// Per VM: boots that verified its data, pages verified, times its
    /// domain was found running at a crash, times found shut down.
    pub(crate) per_vm: BTreeMap<String, PerVm>,
    /// Boots whose hypervisor recovered the pool.
    pub(crate) recoveries: u32,
    pub(crate) elapsed: Duration,
}

/// One VM's part of the summary.
#[derive(Debug, Default, Clone)]
pub(crate) struct PerVm {
    pub(crate) verified: Verified,
    pub(crate) found_running: u32,
    pub(crate) found_shut_down: u32,
}

impl std::fmt::Display for VmLoopSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} kills (seed {}), {} recoveries, in {:.0} s; kills in:",
            self.kills,
            self.seed,
            self.recoveries,
            self.elapsed.as_secs_f64()
        )?;
        for (phase, n) in &self.phases {
            write!(f, " {phase} {n}")?;
        }
        for (vm, p) in &self.per_vm {
            write!(
                f,
                "\n  {vm}: {} boots verified its data ({} pages), found running at a crash {} times, shut down {} times",
                p.verified.boots, p.verified.pages, p.found_running, p.found_shut_down
            )?;
        }
        Ok(())
    }
}

/// Writes the three configurations into `dir` for a workload of `ops`
/// operations (0: until killed; gamma always stops after [`GAMMA_OPS`]
/// while looping).
fn configs(dir: &Path, ops: u64) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for (name, populate) in VMS {
        let ops = match (name, ops) {
            ("gamma", 0) => GAMMA_OPS,
            (_, n) => n,
        };
        let path = dir.join(format!("{name}-{ops}.cfg"));
        let text = format!(
            "name = \"{name}\"\nmemory = 16\nnvram = 8\nnvram_populate = \"{populate}\"\ncmdline = \"nvirt.crashloop={ops}\"\n"
        );
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(path);
    }
    Ok(files)
}

fn scenario(dir: &Path, ops: u64) -> Result<Scenario, String> {
    let vms = emulator::vms::load(&configs(dir, ops)?)?;
    let mut s = Scenario::new(Emulator::Qemu);
    s.set_vms(vms, Some(NVDIMM))?;
    s.name = "qemu-amd-vms-crash-loop".to_owned();
    s.timeout = BOOT_TIMEOUT;
    s.lint = false;
    Ok(s)
}

/// What the console's last events say was happening when it stopped.
pub(crate) fn phase_of(lines: &[String]) -> &'static str {
    if !lines.iter().any(|l| l.contains("crashloop: boot=")) {
        return "boot";
    }
    for l in lines.iter().rev() {
        if l.contains(": guest shut down") || l.contains(" marked shut down") {
            return "shutdown";
        }
        if l.contains(": paused:") {
            return "fault";
        }
        if l.contains(": cl: hypercall") || l.contains(": memory_op:") {
            return "balloon";
        }
        if l.contains(": cl: write") {
            return "pattern-write";
        }
        if l.contains(": cl: commit") {
            return "commit";
        }
    }
    "boot"
}

/// A guest's or the hypervisor's failure line.
fn failure_in(lines: &[String]) -> Option<&String> {
    lines.iter().find(|l| {
        (l.starts_with("guest ") && (l.contains(": FAILED:") || l.ends_with(": FAIL")))
            || l.starts_with("nvirt-hv: FAILED:")
            || l.contains("ended (FAILED)")
            || l.contains("PANIC")
            || l.starts_with("nvirt-hv: verdict: FAIL")
    })
}

/// Reads one boot's console into the summary; `Err` on anything wrong.
fn account(lines: &[String], k: u32, summary: &mut VmLoopSummary) -> Result<String, String> {
    if let Some(bad) = failure_in(lines) {
        return Err(format!("failure reported: {bad}"));
    }
    if lines
        .iter()
        .any(|l| l.starts_with("nvirt-hv: nvpool: recovered:"))
    {
        summary.recoveries += 1;
    }
    let mut said = String::new();
    for (name, _) in VMS {
        let p = summary.per_vm.entry(name.to_owned()).or_default();
        let found = format!("nvirt-hv: vm {name}: nvpool: domain \"{name}\" (id ");
        if let Some(l) = lines.iter().find(|l| l.starts_with(&found)) {
            if l.contains(" found, crashed-while-running") {
                p.found_running += 1;
                let _ = write!(said, " {name} was running;");
            } else if l.contains(" found, shut-down") {
                p.found_shut_down += 1;
                let _ = write!(said, " {name} was shut down;");
            }
        }
        let prefix = format!("guest {name}: ");
        if let Some(b) = lines
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .find_map(|l| boot_line(l))
        {
            p.verified
                .count(b, k)
                .map_err(|why| format!("{name}: {why}"))?;
            let _ = write!(said, " {name} verified {} pages;", b.verified);
        }
    }
    Ok(said)
}

/// Runs `kills` kills, the clean boot and the pool check; `Err` says what
/// failed.
pub(crate) fn run(root: &Path, kills: u32, seed: u64, echo: bool) -> Result<VmLoopSummary, String> {
    let started = Instant::now();
    let probe = Scenario::new(Emulator::Qemu);
    let dir = probe
        .run_dir(root)
        .with_file_name("qemu-amd-vms-crash-loop");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let looping = scenario(&dir, 0)?;
    let prepared = emulator::prepare(root, &looping)?;
    eprintln!(
        "nvirt crash loop with VMs alpha (NVRAM at start), beta (NVRAM on first touch), gamma ({GAMMA_OPS} operations, then power-off): \
         {kills} kills, seed {seed}, every fourth {}..{} ms, the others {}..{} ms after QEMU starts; NVDIMM {}",
        BOOT_WINDOW_MS.0,
        BOOT_WINDOW_MS.1,
        WORK_WINDOW_MS.0,
        WORK_WINDOW_MS.1 * 2,
        prepared.dir.join("pmem.img").display()
    );
    let mut rng = Rng::new(seed);
    let mut summary = VmLoopSummary {
        seed,
        ..VmLoopSummary::default()
    };
    for k in 1..=kills {
        // Three guests share the CPU: the work window is twice as long.
        let ms = match rng.kill_ms(k) {
            ms if ms >= WORK_WINDOW_MS.0 => ms * 2,
            ms => ms,
        };
        let delay = Duration::from_millis(ms);
        let boot = boot_once(&looping, &prepared, delay)?;
        if echo {
            for l in &boot.lines {
                println!("{l}");
            }
        }
        let context = |why: String| {
            format!(
                "kill {k} (seed {seed}, after {ms} ms): {why}\n{}",
                tail(&boot.lines, 30)
            )
        };
        if !boot.killed {
            return Err(context(format!(
                "QEMU ended by itself (status {:?}) before the kill",
                boot.status
            )));
        }
        let said = account(&boot.lines, k, &mut summary).map_err(context)?;
        let phase = phase_of(&boot.lines);
        *summary.phases.entry(phase).or_default() += 1;
        summary.kills = k;
        eprintln!("nvirt crash loop: {k}/{kills}: killed after {ms} ms in {phase};{said}");
    }
    let floor = kills / 4;
    for (name, p) in &summary.per_vm {
        if p.verified.boots < floor.max(1) {
            return Err(format!(
                "{name}'s data was verified in only {} of {kills} boots (at least {} needed): the kills land too early for this machine",
                p.verified.boots,
                floor.max(1)
            ));
        }
    }
    final_boot(&dir, &prepared, &mut summary, kills.saturating_add(1), echo)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The clean boot after the loop, then `nvirt pool inspect` of the image.
fn final_boot(
    dir: &Path,
    prepared: &Prepared,
    summary: &mut VmLoopSummary,
    k: u32,
    echo: bool,
) -> Result<(), String> {
    let clean = scenario(dir, FINAL_OPS)?;
    let outcome = emulator::run_prepared(&clean, prepared, echo)?;
    let why = |what: String| format!("final clean boot: {what}\n{}", tail(&outcome.console, 30));
    if !outcome.passed {
        return Err(why(outcome.reason.clone()));
    }
    let said = account(&outcome.console, k, summary).map_err(why)?;
    for (name, _) in VMS {
        let prefix = format!("guest {name}: ");
        if !outcome
            .console
            .iter()
            .any(|l| l.starts_with(&prefix) && boot_line(l).is_some())
        {
            return Err(why(format!("{name} printed no crashloop boot line")));
        }
    }
    eprintln!(
        "nvirt crash loop: final clean boot:{said} {}",
        outcome.reason
    );
    let text = pool_inspect(&prepared.dir.join("pmem.img"))?;
    for line in text.lines().filter(|l| !l.starts_with("  extent")) {
        eprintln!("    {line}");
    }
    if !text.contains("crashed-domains=0") || text.contains("state=crashed") {
        return Err(format!(
            "after the clean boot a domain is still marked crashed:\n{text}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn names_the_phase_a_kill_hit() {
        assert_eq!(phase_of(&lines(&["nvirt-hv: booted"])), "boot");
        let booted = "guest alpha: crashloop: boot=3 seq=9 verified=4 damaged=0 whole=1 result=ok";
        assert_eq!(
            phase_of(&lines(&[booted, "guest beta: cl: write 3"])),
            "pattern-write"
        );
        assert_eq!(
            phase_of(&lines(&[
                booted,
                "nvirt-hv: vm gamma: guest shut down: poweroff"
            ])),
            "shutdown"
        );
        assert_eq!(
            phase_of(&lines(&[booted, "nvirt-hv: vm beta: memory_op: x"])),
            "balloon"
        );
    }

    #[test]
    fn accounts_boots_per_vm_and_refuses_a_counter_that_does_not_rise() {
        let mut s = VmLoopSummary::default();
        let boot = lines(&[
            "nvirt-hv: nvpool: recovered: crashed=2",
            "nvirt-hv: vm alpha: nvpool: domain \"alpha\" (id 0x1) found, crashed-while-running: 8 MiB",
            "nvirt-hv: vm gamma: nvpool: domain \"gamma\" (id 0x3) found, shut-down: 8 MiB",
            "guest alpha: crashloop: boot=2 seq=9 verified=4 damaged=0 whole=1 result=ok",
        ]);
        let said = account(&boot, 2, &mut s).unwrap();
        assert!(said.contains("alpha was running") && said.contains("gamma was shut down"));
        assert_eq!(s.per_vm["alpha"].verified.boots, 1);
        assert_eq!(s.per_vm["alpha"].found_running, 1);
        assert_eq!(s.per_vm["gamma"].found_shut_down, 1);
        assert_eq!(s.recoveries, 1);
        assert!(
            account(&boot, 3, &mut s)
                .unwrap_err()
                .contains("not rising")
        );
        let damaged = lines(&[
            "guest beta: crashloop: boot=1 seq=1 verified=0 damaged=1 whole=1 result=damaged",
        ]);
        assert!(account(&damaged, 1, &mut VmLoopSummary::default()).is_err());
        let failed = lines(&["guest beta: FAILED: crashloop: page 3"]);
        assert!(account(&failed, 1, &mut VmLoopSummary::default()).is_err());
    }
}
