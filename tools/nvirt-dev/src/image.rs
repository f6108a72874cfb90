//! Building the reference hypervisor and its guest, and the boot images:
//! the guest's flat binary (from its ELF) and the GRUB rescue ISO.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{describe, run_quiet, run_streamed};
use crate::toolchain::{BARE_METAL_TARGET, ensure_target};

/// The bare-metal packages `nvirt run` builds.
const BARE_METAL_PACKAGES: [&str; 2] = ["nvirt-hv", "nvirt-guest"];

/// The artifacts of a build.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    /// The hypervisor ELF (Multiboot2, Multiboot1 and PVH headers).
    pub(crate) hypervisor: PathBuf,
    /// The guest ELF.
    pub(crate) guest_elf: PathBuf,
}

/// The cargo target directory of the workspace at `root`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn cargo_bare_metal(root: &Path, subcommand: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).arg(subcommand);
    for p in BARE_METAL_PACKAGES {
        cmd.args(["--package", p]);
    }
    cmd.args(["--target", BARE_METAL_TARGET, "--release"]);
    cmd.args(extra);
    cmd
}

/// Lints the bare-metal crates for their real target (the workspace's own
/// `cargo clippy` sees only their host stubs).
pub(crate) fn clippy_bare_metal(root: &Path) -> Result<(), String> {
    ensure_target(BARE_METAL_TARGET)?;
    let mut cmd = cargo_bare_metal(root, "clippy", &["--", "-D", "warnings"]);
    if run_streamed(&mut cmd)?.success {
        Ok(())
    } else {
        Err(format!("`{}` failed (output above)", describe(&cmd)))
    }
}

/// Builds the hypervisor and the guest for `x86_64-unknown-none`.
pub(crate) fn build(root: &Path) -> Result<Built, String> {
    ensure_target(BARE_METAL_TARGET)?;
    let mut cmd = cargo_bare_metal(root, "build", &[]);
    if !run_streamed(&mut cmd)?.success {
        return Err(format!("`{}` failed (output above)", describe(&cmd)));
    }
    let out = target_dir(root).join(BARE_METAL_TARGET).join("release");
    Ok(Built {
        hypervisor: out.join("nvirt-hv"),
        guest_elf: out.join("nvirt-guest"),
    })
}

/// The loadable segments of an ELF64 little-endian executable laid out as a
/// flat image from the lowest segment address: what a loader that copies
/// the file to its load address needs. Gaps and `.bss` are not included
/// beyond the last file byte (the image header tells the hypervisor the
/// memory size).
pub(crate) fn elf_to_flat(elf: &[u8]) -> Result<(u64, Vec<u8>), String> {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a little-endian ELF64 file".into());
    }
    let bad = || "truncated or malformed ELF program headers".to_string();
    let phoff = u64_at(0x20).ok_or_else(bad)? as usize;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i.checked_mul(phentsize).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        if u32_at(ph).ok_or_else(bad)? != 1 {
            continue; // not PT_LOAD
        }
        let offset = u64_at(ph + 8).ok_or_else(bad)? as usize;
        let paddr = u64_at(ph + 0x18).ok_or_else(bad)?;
        let filesz = u64_at(ph + 0x20).ok_or_else(bad)? as usize;
        let bytes = elf
            .get(offset..offset.checked_add(filesz).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        segments.push((paddr, bytes));
    }
    let base = segments
        .iter()
        .map(|s| s.0)
        .min()
        .ok_or("no loadable segment")?;
    let mut flat = Vec::new();
    for (paddr, bytes) in segments {
        let at = usize::try_from(paddr - base).map_err(|_| bad())?;
        let end = at
            .checked_add(bytes.len())
            .filter(|&end| end <= 256 << 20)
            .ok_or("flat image would exceed 256 MiB")?;
        if flat.len() < end {
            flat.resize(end, 0);
        }
        flat[at..end].copy_from_slice(bytes);
    }
    Ok((base, flat))
}

