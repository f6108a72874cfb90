//! The suite as data: [`TABLE`] lists every step in the order it runs, what
//! it runs and how it is counted. A few entries are families that expand
//! over the tree when the suite starts: packages marked in their manifest
//! (`[package.metadata.nvirt]`), the emulator scenarios, the fuzz targets.
//! A family that finds nothing to run becomes one failing step, so a
//! renamed key or an empty list can never pass silently.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::emulator::{self, Emulator, Scenario};
use crate::process::run_quiet;
use crate::toolchain::{BARE_METAL_TARGET, RUST_VERSION};

/// How a step counts in the closing `N passed, N failed` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// One check: it passes or fails as a whole.
    Check,
    /// Each test it reports counts; a run of zero tests fails.
    Tests,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Tests => "tests",
        }
    }
}

/// A tool a step needs, installed (or refused with the reason) once,
/// before the first step that needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Tool {
    /// The `rustfmt` and `clippy` components.
    Components,
    /// The bare-metal rustup target.
    BareMetalTarget,
    /// `cargo-nextest`.
    Nextest,
    /// A nightly toolchain with Miri.
    Miri,
    /// `cargo-fuzz`.
    CargoFuzz,
    /// The toolchain of the declared `rust-version`.
    RustVersion,
}

/// One entry of [`TABLE`]: a step, or a family of steps.
#[derive(Debug)]
pub(super) struct Entry {
    /// The step's name, or the family's prefix (`<name>/<member>`).
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) needs: &'static [Tool],
    pub(super) what: What,
}

/// What an entry of [`TABLE`] runs.
#[derive(Debug)]
pub(super) enum What {
    /// A cargo command with extra environment; passes by its exit status.
    Cargo(
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ),
    /// `cargo nextest run --profile nvirt` with these arguments, counted
    /// from the JUnit report of the profile.
    Nextest(&'static [&'static str]),
    /// The doctests of every library, counted from libtest's JSON events.
    Doctests,
    /// Family: one step per package marked `no_std = true`, a `no_std`
    /// build for the bare-metal target.
    NoStdBuilds,
    /// Every library and binary of the workspace checked, with all
    /// features and warnings denied, by the toolchain of the declared
    /// `rust-version`: the promise the manifests make to users.
    RustVersionCheck,
    /// Clippy of the bare-metal hypervisor and guest.
    BareMetalClippy,
    /// Family: one step per emulator scenario.
    Scenarios,
    /// The crash loop (QEMU killed at random moments, then checks).
    CrashLoop,
    /// A stock Linux kernel booted on nvirt-hv in this emulator.
    LinuxBoot(Emulator),
    /// The Linux crash loop (QEMU killed at random moments).
    LinuxCrashLoop,
    /// Several VMs on nvirt-hv in this emulator: scheduling, isolation,
    /// NVRAM on first touch (`vms_run`).
    Vms(Emulator),
    /// Power-off page-out and page-in of a VM's NVRAM over three QEMU boots.
    VmsPageOut,
    /// The crash loop with three VMs.
    VmsCrashLoop,
    /// NVRAM balloon targets lowered for a waiting VM and raised back.
    VmsBalloon,
    /// Family: the `loom` test target of every package marked
    /// `loom = true`, built with `--cfg loom`, under nextest.
    Loom,
    /// Family: the tests named by every package's
    /// `[package.metadata.nvirt.miri]`, under Miri.
    Miri,
    /// Family: every fuzz target of `fuzz/`, run for a bounded time.
    Fuzz,
}

/// The nextest profile (`.config/nextest.toml`) whose JUnit report the
/// runner counts.
pub(super) const NEXTEST_PROFILE: &str = "nvirt";

/// Nextest's store directory, relative to the workspace root, as
/// `.config/nextest.toml` sets it.
pub(super) const NEXTEST_STORE: &str = "target/nextest";

