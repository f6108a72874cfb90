//! A stock Debian Linux kernel as a guest: its assets (kernel, modules,
//! busybox; [`assets`]), its initramfs ([`initramfs`], written by the newc
//! writer in [`cpio`]) whose `/init` keeps checksummed records on
//! `/dev/pmem0` and prints marker lines ([`markers`]), a boot of it directly
//! in QEMU without the hypervisor ([`direct`], the baseline), and a crash
//! loop over any launcher ([`crash_loop`]).
//!
//! [`prepare`] builds and caches everything under `target/nvirt-linux/`.

pub(crate) mod assets;
pub(crate) mod checks;
pub(crate) mod cpio;
pub(crate) mod crash_loop;
pub(crate) mod direct;
#[cfg(test)]
mod init_crash;
pub(crate) mod initramfs;
pub(crate) mod markers;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::image::target_dir;
use crate::process::TimedLine;
use markers::Marker;

/// The kernel command line every boot gets, before its mode and (booted
/// directly) its `memmap=`: the serial console; no KASLR, so addresses
/// repeat from boot to boot; no ACPI, local APIC or other CPUs, so Linux
/// needs only I/O ports (PIC, PIT, CMOS, serial, PCI configuration) and
/// no MMIO page from a hypervisor.
pub(crate) const CMDLINE: &str = "console=ttyS0 nokaslr acpi=off nolapic nosmp";

/// What `/init` does once `/dev/pmem0` checked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Append one record, print `PASS`, power off.
    Boot,
    /// Append records until killed.
    Crashloop,
}

impl Mode {
    /// The kernel parameter selecting the mode (`/init` reads it from
    /// `/proc/cmdline`).
    pub(crate) fn param(self) -> &'static str {
        match self {
            Self::Boot => "nvirt.linux=boot",
            Self::Crashloop => "nvirt.linux=crashloop",
        }
    }
}

/// What a boot of the Linux guest needs.
#[derive(Clone, Debug)]
pub(crate) struct LinuxGuest {
    /// e.g. `6.1.0-48-amd64`.
    pub(crate) version: String,
    pub(crate) bzimage: PathBuf,
    pub(crate) initramfs: PathBuf,
}

/// Where the Linux guest's files are cached.
pub(crate) fn cache_dir(root: &Path) -> PathBuf {
    target_dir(root).join("nvirt-linux")
}

/// Fetches (first time) and caches the kernel, modules and busybox, and
/// builds the initramfs.
pub(crate) fn prepare(root: &Path) -> Result<LinuxGuest, String> {
    let cache = cache_dir(root);
    let assets = assets::ensure(&cache).map_err(|e| format!("Linux guest: {e}"))?;
    let initramfs = cache.join("initramfs.cpio");
    initramfs::build(&assets, &initramfs)?;
    Ok(LinuxGuest {
        version: assets.version,
        bzimage: assets.bzimage,
        initramfs,
    })
}

/// A started boot: the emulator and its console lines, stamped from its
/// start (see [`crate::process::timed_lines`]).
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) lines: Receiver<TimedLine>,
}

/// How a boot run by [`run_to_end`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The emulator exited by itself, with this status (`None`: a signal).
    Exited(Option<i32>),
    /// The kernel halted the machine (`reboot: System halted` or
    /// `reboot: Power down`) or the guest
    /// printed its last marker and the emulator idled on; it was stopped.
    Halted,
    TimedOut,
}

/// A boot's console and end.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) lines: Vec<TimedLine>,
    pub(crate) end: End,
}

impl Finished {
    /// When the guest reported `/dev/pmem0`.
    pub(crate) fn pmem0_at(&self) -> Option<Duration> {
        self.lines
            .iter()
            .find(|l| matches!(markers::parse(&l.text), Some(Marker::Pmem { .. })))
            .map(|l| l.at)
    }
}

/// How long an emulator may idle after the guest's `PASS` or `FAIL`
/// before it is stopped: a hypervisor ends its run itself (its verdict
/// comes after the guest's last line), QEMU without ACPI idles forever.
const AFTER_LAST_MARKER: Duration = Duration::from_secs(10);

