//! The Linux guest's end-to-end checks over QEMU directly (no
//! hypervisor), for the test plan and `nvirt run`: they need the real
//! kernel (fetched once) and QEMU, so they are not unit tests.

use std::path::Path;
use std::time::Duration;

use super::crash_loop::{self, Config, Summary};
use super::direct::Direct;
use super::markers::{self, Marker};
use super::{End, Finished, Mode, prepare, run_to_end};

/// Longest one direct boot may take (about 6 s to `/dev/pmem0` under TCG).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// What [`direct_boots`] measured.
#[derive(Debug)]
pub(crate) struct DirectBoots {
    /// Emulator start to `/dev/pmem0`, per boot.
    pub(crate) pmem0: Vec<Duration>,
    /// `/dev/pmem0`'s size as the guest saw it.
    pub(crate) pmem_bytes: u64,
    /// The `/proc/iomem` persistent-memory lines of the first boot.
    pub(crate) iomem: Vec<String>,
}

impl DirectBoots {
    pub(crate) fn mean_pmem0(&self) -> Duration {
        self.pmem0.iter().sum::<Duration>() / self.pmem0.len().max(1) as u32
    }
}

/// Checks one boot-mode run: PASS after verifying `records` records as
/// boot `boot` and committing one more, and the machine halted.
fn check_boot_run(f: &Finished, boot: u64, records: u64) -> Result<(), String> {
    let tail: String = f
        .lines
        .iter()
        .rev()
        .take(30)
        .rev()
        .map(|l| format!("    {}\n", l.text))
        .collect();
    let why = |w: String| format!("direct boot {boot}: {w}\n{tail}");
    if f.end != End::Halted {
        return Err(why(format!("ended {:?}, not halted after PASS", f.end)));
    }
    let mut want = vec![
        Marker::Verified { boot, records },
        Marker::Writing(records + 1),
        Marker::Committed(records + 1),
        Marker::Pass,
    ];
    for l in &f.lines {
        if markers::is_failure(&l.text) {
            return Err(why(format!("failure: {}", l.text)));
        }
        if let Some(m) = markers::parse(&l.text) {
            if want.first() == Some(&m) {
                want.remove(0);
            }
        }
    }
    if !want.is_empty() {
        return Err(why(format!("missing, in order: {want:?}")));
    }
    Ok(())
}

/// Boots the guest directly `n` times in boot mode over one NVRAM that
/// starts all zero: each boot must verify every record the ones before it
/// wrote, add one, PASS and halt. Returns the times to `/dev/pmem0`.
pub(crate) fn direct_boots(root: &Path, n: u32, echo: bool) -> Result<DirectBoots, String> {
    let guest = prepare(root)?;
    let direct = Direct::new(root, &guest, "boot")?;
    direct.forget_nvram()?;
    let mut out = DirectBoots {
        pmem0: Vec::new(),
        pmem_bytes: 0,
        iomem: Vec::new(),
    };
    for i in 0..u64::from(n) {
        let f = run_to_end(direct.start(Mode::Boot)?, BOOT_TIMEOUT, echo, false);
        check_boot_run(&f, i + 1, i)?;
        for l in &f.lines {
            match markers::parse(&l.text) {
                Some(Marker::Pmem { bytes, .. }) => {
                    out.pmem0.push(l.at);
                    out.pmem_bytes = bytes;
                }
                Some(Marker::Iomem(line)) if i == 0 => out.iomem.push(line),
                _ => {}
            }
        }
        eprintln!(
            "nvirt linux: direct boot {}: /dev/pmem0 after {:.2} s, PASS",
            i + 1,
            out.pmem0.last().copied().unwrap_or_default().as_secs_f64()
        );
    }
    if out.pmem0.len() != n as usize || out.iomem.is_empty() {
        return Err(format!(
            "{} of {n} boots reported /dev/pmem0, iomem lines: {:?}",
            out.pmem0.len(),
            out.iomem
        ));
    }
    Ok(out)
}

/// The crash loop over QEMU directly, from an all-zero NVRAM.
pub(crate) fn direct_crash_loop(
    root: &Path,
    kills: u32,
    seed: u64,
    echo: bool,
) -> Result<Summary, String> {
    let guest = prepare(root)?;
    let direct = Direct::new(root, &guest, "crash-loop")?;
    direct.forget_nvram()?;
    let mut config = Config::new(kills, seed);
    config.echo = echo;
    crash_loop::run(&mut |mode| direct.start(mode), &config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::TimedLine;

    fn finished(end: End, text: &[&str]) -> Finished {
        Finished {
            lines: text
                .iter()
                .map(|t| TimedLine {
                    at: Duration::ZERO,
                    text: format!("nvirt-linux: {t}"),
                })
                .collect(),
            end,
        }
    }

    #[test]
    fn a_boot_run_passes_only_in_full_and_in_order() {
        let good = [
            "pmem0 bytes=16777216 at 5.1",
            "boot=3 verified=2 records ok",
            "record 3 writing",
            "record 3 committed",
            "PASS",
        ];
        assert_eq!(check_boot_run(&finished(End::Halted, &good), 3, 2), Ok(()));
        let err = check_boot_run(&finished(End::Halted, &good), 3, 1).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        let err = check_boot_run(&finished(End::TimedOut, &good), 3, 2).unwrap_err();
        assert!(err.contains("not halted"), "{err}");
        let mut failed = good.to_vec();
        failed.insert(4, "FAIL header write seq=9");
        assert!(check_boot_run(&finished(End::Halted, &failed), 3, 2).is_err());
        let swapped = [good[0], good[1], good[3], good[2], good[4]];
        assert!(check_boot_run(&finished(End::Halted, &swapped), 3, 2).is_err());
    }
}
