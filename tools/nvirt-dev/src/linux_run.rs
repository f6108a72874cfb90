//! A stock Linux kernel as the reference hypervisor's guest: `nvirt run
//! linux` (one boot), `nvirt run linux --crash-loop N` (QEMU killed at
//! random moments while the guest writes records to `/dev/pmem0`), and the
//! side-by-side comparison with the same kernel booted directly that
//! `nvirt bench linux` prints. The guest gets 256 MiB of RAM and 64 MiB of
//! NVRAM shown as E820 type 12, which Linux's `nd_e820` turns into
//! `/dev/pmem0`; its kernel, modules and initramfs come from
//! [`crate::linux`].

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::crash_loop::pool_inspect;
use crate::emulator::{self, Emulator, LinuxBoot, Prepared, Scenario};
use crate::linux::crash_loop::{self as linux_loop, Summary};
use crate::linux::{self, Mode, Running};
use crate::process::TimedLine;

const MIB: u64 = 1 << 20;

/// The Linux guest's command line under the hypervisor: [`linux::CMDLINE`]
/// (the same the direct boot gets, so the two boots compare), and
/// `panic=-1`: a panic reboots at once, and the hypervisor's reset port
/// ends the run (a failure before the final marker) instead of a hang
/// until the timeout. The init's mode follows.
pub(crate) fn cmdline(mode: Mode) -> String {
    format!("{} panic=-1 {}", linux::CMDLINE, mode.param())
}

/// Makes `scenario` boot Linux: the given kernel and initramfs (else
/// Debian's, fetched and built once), Linux's sizes and NVRAM type, and a
/// longer timeout.
pub(crate) fn configure(
    scenario: &mut Scenario,
    root: &Path,
    kernel: Option<&Path>,
    initrd: Option<&Path>,
    append: Option<&str>,
) -> Result<(), String> {
    let (bzimage, initramfs) = match (kernel, initrd) {
        (Some(k), Some(i)) => (k.to_path_buf(), i.to_path_buf()),
        (k, i) => {
            let guest = linux::prepare(root)?;
            eprintln!("nvirt run: Linux guest: Debian's kernel {}", guest.version);
            (
                k.map_or(guest.bzimage, Path::to_path_buf),
                i.map_or(guest.initramfs, Path::to_path_buf),
            )
        }
    };
    scenario.ram = 256 * MIB;
    scenario.nvram = 64 * MIB;
    scenario.nv_type = 12;
    scenario.timeout = Duration::from_secs(match scenario.emulator {
        Emulator::Qemu => 300,
        Emulator::Bochs => 1200,
    });
    scenario.linux = Some(LinuxBoot {
        bzimage,
        initramfs,
        cmdline: append.map_or_else(|| cmdline(Mode::Boot), str::to_owned),
    });
    Ok(())
}

/// The Linux scenario `nvirt test` runs on `emulator`.
pub(crate) fn scenario(root: &Path, emulator: Emulator) -> Result<Scenario, String> {
    let mut s = Scenario::new(emulator);
    configure(&mut s, root, None, None, None)?;
    s.name = format!("{emulator}-{}-linux", s.cpu);
    s.lint = false;
    Ok(s)
}

/// Starts one boot of `scenario` with the init in `mode`, its console
/// lines stamped from the emulator's start.
fn launch(scenario: &Scenario, prepared: &Prepared, mode: Mode) -> Result<Running, String> {
    let mut s = scenario.clone();
    if let Some(l) = s.linux.as_mut() {
        l.cmdline = cmdline(mode);
    }
    let since = Instant::now();
    let started = emulator::launch(&s, prepared)?;
    let (tx, rx) = mpsc::channel();
    let lines = started.lines;
    thread::spawn(move || {
        for text in lines {
            // The serial console ends its lines with CR LF.
            let text = text.trim_end_matches(['\r', '\n']).to_owned();
            if tx
                .send(TimedLine {
                    at: since.elapsed(),
                    text,
                })
                .is_err()
            {
                break;
            }
        }
    });
    Ok(Running {
        child: started.child,
        lines: rx,
    })
}

/// The hypervisor's lines that end a boot as failed.
fn hypervisor_failed(line: &str) -> bool {
    line == "nvirt-hv: verdict: FAIL" || line.starts_with("nvirt-hv: FAILED")
}

