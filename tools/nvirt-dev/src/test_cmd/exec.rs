//! Running one step of the suite.
//!
//! Doctests: nextest cannot run them, so they run under `cargo test --doc`
//! and are counted from libtest's JSON events. On a stable toolchain that
//! output format is unstable (`-Z unstable-options --format json`), and
//! libtest accepts it only when `RUSTC_BOOTSTRAP` is set in the process
//! that runs the tests: for doctests that is rustdoc. Setting it for the
//! whole `cargo` command would also reach every crate's build script (some
//! probe for nightly features through it) and rebuild the dependency tree
//! with a different configuration, so the runner sets it for rustdoc alone,
//! through a two-line wrapper given to cargo as `RUSTDOC`. Rustdoc
//! compiles the doctests with the same stable compiler as ever; the only
//! unstable thing used is the report format, and [`report::libtest_json`]
//! checks it for consistency (each suite's totals against its test events)
//! so a change in it fails the step instead of miscounting. Counting the
//! human summary lines instead, or running the doctests on nightly (a
//! different compiler from the one every other step uses), were the
//! alternatives.

use std::cell::OnceCell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::plan::{NEXTEST_PROFILE, NEXTEST_STORE, Runs, Step};
use super::report::{self, Counts};
use crate::crash_loop;
use crate::emulator;
use crate::image::{self, target_dir};
use crate::process::{describe, run_quiet, run_streamed};
use crate::toolchain::has_nightly;

/// What the steps share.
#[derive(Debug)]
pub(super) struct Context<'a> {
    pub(super) root: &'a Path,
    pub(super) fuzz_seconds: u64,
    pub(super) crash_seed: Option<u64>,
    pub(super) crash_kills: u32,
    /// Whether a nightly toolchain is installed, asked once.
    pub(super) nightly: OnceCell<bool>,
}

/// What a step of kind `tests` reported.
#[derive(Debug)]
pub(super) struct TestRun {
    /// The tests counted, if the report could be read.
    pub(super) counts: Option<Counts>,
    /// Why the step failed beyond its tests (did not build, no report).
    pub(super) broken: Option<String>,
}

impl TestRun {
    fn broken(why: String) -> Self {
        Self {
            counts: None,
            broken: Some(why),
        }
    }

    /// A finished command and its parsed report. A run that failed without
    /// any failed test (a build error, a crash) is broken.
    pub(super) fn finished(success: bool, report: Result<Counts, String>) -> Self {
        match report {
            Ok(counts) => Self {
                broken: (!success && counts.failed == 0)
                    .then(|| "the command failed, no test did (output above)".to_owned()),
                counts: Some(counts),
            },
            Err(why) if success => Self::broken(why),
            Err(why) => Self::broken(format!("did not build or crashed (output above); {why}")),
        }
    }
}

