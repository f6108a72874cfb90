//! Running the reference hypervisor and its guest in an emulator: one
//! [`Scenario`] in, one [`Outcome`] out, with the serial console streamed
//! live. `nvirt run` runs one scenario; `nvirt test` can run a list.
//!
//! Pass means all of: the guest printed a `PASS` line (`guest: PASS` on the
//! serial console), the hypervisor printed `nvirt-hv: verdict: PASS`, and
//! the emulator's exit status agrees (QEMU's `isa-debug-exit`: 33; Bochs
//! quitting at the magic breakpoint: 0) — before the timeout.

pub(crate) mod bochs;
pub(crate) mod packages;
pub(crate) mod page_out;
pub(crate) mod qemu;
pub(crate) mod vms;

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::image::{self, target_dir};
pub(crate) use vms::VmBoot;

/// The emulators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Emulator {
    /// QEMU with TCG: AMD SVM with nested paging (TCG has no VMX).
    Qemu,
    /// Bochs: Intel VMX with EPT, or AMD SVM with nested paging.
    Bochs,
}

/// The virtualization extension the emulated CPU offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Cpu {
    /// Intel VT-x with EPT.
    Intel,
    /// AMD-V with nested paging.
    Amd,
}

/// How the hypervisor is booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Boot {
    /// QEMU `-kernel` (Multiboot1) with the guest preloaded by `-device loader`.
    Kernel,
    /// A GRUB ISO (Multiboot2) with the guest as a module.
    Iso,
    /// QEMU `-kernel` through the PVH ELF note (Multiboot1 header removed
    /// from a copy), the guest preloaded by `-device loader`.
    Pvh,
}

impl fmt::Display for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Qemu => "qemu",
            Self::Bochs => "bochs",
        })
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Intel => "intel",
            Self::Amd => "amd",
        })
    }
}

impl fmt::Display for Boot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kernel => "kernel",
            Self::Iso => "iso",
            Self::Pvh => "pvh",
        })
    }
}

/// Where QEMU's `-device loader` puts the raw guest image (host-physical).
pub(crate) const GUEST_LOAD_ADDR: u64 = 0x300_0000;
/// 2 MiB: the granule of guest RAM and NVRAM sizes (the guest's balloon
/// windows are 2 MiB aligned).
const GRANULE: u64 = 2 << 20;
const MIB: u64 = 1 << 20;
/// Least guest RAM: room for the guest's image and a 4 MiB balloon window.
const MIN_RAM: u64 = 8 * MIB;
/// Least guest NVRAM, if any: a 4 MiB balloon window.
const MIN_NVRAM: u64 = 4 * MIB;

/// One emulator run.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    /// Short name: also the run directory under `target/nvirt-run/`.
    pub(crate) name: String,
    /// Which emulator.
    pub(crate) emulator: Emulator,
    /// Which virtualization extension.
    pub(crate) cpu: Cpu,
    /// How to boot.
    pub(crate) boot: Boot,
    /// Guest RAM in bytes.
    pub(crate) ram: u64,
    /// Guest NVRAM in bytes (0: none).
    pub(crate) nvram: u64,
    /// E820 type of the guest's NVRAM (7, 12 or 90).
    pub(crate) nv_type: u32,
    /// Longest the emulator may run.
    pub(crate) timeout: Duration,
    /// Whether to run clippy on the bare-metal crates before building.
    pub(crate) lint: bool,
    /// More hypervisor options (e.g. `guest_crashloop=0`).
    pub(crate) extra: String,
    /// A Linux guest instead of the test guest.
    pub(crate) linux: Option<LinuxBoot>,
    /// VMs from configuration files (`--vm`), passed as boot modules
    /// ([`vms`] has the convention) instead of the one guest that `ram`,
    /// `nvram` and `nv_type` describe. With VMs, `ram` is the sum of their
    /// `memory` and `nvram` the sum of their NVRAM (what sizes the NVDIMM
    /// unless `nvdimm` does).
    pub(crate) vms: Vec<VmBoot>,
    /// The machine's NVRAM in bytes (NVDIMM or `memmap=` range), instead of
    /// the size derived from `nvram` ([`nvram_device_bytes`]).
    pub(crate) nvdimm: Option<u64>,
}

