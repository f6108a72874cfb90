//! The subcommands of `nvirt`, the user's inspection tool: firmware memory
//! maps (`e820`), second-level table plans (`ept plan`), NVRAM metadata logs
//! (`log`), NVRAM pools (`pool`) and VM configuration files (`vm`).
//!
//! The binary `nvirt` is a thin `main` over [`Command`] and [`run`]; the
//! developer tooling (`cargo nvirt`, `tools/nvirt-dev`) forwards the same
//! subcommands here, so both print exactly the same thing. Output formats
//! and exit statuses are a contract that scripts and tests depend on (see
//! the README): each command prints its result on stdout, and bad input
//! (files, arguments) gives a message and [`EXIT_BAD_INPUT`] with nothing
//! on stdout.

#![forbid(unsafe_code)]

mod bad_range;
mod e820_cmd;
mod ept_cmd;
mod log_cmd;
mod pool_cmd;
mod pool_file;
mod pool_move;
mod pool_repair;
mod size;
mod vm_cmd;

use std::process::ExitCode;

use clap::Subcommand;

pub use bad_range::{ImageRange, parse_bad_range};
pub use e820_cmd::{E820Command, SynthArgs, sanitize_text};
pub use ept_cmd::{EptCommand, PlanArgs};
pub use log_cmd::LogCommand;
pub use pool_cmd::{At, FormatArgs, PoolCommand};
pub use size::parse_size;
pub use vm_cmd::{VmCommand, VmFile, check_files, resolve, summary};

/// Exit status for bad input (files, arguments): the map or image was not
/// accepted and nothing was printed on stdout.
pub const EXIT_BAD_INPUT: u8 = 2;

/// The user's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Firmware memory maps: sanitize, synthesize guest maps, read NFIT tables.
    #[command(subcommand)]
    E820(E820Command),
    /// Second-level translation tables: plan the tables for a set of mappings.
    #[command(subcommand)]
    Ept(EptCommand),
    /// Metadata logs on NVRAM: validate a region image.
    #[command(subcommand)]
    Log(LogCommand),
    /// NVRAM pools: inspect, format, export and import domains.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// VM configuration files (xl.cfg style): check them alone and together.
    #[command(subcommand)]
    Vm(VmCommand),
}

/// Runs one subcommand. `Ok` carries the exit status of a command that ran
/// (it printed its own output); `Err` is the message for bad input, to be
/// printed as `nvirt: <message>` with [`EXIT_BAD_INPUT`] (see [`exit`]).
pub fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::E820(cmd) => e820_cmd::run(cmd),
        Command::Ept(cmd) => ept_cmd::run(cmd),
        Command::Log(cmd) => log_cmd::run(cmd),
        Command::Pool(cmd) => pool_cmd::run(cmd),
        Command::Vm(cmd) => vm_cmd::run(cmd),
    }
}

/// The process exit status for a command's result: its own status, or the
/// message on stderr and [`EXIT_BAD_INPUT`].
pub fn exit(result: Result<ExitCode, String>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("nvirt: {message}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
