//! `nvirt test`: the whole test suite, as CI runs it.
//!
//! Steps, each counted in the closing `N passed, N failed` line:
//! 1. `cargo fmt --check` and `cargo clippy -D warnings` (one check each);
//! 2. `cargo test --workspace` (every test it reports);
//! 3. every library crate marked `[package.metadata.nvirt] no_std = true`
//!    built for `x86_64-unknown-none` without default features (one each);
//! 4. the reference hypervisor and its guest in the emulators: clippy for
//!    the bare-metal target (one check), then each scenario of
//!    [`emulator::standard_scenarios`] (one each: QEMU AMD-V with NVRAM
//!    kinds 7, 12 and 90 over its three boot paths, Bochs Intel VT-x with
//!    EPT, Bochs AMD-V, a 2 GiB + 1 GiB guest with 1 GiB pages), each with
//!    its timeout, passed by the guest's serial `PASS` and the emulator's
//!    exit status; then the crash loop (one check: QEMU killed 20 times at
//!    random moments while the guest works on its NVRAM, every boot
//!    checking what it had committed, then a clean run and `nvirt pool
//!    inspect` of the NVDIMM image; see `crash_loop/`);
//! 5. the loom model-checking tests of every crate marked
//!    `[package.metadata.nvirt] loom = true`, built with `--cfg loom` in
//!    release mode (every test they report);
//! 6. every fuzz target for a bounded time, with AddressSanitizer when a
//!    nightly toolchain is installed (one each).
//!
//! Missing tools are installed (rustup target and components, cargo-fuzz);
//! what cannot be installed fails its check with the reason.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use clap::Args;

use crate::crash_loop;
use crate::emulator;
use crate::image;
use crate::process::{describe, run_quiet, run_streamed, workspace_root};
use crate::toolchain::{
    BARE_METAL_TARGET, ensure_cargo_fuzz, ensure_components, ensure_target, has_nightly,
};

/// Kills of the crash loop in `nvirt test`.
const CRASH_LOOP_KILLS: u32 = 20;

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Seconds to run each fuzz target (default: $NVIRT_FUZZ_SECONDS or 15).
    #[arg(long)]
    fuzz_seconds: Option<u64>,
    /// Skip the fuzz targets.
    #[arg(long)]
    no_fuzz: bool,
    /// Skip the emulator scenarios (and the crash loop).
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
}