/// Runs a step of kind `check`.
pub(super) fn check(step: &Step, cx: &Context<'_>) -> Result<(), String> {
    match &step.runs {
        Runs::Cargo { args, env } => {
            let mut cmd = cargo(cx.root, args);
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
            if run_streamed(&mut cmd)?.success {
                Ok(())
            } else {
                Err(format!("`{}` failed (output above)", describe(&cmd)))
            }
        }
        Runs::BareMetalClippy => image::clippy_bare_metal(cx.root),
        Runs::Scenario(scenario) => emulator::check_scenario(cx.root, scenario).map(|_| ()),
        Runs::CrashLoop => {
            let seed = cx.crash_seed.unwrap_or_else(crash_loop::clock_seed);
            eprintln!(
                "nvirt test: crash loop of {} kills, seed {seed}",
                cx.crash_kills
            );
            crash_loop::run(cx.root, cx.crash_kills, seed, false)
                .map(|summary| eprintln!("nvirt test: {summary}"))
                .map_err(|why| format!("{why} (seed {seed})"))
        }
        Runs::LinuxBoot(e) => crate::linux_run::check(cx.root, *e),
        Runs::Vms(e) => crate::vms_run::check(cx.root, *e),
        Runs::VmsPageOut => crate::vms_run::check_page_out(cx.root),
        Runs::VmsBalloon => crate::vms_run::check_balloon(cx.root),
        Runs::VmsCrashLoop => {
            let seed = cx.crash_seed.unwrap_or_else(crash_loop::clock_seed);
            eprintln!(
                "nvirt test: crash loop with three VMs, {} kills, seed {seed}",
                super::VM_CRASH_LOOP_KILLS
            );
            crash_loop::vms::run(cx.root, super::VM_CRASH_LOOP_KILLS, seed, false)
                .map(|summary| eprintln!("nvirt test: {summary}"))
                .map_err(|why| format!("{why} (seed {seed})"))
        }
        Runs::LinuxCrashLoop => {
            let seed = cx.crash_seed.unwrap_or_else(crash_loop::clock_seed);
            eprintln!(
                "nvirt test: Linux crash loop of {} kills, seed {seed}",
                super::LINUX_CRASH_LOOP_KILLS
            );
            crate::linux_run::crash_loop(cx.root, super::LINUX_CRASH_LOOP_KILLS, seed, false)
                .map(|summary| eprintln!("nvirt test: {summary}"))
                .map_err(|why| format!("{why} (seed {seed})"))
        }
        Runs::Fuzz { target } => fuzz(cx, target),
        Runs::Broken(why) => Err(why.clone()),
        Runs::Nextest { .. } | Runs::Doctests | Runs::Miri { .. } => {
            Err("a step running tests must be of kind `tests`".into())
        }
    }
}

/// Runs a step of kind `tests`.
pub(super) fn tests(step: &Step, cx: &Context<'_>) -> TestRun {
    match &step.runs {
        Runs::Nextest {
            args,
            env,
            target_subdir,
        } => nextest(cx.root, args, env, target_subdir.as_deref()),
        Runs::Doctests => doctests(cx.root),
        Runs::Miri {
            package,
            targets,
            filters,
        } => miri(cx.root, package, targets, filters),
        Runs::Broken(why) => TestRun::broken(why.clone()),
        _ => TestRun::broken("a step of kind `tests` must run tests".into()),
    }
}

fn cargo(root: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args(args);
    cmd
}

fn nextest(
    root: &Path,
    args: &[String],
    env: &[(String, String)],
    target_subdir: Option<&str>,
) -> TestRun {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["nextest", "run", "--profile", NEXTEST_PROFILE])
        // Zero tests is this runner's verdict to give, from the report.
        .arg("--no-tests=warn")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(sub) = target_subdir {
        cmd.env("CARGO_TARGET_DIR", target_dir(root).join(sub));
    }
    // Nextest's store is below the workspace root whatever the target
    // directory (`[store] dir` in `.config/nextest.toml`).
    let report = root
        .join(NEXTEST_STORE)
        .join(NEXTEST_PROFILE)
        .join("junit.xml");
    // A report left by an earlier run must never be counted.
    match fs::remove_file(&report) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return TestRun::broken(format!("cannot remove {}: {e}", report.display()));
        }
        _ => {}
    }
    let done = match run_streamed(&mut cmd) {
        Ok(done) => done,
        Err(e) => return TestRun::broken(e),
    };
    let parsed = fs::read_to_string(&report)
        .map_err(|e| format!("no JUnit report {}: {e}", report.display()))
        .and_then(|xml| report::junit(&xml));
    TestRun::finished(done.success, parsed)
}

