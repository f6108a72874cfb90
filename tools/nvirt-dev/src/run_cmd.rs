//! `nvirt run`: build the reference hypervisor and its guest, boot them in
//! an emulator, stream the serial console; exit 0 only when the guest
//! reported PASS (and the emulator's exit status agrees).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::crash_loop;
use crate::emulator::{self, Boot, Cpu, Emulator, Scenario};
use crate::linux_run as linux;
use crate::process::workspace_root;
use nvirt_cli::parse_size;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// What to run: an emulator, qemu (AMD-V with nested paging, the
    /// default) or bochs (Intel VT-x with EPT, or AMD-V with --cpu amd),
    /// and `linux` for a stock Debian Linux kernel as the guest instead of
    /// the test guest (e.g. `run linux`, `run bochs linux`).
    #[arg(value_enum)]
    what: Vec<RunWord>,
    /// With `linux`: boot this bzImage instead of Debian's kernel.
    #[arg(long, value_name = "BZIMAGE")]
    kernel: Option<PathBuf>,
    /// With `linux`: this initramfs instead of the one `nvirt` builds.
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// With `linux`: the kernel's command line instead of the default.
    #[arg(long, value_name = "CMDLINE")]
    append: Option<String>,
    /// With `linux`: boot the kernel directly in QEMU, without the
    /// hypervisor (its NVRAM from `memmap=` over file-backed RAM): the
    /// baseline. With --crash-loop, the crash loop of the direct boot.
    #[arg(long)]
    direct: bool,
    /// Virtualization extension (default: amd for qemu, intel for bochs).
    #[arg(long, value_enum)]
    cpu: Option<Cpu>,
    /// Guest RAM, a multiple of 2 MiB, at least 8 MiB (default: 64M in
    /// QEMU, 16M in Bochs). From 1 GiB on, QEMU gets room for whole 1 GiB
    /// pages.
    #[arg(long, value_parser = parse_size)]
    ram: Option<u64>,
    /// Guest NVRAM, a multiple of 2 MiB, 0 for none or at least 4 MiB
    /// (default as --ram). With --vm: the host NVDIMM's size instead
    /// (default: all the VMs' NVRAM and the pool's metadata; at least
    /// their eager NVRAM and the metadata).
    #[arg(long, value_parser = parse_size)]
    nvram: Option<u64>,
    /// Run the VM this configuration file (xl.cfg style, see `nvirt vm
    /// check`) describes; repeat for several VMs. Every file is parsed
    /// before anything is built or launched; the files and the images they
    /// name go to the hypervisor as boot modules.
    #[arg(long = "vm", value_name = "FILE")]
    vms: Vec<PathBuf>,
    /// E820 type of the guest's NVRAM region: 7, 12 or 90 (default 7; 12
    /// for Linux, whose `nd_e820` binds type 12).
    #[arg(long)]
    nv_type: Option<u32>,
    /// Seconds before the emulator is stopped (default: 180 QEMU, 600 Bochs).
    #[arg(long)]
    timeout: Option<u64>,
    /// How QEMU boots: kernel (-kernel, Multiboot1), iso (GRUB,
    /// Multiboot2) or pvh (-kernel through the PVH note). Bochs always boots
    /// the ISO.
    #[arg(long, value_enum)]
    boot: Option<Boot>,
    /// Skip clippy on the bare-metal crates before building.
    #[arg(long)]
    no_lint: bool,
    /// Erase the NVDIMM and make a new NV pool (the hypervisor's
    /// `nvpool=format`): what a pool the hypervisor reports damaged needs.
    #[arg(long)]
    format_nvram: bool,
    /// Run the crash loop instead: QEMU killed with SIGKILL N times at
    /// random moments while the guest balloons and writes its NVRAM, each
    /// boot checking what the guest had committed; then a clean run and
    /// `nvirt pool inspect` of the NVDIMM image.
    #[arg(long, value_name = "N")]
    crash_loop: Option<u32>,
    /// The crash loop's seed for its kill times (default: from the clock;
    /// printed either way).
    #[arg(long, requires = "crash_loop")]
    seed: Option<u64>,
}

/// The words `nvirt run` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RunWord {
    /// QEMU (TCG): AMD-V with nested paging.
    Qemu,
    /// Bochs: Intel VT-x with EPT (or AMD-V with --cpu amd).
    Bochs,
    /// A stock Linux kernel as the guest.
    Linux,
}

impl RunArgs {
    fn emulator(&self) -> Result<Emulator, String> {
        let mut emulators = self.what.iter().filter_map(|w| match w {
            RunWord::Qemu => Some(Emulator::Qemu),
            RunWord::Bochs => Some(Emulator::Bochs),
            RunWord::Linux => None,
        });
        let first = emulators.next().unwrap_or(Emulator::Qemu);
        if emulators.next().is_some() {
            return Err("name one emulator: qemu or bochs".into());
        }
        Ok(first)
    }

    fn linux(&self) -> bool {
        self.what.contains(&RunWord::Linux)
    }
}