/// The whole suite, in order.
pub(super) const TABLE: &[Entry] = &[
    Entry {
        name: "fmt",
        kind: Kind::Check,
        needs: &[Tool::Components],
        what: What::Cargo(&["fmt", "--all", "--check"], &[]),
    },
    Entry {
        name: "clippy",
        kind: Kind::Check,
        needs: &[Tool::Components],
        what: What::Cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
    },
    Entry {
        name: "doc",
        kind: Kind::Check,
        needs: &[],
        what: What::Cargo(
            &["doc", "--workspace", "--no-deps"],
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
    },
    Entry {
        name: "tests",
        kind: Kind::Tests,
        needs: &[Tool::Nextest],
        what: What::Nextest(&["--workspace"]),
    },
    Entry {
        name: "doctests",
        kind: Kind::Tests,
        needs: &[],
        what: What::Doctests,
    },
    Entry {
        name: "no-std",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::NoStdBuilds,
    },
    Entry {
        name: "rust-version",
        kind: Kind::Check,
        needs: &[Tool::RustVersion],
        what: What::RustVersionCheck,
    },
    Entry {
        name: "emulator/clippy-bare-metal",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::BareMetalClippy,
    },
    Entry {
        name: "emulator",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::Scenarios,
    },
    Entry {
        name: "emulator/crash-loop",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::CrashLoop,
    },
    Entry {
        name: "emulator/qemu-linux",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::LinuxBoot(Emulator::Qemu),
    },
    Entry {
        name: "emulator/bochs-linux",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::LinuxBoot(Emulator::Bochs),
    },
    Entry {
        name: "emulator/qemu-linux-crash-loop",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::LinuxCrashLoop,
    },
    Entry {
        name: "emulator/qemu-vms",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::Vms(Emulator::Qemu),
    },
    Entry {
        name: "emulator/qemu-vms-page-out",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::VmsPageOut,
    },
    Entry {
        name: "emulator/qemu-vms-balloon",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::VmsBalloon,
    },
    Entry {
        name: "emulator/qemu-vms-crash-loop",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::VmsCrashLoop,
    },
    Entry {
        name: "emulator/bochs-vms",
        kind: Kind::Check,
        needs: &[Tool::BareMetalTarget],
        what: What::Vms(Emulator::Bochs),
    },
    Entry {
        name: "loom",
        kind: Kind::Tests,
        needs: &[Tool::Nextest],
        what: What::Loom,
    },
    Entry {
        name: "miri",
        kind: Kind::Tests,
        needs: &[Tool::Miri],
        what: What::Miri,
    },
    Entry {
        name: "fuzz",
        kind: Kind::Check,
        needs: &[Tool::CargoFuzz],
        what: What::Fuzz,
    },
];

/// One step of the expanded suite.
#[derive(Debug)]
pub(super) struct Step {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) needs: &'static [Tool],
    pub(super) runs: Runs,
}

/// What one expanded step runs.
#[derive(Debug)]
pub(super) enum Runs {
    /// `cargo <args>` with `env`; passes by its exit status.
    Cargo {
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// `cargo nextest run --profile nvirt <args>` with `env`, in a target
    /// directory of its own below the workspace's when `target_subdir` is
    /// set; counted from the profile's JUnit report there.
    Nextest {
        args: Vec<String>,
        env: Vec<(String, String)>,
        target_subdir: Option<String>,
    },
    /// Every library's doctests.
    Doctests,
    /// `cargo +nightly miri test -p <package> <targets> -- <filters>`.
    Miri {
        package: String,
        targets: Vec<String>,
        filters: Vec<String>,
    },
    BareMetalClippy,
    Scenario(Box<Scenario>),
    CrashLoop,
    LinuxBoot(Emulator),
    LinuxCrashLoop,
    Vms(Emulator),
    VmsPageOut,
    VmsCrashLoop,
    VmsBalloon,
    Fuzz {
        target: String,
    },
    /// A family that could not be expanded: the step fails with this.
    Broken(String),
}

/// `[package.metadata.nvirt.miri]` of one package.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct MiriTests {
    pub(super) package: String,
    /// Cargo's target selection, e.g. `["--lib"]`.
    pub(super) targets: Vec<String>,
    /// libtest name filters (a test runs when any matches).
    pub(super) filters: Vec<String>,
}

