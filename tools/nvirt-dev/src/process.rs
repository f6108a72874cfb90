//! Running child processes: streamed to the terminal, captured when needed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

/// The workspace root, where `Cargo.toml`, `fuzz/` and `.ci/` live.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// What a finished command left behind.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) success: bool,
    /// Its standard output (also shown on the terminal as it came).
    pub(crate) stdout: String,
}

/// Prints the command line the way a user could paste it.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd`, echoing its stdout and stderr as they arrive, and captures
/// stdout.
pub(crate) fn run_streamed(cmd: &mut Command) -> Result<Finished, String> {
    eprintln!("+ {}", describe(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", describe(cmd)))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let reader = thread::spawn(move || {
        let mut captured = String::new();
        let mut out = std::io::stdout();
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line);
            let _ = writeln!(out, "{line}");
            captured.push_str(&line);
            captured.push('\n');
        }
        captured
    });
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", describe(cmd)))?;
    let stdout = reader.join().unwrap_or_default();
    Ok(Finished {
        success: status.success(),
        stdout,
    })
}

/// Runs `cmd` quietly and returns whether it succeeded and its stdout; `None`
/// if it could not start at all.
pub(crate) fn run_quiet(cmd: &mut Command) -> Option<(bool, String)> {
    let out = cmd
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}
