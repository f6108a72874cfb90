//! `nvirt test`: the whole test suite, as CI runs it.
//!
//! The steps are data ([`plan::TABLE`]); `nvirt test --list` prints them
//! expanded over the tree, `--only` and `--skip` choose among them by name,
//! group or glob ([`select`]). In order:
//! 1. `fmt`, `clippy` (`-D warnings`) and `doc` (rustdoc with
//!    `-D warnings`, so a broken intra-doc link fails): one check each;
//! 2. `tests`: every test of the workspace under `cargo nextest` (unit,
//!    property, crash-state enumeration, integration and CLI tests, and the
//!    replay of the fuzz seeds), each one counted from nextest's JUnit
//!    report; `doctests`: every doctest, counted from libtest's JSON events
//!    (see [`exec`] for how that is done on a stable toolchain);
//! 3. `no-std/<package>`: every library crate marked
//!    `[package.metadata.nvirt] no_std = true` built for
//!    `x86_64-unknown-none` without default features (one check each);
//!    `rust-version`: every library and binary of the workspace checked,
//!    all features, warnings denied, by the toolchain of the declared
//!    `rust-version` (1.85, installed with rustup's minimal profile);
//! 4. `emulator/…`: clippy of the bare-metal hypervisor and guest, each
//!    scenario of [`crate::emulator::standard_scenarios`] (QEMU AMD-V with NVRAM
//!    kinds 7, 12 and 90 over its three boot paths, Bochs Intel VT-x with
//!    EPT, Bochs AMD-V, a 2 GiB + 1 GiB guest with 1 GiB pages) with its
//!    timeout, passed by the guest's serial `PASS` and the emulator's exit
//!    status; then the crash loop (QEMU killed 20 times at random moments
//!    while the guest works on its NVRAM, then a clean run, `nvirt pool
//!    inspect` of the NVDIMM image and a damaged image refused; see
//!    `crash_loop/`); one check each;
//! 5. `loom/<package>`: the `loom` test target of every package marked
//!    `loom = true`, built with `--cfg loom` in release mode, under nextest
//!    (each test counted from the JUnit report);
//! 6. `miri/<package>`: the tests each package names in
//!    `[package.metadata.nvirt.miri]` (its unsafe code and what drives it)
//!    under Miri on the nightly toolchain, counted from libtest's JSON
//!    events;
//! 7. `fuzz/<target>`: every fuzz target for a bounded time, with
//!    AddressSanitizer when a nightly toolchain is installed (one each).
//!
//! A step of kind `tests` that runs no test fails, as does a family that
//! finds nothing to expand over. Missing tools are installed before the
//! first step needing them (rustup target and components, cargo-nextest,
//! the rust-version toolchain, cargo-fuzz, Miri on an installed nightly); what cannot be installed
//! fails every step that needs it, with the reason.

mod exec;
mod plan;
mod report;
mod select;

use std::cell::OnceCell;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use crate::process::workspace_root;
use crate::toolchain::{
    BARE_METAL_TARGET, ensure_cargo_fuzz, ensure_components, ensure_miri, ensure_nextest,
    ensure_rust_version, ensure_target,
};
use plan::{Kind, Step, Tool, Tree};

/// Kills of the crash loop in `nvirt test`.
const CRASH_LOOP_KILLS: u32 = 20;
/// Kills of the Linux crash loop `nvirt test` runs (each costs a Linux
/// boot, some 10 s under QEMU).
const LINUX_CRASH_LOOP_KILLS: u32 = 6;
/// Kills of the crash loop with three VMs `nvirt test` runs.
const VM_CRASH_LOOP_KILLS: u32 = 12;

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Print the steps (name, kind, what runs) that the other options
    /// select, and run nothing.
    #[arg(long)]
    list: bool,
    /// Run only the steps these patterns select: a step's name, a group
    /// (`emulator`, `fuzz`) or a glob with `*` (`fuzz/e820_*`).
    #[arg(long, value_name = "PATTERN", num_args = 1..)]
    only: Vec<String>,
    /// Leave out the steps these patterns select (as for --only).
    #[arg(long, value_name = "PATTERN", num_args = 1..)]
    skip: Vec<String>,
    /// Seconds to run each fuzz target (default: $NVIRT_FUZZ_SECONDS or 15).
    #[arg(long)]
    fuzz_seconds: Option<u64>,
    /// Skip the fuzz targets (`--skip fuzz`).
    #[arg(long)]
    no_fuzz: bool,
    /// Skip the emulator scenarios, the crash loop and the bare-metal
    /// clippy (`--skip emulator`).
    #[arg(long)]
    no_emulators: bool,
    /// The crash loop's seed for its kill times (default: from the clock;
    /// printed either way).
    #[arg(long)]
    crash_seed: Option<u64>,
}

/// Counts of the suite.
#[derive(Debug, Default)]
struct Tally {
    passed: u64,
    failed: u64,
    failures: Vec<String>,
}

