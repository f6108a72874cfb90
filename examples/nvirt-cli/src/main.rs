//! `nvirt`: the user's inspection tool of the nvirt project (see the crate
//! library for the subcommands). Install it with
//! `cargo install --path examples/nvirt-cli`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "nvirt",
    version,
    about = "nvirt: RAM and NVRAM side by side for hypervisors"
)]
struct Cli {
    #[command(subcommand)]
    command: nvirt_cli::Command,
}

fn main() -> ExitCode {
    nvirt_cli::exit(nvirt_cli::run(Cli::parse().command))
}
