//! `nvirt`: the host tool of the nvirt project.
//!
//! Reached from the workspace as `cargo nvirt …`. Output formats are a
//! contract that scripts and tests depend on; see `../shared/DESIGN.md` and
//! the README.

mod bench;
mod crash_loop;
mod e820_cmd;
mod emulator;
mod ept_cmd;
mod image;
mod log_cmd;
mod pool_cmd;
mod pool_file;
mod pool_move;
mod process;
mod run_cmd;
mod size;
mod test_cmd;
mod toolchain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: bench::alloc_count::Counting = bench::alloc_count::Counting;

/// Exit status for bad input (files, arguments): the map or image was not
/// accepted and nothing was printed on stdout.
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "nvirt",
    version,
    about = "nvirt: RAM and NVRAM side by side for hypervisors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Firmware memory maps: sanitize, synthesize guest maps, read NFIT tables.
    #[command(subcommand)]
    E820(e820_cmd::E820Command),
    /// Second-level translation tables: plan the tables for a set of mappings.
    #[command(subcommand)]
    Ept(ept_cmd::EptCommand),
    /// Metadata logs on NVRAM: validate a region image.
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// NVRAM pools: inspect, format, export and import domains.
    #[command(subcommand)]
    Pool(pool_cmd::PoolCommand),
    /// Benchmarks against the peer a user would otherwise pick.
    Bench(bench::BenchArgs),
    /// Build the reference hypervisor and guest, boot them in an emulator.
    Run(run_cmd::RunArgs),
    /// Run the whole test suite; ends with a line `N passed, N failed`.
    Test(test_cmd::TestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::E820(cmd) => e820_cmd::run(cmd),
        Command::Ept(cmd) => ept_cmd::run(cmd),
        Command::Log(cmd) => log_cmd::run(cmd),
        Command::Pool(cmd) => pool_cmd::run(cmd),
        Command::Bench(args) => bench::run(&args),
        Command::Run(args) => run_cmd::run(&args),
        Command::Test(args) => test_cmd::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("nvirt: {message}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