/// A Linux kernel, its initramfs and its command line, given to the
/// hypervisor as boot modules: the kernel's module string is `linux`
/// followed by the command line, the initramfs's is `initrd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LinuxBoot {
    /// The bzImage.
    pub(crate) bzimage: PathBuf,
    /// The initramfs (newc cpio, gzip).
    pub(crate) initramfs: PathBuf,
    /// The kernel's command line.
    pub(crate) cmdline: String,
}

/// Least guest RAM for a Linux guest: Debian's kernel loads at 16 MiB and
/// needs 64 MiB (`init_size`) from there while it boots, then room to run.
pub(crate) const LINUX_MIN_RAM: u64 = 128 * MIB;

impl LinuxBoot {
    /// The boot modules: (file, module string).
    pub(crate) fn modules(&self) -> [(PathBuf, String); 2] {
        [
            (self.bzimage.clone(), format!("linux {}", self.cmdline)),
            (self.initramfs.clone(), "initrd".to_owned()),
        ]
    }
}

impl Scenario {
    /// The defaults for `emulator`: QEMU AMD-V booted with `-kernel`, 64 MiB
    /// of RAM and 64 MiB of NVRAM on an NVDIMM; Bochs Intel VT-x from a GRUB
    /// ISO with 16 MiB of each (Bochs is slower).
    pub(crate) fn new(emulator: Emulator) -> Self {
        let (cpu, boot, size, timeout) = match emulator {
            Emulator::Qemu => (Cpu::Amd, Boot::Kernel, 64 * MIB, 180),
            Emulator::Bochs => (Cpu::Intel, Boot::Iso, 16 * MIB, 600),
        };
        Self {
            name: format!("{emulator}-{cpu}"),
            emulator,
            cpu,
            boot,
            ram: size,
            nvram: size,
            nv_type: 7,
            timeout: Duration::from_secs(timeout),
            lint: true,
            extra: String::new(),
            linux: None,
            vms: Vec::new(),
            nvdimm: None,
        }
    }

    /// Runs `vms` instead of the single test guest: host RAM for the sum of
    /// their `memory`, and an NVDIMM of `nvdimm` bytes if given, else one
    /// that holds all their NVRAM and the pool's metadata. A given size
    /// must hold at least the VMs' eager NVRAM and the metadata (first-touch
    /// NVRAM may add up to more than the pool: thin provisioning).
    pub(crate) fn set_vms(&mut self, vms: Vec<VmBoot>, nvdimm: Option<u64>) -> Result<(), String> {
        if vms.is_empty() {
            return Err("no VM".into());
        }
        let eager = vms::eager_nvram(&vms);
        let least = nvram_device_bytes(eager);
        if let Some(bytes) = nvdimm {
            if bytes < least || bytes % GRANULE != 0 {
                return Err(format!(
                    "--nvram {} MiB cannot hold the VMs' {} MiB of eager NVRAM and the pool's metadata: \
                     give a multiple of 2 MiB of at least {} MiB",
                    bytes / MIB,
                    eager / MIB,
                    least / MIB
                ));
            }
        }
        self.ram = vms::total_memory(&vms);
        self.nvram = vms::total_nvram(&vms);
        self.nvdimm = nvdimm;
        self.vms = vms;
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        if self.emulator == Emulator::Qemu && self.cpu == Cpu::Intel {
            return Err("QEMU's TCG emulates no VMX: run Intel VT-x in Bochs (`nvirt run bochs --cpu intel`)".into());
        }
        if self.emulator == Emulator::Bochs && self.boot != Boot::Iso {
            return Err("Bochs has no -kernel: it boots the GRUB ISO".into());
        }
        if !self.vms.is_empty() {
            return self.check_vms();
        }
        for (what, v) in [("--ram", self.ram), ("--nvram", self.nvram)] {
            if v % GRANULE != 0 {
                return Err(format!("{what} must be a multiple of 2 MiB"));
            }
        }
        if self.ram < MIN_RAM {
            return Err(format!("--ram must be at least {} MiB", MIN_RAM / MIB));
        }
        if self.nvram != 0 && self.nvram < MIN_NVRAM {
            return Err(format!(
                "--nvram must be 0 or at least {} MiB",
                MIN_NVRAM / MIB
            ));
        }
        if self.emulator == Emulator::Bochs && bochs::megs(self) > bochs::MAX_MEGS {
            return Err(format!(
                "Bochs takes at most {} MiB: --ram and --nvram together at most {} MiB",
                bochs::MAX_MEGS,
                bochs::MAX_MEGS - (bochs::megs(self) - (self.ram + self.nvram) / MIB)
            ));
        }
        if ![7, 12, 90].contains(&self.nv_type) {
            return Err("--nv-type must be 7, 12 or 90".into());
        }
        if let Some(linux) = &self.linux {
            if self.ram < LINUX_MIN_RAM {
                return Err(format!(
                    "a Linux guest needs --ram of at least {} MiB",
                    LINUX_MIN_RAM / MIB
                ));
            }
            if self.boot == Boot::Pvh {
                return Err("a Linux guest boots the hypervisor by -kernel or from the ISO: PVH carries one module".into());
            }
            if linux.cmdline.contains(',') {
                return Err(
                    "the Linux command line cannot hold a comma (QEMU's module separator)".into(),
                );
            }
        }
        Ok(())
    }

