//! `nvirt-dev`: the developer tooling of the nvirt project, reached from the
//! workspace as `cargo nvirt …` (alias in `.cargo/config.toml`).
//!
//! It runs the test suite (`test`), boots the reference hypervisor in an
//! emulator (`run`, with the crash loop) and runs the peer benchmarks
//! (`bench`); the user's subcommands (`e820`, `ept`, `log`, `pool`) are
//! forwarded to the `nvirt-cli` library unchanged, so `cargo nvirt e820 …`
//! prints exactly what the installed `nvirt e820 …` prints. The unsafe code
//! of the benchmarks (a counting global allocator, the thread CPU clock, the
//! peer's page tables) lives here, not in the user tool; `nvirt test` runs
//! its tests under Miri.

mod bench;
mod crash_loop;
mod emulator;
mod image;
mod linux;
mod linux_run;
mod process;
mod run_cmd;
mod test_cmd;
mod toolchain;
mod vms_run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: bench::alloc_count::Counting = bench::alloc_count::Counting;

#[derive(Debug, Parser)]
#[command(
    name = "nvirt",
    bin_name = "nvirt",
    version,
    about = "nvirt: RAM and NVRAM side by side for hypervisors (with the developer tooling)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    User(nvirt_cli::Command),
    /// Benchmarks against the peer a user would otherwise pick.
    Bench(bench::BenchArgs),
    /// Build the reference hypervisor and guest, boot them in an emulator.
    Run(run_cmd::RunArgs),
    /// Run the whole test suite; ends with a line `N passed, N failed`.
    Test(test_cmd::TestArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::User(cmd) => nvirt_cli::run(cmd),
        Command::Bench(args) => bench::run(&args),
        Command::Run(args) => run_cmd::run(&args),
        Command::Test(args) => test_cmd::run(&args),
    };
    nvirt_cli::exit(result)
}