/// What the families expand over, read from the tree.
#[derive(Debug)]
pub(super) struct Tree {
    /// `cargo metadata` of the workspace, or why it failed.
    pub(super) packages: Result<serde_json::Value, String>,
    /// The fuzz targets, or why they could not be listed.
    pub(super) fuzz_targets: Result<Vec<String>, String>,
}

impl Tree {
    /// Reads the workspace's and `fuzz/`'s manifests (no build, no network).
    pub(super) fn read(root: &Path) -> Self {
        Self {
            packages: metadata(root, None),
            fuzz_targets: metadata(root, Some("fuzz/Cargo.toml")).and_then(|m| fuzz_targets(&m)),
        }
    }

    /// Packages that declare `[package.metadata.nvirt] <key> = true`.
    fn marked(&self, key: &str) -> Result<Vec<String>, String> {
        let list: Vec<String> = self
            .package_list()?
            .iter()
            .filter(|p| p["metadata"]["nvirt"][key].as_bool() == Some(true))
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        if list.is_empty() {
            return Err(format!(
                "no package declares `[package.metadata.nvirt] {key} = true`"
            ));
        }
        Ok(list)
    }

    /// Every package's `[package.metadata.nvirt.miri]`.
    pub(super) fn miri(&self) -> Result<Vec<MiriTests>, String> {
        let mut list = Vec::new();
        for p in self.package_list()? {
            let table = &p["metadata"]["nvirt"]["miri"];
            if table.is_null() {
                continue;
            }
            let name = p["name"].as_str().unwrap_or("?").to_owned();
            let strings = |key: &str| -> Result<Vec<String>, String> {
                table[key]
                    .as_array()
                    .ok_or_else(|| format!("{name}: `miri.{key}` must be a list of strings"))?
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or_else(|| {
                            format!("{name}: `miri.{key}` must be a list of strings")
                        })
                    })
                    .collect()
            };
            let (targets, filters) = (strings("targets")?, strings("filters")?);
            if filters.is_empty() {
                return Err(format!(
                    "{name}: `miri.filters` is empty (it would run every test under Miri)"
                ));
            }
            list.push(MiriTests {
                package: name,
                targets,
                filters,
            });
        }
        if list.is_empty() {
            return Err("no package declares `[package.metadata.nvirt.miri]`".into());
        }
        Ok(list)
    }

    fn package_list(&self) -> Result<&Vec<serde_json::Value>, String> {
        self.packages
            .as_ref()
            .map_err(Clone::clone)?
            .get("packages")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| "cargo metadata: no package list".to_owned())
    }
}

/// `cargo metadata --no-deps` of the workspace or of another manifest.
fn metadata(root: &Path, manifest: Option<&str>) -> Result<serde_json::Value, String> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"]);
    if let Some(m) = manifest {
        cmd.args(["--manifest-path", m]);
    }
    let (ok, json) = run_quiet(&mut cmd).ok_or("cannot run cargo metadata")?;
    if !ok {
        return Err(format!(
            "`cargo metadata` of {} failed",
            manifest.unwrap_or("the workspace")
        ));
    }
    serde_json::from_str(&json).map_err(|e| format!("cargo metadata: {e}"))
}

