//! The guest's side of this stage's hypercalls, decoded from registers,
//! and its console: bytes gathered into lines, each forwarded with a
//! `guest: ` prefix, and the `PASS` / `FAIL` verdict lines noticed.

use core::fmt;

use crate::bootinfo::FixedString;
use crate::guest_abi::{
    CONSOLE_WRITE_MAX, CONSOLEIO_WRITE, EINVAL, ENOSYS, HYPERCALL_CONSOLE_IO, HYPERCALL_SCHED_OP,
    SCHEDOP_SHUTDOWN, SHUTDOWN_CRASH, SHUTDOWN_POWEROFF,
};

/// A decoded hypercall of this stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// `console_io(CONSOLEIO_write, len, buffer)`.
    ConsoleWrite {
        /// Guest-physical buffer.
        gpa: u64,
        /// Bytes.
        len: u64,
    },
    /// `sched_op(SCHEDOP_shutdown, &sched_shutdown)`.
    Shutdown {
        /// Guest-physical address of `struct sched_shutdown`.
        arg_gpa: u64,
    },
}

/// Decodes RAX (number) and RDI, RSI, RDX (arguments), or gives the
/// negative errno to return.
pub fn decode(rax: u64, rdi: u64, rsi: u64, rdx: u64) -> Result<Hypercall, i64> {
    match (rax, rdi) {
        (HYPERCALL_CONSOLE_IO, CONSOLEIO_WRITE) if rsi <= CONSOLE_WRITE_MAX => {
            Ok(Hypercall::ConsoleWrite { gpa: rdx, len: rsi })
        }
        (HYPERCALL_CONSOLE_IO, CONSOLEIO_WRITE) => Err(-EINVAL),
        (HYPERCALL_SCHED_OP, SCHEDOP_SHUTDOWN) => Ok(Hypercall::Shutdown { arg_gpa: rsi }),
        (HYPERCALL_CONSOLE_IO | HYPERCALL_SCHED_OP, _) => Err(-EINVAL),
        _ => Err(-ENOSYS),
    }
}

/// How a guest said it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`.
    Poweroff,
    /// `SHUTDOWN_crash`.
    Crash,
    /// Any other code.
    Other(u32),
}

impl From<u32> for ShutdownReason {
    fn from(code: u32) -> Self {
        match code {
            SHUTDOWN_POWEROFF => Self::Poweroff,
            SHUTDOWN_CRASH => Self::Crash,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Poweroff => f.write_str("poweroff"),
            Self::Crash => f.write_str("crash"),
            Self::Other(code) => write!(f, "reason {code}"),
        }
    }
}

/// Longest guest line forwarded whole; longer lines are split.
pub const LINE_MAX: usize = 200;

/// Gathers guest console bytes into lines.
#[derive(Clone, Debug, Default)]
pub struct GuestConsole {
    line: FixedString<LINE_MAX>,
    passed: bool,
    failed: bool,
}

impl GuestConsole {
    /// An empty console.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            line: FixedString::new(),
            passed: false,
            failed: false,
        }
    }

    /// Takes bytes; calls `emit` with each completed line. Control
    /// characters other than newline are shown as `?` so the guest cannot
    /// forge lines of the hypervisor's own.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        for &b in bytes {
            match b {
                b'\n' => self.finish_line(&mut emit),
                b'\r' => {}
                0x20..=0x7e => {
                    if !self.line.push_byte(b) {
                        self.finish_line(&mut emit);
                        self.line.push_byte(b);
                    }
                }
                _ => {
                    if !self.line.push_byte(b'?') {
                        self.finish_line(&mut emit);
                        self.line.push_byte(b'?');
                    }
                }
            }
        }
    }

    /// Emits a pending partial line.
    pub fn flush(&mut self, mut emit: impl FnMut(&str)) {
        if !self.line.as_bytes().is_empty() {
            self.finish_line(&mut emit);
        }
    }

    fn finish_line(&mut self, emit: &mut impl FnMut(&str)) {
        let text = self.line.as_str();
        match text.trim() {
            "PASS" => self.passed = true,
            "FAIL" => self.failed = true,
            _ => {}
        }
        emit(text);
        self.line = FixedString::new();
    }

    /// Whether the guest printed a `PASS` line and no `FAIL` line.
    #[must_use]
    pub const fn passed(&self) -> bool {
        self.passed && !self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::{EFAULT, SHUTDOWN_CRASH};

    #[test]
    fn decodes_the_two_hypercalls_and_refuses_the_rest() {
        assert_eq!(
            decode(18, 0, 5, 0x2000),
            Ok(Hypercall::ConsoleWrite {
                gpa: 0x2000,
                len: 5
            })
        );
        assert_eq!(decode(18, 0, CONSOLE_WRITE_MAX + 1, 0), Err(-EINVAL));
        assert_eq!(decode(18, 1, 5, 0), Err(-EINVAL));
        assert_eq!(
            decode(29, 2, 0x3000, 0),
            Ok(Hypercall::Shutdown { arg_gpa: 0x3000 })
        );
        assert_eq!(decode(29, 0, 0, 0), Err(-EINVAL));
        assert_eq!(decode(12, 0, 0, 0), Err(-ENOSYS));
        assert_eq!(decode(u64::MAX, 0, 0, 0), Err(-ENOSYS));
        assert_ne!(EFAULT, EINVAL);
        assert_eq!(ShutdownReason::from(SHUTDOWN_CRASH), ShutdownReason::Crash);
    }

    #[test]
    fn splits_lines_and_notices_the_verdict() {
        let mut console = GuestConsole::new();
        let mut lines = Vec::new();
        console.push(b"hello\r\nwor", |l| lines.push(l.to_owned()));
        console.push(b"ld\n\x1b[31mPASS\n", |l| lines.push(l.to_owned()));
        assert_eq!(lines, ["hello", "world", "?[31mPASS"]);
        assert!(!console.passed(), "an escape sequence is not a PASS line");
        console.push(b"PASS\n", |l| lines.push(l.to_owned()));
        assert!(console.passed());
        console.push(b"FAIL", |l| lines.push(l.to_owned()));
        console.flush(|l| lines.push(l.to_owned()));
        assert!(!console.passed(), "any FAIL line wins");
        let long = [b'x'; LINE_MAX + 5];
        let mut n = 0;
        console.push(&long, |_| n += 1);
        console.flush(|_| n += 1);
        assert_eq!(n, 2);
    }
}