pub(crate) fn run(args: &TestArgs) -> Result<ExitCode, String> {
    let root = workspace_root();
    let started = Instant::now();
    let mut tally = Tally::default();

    tally.check("toolchain: rustfmt and clippy", ensure_components());
    tally.check(
        &format!("toolchain: target {BARE_METAL_TARGET}"),
        ensure_target(BARE_METAL_TARGET),
    );

    tally.check(
        "cargo fmt --check",
        cargo_ok(&root, &["fmt", "--all", "--check"]),
    );
    tally.check(
        "cargo clippy -D warnings",
        cargo_ok(
            &root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    );
    count_tests(
        "cargo test --workspace",
        &mut cargo(&root, &["test", "--workspace"]),
        &mut tally,
    );
    for package in marked_or_check(&root, "no_std", &mut tally) {
        tally.check(
            &format!("no_std build of {package} for {BARE_METAL_TARGET}"),
            cargo_ok(
                &root,
                &[
                    "build",
                    "--package",
                    &package,
                    "--target",
                    BARE_METAL_TARGET,
                    "--no-default-features",
                ],
            ),
        );
    }
    if !args.no_emulators {
        emulator_scenarios(&root, &mut tally);
        crash_loop_check(&root, args.crash_seed, &mut tally);
    }
    for package in marked_or_check(&root, "loom", &mut tally) {
        // Only the `loom` test target: under `--cfg loom` the package's
        // other tests still run and would be counted as loom tests.
        let mut cmd = cargo(
            &root,
            &["test", "--release", "--package", &package, "--test", "loom"],
        );
        // A target directory of its own: `--cfg loom` rebuilds every crate.
        cmd.env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", root.join("target/loom"));
        count_tests(&format!("loom tests of {package}"), &mut cmd, &mut tally);
    }
    if !args.no_fuzz {
        let seconds = args
            .fuzz_seconds
            .or_else(|| std::env::var("NVIRT_FUZZ_SECONDS").ok()?.parse().ok())
            .unwrap_or(15);
        fuzz(&root, seconds, &mut tally);
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

/// Lints the bare-metal crates, then runs every emulator scenario.
fn emulator_scenarios(root: &Path, tally: &mut Tally) {
    tally.check(
        "clippy -D warnings for x86_64-unknown-none (nvirt-hv, nvirt-guest)",
        image::clippy_bare_metal(root),
    );
    let started = Instant::now();
    for scenario in emulator::standard_scenarios() {
        let result = emulator::check_scenario(root, &scenario).map(|_| ());
        tally.check(
            &format!(
                "scenario {} (timeout {} s)",
                scenario.name,
                scenario.timeout.as_secs()
            ),
            result,
        );
    }
    eprintln!(
        "nvirt test: emulator scenarios took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// The crash loop: QEMU killed [`CRASH_LOOP_KILLS`] times while the guest
/// works on its NVRAM, then a clean run and `nvirt pool inspect` (one
/// check).
fn crash_loop_check(root: &Path, seed: Option<u64>, tally: &mut Tally) {
    let seed = seed.unwrap_or_else(crash_loop::clock_seed);
    let result = crash_loop::run(root, CRASH_LOOP_KILLS, seed, false).map(|summary| {
        eprintln!("nvirt test: {summary}");
    });
    tally.check(
        &format!(
            "crash loop: {CRASH_LOOP_KILLS} kills of QEMU, clean run, pool inspect (seed {seed})"
        ),
        result,
    );
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args(args);
    cmd
}

fn cargo_ok(root: &Path, args: &[&str]) -> Result<(), String> {
    let done = run_streamed(&mut cargo(root, args))?;
    if done.success {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed (output above)", args.join(" ")))
    }
}

/// Runs a `cargo test` command and counts each test it reports.
fn count_tests(label: &str, cmd: &mut Command, tally: &mut Tally) {
    let done = match run_streamed(cmd) {
        Ok(done) => done,
        Err(e) => return tally.check(label, Err(e)),
    };
    let (mut passed, mut failed) = (0, 0);
    for line in done
        .stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
    {
        for part in line.split([';', '.']) {
            let mut words = part.split_whitespace().rev();
            let (Some(word), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match word {
                "passed" => passed += count,
                "failed" => failed += count,
                _ => {}
            }
        }
    }
    tally.passed += passed;
    tally.failed += failed;
    eprintln!("nvirt test: {label}: {passed} passed, {failed} failed");
    if failed > 0 {
        tally
            .failures
            .push(format!("{label}: {failed} tests failed (output above)"));
    }
    if !done.success && failed == 0 {
        tally.check(label, Err("did not build or crashed (output above)".into()));
    } else if done.success && passed + failed == 0 {
        tally.check(label, Err("no tests ran".into()));
    }
}

/// The packages marked with `key`; a failure to list them, or no package
/// at all, is a failed check rather than a step skipped.
fn marked_or_check(root: &Path, key: &str, tally: &mut Tally) -> Vec<String> {
    let label = format!("packages marked `{key} = true`");
    match marked_packages(root, key) {
        Ok(list) if list.is_empty() => {
            tally.check(&label, Err("none found in the workspace".into()));
            list
        }
        Ok(list) => list,
        Err(e) => {
            tally.check(&label, Err(e));
            Vec::new()
        }
    }
}

/// Packages that declare `[package.metadata.nvirt] <key> = true`.
fn marked_packages(root: &Path, key: &str) -> Result<Vec<String>, String> {
    let (ok, json) = run_quiet(&mut cargo(
        root,
        &["metadata", "--format-version", "1", "--no-deps"],
    ))
    .ok_or("cannot run cargo metadata")?;
    if !ok {
        return Err("cargo metadata failed".into());
    }
    let meta: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    Ok(packages
        .iter()
        .filter(|p| p["metadata"]["nvirt"][key].as_bool() == Some(true))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect())
}

/// Builds every fuzz target, then runs each for `seconds`.
fn fuzz(root: &Path, seconds: u64, tally: &mut Tally) {
    if let Err(e) = ensure_cargo_fuzz() {
        return tally.check("fuzz: cargo-fuzz", Err(e));
    }
    let nightly = has_nightly();
    let sanitizer = if nightly { "address" } else { "none" };
    eprintln!("nvirt test: fuzzing {seconds} s per target, sanitizer {sanitizer}");
    let fuzz_cmd = |sub: &str| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root);
        if nightly {
            cmd.arg("+nightly");
        }
        cmd.args(["fuzz", sub, "--sanitizer", sanitizer, "--debug-assertions"]);
        cmd
    };
    let targets = match run_quiet(
        Command::new("cargo")
            .current_dir(root)
            .args(["fuzz", "list"]),
    ) {
        Some((true, list)) => list
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>(),
        _ => return tally.check("fuzz: list targets", Err("`cargo fuzz list` failed".into())),
    };
    if targets.is_empty() {
        return tally.check(
            "fuzz: list targets",
            Err("`cargo fuzz list` found none".into()),
        );
    }
    if let Err(e) = run_streamed(&mut fuzz_cmd("build")).and_then(|d| {
        if d.success {
            Ok(())
        } else {
            Err("`cargo fuzz build` failed (output above)".to_owned())
        }
    }) {
        return tally.check("fuzz: build targets", Err(e));
    }
    let logs = root.join("target/nvirt-test");
    let _ = fs::create_dir_all(&logs);
    for target in targets {
        let corpus = root.join("fuzz/corpus").join(&target);
        let seeds = root.join("fuzz/seeds").join(&target);
        let _ = fs::create_dir_all(&corpus);
        let mut cmd = fuzz_cmd("run");
        cmd.arg(&target).arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-timeout=20",
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
        ]);
        let log_path = logs.join(format!("fuzz-{target}.log"));
        let result = run_logged(&mut cmd, &log_path);
        tally.check(&format!("fuzz: {target} ({seconds} s)"), result);
    }
}

/// Runs a fuzz target with its output in a log file; on failure, shows the
/// log's end. On success, prints the executions libFuzzer reported.
fn run_logged(cmd: &mut Command, log_path: &Path) -> Result<(), String> {
    eprintln!("+ {}  > {}", describe(cmd), log_path.display());
    let log = File::create(log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let status = cmd
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot start {}: {e}", describe(cmd)))?;
    let text = fs::read_to_string(log_path).unwrap_or_default();
    if status.success() {
        if let Some(done) = text
            .lines()
            .rev()
            .find(|l| l.contains("stat::number_of_executed_units"))
        {
            eprintln!("    {}", done.trim());
        }
        Ok(())
    } else {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("    {line}");
        }
        Err(format!(
            "crashed or failed; full log in {}",
            log_path.display()
        ))
    }
}