pub(crate) fn run(args: &RunArgs) -> Result<ExitCode, String> {
    if !args.linux()
        && (args.kernel.is_some() || args.initrd.is_some() || args.append.is_some() || args.direct)
    {
        return Err("--kernel, --initrd, --append and --direct go with `linux`".into());
    }
    // Configuration errors come before any build or launch.
    let vms = if args.vms.is_empty() {
        Vec::new()
    } else {
        if args.linux() || args.ram.is_some() || args.nv_type.is_some() || args.crash_loop.is_some()
        {
            return Err("--vm takes the VMs' sizes and images from their files: not with `linux`, --ram, --nv-type or --crash-loop".into());
        }
        emulator::vms::load(&args.vms)?
    };
    if args.direct && args.crash_loop.is_none() {
        let boots = crate::linux::checks::direct_boots(&workspace_root(), 1, true)?;
        eprintln!(
            "nvirt run: PASS: Linux booted directly had /dev/pmem0 ({} bytes) {:.2} s after QEMU start",
            boots.pmem_bytes,
            boots.mean_pmem0().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = args.crash_loop {
        return crash_loop(args, n);
    }
    let emulator = args.emulator()?;
    let mut scenario = Scenario::new(emulator);
    if args.linux() {
        linux::configure(
            &mut scenario,
            &workspace_root(),
            args.kernel.as_deref(),
            args.initrd.as_deref(),
            args.append.as_deref(),
        )?;
    }
    if let Some(cpu) = args.cpu {
        scenario.cpu = cpu;
    }
    if let Some(boot) = args.boot {
        scenario.boot = boot;
    }
    if let Some(ram) = args.ram {
        scenario.ram = ram;
    }
    if vms.is_empty() {
        scenario.nvram = args.nvram.unwrap_or(if args.linux() {
            scenario.nvram
        } else {
            scenario.ram
        });
    } else {
        scenario.set_vms(vms, args.nvram)?;
    }
    if let Some(t) = args.nv_type {
        scenario.nv_type = t;
    }
    if let Some(t) = args.timeout {
        scenario.timeout = Duration::from_secs(t);
    }
    scenario.lint = !args.no_lint;
    if args.format_nvram {
        scenario.extra = "nvpool=format".to_owned();
    }
    let vm_names: Vec<&str> = scenario.vms.iter().map(|vm| vm.name.as_str()).collect();
    scenario.name = format!(
        "{}-{}-{}{}{}",
        scenario.emulator,
        scenario.cpu,
        scenario.boot,
        if args.linux() { "-linux" } else { "" },
        if vm_names.is_empty() {
            String::new()
        } else {
            format!("-vms-{}", vm_names.join("-"))
        }
    );
    let paging = page_in(&scenario, args.format_nvram)?;
    let outcome = emulator::run_scenario(&workspace_root(), &scenario, true)?;
    if paging {
        let image = scenario.run_dir(&workspace_root()).join("pmem.img");
        match emulator::page_out::page_out(&image, &scenario.vms) {
            Ok(done) => {
                for line in done {
                    eprintln!("nvirt run: page-out: {line}");
                }
            }
            Err(e) => {
                eprintln!("nvirt run: FAIL: page-out: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if let Some(t) = outcome.time_to_pmem0 {
        eprintln!(
            "nvirt run: the Linux guest had /dev/pmem0 {:.2} s after emulator start",
            t.as_secs_f64()
        );
    }
    if args.linux() && outcome.passed {
        match linux::e820_agrees(&outcome.console) {
            Ok(map) => {
                eprintln!(
                    "nvirt run: Linux's BIOS-e820 map equals the map nvirt-hv synthesized (`nvirt e820 sanitize` of both):"
                );
                for line in map {
                    eprintln!("    {line}");
                }
            }
            Err(why) => {
                eprintln!("nvirt run: FAIL: {why}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if outcome.passed {
        eprintln!("nvirt run: PASS: {}", outcome.reason);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "nvirt run: FAIL: {} (emulator log: {})",
            outcome.reason,
            outcome.log.display()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Pages in the NVRAM files of `scenario`'s VMs before it runs; whether
/// their NVRAM is paged out after it (QEMU's NVDIMM is a file that outlives
/// the run; Bochs's NVRAM is its RAM and does not).
fn page_in(scenario: &Scenario, format: bool) -> Result<bool, String> {
    let files: Vec<String> = scenario
        .vms
        .iter()
        .filter_map(|vm| {
            Some(format!(
                "{} ({})",
                vm.name,
                vm.nvram_file.as_ref()?.display()
            ))
        })
        .collect();
    if files.is_empty() {
        return Ok(false);
    }
    if scenario.emulator != Emulator::Qemu {
        eprintln!(
            "nvirt run: nvram_file of {} unused: Bochs's NVRAM does not outlive the emulator, so nothing is paged in or out",
            files.join(", ")
        );
        return Ok(false);
    }
    if format {
        eprintln!(
            "nvirt run: --format-nvram: no NVRAM file is paged in (the hypervisor erases the pool); shut-down VMs are paged out after the run"
        );
        return Ok(true);
    }
    let image = scenario.run_dir(&workspace_root()).join("pmem.img");
    for line in emulator::page_out::page_in(&image, &scenario.vms)? {
        eprintln!("nvirt run: page-in: {line}");
    }
    Ok(true)
}

/// `nvirt run --crash-loop N [--seed S]`.
fn crash_loop(args: &RunArgs, iterations: u32) -> Result<ExitCode, String> {
    if args.emulator()? != Emulator::Qemu || args.cpu == Some(Cpu::Intel) {
        return Err("the crash loop runs in QEMU (AMD-V): it needs a file-backed NVDIMM".into());
    }
    let root = workspace_root();
    if !args.no_lint {
        crate::image::clippy_bare_metal(&root)?;
    }
    let seed = args.seed.unwrap_or_else(crash_loop::clock_seed);
    let result = if args.direct {
        crate::linux::checks::direct_crash_loop(&root, iterations, seed, true)
            .map(|s| s.to_string())
    } else if args.linux() {
        linux::crash_loop(&root, iterations, seed, true).map(|s| s.to_string())
    } else {
        crash_loop::run(&root, iterations, seed, false).map(|s| s.to_string())
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            eprintln!("nvirt run: PASS: crash loop of {iterations} kills (seed {seed})");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("nvirt run: FAIL: crash loop (seed {seed}): {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}
