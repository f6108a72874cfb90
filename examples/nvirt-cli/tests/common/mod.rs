//! What the command-line tests share: running the `nvirt` binary the way a
//! user does and keeping its exit status and both streams.

#![allow(dead_code, reason = "each test file uses a part of this module")]

use std::ffi::OsStr;
use std::process::Command;

/// One finished `nvirt` run.
pub(crate) struct Output {
    pub(crate) status: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `nvirt` with `args` and waits for it.
pub(crate) fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_nvirt"))
        .args(args)
        .output()
        .unwrap();
    Output {
        status: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs `nvirt pool ARGS`.
pub(crate) fn pool(args: &[&str]) -> Output {
    run(std::iter::once("pool").chain(args.iter().copied()))
}

/// Runs `nvirt pool ARGS`, requires exit 0 and returns its stdout.
pub(crate) fn pool_ok(args: &[&str]) -> String {
    let out = pool(args);
    assert_eq!(out.status, 0, "{args:?}: {}", out.stderr);
    out.stdout
}
