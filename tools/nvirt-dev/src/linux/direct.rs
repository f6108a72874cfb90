//! The Linux guest booted directly in QEMU (TCG), without the hypervisor:
//! the baseline its time to `/dev/pmem0` is compared against. The NVRAM is
//! a `memmap=16M!128M` range of guest RAM (legacy persistent memory, E820
//! type 12), and RAM is a shared file mapping, so what Linux wrote to
//! `/dev/pmem0` is in the file when QEMU is killed and there again at the
//! next boot.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{CMDLINE, LinuxGuest, Mode, Running, cache_dir, remove_if_present};
use crate::emulator::packages;
use crate::emulator::qemu::backing_file;
use crate::process::{describe, timed_lines};

const MIB: u64 = 1 << 20;
/// The kernel needs at least 128 MiB (its `init_size` alone is 63 MiB).
pub(crate) const RAM_MIB: u64 = 256;
/// The NVRAM range: above the kernel image (16–68 MiB with nokaslr),
/// below where QEMU puts the initrd (the top of RAM).
pub(crate) const PMEM_START_MIB: u64 = 128;
pub(crate) const PMEM_MIB: u64 = 16;
// The NVRAM lies inside RAM, past the kernel image, below the initrd.
const _: () = assert!(PMEM_START_MIB >= 68 && PMEM_START_MIB + PMEM_MIB <= RAM_MIB - 32);

/// Direct boots of one guest over one RAM file.
#[derive(Debug)]
pub(crate) struct Direct {
    guest: LinuxGuest,
    /// `target/nvirt-linux/direct-<name>`: the RAM file, QEMU's log.
    dir: PathBuf,
}

impl Direct {
    /// Checks QEMU is installed (or says how to install it) and makes the
    /// run directory `target/nvirt-linux/direct-<name>`.
    pub(crate) fn new(root: &Path, guest: &LinuxGuest, name: &str) -> Result<Self, String> {
        packages::ensure(&[packages::QEMU])?;
        let dir = cache_dir(root).join(format!("direct-{name}"));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self {
            guest: guest.clone(),
            dir,
        })
    }

    /// The file backing guest RAM, and so `/dev/pmem0`.
    pub(crate) fn ram_file(&self) -> PathBuf {
        self.dir.join("ram.img")
    }

    /// Drops the RAM file: the next boot starts from an all-zero
    /// `/dev/pmem0`.
    pub(crate) fn forget_nvram(&self) -> Result<(), String> {
        remove_if_present(&self.ram_file())?;
        remove_if_present(&self.ram_file().with_extension("layout"))
    }

    /// QEMU's command line for a boot in `mode`.
    pub(crate) fn command(&self, mode: Mode) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-M", "pc,memory-backend=ram0", "-accel", "tcg"])
            .args(["-cpu", "qemu64,+svm,+npt"])
            .arg("-m")
            .arg(format!("{RAM_MIB}M"))
            .arg("-object")
            .arg(format!(
                "memory-backend-file,id=ram0,size={RAM_MIB}M,mem-path={},share=on",
                self.ram_file().display()
            ))
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .args(["-serial", "stdio"])
            .arg("-kernel")
            .arg(&self.guest.bzimage)
            .arg("-initrd")
            .arg(&self.guest.initramfs)
            .arg("-append")
            .arg(format!(
                "{CMDLINE} memmap={PMEM_MIB}M!{PMEM_START_MIB}M {}",
                mode.param()
            ));
        cmd
    }

    /// Starts a boot in `mode`; console lines are stamped from the spawn.
    pub(crate) fn start(&self, mode: Mode) -> Result<Running, String> {
        // Kept while the layout is the same: it holds the NVRAM.
        backing_file(
            &self.ram_file(),
            RAM_MIB * MIB,
            &format!("linux-direct ram={RAM_MIB}M"),
        )?;
        let log = self.dir.join("qemu.log");
        let log_file = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = self.command(mode);
        fs::write(self.dir.join("command.txt"), describe(&cmd)).map_err(|e| e.to_string())?;
        let since = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", describe(&cmd)))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe from QEMU")?;
        Ok(Running {
            child,
            lines: timed_lines(stdout, since),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_puts_nvram_in_file_backed_ram() {
        let guest = LinuxGuest {
            version: "v".into(),
            bzimage: "/c/vmlinuz".into(),
            initramfs: "/c/initramfs.cpio".into(),
        };
        let d = Direct {
            guest,
            dir: "/c/direct-x".into(),
        };
        let line = describe(&d.command(Mode::Crashloop));
        for want in [
            "-M pc,memory-backend=ram0 ",
            "-m 256M ",
            "memory-backend-file,id=ram0,size=256M,mem-path=/c/direct-x/ram.img,share=on",
            "-kernel /c/vmlinuz -initrd /c/initramfs.cpio",
            "-no-reboot",
            "-append console=ttyS0 nokaslr acpi=off nolapic nosmp memmap=16M!128M nvirt.linux=crashloop",
        ] {
            assert!(line.contains(want), "{want} in {line}");
        }
        assert!(describe(&d.command(Mode::Boot)).ends_with(" nvirt.linux=boot"));
    }
}
