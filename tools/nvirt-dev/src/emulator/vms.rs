//! `nvirt run --vm FILE`: VM configuration files parsed on the host, then
//! handed to the hypervisor as boot modules.
//!
//! The module convention (the hypervisor matches these words):
//!
//! | module | file | string |
//! |---|---|---|
//! | one per VM, in `--vm` order | the configuration file | `vmcfg NAME` |
//! | one per VM with `kernel` | the kernel image | `vmkernel NAME` |
//! | one per VM with `ramdisk` | the ramdisk | `vmramdisk NAME` |
//! | once, if any VM has no `kernel` | the nvirt test guest | `nvirt-guest` |
//!
//! On QEMU's Multiboot1 path (`-initrd`) a module's string is preceded by
//! its file's path, as for the Linux guest's modules: the words matter,
//! not their position. Relative paths in a configuration are relative to
//! its file's directory.

use std::path::{Path, PathBuf};

use nvirt_cli::{VmFile, check_files};

/// One VM of `--vm`, resolved on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VmBoot {
    /// `name`.
    pub(crate) name: String,
    /// The configuration file (passed as the `vmcfg` module).
    pub(crate) config: PathBuf,
    /// The stable domain id in the NV pool (`uuid`, or derived from the
    /// name).
    pub(crate) domain_id: u128,
    /// `memory`, bytes.
    pub(crate) memory: u64,
    /// `nvram`, bytes.
    pub(crate) nvram: u64,
    /// The NVRAM the pool must hold when the VM starts (all of it unless
    /// `nvram_populate = "touch"`), bytes.
    pub(crate) eager_nvram: u64,
    /// `nvram_file`, resolved.
    pub(crate) nvram_file: Option<PathBuf>,
    /// `kernel`, resolved (`None`: the test guest).
    pub(crate) kernel: Option<PathBuf>,
    /// `ramdisk`, resolved.
    pub(crate) ramdisk: Option<PathBuf>,
}

/// Reads, parses and checks every file as one set (distinct names, ids
/// and NVRAM files) and checks that every kernel and ramdisk can be read.
/// `Err` holds every message, each naming its file (and line).
pub(crate) fn load(paths: &[PathBuf]) -> Result<Vec<VmBoot>, String> {
    let files = paths
        .iter()
        .map(|p| VmFile::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let vms = check_files(&files).map_err(|errors| errors.join("\n"))?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (file, vm) in files.iter().zip(&vms) {
        let image = |key: &str, value: Option<&str>, missing: &mut Vec<String>| {
            let path = file.resolve(value?);
            if let Err(e) = std::fs::metadata(&path) {
                missing.push(format!(
                    "{}: {key} {}: {e}",
                    file.path.display(),
                    path.display()
                ));
            }
            Some(path)
        };
        out.push(VmBoot {
            name: vm.name.to_owned(),
            config: file.path.clone(),
            domain_id: vm.domain_id(),
            memory: vm.memory,
            nvram: vm.nvram,
            eager_nvram: vm.eager_nvram(),
            nvram_file: vm.nvram_file.map(|f| file.resolve(f)),
            kernel: image("kernel", vm.kernel, &mut missing),
            ramdisk: image("ramdisk", vm.ramdisk, &mut missing),
        });
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing.join("\n"))
    }
}

/// The boot modules for `vms`, (file, module string), in the order of the
/// module table above: each VM's configuration, kernel and ramdisk in
/// `--vm` order, then the test guest `guest` once if a VM runs it.
pub(crate) fn modules(vms: &[VmBoot], guest: &Path) -> Vec<(PathBuf, String)> {
    let mut list = Vec::new();
    for vm in vms {
        list.push((vm.config.clone(), format!("vmcfg {}", vm.name)));
        if let Some(kernel) = &vm.kernel {
            list.push((kernel.clone(), format!("vmkernel {}", vm.name)));
        }
        if let Some(ramdisk) = &vm.ramdisk {
            list.push((ramdisk.clone(), format!("vmramdisk {}", vm.name)));
        }
    }
    if vms.iter().any(|vm| vm.kernel.is_none()) {
        list.push((guest.to_path_buf(), "nvirt-guest".to_owned()));
    }
    list
}

