//! The Debian packages the emulator runs need: found, installed with
//! apt-get when running as root, or named in the exact command to run.
//!
//! `NVIRT_APT_DRY_RUN=1` prints the apt-get commands a root run would
//! execute instead of executing them (to check the install path on a
//! machine that has the packages, with a `PATH` that hides them).

use std::path::Path;
use std::process::Command;

use crate::process::{run_quiet, run_streamed};

/// A file that must exist and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need {
    /// An executable on `PATH` or an absolute path.
    pub(crate) file: &'static str,
    /// The Debian package.
    pub(crate) package: &'static str,
}

/// QEMU.
pub(crate) const QEMU: &[Need] = &[Need {
    file: "qemu-system-x86_64",
    package: "qemu-system-x86",
}];

/// What `grub-mkrescue` needs for a BIOS ISO.
pub(crate) const GRUB_ISO: &[Need] = &[
    Need {
        file: "grub-mkrescue",
        package: "grub-common",
    },
    Need {
        file: "grub-file",
        package: "grub-common",
    },
    Need {
        file: "/usr/lib/grub/i386-pc/moddep.lst",
        package: "grub-pc-bin",
    },
    Need {
        file: "xorriso",
        package: "xorriso",
    },
    Need {
        file: "mformat",
        package: "mtools",
    },
];

/// Bochs with its BIOS images.
pub(crate) const BOCHS: &[Need] = &[
    Need {
        file: "bochs",
        package: "bochs",
    },
    Need {
        file: "/usr/share/bochs/BIOS-bochs-latest",
        package: "bochsbios",
    },
    Need {
        file: "/usr/share/vgabios/vgabios.bin",
        package: "vgabios",
    },
];

fn present(file: &str) -> bool {
    if file.starts_with('/') {
        return Path::new(file).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(file).is_file()))
}

fn is_root() -> bool {
    run_quiet(Command::new("id").arg("-u")).is_some_and(|(ok, out)| ok && out.trim() == "0")
}

/// What to do about missing packages.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Everything is there.
    Ready,
    /// Install these packages (running as root).
    Install(Vec<&'static str>),
    /// Not root: tell the user this exact command.
    Instruct(String),
}

/// The packages providing the files of `needs` that `present` does not
/// find, and what to do about them.
fn plan(needs: &[&[Need]], present: impl Fn(&str) -> bool, root: bool) -> Plan {
    let mut missing: Vec<&'static str> = needs
        .iter()
        .flat_map(|n| n.iter())
        .filter(|n| !present(n.file))
        .map(|n| n.package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        Plan::Ready
    } else if root {
        Plan::Install(missing)
    } else {
        Plan::Instruct(format!(
            "missing Debian packages; install them with: sudo {}",
            install_command(&missing)
        ))
    }
}

fn install_command(packages: &[&str]) -> String {
    format!("apt-get install -y {}", packages.join(" "))
}

/// Makes sure every file of `needs` exists: installs the missing packages
/// with `apt-get install -y` when running as root (after `apt-get update`
/// if the first try fails), else fails with the command to run.
pub(crate) fn ensure(needs: &[&[Need]]) -> Result<(), String> {
    let missing = match plan(needs, present, is_root()) {
        Plan::Ready => return Ok(()),
        Plan::Instruct(message) => return Err(message),
        Plan::Install(missing) => missing,
    };
    let command = install_command(&missing);
    if std::env::var_os("NVIRT_APT_DRY_RUN").is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("nvirt: would run: DEBIAN_FRONTEND=noninteractive {command}");
        eprintln!("nvirt: and if that fails: apt-get update, then the same again");
        return Err(format!(
            "missing Debian packages not installed (NVIRT_APT_DRY_RUN): {}",
            missing.join(" ")
        ));
    }
    let install = || {
        run_streamed(
            Command::new("apt-get")
                .args(["install", "-y"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .map(|d| d.success)
    };
    if !install()? {
        let _ = run_streamed(Command::new("apt-get").arg("update"))?;
        if !install()? {
            return Err(format!("`{command}` failed (output above)"));
        }
    }
    let still: Vec<&str> = needs
        .iter()
        .flat_map(|n| n.iter())
        .filter(|n| !present(n.file))
        .map(|n| n.file)
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "still missing after `{command}`: {}",
            still.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_missing_package_once() {
        let all: &[&[Need]] = &[QEMU, BOCHS, GRUB_ISO];
        assert_eq!(plan(all, |_| true, false), Plan::Ready);
        let none = |_: &str| false;
        assert_eq!(
            plan(all, none, true),
            Plan::Install(vec![
                "bochs",
                "bochsbios",
                "grub-common",
                "grub-pc-bin",
                "mtools",
                "qemu-system-x86",
                "vgabios",
                "xorriso"
            ])
        );
        let grub_only = |f: &str| !f.starts_with("grub");
        assert_eq!(
            plan(&[GRUB_ISO], grub_only, false),
            Plan::Instruct(
                "missing Debian packages; install them with: sudo apt-get install -y grub-common"
                    .into()
            )
        );
    }
}
