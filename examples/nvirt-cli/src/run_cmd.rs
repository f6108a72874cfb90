//! `nvirt run`: build the reference hypervisor and its guest, boot them in an
//! emulator, stream the serial console.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Emulator: qemu (AMD-V with nested paging) or bochs (Intel VT-x with EPT).
    #[arg(default_value = "qemu")]
    emulator: String,
}

pub(crate) fn run(args: &RunArgs) -> Result<ExitCode, String> {
    eprintln!(
        "nvirt run {}: the reference hypervisor (examples/nvirt-hv) is not built yet; \
         it needs the buddy, ept and hypercall-abi crates first. \
         Available today: `cargo nvirt e820 …` and `cargo nvirt test`.",
        args.emulator
    );
    Ok(ExitCode::from(3))
}
