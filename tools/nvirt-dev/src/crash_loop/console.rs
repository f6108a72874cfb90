//! What the crash loop reads from a boot's console and how it reports:
//! where a kill landed ([`Phase`]), the guest's boot line ([`BootLine`]),
//! the kill times' generator ([`Rng`]) and the loop's [`Summary`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Kill times, from QEMU's start: every fourth kill in the boot window
/// (QEMU and the hypervisor starting, the pool's recovery, the guest's
/// checks: the guest's boot line comes 0.13–0.19 s after start here), the
/// rest over the guest's workload.
pub(crate) const BOOT_WINDOW_MS: (u64, u64) = (20, 150);
pub(crate) const WORK_WINDOW_MS: (u64, u64) = (150, 1500);

/// Where a kill landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Before the guest's boot line: firmware, hypervisor, pool recovery,
    /// the guest's checks.
    Boot,
    /// A balloon hypercall (the guest asked; the hypervisor may be
    /// committing to the pool).
    Hypercall,
    /// The guest writing a page's pattern.
    PatternWrite,
    /// The guest committing its record.
    Commit,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Boot => "boot",
            Self::Hypercall => "hypercall",
            Self::PatternWrite => "pattern-write",
            Self::Commit => "commit",
        })
    }
}

/// The phase a console whose last lines are `lines` was in.
pub(crate) fn phase_of(lines: &[String]) -> Phase {
    let booted = lines.iter().any(|l| l.contains("crashloop: boot="));
    if !booted {
        return Phase::Boot;
    }
    for line in lines.iter().rev() {
        if line.starts_with("guest: cl: hypercall") || line.starts_with("nvirt-hv: memory_op:") {
            return Phase::Hypercall;
        }
        if line.starts_with("guest: cl: write") {
            return Phase::PatternWrite;
        }
        if line.starts_with("guest: cl: commit") {
            return Phase::Commit;
        }
    }
    Phase::Boot
}

/// The guest's boot line, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BootLine {
    pub(crate) boot: u64,
    pub(crate) verified: u64,
    pub(crate) ok: bool,
}

/// The boots that verified a guest's data. Their boot counters must rise,
/// and never past the boots the loop made: a counter that stood still
/// would mean a boot's increment was lost, one that ran ahead a stale or
/// forged image.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Verified {
    /// The highest boot counter seen.
    pub(crate) last_boot: u64,
    /// Boots whose guest printed its boot line (all checked ok).
    pub(crate) boots: u32,
    /// Pages those boots found intact, summed.
    pub(crate) pages: u64,
}

impl Verified {
    /// Counts `line`, printed in boot `k` of the loop; refused if the
    /// guest found committed data damaged or its counter is out of step.
    pub(crate) fn count(&mut self, line: BootLine, k: u32) -> Result<(), String> {
        if !line.ok {
            return Err("found committed data damaged".into());
        }
        if line.boot <= self.last_boot || line.boot > u64::from(k) {
            return Err(format!(
                "boot counter {} after {} (boot {k} of the loop): not rising",
                line.boot, self.last_boot
            ));
        }
        self.last_boot = line.boot;
        self.boots += 1;
        self.pages += line.verified;
        Ok(())
    }
}

/// The value of `key=` in `line`.
pub(crate) fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Reads a `crashloop: boot=N … verified=V … result=R` line.
pub(crate) fn boot_line(line: &str) -> Option<BootLine> {
    let at = line.find("crashloop: boot=")?;
    let rest = &line[at..];
    Some(BootLine {
        boot: field(rest, "boot")?,
        verified: field(rest, "verified")?,
        ok: rest.ends_with("result=ok"),
    })
}

/// splitmix64: the kill times' generator.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// The kill time in milliseconds of the `k`-th kill (from 1): every
    /// fourth in the boot window, the others in the workload's.
    pub(crate) fn kill_ms(&mut self, k: u32) -> u64 {
        let (lo, hi) = if k % 4 == 3 {
            BOOT_WINDOW_MS
        } else {
            WORK_WINDOW_MS
        };
        self.between(lo, hi)
    }
}

/// A seed from the clock, when none is given.
pub(crate) fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64)
}

