//! The lines the guest's `/init` prints, each starting `nvirt-linux: `,
//! read back on the host. A marker may follow other bytes on its console
//! line (a kernel message cut short), so it is found anywhere in the line.

const PREFIX: &str = "nvirt-linux: ";

/// One marker line, parsed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Marker {
    /// `/dev/pmem0` is there: its size, and the guest's uptime then.
    Pmem {
        bytes: u64,
        uptime: f64,
    },
    /// A line of `/proc/iomem` naming persistent memory.
    Iomem(String),
    /// The boot's header and every record it counts checked out.
    Verified {
        boot: u64,
        records: u64,
    },
    /// Record `n` is being written (not yet counted).
    Writing(u64),
    /// Record `n` and the header counting it are durable.
    Committed(u64),
    Pass,
    Fail(String),
    /// Anything else after the prefix.
    Other(String),
}

fn value(word: Option<&str>, key: &str) -> Option<u64> {
    word?.strip_prefix(key)?.strip_prefix('=')?.parse().ok()
}

/// The marker on `line`, if it carries one.
pub(crate) fn parse(line: &str) -> Option<Marker> {
    let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    let other = || Some(Marker::Other(rest.to_owned()));
    Some(match words.as_slice() {
        ["pmem0", bytes, "at", up] => {
            let (Some(bytes), Ok(uptime)) = (value(Some(bytes), "bytes"), up.parse()) else {
                return other();
            };
            Marker::Pmem { bytes, uptime }
        }
        ["iomem:", ..] => Marker::Iomem(rest["iomem:".len()..].trim().to_owned()),
        [boot, verified, "records", "ok"] => {
            let (Some(boot), Some(records)) =
                (value(Some(boot), "boot"), value(Some(verified), "verified"))
            else {
                return other();
            };
            Marker::Verified { boot, records }
        }
        ["record", n, what @ ("writing" | "committed")] => {
            let Ok(n) = n.parse() else { return other() };
            if *what == "writing" {
                Marker::Writing(n)
            } else {
                Marker::Committed(n)
            }
        }
        ["PASS"] => Marker::Pass,
        ["FAIL", ..] => Marker::Fail(rest["FAIL".len()..].trim().to_owned()),
        _ => return other(),
    })
}

/// Whether `line` says the guest or its kernel failed: a `FAIL` marker or
/// a kernel panic or oops.
pub(crate) fn is_failure(line: &str) -> bool {
    matches!(parse(line), Some(Marker::Fail(_)))
        || line.contains("Kernel panic")
        || line.contains("BUG: ")
        || line.contains("Oops: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_marker() {
        let cases = [
            (
                "nvirt-linux: pmem0 bytes=16777216 at 5.81",
                Marker::Pmem {
                    bytes: 16 << 20,
                    uptime: 5.81,
                },
            ),
            (
                "nvirt-linux: iomem:   08000000-08ffffff : Persistent Memory (legacy)",
                Marker::Iomem("08000000-08ffffff : Persistent Memory (legacy)".into()),
            ),
            (
                "nvirt-linux: boot=3 verified=41 records ok",
                Marker::Verified {
                    boot: 3,
                    records: 41,
                },
            ),
            ("nvirt-linux: record 42 writing", Marker::Writing(42)),
            ("nvirt-linux: record 42 committed", Marker::Committed(42)),
            ("nvirt-linux: PASS", Marker::Pass),
            (
                "nvirt-linux: FAIL record 3 of 9 damaged (boot 4)",
                Marker::Fail("record 3 of 9 damaged (boot 4)".into()),
            ),
            (
                "[    6.1] x nvirt-linux: record 7 committed",
                Marker::Committed(7),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Some(want), "{line}");
        }
    }

    #[test]
    fn malformed_markers_are_other_and_the_rest_none() {
        for odd in [
            "nvirt-linux: pmem0 bytes=x at 1.0",
            "nvirt-linux: pmem0 bytes=1 at soon",
            "nvirt-linux: boot=a verified=1 records ok",
            "nvirt-linux: record x committed",
            "nvirt-linux: record 1 lost",
            "nvirt-linux: PASS now",
        ] {
            assert!(matches!(parse(odd), Some(Marker::Other(_))), "{odd}");
        }
        assert_eq!(parse("guest: PASS"), None);
        assert_eq!(parse("nvirt-linux:PASS"), None);
    }

    #[test]
    fn failures_are_markers_and_kernel_panics() {
        assert!(is_failure("nvirt-linux: FAIL no /dev/pmem0"));
        assert!(is_failure("[ 1.0] Kernel panic - not syncing: VFS"));
        assert!(!is_failure("nvirt-linux: PASS"));
        assert!(!is_failure("[ 1.0] pmem0: detected capacity change"));
    }
}
