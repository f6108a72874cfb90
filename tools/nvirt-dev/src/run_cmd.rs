//! `nvirt run`: build the reference hypervisor and its guest, boot them in
//! an emulator, stream the serial console; exit 0 only when the guest
//! reported PASS (and the emulator's exit status agrees).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::crash_loop;
use crate::emulator::{self, Boot, Cpu, Emulator, Scenario};
use crate::process::workspace_root;
use nvirt_cli::parse_size;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Emulator: qemu (AMD-V with nested paging) or bochs (Intel VT-x with
    /// EPT, or AMD-V with --cpu amd).
    #[arg(value_enum, default_value_t = Emulator::Qemu)]
    emulator: Emulator,
    /// Virtualization extension (default: amd for qemu, intel for bochs).
    #[arg(long, value_enum)]
    cpu: Option<Cpu>,
    /// Guest RAM, a multiple of 2 MiB, at least 8 MiB (default: 64M in
    /// QEMU, 16M in Bochs). From 1 GiB on, QEMU gets room for whole 1 GiB
    /// pages.
    #[arg(long, value_parser = parse_size)]
    ram: Option<u64>,
    /// Guest NVRAM, a multiple of 2 MiB, 0 for none or at least 4 MiB
    /// (default as --ram).
    #[arg(long, value_parser = parse_size)]
    nvram: Option<u64>,
    /// E820 type of the guest's NVRAM region: 7, 12 or 90.
    #[arg(long, default_value_t = 7)]
    nv_type: u32,
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

pub(crate) fn run(args: &RunArgs) -> Result<ExitCode, String> {
    if let Some(n) = args.crash_loop {
        return crash_loop(args, n);
    }
    let mut scenario = Scenario::new(args.emulator);
    if let Some(cpu) = args.cpu {
        scenario.cpu = cpu;
    }
    if let Some(boot) = args.boot {
        scenario.boot = boot;
    }
    if let Some(ram) = args.ram {
        scenario.ram = ram;
    }
    scenario.nvram = args.nvram.unwrap_or(scenario.ram);
    scenario.nv_type = args.nv_type;
    if let Some(t) = args.timeout {
        scenario.timeout = Duration::from_secs(t);
    }
    scenario.lint = !args.no_lint;
    if args.format_nvram {
        scenario.extra = "nvpool=format".to_owned();
    }
    scenario.name = format!("{}-{}-{}", scenario.emulator, scenario.cpu, scenario.boot);
    let outcome = emulator::run_scenario(&workspace_root(), &scenario, true)?;
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

/// `nvirt run --crash-loop N [--seed S]`.
fn crash_loop(args: &RunArgs, iterations: u32) -> Result<ExitCode, String> {
    if args.emulator != Emulator::Qemu || args.cpu == Some(Cpu::Intel) {
        return Err("the crash loop runs in QEMU (AMD-V): it needs a file-backed NVDIMM".into());
    }
    let root = workspace_root();
    if !args.no_lint {
        crate::image::clippy_bare_metal(&root)?;
    }
    let seed = args.seed.unwrap_or_else(crash_loop::clock_seed);
    match crash_loop::run(&root, iterations, seed, false) {
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