/// A copy of the hypervisor in `dir` whose Multiboot1 magic is cleared, so
/// QEMU's `-kernel` (which tries Multiboot1 first) boots it through the PVH
/// ELF note instead: the PVH path, tested.
pub(crate) fn pvh_only_copy(built: &Built, dir: &Path) -> Result<PathBuf, String> {
    let mut elf =
        fs::read(&built.hypervisor).map_err(|e| format!("{}: {e}", built.hypervisor.display()))?;
    let magic = 0x1bad_b002u32.to_le_bytes();
    // Multiboot1: magic, flags, checksum (sum 0 mod 2^32), 4-byte aligned,
    // in the first 8 KiB.
    let at = (0..elf.len().min(8192).saturating_sub(12))
        .step_by(4)
        .find(|&i| {
            let word = |o: usize| u32::from_le_bytes([elf[o], elf[o + 1], elf[o + 2], elf[o + 3]]);
            elf[i..i + 4] == magic
                && word(i).wrapping_add(word(i + 4)).wrapping_add(word(i + 8)) == 0
        })
        .ok_or("the hypervisor has no Multiboot1 header")?;
    elf[at..at + 4].fill(0);
    let path = dir.join("nvirt-hv-pvh.elf");
    fs::write(&path, elf).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Writes the guest's flat image into `dir` and returns its path.
pub(crate) fn guest_flat(built: &Built, dir: &Path) -> Result<PathBuf, String> {
    let elf =
        fs::read(&built.guest_elf).map_err(|e| format!("{}: {e}", built.guest_elf.display()))?;
    let (_, flat) = elf_to_flat(&elf).map_err(|e| format!("{}: {e}", built.guest_elf.display()))?;
    let path = dir.join("nvirt-guest.bin");
    fs::write(&path, flat).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The boot modules of `scenario`'s ISO: the VMs' configurations and
/// images, the Linux kernel and initramfs, or the test guest's image.
pub(crate) fn iso_modules(
    scenario: &crate::emulator::Scenario,
    guest: &Path,
) -> Vec<(PathBuf, String)> {
    scenario.modules(guest)
}

/// Builds a BIOS GRUB rescue ISO in `dir` that boots the hypervisor by
/// Multiboot2 with `cmdline` and `modules` (file, module string).
pub(crate) fn grub_iso(
    built: &Built,
    modules: &[(PathBuf, String)],
    cmdline: &str,
    dir: &Path,
) -> Result<PathBuf, String> {
    let tree = dir.join("iso");
    let boot = tree.join("boot");
    let io = |e: std::io::Error| format!("{}: {e}", tree.display());
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(boot.join("grub")).map_err(io)?;
    fs::copy(&built.hypervisor, boot.join("nvirt-hv.elf")).map_err(io)?;
    let mut lines = String::new();
    for (i, (file, name)) in modules.iter().enumerate() {
        let inside = format!("module{i}.bin");
        fs::copy(file, boot.join(&inside)).map_err(io)?;
        lines.push_str(&format!("  module2 /boot/{inside} {name}\n"));
    }
    let cfg = format!(
        "set timeout=0\nset default=0\nmenuentry \"nvirt\" {{\n  multiboot2 /boot/nvirt-hv.elf {cmdline}\n{lines}  boot\n}}\n"
    );
    fs::write(boot.join("grub/grub.cfg"), cfg).map_err(io)?;
    if let Some((false, _)) = run_quiet(
        Command::new("grub-file")
            .arg("--is-x86-multiboot2")
            .arg(&built.hypervisor),
    ) {
        return Err(format!(
            "{} has no valid Multiboot2 header",
            built.hypervisor.display()
        ));
    }
    let iso = dir.join("nvirt.iso");
    let mut cmd = Command::new("grub-mkrescue");
    cmd.args(["-d", "/usr/lib/grub/i386-pc", "-o"])
        .arg(&iso)
        .arg(&tree);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {}: {e}", describe(&cmd)))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            describe(&cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header with `segments` as (type, offset, paddr, filesz).
    fn elf(segments: &[(u32, u64, u64, u64)], body: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for &(t, off, paddr, filesz) in segments {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            ph[8..16].copy_from_slice(&off.to_le_bytes());
            ph[0x10..0x18].copy_from_slice(&paddr.to_le_bytes());
            ph[0x18..0x20].copy_from_slice(&paddr.to_le_bytes());
            ph[0x20..0x28].copy_from_slice(&filesz.to_le_bytes());
            ph[0x28..0x30].copy_from_slice(&(filesz + 0x100).to_le_bytes());
            e.extend(ph);
        }
        e.resize(0x200, 0);
        e.extend_from_slice(body);
        e
    }

    #[test]
    fn flattens_load_segments_and_skips_others() {
        let body: Vec<u8> = (0..32).collect();
        let file = elf(
            &[
                (1, 0x200, 0x10_0000, 16),
                (4, 0x200, 0, 4),
                (1, 0x210, 0x10_0020, 16),
            ],
            &body,
        );
        let (base, flat) = elf_to_flat(&file).unwrap();
        assert_eq!(base, 0x10_0000);
        assert_eq!(flat.len(), 0x30);
        assert_eq!(&flat[..16], &body[..16]);
        assert!(flat[16..32].iter().all(|&b| b == 0));
        assert_eq!(&flat[32..], &body[16..]);
    }

    #[test]
    fn refuses_malformed_files() {
        assert!(elf_to_flat(b"not an elf").is_err());
        assert!(elf_to_flat(&elf(&[], &[])).is_err(), "no PT_LOAD");
        assert!(elf_to_flat(&elf(&[(1, 0x200, 0, 1 << 40)], &[])).is_err());
        let mut truncated = elf(&[(1, 0x200, 0, 4)], &[1, 2, 3, 4]);
        truncated.truncate(100);
        assert!(elf_to_flat(&truncated).is_err());
    }
}
