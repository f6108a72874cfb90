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