/// `kills` boots of Linux on nvirt-hv in QEMU killed with SIGKILL, each
/// boot checking every record the previous ones announced, then a clean
/// boot and `nvirt pool inspect` of the NVDIMM image.
pub(crate) fn crash_loop(
    root: &Path,
    kills: u32,
    seed: u64,
    echo: bool,
) -> Result<Summary, String> {
    let mut s = scenario(root, Emulator::Qemu)?;
    s.name = "qemu-amd-linux-crash-loop".to_owned();
    let prepared = emulator::prepare(root, &s)?;
    // A new NVDIMM: the loop starts from an empty pool.
    linux::remove_if_present(&prepared.dir.join("pmem.img"))?;
    let mut config = linux_loop::Config::new(kills, seed);
    config.echo = echo;
    config.failure = hypervisor_failed;
    config.ends_itself = Some(|l| l == "nvirt-hv: verdict: PASS");
    config.boot_timeout = Duration::from_secs(240);
    let summary = linux_loop::run(&mut |mode| launch(&s, &prepared, mode), &config)?;
    let report = pool_inspect(&prepared.dir.join("pmem.img"))?;
    for line in report.lines().filter(|l| !l.starts_with("  extent")) {
        eprintln!("    {line}");
    }
    // The clean boot ended with the domain marked shut down: the image
    // recovers with no crashed domain.
    if !report.contains("crashed-domains=0") {
        return Err(format!(
            "after the clean boot the pool still shows a crashed domain:\n{report}"
        ));
    }
    Ok(summary)
}

/// Time to `/dev/pmem0` of the same kernel and initramfs on nvirt-hv and
/// booted directly in QEMU, `boots` of each, alternating.
pub(crate) struct Comparison {
    pub(crate) hypervisor: Vec<Duration>,
    pub(crate) direct: Vec<Duration>,
    /// Exits per boot under the hypervisor (from its last report).
    pub(crate) exits: Vec<u64>,
}

fn mean(v: &[Duration]) -> f64 {
    v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len().max(1) as f64
}