impl Tally {
    /// One check passed or failed.
    fn check(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                eprintln!("nvirt test: PASS {name}");
            }
            Err(why) => {
                self.failed += 1;
                eprintln!("nvirt test: FAIL {name}: {why}");
                self.failures.push(format!("{name}: {why}"));
            }
        }
    }

    /// The tests a step reported; a step that could not report (did not
    /// build, crashed, unreadable report) or ran no test is one failure
    /// more.
    fn tests(&mut self, name: &str, outcome: exec::TestRun) {
        let counts = outcome.counts.unwrap_or_default();
        self.passed += counts.passed;
        self.failed += counts.failed;
        eprintln!(
            "nvirt test: {name}: {} passed, {} failed",
            counts.passed, counts.failed
        );
        for test in &counts.failures {
            self.failures.push(format!("{name}: test {test}"));
        }
        if let Some(why) = outcome.broken {
            self.check(name, Err(why));
        } else if counts.passed + counts.failed == 0 {
            self.check(name, Err("no tests ran".into()));
        }
    }
}

pub(crate) fn run(args: &TestArgs) -> Result<ExitCode, String> {
    let root = workspace_root();
    let fuzz_seconds = args
        .fuzz_seconds
        .or_else(|| std::env::var("NVIRT_FUZZ_SECONDS").ok()?.parse().ok())
        .unwrap_or(15);
    let steps = plan::expand(&Tree::read(&root));
    let mut skip = args.skip.clone();
    if args.no_fuzz {
        skip.push("fuzz".to_owned());
    }
    if args.no_emulators {
        skip.push("emulator".to_owned());
    }
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let chosen = select::select(&names, &args.only, &skip)?;
    let selected = steps.iter().zip(chosen).filter(|(_, c)| *c).map(|(s, _)| s);
    if args.list {
        for step in selected {
            println!("{}", plan::describe(step, fuzz_seconds));
        }
        return Ok(ExitCode::SUCCESS);
    }

    let started = Instant::now();
    let mut tally = Tally::default();
    let mut tools: HashMap<Tool, Result<(), String>> = HashMap::new();
    let context = exec::Context {
        root: &root,
        fuzz_seconds,
        crash_seed: args.crash_seed,
        crash_kills: CRASH_LOOP_KILLS,
        nightly: OnceCell::new(),
    };
    for step in selected {
        let step_started = Instant::now();
        run_step(step, &context, &mut tools, &mut tally);
        eprintln!(
            "nvirt test: {} took {:.0} s",
            step.name,
            step_started.elapsed().as_secs_f64()
        );
    }

    eprintln!(
        "nvirt test: finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for failure in &tally.failures {
        eprintln!("nvirt test: failed: {failure}");
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Installs `tool` if needed, once per run; later steps reuse the verdict.
fn ensure(tool: Tool, tools: &mut HashMap<Tool, Result<(), String>>) -> Result<(), String> {
    tools
        .entry(tool)
        .or_insert_with(|| match tool {
            Tool::Components => ensure_components(),
            Tool::BareMetalTarget => ensure_target(BARE_METAL_TARGET),
            Tool::Nextest => ensure_nextest(),
            Tool::Miri => ensure_miri(),
            Tool::CargoFuzz => ensure_cargo_fuzz(),
            Tool::RustVersion => ensure_rust_version(),
        })
        .clone()
}

fn run_step(
    step: &Step,
    context: &exec::Context<'_>,
    tools: &mut HashMap<Tool, Result<(), String>>,
    tally: &mut Tally,
) {
    eprintln!("nvirt test: --- {}", step.name);
    for &tool in step.needs {
        if let Err(why) = ensure(tool, tools) {
            return tally.check(&step.name, Err(why));
        }
    }
    match step.kind {
        Kind::Check => tally.check(&step.name, exec::check(step, context)),
        Kind::Tests => tally.tests(&step.name, exec::tests(step, context)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator;

    #[test]
    fn scenario_names_are_single_path_segments() {
        for s in emulator::standard_scenarios() {
            assert!(
                !s.name.is_empty() && !s.name.contains(['/', '*', ' ']),
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn a_tests_step_without_tests_or_report_fails() {
        let mut tally = Tally::default();
        tally.tests(
            "t",
            exec::TestRun::finished(true, Ok(report::Counts::default())),
        );
        assert_eq!((tally.passed, tally.failed), (0, 1));
        let three = || report::Counts {
            passed: 3,
            failed: 0,
            failures: Vec::new(),
        };
        let mut tally = Tally::default();
        tally.tests("t", exec::TestRun::finished(true, Ok(three())));
        assert_eq!((tally.passed, tally.failed), (3, 0));
        // Exit status failure with every test passed: a crash or build error.
        let mut tally = Tally::default();
        tally.tests("t", exec::TestRun::finished(false, Ok(three())));
        assert_eq!((tally.passed, tally.failed), (3, 1));
        let mut tally = Tally::default();
        tally.tests("t", exec::TestRun::finished(true, Err("no report".into())));
        assert_eq!((tally.passed, tally.failed), (0, 1));
        let mut tally = Tally::default();
        let two_failed = report::Counts {
            passed: 1,
            failed: 2,
            failures: vec!["a".into(), "b".into()],
        };
        tally.tests("t", exec::TestRun::finished(false, Ok(two_failed)));
        assert_eq!((tally.passed, tally.failed), (1, 2));
        assert_eq!(tally.failures.len(), 2);
    }
}