/// The binaries of the fuzz workspace: what `cargo fuzz list` prints.
fn fuzz_targets(meta: &serde_json::Value) -> Result<Vec<String>, String> {
    let mut list: Vec<String> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    list.sort();
    if list.is_empty() {
        return Err("fuzz/Cargo.toml declares no fuzz target".into());
    }
    Ok(list)
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The table expanded over `tree`, every step named uniquely.
pub(super) fn expand(tree: &Tree) -> Vec<Step> {
    let mut steps = Vec::new();
    for entry in TABLE {
        let step = |name: String, runs: Runs| Step {
            name,
            kind: entry.kind,
            needs: entry.needs,
            runs,
        };
        let family =
            |steps: &mut Vec<Step>, members: Result<Vec<(String, Runs)>, String>| match members {
                Ok(list) => steps.extend(
                    list.into_iter()
                        .map(|(member, runs)| step(format!("{}/{member}", entry.name), runs)),
                ),
                Err(why) => steps.push(step(entry.name.to_owned(), Runs::Broken(why))),
            };
        match &entry.what {
            What::Cargo(args, env) => steps.push(step(
                entry.name.to_owned(),
                Runs::Cargo {
                    args: owned(args),
                    env: env
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                },
            )),
            What::Nextest(args) => steps.push(step(
                entry.name.to_owned(),
                Runs::Nextest {
                    args: owned(args),
                    env: Vec::new(),
                    target_subdir: None,
                },
            )),
            What::Doctests => steps.push(step(entry.name.to_owned(), Runs::Doctests)),
            What::BareMetalClippy => steps.push(step(entry.name.to_owned(), Runs::BareMetalClippy)),
            What::CrashLoop => steps.push(step(entry.name.to_owned(), Runs::CrashLoop)),
            What::LinuxBoot(e) => steps.push(step(entry.name.to_owned(), Runs::LinuxBoot(*e))),
            What::LinuxCrashLoop => {
                steps.push(step(entry.name.to_owned(), Runs::LinuxCrashLoop));
            }
            What::Vms(e) => steps.push(step(entry.name.to_owned(), Runs::Vms(*e))),
            What::VmsPageOut => steps.push(step(entry.name.to_owned(), Runs::VmsPageOut)),
            What::VmsCrashLoop => steps.push(step(entry.name.to_owned(), Runs::VmsCrashLoop)),
            What::VmsBalloon => steps.push(step(entry.name.to_owned(), Runs::VmsBalloon)),
            What::NoStdBuilds => family(
                &mut steps,
                tree.marked("no_std").map(|list| {
                    list.into_iter()
                        .map(|p| {
                            let args = owned(&[
                                "build",
                                "--package",
                                &p,
                                "--target",
                                BARE_METAL_TARGET,
                                "--no-default-features",
                            ]);
                            (
                                p,
                                Runs::Cargo {
                                    args,
                                    env: Vec::new(),
                                },
                            )
                        })
                        .collect()
                }),
            ),
            What::RustVersionCheck => {
                let toolchain = format!("+{RUST_VERSION}");
                // Every library and binary a user builds (tests and
                // benches may use newer dev-dependencies).
                let args = owned(&[
                    &toolchain,
                    "check",
                    "--workspace",
                    "--lib",
                    "--bins",
                    "--all-features",
                ]);
                let env = vec![
                    // Its own target directory: another compiler's
                    // artifacts would evict the stable ones.
                    (
                        "CARGO_TARGET_DIR".to_owned(),
                        "target/rust-version".to_owned(),
                    ),
                    ("RUSTFLAGS".to_owned(), "-D warnings".to_owned()),
                ];
                steps.push(step(entry.name.to_owned(), Runs::Cargo { args, env }));
            }
            What::Scenarios => family(
                &mut steps,
                Ok(emulator::standard_scenarios()
                    .into_iter()
                    .map(|s| (s.name.clone(), Runs::Scenario(Box::new(s))))
                    .collect()),
            ),
            What::Loom => family(
                &mut steps,
                tree.marked("loom").map(|list| {
                    list.into_iter()
                        .map(|p| {
                            // Only the `loom` test target: under `--cfg loom`
                            // the package's other tests would still run.
                            let args = owned(&[
                                "--cargo-profile",
                                "release",
                                "--package",
                                &p,
                                "--test",
                                "loom",
                            ]);
                            let runs = Runs::Nextest {
                                args,
                                env: vec![("RUSTFLAGS".to_owned(), "--cfg loom".to_owned())],
                                // Its own target directory: `--cfg loom`
                                // rebuilds every crate.
                                target_subdir: Some("loom".to_owned()),
                            };
                            (p, runs)
                        })
                        .collect()
                }),
            ),
            What::Miri => family(
                &mut steps,
                tree.miri().map(|list| {
                    list.into_iter()
                        .map(|m| {
                            (
                                m.package.clone(),
                                Runs::Miri {
                                    package: m.package,
                                    targets: m.targets,
                                    filters: m.filters,
                                },
                            )
                        })
                        .collect()
                }),
            ),
            What::Fuzz => family(
                &mut steps,
                tree.fuzz_targets.clone().map(|list| {
                    list.into_iter()
                        .map(|t| (t.clone(), Runs::Fuzz { target: t }))
                        .collect()
                }),
            ),
        }
    }
    steps
}

/// A line of `nvirt test --list`: name, kind, what it runs.
pub(super) fn describe(step: &Step, fuzz_seconds: u64) -> String {
    let mut what = String::new();
    match &step.runs {
        Runs::Cargo { args, env } => {
            for (k, v) in env {
                let _ = write!(what, "{k}={v:?} ");
            }
            let _ = write!(what, "cargo {}", args.join(" "));
        }
        Runs::Nextest {
            args,
            env,
            target_subdir,
        } => {
            for (k, v) in env {
                let _ = write!(what, "{k}={v:?} ");
            }
            if let Some(sub) = target_subdir {
                let _ = write!(what, "CARGO_TARGET_DIR=target/{sub} ");
            }
            let _ = write!(
                what,
                "cargo nextest run --profile {NEXTEST_PROFILE} {} (counted from its JUnit report)",
                args.join(" ")
            );
        }
        Runs::Doctests => {
            what.push_str("cargo test --workspace --doc (counted from libtest's JSON events)");
        }
        Runs::Miri {
            package,
            targets,
            filters,
        } => {
            let _ = write!(
                what,
                "cargo +nightly miri test --package {package} {} -- {} (counted from libtest's JSON events)",
                targets.join(" "),
                filters.join(" ")
            );
        }
        Runs::BareMetalClippy => {
            let _ = write!(
                what,
                "cargo clippy of nvirt-hv and nvirt-guest for {BARE_METAL_TARGET} -- -D warnings"
            );
        }
        Runs::Scenario(s) => {
            let _ = write!(
                what,
                "{} {}, {} boot, RAM {} MiB, NVRAM {} MiB type {}, timeout {} s",
                s.emulator,
                s.cpu,
                s.boot,
                s.ram >> 20,
                s.nvram >> 20,
                s.nv_type,
                s.timeout.as_secs()
            );
        }
        Runs::LinuxBoot(e) => {
            let _ = write!(
                what,
                "Debian's Linux kernel on nvirt-hv in {e}: PASS from its init's markers and the hypervisor's verdict, /dev/pmem0 from the type-12 E820 entry, Linux's E820 map equal to the synthesized one"
            );
        }
        Runs::Vms(e) => {
            let _ = write!(
                what,
                "three VMs on nvirt-hv in {e} (examples/vms/isolation): interleaved time slices; a secret written and the domain destroyed; thin NVRAM given the destroyed frames (paused until they come back, when it gets there first), all zeros; a probe outside the map stopped"
            );
        }
        Runs::VmsBalloon => {
            let _ = write!(
                what,
                "two VMs in QEMU (examples/vms/balloon): a thin VM waits for frames, the hypervisor lowers the other's NVRAM target (nvirt's CPUID leaf) and its balloon gives frames back; the waiting VM reads zeros and is destroyed; the target goes back up and the balloon takes the frames back"
            );
        }
        Runs::VmsCrashLoop => {
            let _ = write!(
                what,
                "three VMs (NVRAM at start, on first touch, and one powering off) on nvirt-hv in QEMU killed {} times while they boot, fault, balloon, commit and shut down; every domain re-attached and every guest verifying its data at each boot; a clean boot; pool inspect",
                super::VM_CRASH_LOOP_KILLS
            );
        }
        Runs::VmsPageOut => {
            let _ = write!(
                what,
                "three QEMU boots on one NVDIMM: a VM's NVRAM paged out to its nvram_file at power-off (frames freed), borrowed by another VM that reads zeros, paged back in and found at the same guest addresses"
            );
        }
        Runs::LinuxCrashLoop => {
            let _ = write!(
                what,
                "Linux on nvirt-hv in QEMU killed {} times while writing records to /dev/pmem0, each boot verifying them; a clean boot; pool inspect",
                super::LINUX_CRASH_LOOP_KILLS
            );
        }
        Runs::CrashLoop => {
            let _ = write!(
                what,
                "QEMU killed {} times, a clean run, pool inspect, a damaged image refused",
                super::CRASH_LOOP_KILLS
            );
        }
        Runs::Fuzz { target } => {
            let _ = write!(what, "cargo fuzz run {target} for {fuzz_seconds} s");
        }
        Runs::Broken(why) => {
            let _ = write!(what, "FAILS: {why}");
        }
    }
    format!("{:<40} {:<5}  {what}", step.name, step.kind.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(packages: serde_json::Value) -> Tree {
        Tree {
            packages: Ok(packages),
            fuzz_targets: Ok(vec!["a".into(), "b".into()]),
        }
    }

    #[test]
    fn families_expand_into_unique_names() {
        let t = tree(serde_json::json!({"packages": [
            {"name": "p", "metadata": {"nvirt": {"no_std": true, "loom": true,
                "miri": {"targets": ["--lib"], "filters": ["x::"]}}}},
            {"name": "q", "metadata": {"nvirt": {"no_std": true}}},
        ]}));
        let steps = expand(&t);
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        for want in [
            "fmt",
            "clippy",
            "doc",
            "tests",
            "doctests",
            "no-std/p",
            "no-std/q",
            "emulator/clippy-bare-metal",
            "emulator/crash-loop",
            "loom/p",
            "miri/p",
            "fuzz/a",
            "fuzz/b",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate step names");
        assert!(!steps.iter().any(|s| matches!(s.runs, Runs::Broken(_))));
    }

    #[test]
    fn a_family_finding_nothing_is_a_failing_step() {
        let t = Tree {
            packages: Ok(serde_json::json!({"packages": [{"name": "p", "metadata": null}]})),
            fuzz_targets: Err("no targets".into()),
        };
        let steps = expand(&t);
        for family in ["no-std", "loom", "miri", "fuzz"] {
            let step = steps.iter().find(|s| s.name == family);
            assert!(
                matches!(step.map(|s| &s.runs), Some(Runs::Broken(_))),
                "{family}"
            );
        }
    }

    #[test]
    fn miri_metadata_must_name_filters() {
        let t = tree(serde_json::json!({"packages": [
            {"name": "p", "metadata": {"nvirt": {"miri": {"targets": ["--lib"], "filters": []}}}},
        ]}));
        assert!(t.miri().is_err());
        let t = tree(serde_json::json!({"packages": [
            {"name": "p", "metadata": {"nvirt": {"miri": {"targets": "--lib", "filters": ["a"]}}}},
        ]}));
        assert!(t.miri().is_err());
        let t = tree(serde_json::json!({"packages": [
            {"name": "p", "metadata": {"nvirt": {"miri": {"targets": ["--lib"], "filters": ["a", "b"]}}}},
        ]}));
        assert_eq!(
            t.miri(),
            Ok(vec![MiriTests {
                package: "p".into(),
                targets: vec!["--lib".into()],
                filters: vec!["a".into(), "b".into()],
            }])
        );
    }
}