impl Comparison {
    pub(crate) fn ratio(&self) -> f64 {
        mean(&self.hypervisor) / mean(&self.direct)
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[Duration]| {
            v.iter()
                .map(|d| format!("{:.2}", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let hv = mean(&self.hypervisor);
        let exits = self.exits.iter().sum::<u64>() as f64 / self.exits.len().max(1) as f64;
        writeln!(
            f,
            "linux direct      pmem0 mean {:.2} s ({})",
            mean(&self.direct),
            list(&self.direct)
        )?;
        writeln!(
            f,
            "linux on nvirt-hv pmem0 mean {hv:.2} s ({})",
            list(&self.hypervisor)
        )?;
        write!(
            f,
            "linux nvirt-hv/direct = {:.2}x; {exits:.0} exits per boot, {:.0} exits/s",
            self.ratio(),
            exits / hv.max(f64::MIN_POSITIVE)
        )
    }
}

/// Runs the comparison in QEMU.
pub(crate) fn compare(root: &Path, boots: u32, echo: bool) -> Result<Comparison, String> {
    let guest = linux::prepare(root)?;
    let mut s = scenario(root, Emulator::Qemu)?;
    s.name = "qemu-amd-linux-bench".to_owned();
    let prepared = emulator::prepare(root, &s)?;
    let direct = linux::direct::Direct::new(root, &guest, "linux-bench-direct")?;
    let mut c = Comparison {
        hypervisor: Vec::new(),
        direct: Vec::new(),
        exits: Vec::new(),
    };
    for i in 0..boots {
        let hv = linux::run_to_end(launch(&s, &prepared, Mode::Boot)?, s.timeout, echo, true);
        let d = linux::run_to_end(direct.start(Mode::Boot)?, s.timeout, echo, false);
        let (Some(a), Some(b)) = (hv.pmem0_at(), d.pmem0_at()) else {
            return Err(format!(
                "boot {i}: no /dev/pmem0 marker (nvirt-hv {:?}, direct {:?})",
                hv.end, d.end
            ));
        };
        c.hypervisor.push(a);
        c.direct.push(b);
        if let Some(n) = hv.lines.iter().rev().find_map(|l| exits_of(&l.text)) {
            c.exits.push(n);
        }
    }
    Ok(c)
}

/// Linux's own `BIOS-e820:` lines against the map the hypervisor
/// synthesized (its `guest [mem …]` lines), each put through `nvirt e820
/// sanitize`: equal, or why not. Returns the agreed map's lines.
pub(crate) fn e820_agrees(console: &[String]) -> Result<Vec<String>, String> {
    let linux: String = console
        .iter()
        .filter(|l| l.contains("BIOS-e820: [mem"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ours: String = console
        .iter()
        .filter_map(|l| l.strip_prefix("nvirt-hv:   guest [mem"))
        .map(|l| format!("[mem{l}\n"))
        .collect();
    if linux.is_empty() || ours.is_empty() {
        return Err(
            "the console lacks Linux's BIOS-e820 lines or the hypervisor's guest map".into(),
        );
    }
    let (a, b) = (
        sanitize("Linux's map", &linux)?,
        sanitize("nvirt-hv's map", &ours)?,
    );
    if a != b {
        return Err(format!(
            "Linux's E820 map differs from the hypervisor's:\nLinux:\n{}\nnvirt-hv:\n{}",
            a.join("\n"),
            b.join("\n")
        ));
    }
    Ok(a)
}

/// What `nvirt e820 sanitize` prints for `text`, as lines.
fn sanitize(what: &str, text: &str) -> Result<Vec<String>, String> {
    Ok(nvirt_cli::sanitize_text(what, text)?
        .lines()
        .map(str::to_owned)
        .collect())
}

/// One boot of the Linux scenario on `emulator` as a check of `nvirt
/// test` (and what `nvirt run linux` checks after its boot): PASS, and
/// Linux's E820 map equal to the one the hypervisor synthesized.
pub(crate) fn check(root: &Path, emulator: Emulator) -> Result<(), String> {
    let s = scenario(root, emulator)?;
    let outcome = emulator::run_scenario(root, &s, false)?;
    if !outcome.passed {
        for line in outcome.console.iter().rev().take(40).rev() {
            eprintln!("    {line}");
        }
        return Err(format!(
            "{} (emulator log: {})",
            outcome.reason,
            outcome.log.display()
        ));
    }
    let map = e820_agrees(&outcome.console)?;
    eprintln!(
        "nvirt test: Linux on nvirt-hv ({emulator}): /dev/pmem0 {:.2} s after emulator start, {}; its E820 map equals the hypervisor's ({} entries)",
        outcome.time_to_pmem0.unwrap_or_default().as_secs_f64(),
        outcome.reason,
        map.len()
    );
    for line in outcome.console.iter().filter(|l| {
        l.contains("guest tables (at the end")
            || l.starts_with("nvirt-hv: guest ") && l.contains(" exits (")
    }) {
        eprintln!("    {line}");
    }
    Ok(())
}

/// The exit count of the hypervisor's `guest N exits (…)` line.
fn exits_of(line: &str) -> Option<u64> {
    line.strip_prefix("nvirt-hv: guest ")?
        .split_once(" exits (")?
        .0
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_and_hypervisor_maps_compare_after_sanitizing() {
        let hv = |body: &str| format!("nvirt-hv:   guest {body}");
        let linux = |body: &str| format!("[    0.000000] BIOS-e820: {body}");
        let map = [
            "[mem 0x0000000000000000-0x000000000009fbff] usable",
            "[mem 0x0000000100000000-0x0000000103ffffff] persistent (type 12)",
        ];
        let mut console: Vec<String> = map.iter().map(|m| hv(m)).collect();
        assert!(e820_agrees(&console).is_err(), "no Linux lines");
        // Linux's lines in another order, with other lines between them.
        console.push(linux(map[1]));
        console.push("[    0.000000] BIOS-provided physical RAM map:".to_owned());
        console.push(linux(map[0]));
        assert_eq!(e820_agrees(&console).unwrap(), map);
        // A different NVRAM type is a difference.
        console.push(linux(
            "[mem 0x0000000200000000-0x0000000203ffffff] persistent (type 7)",
        ));
        assert!(e820_agrees(&console).unwrap_err().contains("differs"));
        assert!(e820_agrees(&[]).is_err());
    }

    #[test]
    fn reads_the_hypervisors_exit_count() {
        assert_eq!(
            exits_of(
                "nvirt-hv: guest 69428 exits (I/O 68396, MSR 20, CPUID 1010, HLT 2, hypercall 0, other 0)"
            ),
            Some(69428)
        );
        assert_eq!(
            exits_of("nvirt-hv: guest marker \"x\" after 5 exits (I/O 5)"),
            None
        );
        assert!(cmdline(Mode::Crashloop).ends_with("nvirt.linux=crashloop"));
        assert!(cmdline(Mode::Boot).starts_with(linux::CMDLINE));
    }
}
