//! `nvirt run linux`: a stock Linux kernel as the reference hypervisor's
//! guest, with 256 MiB of RAM and 64 MiB of NVRAM shown as E820 type 12,
//! which Linux's `nd_e820` turns into `/dev/pmem0`.

use std::path::Path;
use std::time::Duration;

use crate::emulator::{Emulator, LinuxBoot, Scenario};

const MIB: u64 = 1 << 20;

/// The Linux guest's command line:
/// - `console=ttyS0`: the kernel's and init's output on COM1, which the
///   hypervisor forwards (and reads for the init's markers);
/// - `panic=-1`: a panic reboots at once, and the hypervisor's reset port
///   ends the run (a failure before the final marker) instead of a hang
///   until the timeout;
/// - `nvirt.linux=boot`: the init's mode (`boot` checks and appends one
///   record and passes; `crashloop` appends records until killed).
pub(crate) const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1 nvirt.linux=boot";

/// Makes `scenario` boot Linux: the given kernel and initramfs (else
/// Debian's, fetched and built once), Linux's defaults for memory and the
/// NVRAM type, and a longer timeout.
pub(crate) fn configure(
    scenario: &mut Scenario,
    kernel: Option<&Path>,
    initrd: Option<&Path>,
    append: Option<&str>,
) -> Result<(), String> {
    let (Some(kernel), Some(initrd)) = (kernel, initrd) else {
        return Err("`nvirt run linux` needs --kernel BZIMAGE and --initrd FILE".into());
    };
    scenario.ram = 256 * MIB;
    scenario.nvram = 64 * MIB;
    scenario.nv_type = 12;
    scenario.timeout = Duration::from_secs(match scenario.emulator {
        Emulator::Qemu => 240,
        Emulator::Bochs => 900,
    });
    scenario.linux = Some(LinuxBoot {
        bzimage: kernel.to_path_buf(),
        initramfs: initrd.to_path_buf(),
        cmdline: append.unwrap_or(DEFAULT_CMDLINE).to_owned(),
    });
    Ok(())
}