    /// With VMs: what the boot path can carry, and what the test guest
    /// needs of each VM that runs it.
    fn check_vms(&self) -> Result<(), String> {
        if self.linux.is_some() {
            return Err(
                "--vm and `linux` do not go together: name the kernel in the VM's file".into(),
            );
        }
        if self.boot == Boot::Pvh {
            return Err(
                "with --vm, boot the hypervisor by -kernel or from the ISO: PVH carries one module"
                    .into(),
            );
        }
        for vm in self.vms.iter().filter(|vm| vm.kernel.is_none()) {
            if vm.memory < MIN_RAM || (vm.nvram != 0 && vm.nvram < MIN_NVRAM) {
                return Err(format!(
                    "{}: the test guest needs memory of at least {} MiB and nvram of 0 or at least {} MiB",
                    vm.config.display(),
                    MIN_RAM / MIB,
                    MIN_NVRAM / MIB
                ));
            }
        }
        if self.boot == Boot::Kernel {
            // QEMU's -initrd: a space ends a module's file name.
            for vm in &self.vms {
                for path in [Some(&vm.config), vm.kernel.as_ref(), vm.ramdisk.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    if path.to_string_lossy().contains(' ') {
                        return Err(format!(
                            "{}: QEMU's -initrd cannot pass a file whose path has a space (boot the ISO with --boot iso)",
                            path.display()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The hypervisor's command line (without boot-path specifics). With
    /// VMs, `vms=N` (the number of `vmcfg` modules) instead of the single
    /// guest's sizes.
    fn cmdline(&self) -> String {
        let mut line = if self.vms.is_empty() {
            format!(
                "guest_ram={}M guest_nvram={}M nv_type={}",
                self.ram / MIB,
                self.nvram / MIB,
                self.nv_type
            )
        } else {
            format!("vms={}", self.vms.len())
        };
        if !self.extra.is_empty() {
            line.push(' ');
            line.push_str(&self.extra);
        }
        line
    }

    /// Bytes of the machine's NVRAM (the NVDIMM, or Bochs's `memmap=`
    /// range) for a guest with `self.nvram` bytes of it.
    pub(crate) fn nvram_device(&self) -> u64 {
        self.nvdimm
            .unwrap_or_else(|| nvram_device_bytes(self.nvram))
    }

    /// The boot modules (file, module string) besides the hypervisor, for
    /// a boot path that carries modules: the VMs' ([`vms::modules`]), the
    /// Linux kernel and initramfs, or the test guest's image `guest`.
    pub(crate) fn modules(&self, guest: &Path) -> Vec<(PathBuf, String)> {
        if !self.vms.is_empty() {
            vms::modules(&self.vms, guest)
        } else if let Some(linux) = &self.linux {
            linux.modules().to_vec()
        } else {
            vec![(guest.to_path_buf(), "nvirt-guest".to_owned())]
        }
    }

    pub(crate) fn run_dir(&self, root: &Path) -> PathBuf {
        target_dir(root).join("nvirt-run").join(&self.name)
    }
}

/// Bytes of machine NVRAM that give a guest `nvram` bytes of it from the
/// NV pool: the pool keeps its metadata at the start of the region (under
/// 1 %, rounded up here to 2 MiB, the guest's granule), and a
/// guest of 1 GiB or more gets one GiB more, so that past the metadata
/// there are whole aligned GiB blocks for 1 GiB pages.
pub(crate) fn nvram_device_bytes(nvram: u64) -> u64 {
    if nvram == 0 {
        return 0;
    }
    let gib = 1 << 30;
    if nvram >= gib {
        return nvram + gib;
    }
    let mut extra = GRANULE;
    while pool_metadata(nvram + extra) > extra {
        extra += GRANULE;
    }
    nvram + extra
}

/// Bytes of metadata the hypervisor's pool keeps in a region of `bytes`.
fn pool_metadata(bytes: u64) -> u64 {
    nvirt_hv::nv_pool_config(bytes, nvirt_nvpool::Mfn::ZERO)
        .geometry(bytes)
        .map_or(u64::MAX, |g| g.metadata_bytes())
}

/// What a run showed.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Whether it passed (see the module docs).
    pub(crate) passed: bool,
    /// Why not, or a one-line summary.
    pub(crate) reason: String,
    /// From emulator start to the guest's `PASS` line.
    pub(crate) time_to_pass: Option<Duration>,
    /// From emulator start to a Linux guest's `/dev/pmem0` marker.
    pub(crate) time_to_pmem0: Option<Duration>,
    /// From emulator start to its exit.
    pub(crate) elapsed: Duration,
    /// The serial console, every line.
    pub(crate) console: Vec<String>,
    /// Where the emulator's own log is.
    pub(crate) log: PathBuf,
}

/// A started emulator: the process and its serial console lines.
pub(crate) struct Started {
    pub(crate) child: Child,
    pub(crate) lines: Receiver<String>,
    /// Set once the emulator has exited, so a file tailer can stop.
    pub(crate) exited: Arc<AtomicBool>,
    /// The exit status meaning "the hypervisor exited with success".
    pub(crate) success_status: i32,
    pub(crate) log: PathBuf,
}

/// What a scenario's emulator runs: the built images and the run
/// directory.
pub(crate) struct Prepared {
    built: image::Built,
    guest: PathBuf,
    /// The run directory (`target/nvirt-run/<name>`).
    pub(crate) dir: PathBuf,
}

/// Checks `scenario`, installs what its emulator needs, lints (if asked)
/// and builds everything, and makes its run directory.
pub(crate) fn prepare(root: &Path, scenario: &Scenario) -> Result<Prepared, String> {
    scenario.check()?;
    let mut needs: Vec<&[packages::Need]> = Vec::new();
    match scenario.emulator {
        Emulator::Qemu => needs.push(packages::QEMU),
        Emulator::Bochs => needs.push(packages::BOCHS),
    }
    if scenario.boot == Boot::Iso {
        needs.push(packages::GRUB_ISO);
    }
    packages::ensure(&needs)?;
    if scenario.lint {
        image::clippy_bare_metal(root)?;
    }
    let built = image::build(root)?;
    let dir = scenario.run_dir(root);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let guest = image::guest_flat(&built, &dir)?;
    Ok(Prepared { built, guest, dir })
}

/// Starts the emulator of `scenario` over what [`prepare`] made.
pub(crate) fn launch(scenario: &Scenario, prepared: &Prepared) -> Result<Started, String> {
    let (built, guest, dir) = (&prepared.built, &prepared.guest, &prepared.dir);
    match scenario.emulator {
        Emulator::Qemu => qemu::start(scenario, built, guest, dir),
        Emulator::Bochs => bochs::start(scenario, built, guest, dir),
    }
}

/// Builds everything, runs `scenario`, streams its console to stdout when
/// `echo` and returns the outcome. Errors are setup failures (packages,
/// build, images) before the emulator ran.
pub(crate) fn run_scenario(
    root: &Path,
    scenario: &Scenario,
    echo: bool,
) -> Result<Outcome, String> {
    let prepared = prepare(root, scenario)?;
    if !scenario.vms.is_empty() {
        let names: Vec<&str> = scenario.vms.iter().map(|vm| vm.name.as_str()).collect();
        eprintln!(
            "nvirt run: {} ({}, {} boot, VMs {}: RAM {} MiB, NVRAM {} MiB of which {} MiB eager, NVDIMM {} MiB, timeout {} s)",
            scenario.emulator,
            scenario.cpu,
            scenario.boot,
            names.join(" "),
            scenario.ram / MIB,
            scenario.nvram / MIB,
            vms::eager_nvram(&scenario.vms) / MIB,
            scenario.nvram_device() / MIB,
            scenario.timeout.as_secs()
        );
        return run_prepared(scenario, &prepared, echo);
    }
    eprintln!(
        "nvirt run: {} ({}, {} boot, guest RAM {} MiB, NVRAM {} MiB type {}, timeout {} s)",
        scenario.emulator,
        scenario.cpu,
        scenario.boot,
        scenario.ram / MIB,
        scenario.nvram / MIB,
        scenario.nv_type,
        scenario.timeout.as_secs()
    );
    run_prepared(scenario, &prepared, echo)
}

/// Runs `scenario`'s emulator over what [`prepare`] made, to its end or
/// its timeout.
pub(crate) fn run_prepared(
    scenario: &Scenario,
    prepared: &Prepared,
    echo: bool,
) -> Result<Outcome, String> {
    let started_at = Instant::now();
    let started = launch(scenario, prepared)?;
    Ok(supervise(started, started_at, scenario.timeout, echo))
}

/// The Linux guest's init prints these on its console.
pub(crate) const LINUX_PASS: &str = "nvirt-linux: PASS";
const LINUX_FAIL: &str = "nvirt-linux: FAIL";
pub(crate) const LINUX_PMEM0: &str = "nvirt-linux: pmem0 ";

/// What the console said so far.
#[derive(Debug, Default)]
struct Markers {
    guest_pass: Option<Duration>,
    pmem0: Option<Duration>,
    guest_fail: bool,
    verdict: Option<bool>,
}

/// The start of the hypervisor's line on each VM after all have ended.
const VM_LINE: &str = "nvirt-hv: vm ";
/// What follows a passed VM's name there.
const VM_PASSED: &str = ": passed, ";
/// What follows a failed VM's name there.
const VM_FAILED: &str = ": FAILED, ";

fn supervise(mut s: Started, started_at: Instant, timeout: Duration, echo: bool) -> Outcome {
    let mut markers = Markers::default();
    let mut console = Vec::new();
    let mut status: Option<ExitStatus> = None;
    let mut timed_out = false;
    let mut stdout = std::io::stdout();
    loop {
        match s.lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                let line = line.trim_end_matches(['\r', '\n']).to_owned();
                if echo {
                    let _ = writeln!(stdout, "{line}");
                    let _ = stdout.flush();
                }
                match line.as_str() {
                    "guest: PASS" | LINUX_PASS => markers.guest_pass = Some(started_at.elapsed()),
                    "guest: FAIL" => markers.guest_fail = true,
                    l if l.starts_with(LINUX_FAIL) => markers.guest_fail = true,
                    // Several VMs: the hypervisor's line for each at the end;
                    // the run passes when every one passed.
                    l if l.starts_with(VM_LINE) && l.contains(VM_PASSED) => {
                        markers.guest_pass = Some(started_at.elapsed());
                    }
                    l if l.starts_with(VM_LINE) && l.contains(VM_FAILED) => {
                        markers.guest_fail = true;
                    }
                    l if l.starts_with("guest ") && l.ends_with(": FAIL") => {
                        markers.guest_fail = true;
                    }
                    l if l.starts_with(LINUX_PMEM0) && markers.pmem0.is_none() => {
                        markers.pmem0 = Some(started_at.elapsed());
                    }
                    "nvirt-hv: verdict: PASS" => markers.verdict = Some(true),
                    "nvirt-hv: verdict: FAIL" => markers.verdict = Some(false),
                    _ => {}
                }
                console.push(line);
                // No `continue`: a console that never goes quiet must not
                // keep the exit and timeout checks below from running.
            }
            Err(RecvTimeoutError::Disconnected) if status.is_some() => break,
            Err(_) => {}
        }
        if status.is_none() {
            if let Ok(Some(exit)) = s.child.try_wait() {
                status = Some(exit);
                s.exited.store(true, Ordering::Release);
            } else if started_at.elapsed() > timeout {
                timed_out = true;
                let _ = s.child.kill();
                status = s.child.wait().ok();
                s.exited.store(true, Ordering::Release);
            }
        }
    }
    let elapsed = started_at.elapsed();
    let code = status.and_then(|s| s.code());
    let reason = if timed_out {
        format!("timed out after {} s", timeout.as_secs())
    } else if markers.guest_pass.is_none() || markers.guest_fail {
        "the guest did not report PASS".to_owned()
    } else if markers.verdict != Some(true) {
        "the hypervisor did not confirm the guest's PASS".to_owned()
    } else if code != Some(s.success_status) {
        format!(
            "the emulator exited with {} instead of {}",
            code.map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
            s.success_status
        )
    } else {
        String::new()
    };
    let passed = reason.is_empty();
    Outcome {
        passed,
        reason: if passed {
            format!(
                "guest PASS {:.2} s after emulator start, emulator done after {:.2} s",
                markers.guest_pass.unwrap_or_default().as_secs_f64(),
                elapsed.as_secs_f64()
            )
        } else {
            reason
        },
        time_to_pass: markers.guest_pass.filter(|_| passed),
        time_to_pmem0: markers.pmem0,
        elapsed,
        console,
        log: s.log,
    }
}

/// The scenarios `nvirt test` runs, each with its own timeout: QEMU AMD-V
/// with an NVDIMM found through the NFIT (booted by `-kernel`, by GRUB and
/// by PVH; NVRAM kinds 7, 12 and 90), Bochs Intel VT-x with EPT and Bochs
/// AMD-V with nested paging (GRUB ISO, NVRAM by `memmap=`), and a guest of
/// 2 GiB of RAM and 1 GiB of NVRAM in QEMU, mapped with 1 GiB pages.
/// On a shared 2-core machine they take about 1 s, 1.5 s, 1 s, 2 s, 2 s
/// and 10–13 s from emulator start to the guest's PASS.
pub(crate) fn standard_scenarios() -> Vec<Scenario> {
    let mut list = Vec::new();
    for (boot, nv_type) in [(Boot::Kernel, 7), (Boot::Iso, 12), (Boot::Pvh, 90)] {
        let mut s = Scenario::new(Emulator::Qemu);
        s.boot = boot;
        s.nv_type = nv_type;
        s.name = format!("qemu-amd-{boot}-nv{nv_type}");
        s.timeout = Duration::from_secs(60);
        list.push(s);
    }
    for cpu in [Cpu::Intel, Cpu::Amd] {
        let mut s = Scenario::new(Emulator::Bochs);
        s.cpu = cpu;
        s.name = format!("bochs-{cpu}-iso");
        s.timeout = Duration::from_secs(120);
        list.push(s);
    }
    let mut large = Scenario::new(Emulator::Qemu);
    large.ram = 2 << 30;
    large.nvram = 1 << 30;
    large.name = "qemu-amd-kernel-2g-ram-1g-nvram".to_owned();
    large.timeout = Duration::from_secs(120);
    list.push(large);
    for s in &mut list {
        // Lint once before the list, not per scenario.
        s.lint = false;
    }
    list
}

/// Runs one scenario as a check of `nvirt test`: `Ok` with the time from
/// emulator start to the guest's PASS, or the reason it failed (the
/// console is shown only on failure).
pub(crate) fn check_scenario(root: &Path, scenario: &Scenario) -> Result<Duration, String> {
    let outcome = run_scenario(root, scenario, false)?;
    if outcome.passed {
        let t = outcome.time_to_pass.unwrap_or(outcome.elapsed);
        eprintln!(
            "nvirt test: scenario {}: guest PASS {:.2} s after emulator start",
            scenario.name,
            t.as_secs_f64()
        );
        for line in outcome
            .console
            .iter()
            .filter(|l| l.contains("guest tables (") || l.contains("minimum for this"))
        {
            eprintln!("    {line}");
        }
        Ok(t)
    } else {
        for line in outcome.console.iter().rev().take(40).rev() {
            eprintln!("    {line}");
        }
        Err(format!(
            "{} (emulator log: {})",
            outcome.reason,
            outcome.log.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let q = Scenario::new(Emulator::Qemu);
        assert_eq!(
            (q.cpu, q.boot, q.ram, q.nvram),
            (Cpu::Amd, Boot::Kernel, 64 * MIB, 64 * MIB)
        );
        assert_eq!(q.cmdline(), "guest_ram=64M guest_nvram=64M nv_type=7");
        assert_eq!(q.nvram_device(), 66 * MIB, "room for the pool's metadata");
        assert_eq!(nvram_device_bytes(0), 0);
        assert_eq!(nvram_device_bytes(1 << 30), 2 << 30, "whole GiB blocks");
        for mib in [4, 16, 512, 1022] {
            let device = nvram_device_bytes(mib * MIB);
            assert!(device - mib * MIB >= pool_metadata(device), "{mib} MiB");
        }
        assert!(q.check().is_ok());
        let b = Scenario::new(Emulator::Bochs);
        assert_eq!((b.cpu, b.boot), (Cpu::Intel, Boot::Iso));
        assert!(b.check().is_ok());

        let mut s = Scenario::new(Emulator::Qemu);
        s.cpu = Cpu::Intel;
        assert!(s.check().unwrap_err().contains("no VMX"));
        let mut s = Scenario::new(Emulator::Bochs);
        s.boot = Boot::Pvh;
        assert!(s.check().is_err());
        let mut s = Scenario::new(Emulator::Qemu);
        s.nvram = 3 * MIB;
        assert!(s.check().is_err());
        s.nvram = 0;
        s.ram = 4 * MIB;
        assert!(s.check().is_err(), "no room for the balloon window");
        s.ram = 8 * MIB;
        assert!(s.check().is_ok(), "NVRAM is optional");
        s.nvram = 2 * MIB;
        assert!(s.check().is_err(), "NVRAM too small for the balloon window");
        s.nvram = 0;
        s.ram = 8 * MIB;
        s.nv_type = 8;
        assert!(s.check().is_err());
    }

    fn vm(name: &str, memory: u64, nvram: u64, eager: bool) -> VmBoot {
        VmBoot {
            name: name.to_owned(),
            config: PathBuf::from(format!("vms/{name}.cfg")),
            domain_id: 0,
            memory,
            nvram,
            eager_nvram: if eager { nvram } else { 0 },
            nvram_file: None,
            kernel: None,
            ramdisk: None,
        }
    }

    #[test]
    fn vms_size_the_host_and_become_modules() {
        let mut s = Scenario::new(Emulator::Qemu);
        let vms = vec![
            vm("a", 32 * MIB, 16 * MIB, true),
            vm("b", 16 * MIB, 8 * MIB, false),
        ];
        s.set_vms(vms.clone(), None).unwrap();
        assert_eq!((s.ram, s.nvram), (48 * MIB, 24 * MIB));
        assert_eq!(
            s.nvram_device(),
            nvram_device_bytes(24 * MIB),
            "room for all NVRAM by default"
        );
        assert_eq!(s.cmdline(), "vms=2");
        assert!(s.check().is_ok());
        let guest = Path::new("g.bin");
        let modules = s.modules(guest);
        let strings: Vec<&str> = modules.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(strings, ["vmcfg a", "vmcfg b", "nvirt-guest"]);
        assert_eq!(
            image::iso_modules(&s, guest),
            modules,
            "the ISO carries the same"
        );

        // --nvram: at least the eager NVRAM and the metadata (thin
        // provisioning lets the rest exceed it).
        let least = nvram_device_bytes(16 * MIB);
        assert!(least < nvram_device_bytes(24 * MIB));
        let mut t = Scenario::new(Emulator::Qemu);
        assert!(t.set_vms(vms.clone(), Some(least - 2 * MIB)).is_err());
        assert!(
            t.set_vms(vms.clone(), Some(least + MIB)).is_err(),
            "2 MiB granule"
        );
        t.set_vms(vms.clone(), Some(least)).unwrap();
        assert_eq!(t.nvram_device(), least);
        let mut none = Scenario::new(Emulator::Qemu);
        none.set_vms(vec![vm("c", 16 * MIB, 0, true)], None)
            .unwrap();
        assert_eq!(none.nvram_device(), 0, "no NVDIMM for VMs without NVRAM");
        assert!(
            Scenario::new(Emulator::Qemu)
                .set_vms(Vec::new(), None)
                .is_err()
        );

        let mut small = Scenario::new(Emulator::Qemu);
        small
            .set_vms(vec![vm("d", 4 * MIB, 0, true)], None)
            .unwrap();
        assert!(
            small.check().unwrap_err().contains("at least 8 MiB"),
            "the test guest's minimum"
        );
        small
            .set_vms(vec![vm("d", 8 * MIB, 2 * MIB, true)], None)
            .unwrap();
        assert!(small.check().is_err(), "NVRAM below the balloon window");
        let mut kernel = vm("k", 4 * MIB, 2 * MIB, true);
        kernel.kernel = Some(PathBuf::from("bz"));
        small.set_vms(vec![kernel], None).unwrap();
        assert!(
            small.check().is_ok(),
            "a VM's own kernel sets its own minimums"
        );
        let mut spaced = vm("e", 16 * MIB, 0, true);
        spaced.config = PathBuf::from("my vms/e.cfg");
        small.set_vms(vec![spaced], None).unwrap();
        assert!(small.check().unwrap_err().contains("space"));
        small.boot = Boot::Iso;
        assert!(
            small.check().is_ok(),
            "GRUB copies modules under its own names"
        );
        small.boot = Boot::Pvh;
        assert!(small.check().is_err());

        let mut b = Scenario::new(Emulator::Bochs);
        b.set_vms(vms, None).unwrap();
        assert!(b.check().is_ok());
        assert_eq!(
            bochs::megs(&b),
            (bochs::NVRAM_START + nvram_device_bytes(24 * MIB) + 48 * MIB) / MIB + 96
        );
    }

    #[test]
    fn standard_scenarios_cover_both_vendors_and_all_boot_paths() {
        let list = standard_scenarios();
        assert!(list.iter().all(|s| s.check().is_ok()));
        for boot in [Boot::Kernel, Boot::Iso, Boot::Pvh] {
            assert!(list.iter().any(|s| s.boot == boot));
        }
        for cpu in [Cpu::Intel, Cpu::Amd] {
            assert!(
                list.iter()
                    .any(|s| s.emulator == Emulator::Bochs && s.cpu == cpu)
            );
        }
        assert!(
            list.iter().any(|s| s.ram > 1 << 30 && s.nvram >= 1 << 30),
            "a guest larger than 1 GiB"
        );
        for nv_type in [7, 12, 90] {
            assert!(
                list.iter()
                    .any(|s| s.emulator == Emulator::Qemu && s.nv_type == nv_type)
            );
        }
        let worst: u64 = list.iter().map(|s| s.timeout.as_secs()).sum();
        assert!(
            worst <= 15 * 60,
            "every scenario timing out still ends CI in time"
        );
        let mut names: Vec<_> = list.iter().map(|s| s.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), list.len(), "each run directory is its own");
    }
}
