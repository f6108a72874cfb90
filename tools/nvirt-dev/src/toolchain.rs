//! Making sure the tools the test suite needs are present, installing them
//! when possible, saying exactly what is missing when not.

use std::process::Command;

use crate::process::{run_quiet, run_streamed};

/// The bare-metal target the library crates must build for.
pub(crate) const BARE_METAL_TARGET: &str = "x86_64-unknown-none";

/// The `rust-version` the workspace declares (a test checks they agree):
/// `nvirt test` checks the library crates with this toolchain.
pub(crate) const RUST_VERSION: &str = "1.85";

fn rustup_available() -> bool {
    run_quiet(Command::new("rustup").arg("--version")).is_some_and(|(ok, _)| ok)
}

/// Installs a rustup target for the active toolchain if it is missing.
pub(crate) fn ensure_target(target: &str) -> Result<(), String> {
    let installed = run_quiet(Command::new("rustup").args(["target", "list", "--installed"]));
    if installed
        .as_ref()
        .is_some_and(|(ok, list)| *ok && list.lines().any(|l| l.trim() == target))
    {
        return Ok(());
    }
    if !rustup_available() {
        return Err(format!(
            "the Rust target {target} is needed and rustup is not available to install it; install it with your toolchain manager"
        ));
    }
    let done = run_streamed(Command::new("rustup").args(["target", "add", target]))?;
    if done.success {
        Ok(())
    } else {
        Err(format!("`rustup target add {target}` failed"))
    }
}

/// Installs `rustfmt` and `clippy` if `cargo fmt` / `cargo clippy` are missing.
pub(crate) fn ensure_components() -> Result<(), String> {
    for (tool, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        if run_quiet(Command::new("cargo").args([tool, "--version"])).is_some_and(|(ok, _)| ok) {
            continue;
        }
        if !rustup_available() {
            return Err(format!(
                "`cargo {tool}` is missing; install the {component} component"
            ));
        }
        let done = run_streamed(Command::new("rustup").args(["component", "add", component]))?;
        if !done.success {
            return Err(format!("`rustup component add {component}` failed"));
        }
    }
    Ok(())
}

/// Installs the toolchain of [`RUST_VERSION`] (minimal profile) if
/// `cargo +RUST_VERSION` does not run.
pub(crate) fn ensure_rust_version() -> Result<(), String> {
    let toolchain = format!("+{RUST_VERSION}");
    if run_quiet(Command::new("cargo").args([toolchain.as_str(), "--version"]))
        .is_some_and(|(ok, _)| ok)
    {
        return Ok(());
    }
    if !rustup_available() {
        return Err(format!(
            "Rust {RUST_VERSION} (the declared rust-version) is needed and rustup is not available to install it"
        ));
    }
    let done = run_streamed(Command::new("rustup").args([
        "toolchain",
        "install",
        RUST_VERSION,
        "--profile",
        "minimal",
    ]))?;
    if done.success {
        Ok(())
    } else {
        Err(format!(
            "`rustup toolchain install {RUST_VERSION} --profile minimal` failed"
        ))
    }
}

/// Installs `cargo-fuzz` if `cargo fuzz` is missing.
pub(crate) fn ensure_cargo_fuzz() -> Result<(), String> {
    ensure_cargo_tool("fuzz", "cargo-fuzz", "to run the fuzz targets")
}

/// Installs `cargo-nextest` if `cargo nextest` is missing.
pub(crate) fn ensure_nextest() -> Result<(), String> {
    ensure_cargo_tool("nextest", "cargo-nextest", "to run and count the tests")
}

/// Installs the cargo subcommand `sub` from the crate `package` (with its
/// own lock file) if `cargo <sub> --version` fails.
fn ensure_cargo_tool(sub: &str, package: &str, why: &str) -> Result<(), String> {
    if run_quiet(Command::new("cargo").args([sub, "--version"])).is_some_and(|(ok, _)| ok) {
        return Ok(());
    }
    let done = run_streamed(Command::new("cargo").args(["install", package, "--locked"]))?;
    if done.success {
        Ok(())
    } else {
        Err(format!(
            "`cargo install {package} --locked` failed; {package} is needed {why}"
        ))
    }
}

/// Makes sure Miri runs: a nightly toolchain must exist (it is never
/// installed behind the user's back: it is large and changes daily); its
/// `miri` and `rust-src` components are added if missing.
pub(crate) fn ensure_miri() -> Result<(), String> {
    if !has_nightly() {
        return Err(
            "Miri needs a nightly toolchain and none is installed; install one with `rustup toolchain install nightly`"
                .into(),
        );
    }
    if run_quiet(Command::new("cargo").args(["+nightly", "miri", "--version"]))
        .is_some_and(|(ok, _)| ok)
    {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args([
        "component",
        "add",
        "miri",
        "rust-src",
        "--toolchain",
        "nightly",
    ]);
    if !run_streamed(&mut add)?.success {
        return Err(
            "`rustup component add miri rust-src --toolchain nightly` failed (output above)".into(),
        );
    }
    Ok(())
}

/// Whether a nightly toolchain is installed (fuzzing then uses AddressSanitizer).
pub(crate) fn has_nightly() -> bool {
    run_quiet(Command::new("rustup").args(["toolchain", "list"]))
        .is_some_and(|(ok, list)| ok && list.lines().any(|l| l.starts_with("nightly")))
        && run_quiet(Command::new("cargo").args(["+nightly", "--version"]))
            .is_some_and(|(ok, _)| ok)
}

#[cfg(test)]
mod tests {
    use super::RUST_VERSION;

    #[test]
    fn the_checked_toolchain_is_the_declared_rust_version() {
        let manifest = include_str!("../../../Cargo.toml");
        let declared = manifest
            .lines()
            .find_map(|l| l.strip_prefix("rust-version = "))
            .map(|v| v.trim().trim_matches('"'));
        assert_eq!(declared, Some(RUST_VERSION));
    }
}
