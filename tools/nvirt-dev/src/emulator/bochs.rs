//! Bochs with Intel VMX + EPT (`corei7_skylake_x`) or AMD SVM + nested
//! paging (`ryzen`), booting the GRUB ISO, driven by its built-in debugger
//! (`-rc`: continue, then quit at the hypervisor's magic breakpoint), the
//! serial console written to a file that is followed while Bochs runs.
//!
//! Bochs has no NVDIMM: the NVRAM is a `memmap=SIZE!START` range inside its
//! RAM, at [`NVRAM_START`], above everything GRUB loads (the hypervisor
//! refuses to start if any boot data lands in it).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::Duration;

use super::{Cpu, MIB, Scenario, Started};
use crate::image::{self, Built};
use crate::process::describe;

/// Where the `memmap=` NVRAM range starts: 64 MiB.
pub(crate) const NVRAM_START: u64 = 64 * MIB;
/// RAM Bochs gets beyond the guest's RAM and the NVRAM range: the low
/// 64 MiB (GRUB, the hypervisor and its tables) and room at the top for
/// the BIOS's ACPI tables.
const HOST_OVERHEAD: u64 = 96 * MIB;

/// The most memory Bochs 2.7 takes (`memory: host=` is range-checked).
pub(crate) const MAX_MEGS: u64 = 2048;

/// Bochs's memory for `scenario`, in MiB.
pub(crate) fn megs(scenario: &Scenario) -> u64 {
    (NVRAM_START + scenario.nvram_device() + scenario.ram + HOST_OVERHEAD) / MIB
}

fn config(scenario: &Scenario, iso: &Path, serial: &Path, log: &Path) -> String {
    let megs = megs(scenario);
    let model = match scenario.cpu {
        Cpu::Intel => "corei7_skylake_x",
        Cpu::Amd => "ryzen",
    };
    format!(
        "memory: guest={megs}, host={megs}
cpu: model={model}, ips=10000000, reset_on_triple_fault=0, ignore_bad_msrs=1
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
display_library: rfb, options=\"timeout=0\"
speaker: enabled=0
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
com1: enabled=1, mode=file, dev={serial}
port_e9_hack: enabled=1
magic_break: enabled=1
clock: sync=none
log: {log}
debug: action=ignore
",
        iso = iso.display(),
        serial = serial.display(),
        log = log.display(),
    )
}

/// Follows `path` as Bochs appends to it, sending each complete line;
/// after `exited` is set, sends what is left and stops.
fn follow(path: PathBuf, exited: Arc<AtomicBool>, tx: Sender<String>) {
    let mut offset = 0u64;
    let mut pending = Vec::new();
    loop {
        let done = exited.load(Ordering::Acquire);
        if let Ok(mut file) = File::open(&path) {
            if file.seek(SeekFrom::Start(offset)).is_ok() {
                let mut fresh = Vec::new();
                if let Ok(n) = file.read_to_end(&mut fresh) {
                    offset += n as u64;
                    pending.extend_from_slice(&fresh);
                }
            }
        }
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                return;
            }
        }
        if done {
            if !pending.is_empty() {
                let _ = tx.send(String::from_utf8_lossy(&pending).into_owned());
            }
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Starts Bochs for `scenario`.
pub(crate) fn start(
    scenario: &Scenario,
    built: &Built,
    guest: &Path,
    dir: &Path,
) -> Result<Started, String> {
    // Bochs's RAM reads as zeros at power-on: the NVRAM range is new.
    let cmdline = format!(
        "{} memmap={}M!{}M nvpool=fresh",
        scenario.cmdline(),
        scenario.nvram_device() / MIB,
        NVRAM_START / MIB
    );
    let cmdline = if scenario.nvram_device() == 0 {
        scenario.cmdline()
    } else {
        cmdline
    };
    let iso = image::grub_iso(built, &image::iso_modules(scenario, guest), &cmdline, dir)?;
    let serial = dir.join("serial.log");
    let log = dir.join("bochs.log");
    let _ = fs::remove_file(&serial);
    let rc = dir.join("bochsrc");
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    fs::write(&rc, config(scenario, &iso, &serial, &log)).map_err(|e| io(&rc, e))?;
    // The debugger's script: run; at the magic breakpoint, quit (status 0).
    let commands = dir.join("debugger.rc");
    fs::write(&commands, "c\nq\n").map_err(|e| io(&commands, e))?;
    let out_path = dir.join("bochs.out");
    let out = File::create(&out_path).map_err(|e| io(&out_path, e))?;
    let err = out.try_clone().map_err(|e| io(&out_path, e))?;
    let mut cmd = Command::new("bochs");
    cmd.arg("-q")
        .arg("-f")
        .arg(&rc)
        .arg("-rc")
        .arg(&commands)
        .current_dir(dir);
    eprintln!("+ {}", describe(&cmd));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", describe(&cmd)))?;
    let exited = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = Arc::clone(&exited);
    thread::spawn(move || follow(serial, flag, tx));
    Ok(Started {
        child,
        lines: rx,
        exited,
        success_status: 0,
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::Emulator;

    #[test]
    fn config_names_the_cpu_memory_and_files() {
        let mut s = Scenario::new(Emulator::Bochs);
        s.cpu = Cpu::Amd;
        let text = config(
            &s,
            Path::new("/r/nvirt.iso"),
            Path::new("/r/serial.log"),
            Path::new("/r/bochs.log"),
        );
        assert!(text.contains("cpu: model=ryzen"));
        // 64 MiB low + 16 NVRAM (and 2 for the pool's metadata) + 16 RAM
        // + 96 overhead.
        assert!(text.contains("memory: guest=194, host=194"));
        assert!(text.contains("path=/r/nvirt.iso"));
        assert!(text.contains("com1: enabled=1, mode=file, dev=/r/serial.log"));
        assert!(text.contains("sound: waveoutdrv=dummy"));
        s.nvram = 2 << 30;
        assert!(megs(&s) > MAX_MEGS);
    }
}
