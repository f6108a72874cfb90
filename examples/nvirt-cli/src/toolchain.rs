//! Making sure the tools the test suite needs are present, installing them
//! when possible, saying exactly what is missing when not.

use std::process::Command;

use crate::process::{run_quiet, run_streamed};

/// The bare-metal target the library crates must build for.
pub(crate) const BARE_METAL_TARGET: &str = "x86_64-unknown-none";

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

/// Installs `cargo-fuzz` if `cargo fuzz` is missing.
pub(crate) fn ensure_cargo_fuzz() -> Result<(), String> {
    if run_quiet(Command::new("cargo").args(["fuzz", "--version"])).is_some_and(|(ok, _)| ok) {
        return Ok(());
    }
    let done = run_streamed(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    if done.success {
        Ok(())
    } else {
        Err("`cargo install cargo-fuzz --locked` failed; cargo-fuzz is needed to run the fuzz targets".into())
    }
}

/// Whether a nightly toolchain is installed (fuzzing then uses AddressSanitizer).
pub(crate) fn has_nightly() -> bool {
    run_quiet(Command::new("rustup").args(["toolchain", "list"]))
        .is_some_and(|(ok, list)| ok && list.lines().any(|l| l.starts_with("nightly")))
        && run_quiet(Command::new("cargo").args(["+nightly", "--version"]))
            .is_some_and(|(ok, _)| ok)
}
