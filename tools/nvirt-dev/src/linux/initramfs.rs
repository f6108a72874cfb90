//! The Linux guest's initramfs: static busybox, the four NVDIMM modules
//! and `/init` (tools/nvirt-dev/linux/init, a busybox sh script), as an
//! uncompressed newc archive.

use std::fs;
use std::path::Path;

use super::assets::{Assets, MODULES};
use super::cpio::{CpioError, Writer};

/// The guest's `/init`.
pub(crate) const INIT: &str = include_str!("../../linux/init");

/// The archive of `busybox`, `modules` (name, bytes; loaded from
/// `/lib/modules/<name>.ko`) and [`INIT`]. `/dev/console` must be in the
/// archive: the kernel opens it for init's stdio before init can mount
/// devtmpfs.
pub(crate) fn archive(busybox: &[u8], modules: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, CpioError> {
    let mut w = Writer::new();
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "lib",
        "lib/modules",
    ] {
        w.dir(dir, if dir == "tmp" { 0o1777 } else { 0o755 })?;
    }
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.file("bin/busybox", 0o755, busybox)?;
    // The script's `#!/bin/sh`; `busybox --install -s` adds the rest.
    w.symlink("bin/sh", "busybox")?;
    for (name, bytes) in modules {
        w.file(&format!("lib/modules/{name}.ko"), 0o644, bytes)?;
    }
    w.file("init", 0o755, INIT.as_bytes())?;
    Ok(w.finish())
}

/// Builds the initramfs of `assets` into `dest`, rewriting it only when
/// its bytes change; returns its size.
pub(crate) fn build(assets: &Assets, dest: &Path) -> Result<u64, String> {
    let read = |p: &Path| fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let busybox = read(&assets.busybox)?;
    let mut modules = Vec::new();
    for (name, path) in MODULES.iter().zip(&assets.modules) {
        modules.push((*name, read(path)?));
    }
    let bytes = archive(&busybox, &modules).map_err(|e| e.to_string())?;
    if fs::read(dest).ok().as_deref() != Some(&bytes[..]) {
        let tmp = dest.with_extension("partial");
        fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::super::cpio::tests::parse;
    use super::*;

    fn fake_modules() -> Vec<(&'static str, Vec<u8>)> {
        MODULES
            .iter()
            .map(|m| (*m, format!("\x7fELF {m}").into_bytes()))
            .collect()
    }

    #[test]
    fn holds_init_busybox_console_and_the_modules() {
        let bytes = archive(b"\x7fELF busybox", &fake_modules()).unwrap();
        let entries = parse(&bytes).unwrap();
        let get = |name: &str| {
            entries
                .iter()
                .find(|e| e.name == name)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let init = get("init");
        assert_eq!((init.mode, &init.data[..]), (0o100_755, INIT.as_bytes()));
        assert!(INIT.starts_with("#!/bin/sh\n"));
        assert_eq!(get("bin/sh").data, b"busybox");
        assert_eq!(get("bin/busybox").mode, 0o100_755);
        assert_eq!(
            (get("dev/console").mode, get("dev/console").rdev),
            (0o020_600, (5, 1))
        );
        assert_eq!(get("tmp").mode, 0o041_777);
        for m in MODULES {
            assert_eq!(
                get(&format!("lib/modules/{m}.ko")).data,
                format!("\x7fELF {m}").as_bytes()
            );
        }
        // Every parent directory comes before what it holds.
        for (i, e) in entries.iter().enumerate() {
            if let Some((parent, _)) = e.name.rsplit_once('/') {
                assert!(entries[..i].iter().any(|p| p.name == parent), "{}", e.name);
            }
        }
        assert_eq!(
            bytes,
            archive(b"\x7fELF busybox", &fake_modules()).unwrap(),
            "reproducible"
        );
    }

    #[test]
    fn init_loads_the_modules_in_dependency_order() {
        let want = format!("for m in {}; do", MODULES.join(" "));
        assert!(INIT.contains(&want), "{want}");
        assert!(INIT.contains("insmod \"/lib/modules/$m.ko\""));
    }

    /// The lines the host reads (super::markers) are the lines the script
    /// prints.
    #[test]
    fn init_prints_the_markers_the_host_reads() {
        for said in [
            "say() { echo \"nvirt-linux: $*\"; }",
            "say \"pmem0 bytes=$((sectors * 512)) at $up\"",
            "say \"iomem: $line\"",
            "say \"boot=$boot verified=$count records ok\"",
            "say \"record $n writing\"",
            "say \"record $n committed\"",
            "say PASS",
            "say \"FAIL $*\"",
        ] {
            assert!(INIT.contains(said), "{said}");
        }
        // Durable before announced: every write to the device is fsynced.
        for line in INIT.lines().filter(|l| l.contains("of=$dev")) {
            assert!(line.contains("conv=") && line.contains("fsync"), "{line}");
        }
        // A record is written before the header that counts it.
        let append = &INIT[INIT.find("append() {").unwrap()..];
        let rec = append.find("rec_write $n").unwrap();
        let hdr = append.find("hdr_write $seq $boot $n").unwrap();
        let said = append.find("say \"record $n committed\"").unwrap();
        assert!(rec < hdr && hdr < said);
    }
}
