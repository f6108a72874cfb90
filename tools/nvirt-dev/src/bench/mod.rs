//! `nvirt bench …`: each workload run on nvirt and on the peer a user would
//! otherwise pick, in the same binary, one line per workload:
//! `<workload> nvirt=<ns/op> peer=<ns/op> ratio=<peer/nvirt> …`.
//!
//! Each crate's benchmarks live in a module of their own here; add a
//! variant to [`BenchTarget`] and a line to [`run`].

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub(crate) mod alloc_count;
mod buddy;
mod buddy_peer;
mod cpu_time;
mod ept;
mod log;
mod pool;

/// Set in the environment of a benchmark binary [`in_one_codegen_unit`]
/// built.
const ONE_CGU: &str = "NVIRT_BENCH_ONE_CGU";

/// `None` in a build with one codegen unit: run the benchmark here. Else
/// builds this tool again with one codegen unit (in `target/cgu1`) and runs
/// `bench TARGET` with it; its outcome. How the compiler splits crates into
/// codegen units decides what is inlined and where the peer's code lands:
/// measured, it moved the buddy peer's speed by up to 3× and the log's
/// group8-64B from 1.24× the floor (one unit) to 1.5–1.6× (sixteen). One
/// unit gives one placement, the same from build to build, for nvirt and
/// the peers alike.
fn in_one_codegen_unit(target: &str, quick: bool) -> Option<Result<ExitCode, String>> {
    if std::env::var_os(ONE_CGU).is_some() {
        return None;
    }
    let root = crate::process::workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(&root)
        .args(["run", "--quiet", "--release", "--package", "nvirt-dev"])
        .args(["--bin", "nvirt-dev", "--", "bench", target])
        .args(quick.then_some("--quick"))
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_TARGET_DIR", root.join("target").join("cgu1"))
        .env(ONE_CGU, "1");
    eprintln!(
        "nvirt bench {target}: building with one codegen unit: {}",
        crate::process::describe(&cmd)
    );
    Some(match cmd.status() {
        Ok(status) if status.success() => Ok(ExitCode::SUCCESS),
        Ok(_) => Ok(ExitCode::FAILURE),
        Err(e) => Err(format!(
            "cannot start {}: {e}",
            crate::process::describe(&cmd)
        )),
    })
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// What to benchmark.
    target: BenchTarget,
    /// Fewer iterations: finishes in under a minute.
    #[arg(long)]
    quick: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BenchTarget {
    /// nvirt-ept against the x86_64 crate's OffsetPageTable.
    Ept,
    /// persist-meta commits against a PMDK-style undo log; recovery speed.
    Log,
    /// nvirt-buddy against buddy_system_allocator::FrameAllocator.
    Buddy,
    /// nvirt-nvpool: fences per call, populate of 64 GiB, recovery of 1 Mi
    /// extents, metadata share.
    Pool,
    /// A stock Linux guest on nvirt-hv against the same kernel booted
    /// directly in QEMU: time to `/dev/pmem0`, alternating boots.
    Linux,
}

pub(crate) fn run(args: &BenchArgs) -> Result<ExitCode, String> {
    match args.target {
        BenchTarget::Ept => ept::run(args.quick),
        BenchTarget::Log => log::run(args.quick),
        BenchTarget::Buddy => buddy::run(args.quick),
        BenchTarget::Pool => pool::run(args.quick),
        BenchTarget::Linux => linux(args.quick),
    }
}

/// `nvirt bench linux`: 5 boots of each (2 with `--quick`), alternating;
/// prints `linux-pmem0 nvirt=<s> peer=<s> ratio=<direct/nvirt>` in the
/// contract format (seconds instead of nanoseconds) and the exit rate.
fn linux(quick: bool) -> Result<ExitCode, String> {
    let root = crate::process::workspace_root();
    let c = crate::linux_run::compare(&root, if quick { 2 } else { 5 }, false)?;
    println!("{c}");
    let mean =
        |v: &[Duration]| v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len().max(1) as f64;
    println!(
        "{}",
        line(
            "linux-pmem0-seconds",
            mean(&c.hypervisor),
            mean(&c.direct),
            "unit=s"
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// A duration in nanoseconds as a float.
pub(crate) fn elapsed_ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// Formats one result line in the contract format.
pub(crate) fn line(workload: &str, nvirt_ns: f64, peer_ns: f64, extra: &str) -> String {
    let ratio = peer_ns / nvirt_ns;
    let mut out = format!("{workload} nvirt={nvirt_ns:.1} peer={peer_ns:.1} ratio={ratio:.2}");
    if !extra.is_empty() {
        out.push(' ');
        out.push_str(extra);
    }
    out
}
