//! QEMU (TCG) with AMD SVM and nested paging, an NVDIMM backed by a file
//! under the run directory (found by the hypervisor through the ACPI NFIT),
//! the serial console on stdout and `isa-debug-exit` for the verdict.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::thread;

use super::{Boot, GUEST_LOAD_ADDR, MIB, Scenario, Started};
use crate::image::{self, Built};
use crate::process::describe;

/// RAM QEMU gets beyond the guest's: the hypervisor, its tables, the boot
/// loader and the preloaded guest image at 48 MiB.
const HOST_OVERHEAD: u64 = 128 * MIB;
const GIB: u64 = 1 << 30;

/// QEMU's `-m` for a guest of `ram` bytes. A guest of 1 GiB or more gets
/// whole 1 GiB pages only from free 1 GiB-aligned host blocks; the first
/// GiB holds the hypervisor and the last GiB below 4 GiB the firmware's
/// tables, so the host gets two GiB beyond the guest's (rounded up). QEMU
/// commits host memory only as it is touched.
fn host_ram(ram: u64) -> u64 {
    if ram >= GIB {
        ram.div_ceil(GIB) * GIB + 2 * GIB
    } else {
        ram + HOST_OVERHEAD
    }
}
/// `(0x10 << 1) | 1`: the hypervisor writes 0x10 to `isa-debug-exit` on success.
const SUCCESS_STATUS: i32 = 33;

/// Makes the NVDIMM backing file exactly `size` bytes for a guest whose
/// memory `layout` describes, keeping its contents (NVRAM survives runs) if
/// it already served that layout; otherwise (no file, another size, another
/// layout, whose NVRAM would sit at other guest frames) a new, sparse,
/// all-zero file: a new NVDIMM. Returns whether it is new.
pub(crate) fn backing_file(path: &Path, size: u64, layout: &str) -> Result<bool, String> {
    let stamp = path.with_extension("layout");
    let same = fs::read_to_string(&stamp).is_ok_and(|s| s == layout)
        && fs::metadata(path).is_ok_and(|m| m.len() == size);
    if same {
        return Ok(false);
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.set_len(size)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    fs::write(&stamp, layout).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(true)
}

/// Starts QEMU for `scenario`.
pub(crate) fn start(
    scenario: &Scenario,
    built: &Built,
    guest: &Path,
    dir: &Path,
) -> Result<Started, String> {
    let host_ram = host_ram(scenario.ram) / MIB;
    let mut cmd = Command::new("qemu-system-x86_64");
    let mut cmdline = scenario.cmdline();
    if scenario.nvram_device() > 0 {
        let pmem = dir.join("pmem.img");
        let device = scenario.nvram_device();
        // With VMs the pool's domains are found by their ids, wherever
        // they sit: the NVDIMM is kept while its size stays.
        let layout = if scenario.vms.is_empty() {
            format!("guest_ram={} guest_nvram={}", scenario.ram, scenario.nvram)
        } else {
            format!("vms nvdimm={device}")
        };
        if backing_file(&pmem, device, &layout)? {
            cmdline.push_str(" nvpool=fresh");
        }
        let maxmem = host_ram + device / MIB + 1024;
        cmd.args(["-M", "pc,nvdimm=on", "-m"])
            .arg(format!("{host_ram}M,slots=2,maxmem={maxmem}M"))
            .arg("-object")
            .arg(format!(
                "memory-backend-file,id=pm0,share=on,mem-path={},size={}M",
                pmem.display(),
                device / MIB
            ))
            .args(["-device", "nvdimm,id=nv0,memdev=pm0"]);
    } else {
        cmd.args(["-M", "pc", "-m"]).arg(format!("{host_ram}M"));
    }
    // pdpe1gb: 1 GiB pages, which nested tables may then use too.
    cmd.args(["-accel", "tcg", "-cpu", "qemu64,+svm,+npt,+pdpe1gb"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .args(["-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    let has_modules = scenario.linux.is_some() || !scenario.vms.is_empty();
    match (scenario.boot, has_modules) {
        (Boot::Kernel | Boot::Pvh, true) => {
            // Multiboot1 modules: QEMU separates them by commas, the file
            // name comes first and the rest is the module's string.
            let modules: Vec<String> = scenario
                .modules(guest)
                .iter()
                .map(|(file, name)| {
                    format!("{} {name}", file.display().to_string().replace(',', ",,"))
                })
                .collect();
            cmd.arg("-kernel")
                .arg(&built.hypervisor)
                .arg("-append")
                .arg(cmdline)
                .arg("-initrd")
                .arg(modules.join(","));
        }
        (Boot::Kernel | Boot::Pvh, false) => {
            let kernel = if scenario.boot == Boot::Pvh {
                image::pvh_only_copy(built, dir)?
            } else {
                built.hypervisor.clone()
            };
            cmd.arg("-kernel")
                .arg(kernel)
                .arg("-append")
                .arg(format!("{cmdline} guest_addr={GUEST_LOAD_ADDR:#x}"))
                .arg("-device")
                .arg(format!(
                    "loader,file={},addr={GUEST_LOAD_ADDR:#x},force-raw=on",
                    guest.display()
                ));
        }
        (Boot::Iso, _) => {
            let iso = image::grub_iso(built, &image::iso_modules(scenario, guest), &cmdline, dir)?;
            cmd.arg("-cdrom").arg(iso).args(["-boot", "d"]);
        }
    }
    let log = dir.join("qemu.log");
    let log_file = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    fs::write(dir.join("command.txt"), describe(&cmd)).map_err(|e| e.to_string())?;
    eprintln!("+ {}", describe(&cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", describe(&cmd)))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe from QEMU")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // Lossy: one byte that is not UTF-8 must not end the console.
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    Ok(Started {
        child,
        lines: rx,
        exited: Arc::new(AtomicBool::new(false)),
        success_status: SUCCESS_STATUS,
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_guests_get_room_for_whole_gib_blocks() {
        assert_eq!(host_ram(64 * MIB), 192 * MIB);
        assert_eq!(host_ram(2 * GIB), 4 * GIB);
        assert_eq!(host_ram(1536 * MIB), 4 * GIB);
    }
}