/// What a crash loop did.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) seed: u64,
    pub(crate) iterations: u32,
    pub(crate) kills: BTreeMap<Phase, u32>,
    /// The guest's boots that verified its data.
    pub(crate) verified: Verified,
    /// Boots whose hypervisor recovered the pool.
    pub(crate) recoveries: u32,
    /// Recoveries that found the guest's domain running at the crash.
    pub(crate) crashed_found: u32,
    /// Frames of interrupted frees recovery scrubbed and reclaimed.
    pub(crate) reclaimed: u64,
    pub(crate) elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kills: Vec<String> = self.kills.iter().map(|(p, n)| format!("{p}={n}")).collect();
        write!(
            f,
            "crash loop: seed={} iterations={} kills: {} boots-verified={} pages-verified={} \
             recoveries={} (domain running at the crash: {}, frames reclaimed: {}) \
             boot-counter={} time={:.1}s",
            self.seed,
            self.iterations,
            kills.join(" "),
            self.verified.boots,
            self.verified.pages,
            self.recoveries,
            self.crashed_found,
            self.reclaimed,
            self.verified.last_boot,
            self.elapsed.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn phases_follow_the_last_line() {
        assert_eq!(phase_of(&lines(&["nvirt-hv: booted"])), Phase::Boot);
        let booted = "guest: ok: crashloop: boot=3 seq=9 verified=2 damaged=0 whole=1 result=ok";
        assert_eq!(phase_of(&lines(&[booted])), Phase::Boot);
        assert_eq!(
            phase_of(&lines(&[booted, "guest: cl: hypercall give 3"])),
            Phase::Hypercall
        );
        assert_eq!(
            phase_of(&lines(&[
                booted,
                "guest: cl: hypercall take 3",
                "nvirt-hv: memory_op: populate_physmap"
            ])),
            Phase::Hypercall
        );
        assert_eq!(
            phase_of(&lines(&[booted, "guest: cl: write page 3 stamp 0x1"])),
            Phase::PatternWrite
        );
        assert_eq!(
            phase_of(&lines(&[
                booted,
                "guest: cl: write page 3",
                "guest: cl: commit page 3"
            ])),
            Phase::Commit
        );
    }

    #[test]
    fn reads_boot_lines() {
        let l = "guest: ok: crashloop: boot=3 seq=9 verified=2 damaged=0 whole=1 result=ok";
        assert_eq!(
            boot_line(l),
            Some(BootLine {
                boot: 3,
                verified: 2,
                ok: true
            })
        );
        let bad = "guest: FAILED: crashloop: boot=3 seq=9 verified=1 damaged=1 whole=1 result=FAIL";
        assert!(!boot_line(bad).unwrap().ok);
        assert_eq!(boot_line("guest: cl: commit page 3"), None);
        assert_eq!(field("a=1 b=x c=3", "c"), Some(3));
        assert_eq!(field("a=1 b=x", "b"), None);
        assert_eq!(field("ab=1", "a"), None);
    }

    #[test]
    fn the_generator_is_seeded_and_stays_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.between(20, 1500);
            assert_eq!(x, b.between(20, 1500));
            assert!((20..=1500).contains(&x));
        }
        assert_ne!(Rng::new(1).next(), Rng::new(2).next());
        let mut r = Rng::new(3);
        for k in 1..=20u32 {
            let ms = r.kill_ms(k);
            let (lo, hi) = if k % 4 == 3 {
                BOOT_WINDOW_MS
            } else {
                WORK_WINDOW_MS
            };
            assert!((lo..=hi).contains(&ms), "kill {k} at {ms} ms");
        }
    }

    #[test]
    fn boot_counters_must_rise_within_the_loop() {
        let line = |boot, ok| BootLine {
            boot,
            verified: 5,
            ok,
        };
        let mut v = Verified::default();
        v.count(line(1, true), 1).unwrap();
        v.count(line(3, true), 4).unwrap();
        assert!(
            v.count(line(3, true), 5)
                .unwrap_err()
                .contains("not rising")
        );
        assert!(
            v.count(line(6, true), 5)
                .unwrap_err()
                .contains("not rising")
        );
        assert!(v.count(line(4, false), 5).unwrap_err().contains("damaged"));
        assert_eq!((v.last_boot, v.boots, v.pages), (3, 2, 10));
    }

    #[test]
    fn summary_names_every_figure() {
        let mut s = Summary {
            seed: 42,
            iterations: 3,
            ..Summary::default()
        };
        s.kills.insert(Phase::Boot, 1);
        s.kills.insert(Phase::Commit, 2);
        let text = s.to_string();
        for want in [
            "seed=42",
            "iterations=3",
            "boot=1",
            "commit=2",
            "pages-verified=0",
        ] {
            assert!(text.contains(want), "{text}");
        }
    }
}