/// Guest RAM the host must give: the sum of `memory`.
pub(crate) fn total_memory(vms: &[VmBoot]) -> u64 {
    vms.iter().map(|vm| vm.memory).sum()
}

/// NVRAM the pool must hold when every VM has started: the sum of the
/// eager NVRAM (a `"touch"` VM's NVRAM comes from the pool only as the
/// guest touches it).
pub(crate) fn eager_nvram(vms: &[VmBoot]) -> u64 {
    vms.iter().map(|vm| vm.eager_nvram).sum()
}

/// NVRAM the VMs may use in all, touched or not.
pub(crate) fn total_nvram(vms: &[VmBoot]) -> u64 {
    vms.iter().map(|vm| vm.nvram).sum()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const MIB: u64 = 1 << 20;

    fn dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nvirt-dev-vms-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, text: &str) -> PathBuf {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        path.to_path_buf()
    }

    #[test]
    fn modules_strings_sizes_and_paths() {
        let d = dir("modules");
        write(&d.join("img/bz"), "kernel");
        write(&d.join("vms/initrd"), "ramdisk");
        let a = write(
            &d.join("vms/a.cfg"),
            "name='a'\nmemory=32\nnvram=16\nnvram_file='a.img'\n",
        );
        let b = write(
            &d.join("vms/b.cfg"),
            "name='b'\nmemory=64\nnvram=8\nnvram_populate='touch'\n\
             kernel='../img/bz'\nramdisk='initrd'\ncmdline='console=ttyS0'\n",
        );
        let c = write(&d.join("c.cfg"), "name='c'\nmemory=16\n");
        let vms = load(&[a.clone(), b.clone(), c.clone()]).unwrap();
        assert_eq!(vms[0].nvram_file, Some(d.join("vms/a.img")));
        assert_eq!(
            vms[1].kernel,
            Some(d.join("img/bz")),
            "relative to the config"
        );
        assert_eq!(vms[1].ramdisk, Some(d.join("vms/initrd")));
        assert_eq!(vms[0].domain_id, nvirt_vmconfig::id_from_name("a"));
        let guest = d.join("nvirt-guest.bin");
        let names: Vec<(PathBuf, String)> = modules(&vms, &guest);
        assert_eq!(
            names,
            [
                (a, "vmcfg a".to_owned()),
                (b, "vmcfg b".to_owned()),
                (d.join("img/bz"), "vmkernel b".to_owned()),
                (d.join("vms/initrd"), "vmramdisk b".to_owned()),
                (c, "vmcfg c".to_owned()),
                (guest.clone(), "nvirt-guest".to_owned()),
            ]
        );
        assert_eq!(total_memory(&vms), 112 * MIB);
        assert_eq!(
            eager_nvram(&vms),
            16 * MIB,
            "b's NVRAM comes on first touch"
        );
        assert_eq!(total_nvram(&vms), 24 * MIB);
        // Only kernels: no test guest.
        assert!(
            modules(&vms[1..2], &guest)
                .iter()
                .all(|(_, s)| s != "nvirt-guest")
        );
        assert!(modules(&[], &guest).is_empty());
    }

    #[test]
    fn errors_name_file_and_line_and_missing_images() {
        let d = dir("errors");
        let a = write(&d.join("a.cfg"), "name='a'\nmemory=32\nvcpus=2\n");
        let b = write(&d.join("b.cfg"), "name='b'\nmemory=32\nkernel='nope'\n");
        let err = load(&[a.clone(), b.clone()]).unwrap_err();
        assert_eq!(err, format!("{}:3: unknown key \"vcpus\"", a.display()));
        let err = load(std::slice::from_ref(&b)).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{}: kernel {}: ",
                b.display(),
                d.join("nope").display()
            )),
            "{err}"
        );
        let a2 = write(&d.join("x/a.cfg"), "name='a'\nmemory=8\n");
        let ok = write(&d.join("ok.cfg"), "name='a'\nmemory=8\n");
        assert!(load(&[ok, a2]).unwrap_err().contains("is also the name of"));
        assert!(
            load(&[d.join("none.cfg")])
                .unwrap_err()
                .contains("none.cfg")
        );
    }
}
