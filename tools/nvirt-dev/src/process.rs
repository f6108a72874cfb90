//! Running child processes: streamed to the terminal, captured when needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

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

/// One line of a child's output and when it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TimedLine {
    /// From the instant given to [`timed_lines`] (the child's spawn).
    pub(crate) at: Duration,
    /// The line without its end (`\n`, `\r\n`).
    pub(crate) text: String,
}

/// Reads `out` line by line on a thread of its own, stamping each line
/// with the time since `since` as it arrives (the stamp is taken there, not
/// when the receiver gets round to it). Lossy: a byte that is not UTF-8
/// must not end the console. The channel closes at end of file.
pub(crate) fn timed_lines(out: impl Read + Send + 'static, since: Instant) -> Receiver<TimedLine> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
            let at = since.elapsed();
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            if tx.send(TimedLine { at, text }).is_err() {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_lines_are_whole_ordered_and_stamped() {
        let since = Instant::now();
        let rx = timed_lines(&b"one\r\ntwo\n\xffthree"[..], since);
        let got: Vec<TimedLine> = rx.iter().collect();
        let texts: Vec<&str> = got.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "\u{fffd}three"]);
        assert!(got.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(got.iter().all(|l| l.at <= since.elapsed()));
    }
}