/// Runs a boot to its end: the emulator's exit, the kernel's halt or
/// power-down line (QEMU is then stopped), [`AFTER_LAST_MARKER`] after the guest's
/// `PASS`/`FAIL`, or `timeout`. `echo` streams the console. When the
/// launcher `ends_itself` (a hypervisor, which marks the guest's domain
/// shut down and gives its verdict after the guest's last line), only its
/// exit or the timeout ends the boot.
pub(crate) fn run_to_end(
    mut running: Running,
    timeout: Duration,
    echo: bool,
    ends_itself: bool,
) -> Finished {
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut last_marker: Option<Instant> = None;
    let mut stdout = std::io::stdout();
    let end = loop {
        match running.lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if echo {
                    let _ = writeln!(stdout, "{}", line.text);
                    let _ = stdout.flush();
                }
                // The kernel's last words: with no way to power off (no
                // ACPI) it halts.
                let powered_down = ["reboot: Power down", "reboot: System halted"]
                    .iter()
                    .any(|w| line.text.contains(w));
                if matches!(
                    markers::parse(&line.text),
                    Some(Marker::Pass | Marker::Fail(_))
                ) {
                    last_marker = Some(Instant::now());
                }
                lines.push(line);
                if powered_down && !ends_itself {
                    break End::Halted;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                break End::Exited(running.child.wait().ok().and_then(|s| s.code()));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            // What was still in the pipe.
            while let Ok(line) = running.lines.recv_timeout(Duration::from_millis(100)) {
                lines.push(line);
            }
            break End::Exited(status.code());
        }
        if !ends_itself && last_marker.is_some_and(|t| t.elapsed() > AFTER_LAST_MARKER) {
            break End::Halted;
        }
        if started.elapsed() > timeout {
            break End::TimedOut;
        }
    };
    if !matches!(end, End::Exited(_)) {
        let _ = running.child.kill();
        let _ = running.child.wait();
    }
    Finished { lines, end }
}

/// Removes a file if it is there.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), String> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::timed_lines;
    use std::process::{Command, Stdio};

    /// A stand-in emulator: `sh -c script`, its stdout the console.
    fn fake(script: &str) -> Running {
        let since = Instant::now();
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = timed_lines(child.stdout.take().unwrap(), since);
        Running { child, lines }
    }

    fn texts(f: &Finished) -> Vec<&str> {
        f.lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn a_boot_ends_with_its_emulator() {
        let f = run_to_end(
            fake("echo 'nvirt-linux: pmem0 bytes=4096 at 1.5'; echo done; exit 3"),
            Duration::from_secs(30),
            false,
            false,
        );
        assert_eq!(f.end, End::Exited(Some(3)));
        assert_eq!(texts(&f), ["nvirt-linux: pmem0 bytes=4096 at 1.5", "done"]);
        assert_eq!(f.pmem0_at(), Some(f.lines[0].at));
    }

    #[test]
    fn a_powered_down_guest_is_stopped_and_a_hung_one_times_out() {
        let f = run_to_end(
            fake("echo 'nvirt-linux: PASS'; echo '[ 9.1] reboot: System halted'; exec sleep 60"),
            Duration::from_secs(30),
            false,
            false,
        );
        assert_eq!(f.end, End::Halted);
        assert_eq!(f.pmem0_at(), None);
        // A hypervisor ends the run itself, after the kernel's last line.
        let f = run_to_end(
            fake(
                "echo 'nvirt-linux: PASS'; echo '[ 9.1] reboot: System halted'; echo 'nvirt-hv: verdict: PASS'; exit 33",
            ),
            Duration::from_secs(30),
            false,
            true,
        );
        assert_eq!(f.end, End::Exited(Some(33)));
        assert_eq!(f.lines.last().unwrap().text, "nvirt-hv: verdict: PASS");
        let f = run_to_end(
            fake("echo booting; exec sleep 60"),
            Duration::from_millis(300),
            false,
            true,
        );
        assert_eq!(f.end, End::TimedOut);
        assert_eq!(texts(&f), ["booting"]);
    }

    #[test]
    fn modes_name_their_parameter() {
        assert_eq!(Mode::Boot.param(), "nvirt.linux=boot");
        assert_eq!(Mode::Crashloop.param(), "nvirt.linux=crashloop");
        assert!(initramfs::INIT.contains("nvirt.linux=*) mode=${w#nvirt.linux=}"));
        assert!(initramfs::INIT.contains("case \"$mode\" in boot | crashloop)"));
    }
}