/// The wrapper that lets rustdoc's libtest print JSON (see the module
/// documentation): the toolchain's own rustdoc, with `RUSTC_BOOTSTRAP`.
fn rustdoc_wrapper(root: &Path) -> Result<PathBuf, String> {
    let (ok, sysroot) = run_quiet(
        Command::new("rustc")
            .current_dir(root)
            .args(["--print", "sysroot"]),
    )
    .ok_or("cannot run rustc")?;
    if !ok {
        return Err("`rustc --print sysroot` failed".into());
    }
    let rustdoc = Path::new(sysroot.trim()).join("bin").join("rustdoc");
    if !rustdoc.is_file() {
        return Err(format!("no rustdoc at {}", rustdoc.display()));
    }
    let dir = target_dir(root).join("nvirt-test");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("rustdoc-json-events");
    let quoted = rustdoc.display().to_string().replace('\'', r"'\''");
    let script = format!(
        "#!/bin/sh\n# Written by `nvirt test`: libtest's JSON output, for rustdoc only.\nRUSTC_BOOTSTRAP=1 exec '{quoted}' \"$@\"\n"
    );
    fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
    make_executable(&path)?;
    Ok(path)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(not(unix))]
fn make_executable(path: &Path) -> Result<(), String> {
    Err(format!(
        "{}: the rustdoc wrapper is a shell script and needs a Unix host",
        path.display()
    ))
}

fn doctests(root: &Path) -> TestRun {
    let wrapper = match rustdoc_wrapper(root) {
        Ok(w) => w,
        Err(why) => return TestRun::broken(why),
    };
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["test", "--workspace", "--doc", "--"])
        .args(["-Z", "unstable-options", "--format", "json"])
        .env("RUSTDOC", &wrapper);
    libtest_json_run(&mut cmd)
}

fn miri(root: &Path, package: &str, targets: &[String], filters: &[String]) -> TestRun {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["+nightly", "miri", "test", "--package", package])
        .args(targets)
        .args(["--", "-Z", "unstable-options", "--format", "json"])
        .args(filters);
    match run_streamed(&mut cmd) {
        Ok(done) => {
            // Every filter must select a test, or a rename would quietly
            // shrink what Miri checks while the step still passes.
            let report = report::libtest_json(&done.stdout).and_then(|counts| {
                match report::unmatched_filter(filters, &report::libtest_ran(&done.stdout)) {
                    Some(stale) => Err(format!(
                        "the Miri filter `{stale}` of {package} selected no test (renamed or removed?)"
                    )),
                    None => Ok(counts),
                }
            });
            TestRun::finished(done.success, report)
        }
        Err(e) => TestRun::broken(e),
    }
}

/// Runs a `cargo test`-like command whose test binaries print libtest's
/// JSON events on stdout, and counts them.
fn libtest_json_run(cmd: &mut Command) -> TestRun {
    match run_streamed(cmd) {
        Ok(done) => TestRun::finished(done.success, report::libtest_json(&done.stdout)),
        Err(e) => TestRun::broken(e),
    }
}

/// Runs one fuzz target for the bounded time (building it first if
/// needed), with AddressSanitizer on nightly.
fn fuzz(cx: &Context<'_>, target: &str) -> Result<(), String> {
    let nightly = *cx.nightly.get_or_init(has_nightly);
    let sanitizer = if nightly { "address" } else { "none" };
    let mut cmd = Command::new("cargo");
    cmd.current_dir(cx.root);
    if nightly {
        cmd.arg("+nightly");
    }
    let corpus = cx.root.join("fuzz/corpus").join(target);
    let seeds = cx.root.join("fuzz/seeds").join(target);
    let _ = fs::create_dir_all(&corpus);
    cmd.args([
        "fuzz",
        "run",
        "--sanitizer",
        sanitizer,
        "--debug-assertions",
    ])
    .arg(target)
    .arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.args([
        "--",
        &format!("-max_total_time={}", cx.fuzz_seconds),
        "-timeout=20",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
    ]);
    let logs = target_dir(cx.root).join("nvirt-test");
    let _ = fs::create_dir_all(&logs);
    eprintln!("nvirt test: sanitizer {sanitizer}");
    run_logged(&mut cmd, &logs.join(format!("fuzz-{target}.log")))
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
