//! The guest's console: bytes of its `console_io` calls (decoded by
//! `nvirt_hypercall_abi::protocol`) gathered into lines, each forwarded
//! with a `guest: ` prefix, and the `PASS` / `FAIL` verdict lines noticed.

use crate::bootinfo::FixedString;

/// Longest guest line forwarded whole; longer lines are split.
pub const LINE_MAX: usize = 200;

/// Gathers guest console bytes into lines.
#[derive(Clone, Debug, Default)]
pub struct GuestConsole {
    line: FixedString<LINE_MAX>,
    passed: bool,
    failed: bool,
    probe: Option<u64>,
}

/// The line a guest prints before it touches guest-physical memory outside
/// its map on purpose, to show that the hypervisor stops it there:
/// `probe: touching 0x…` (hexadecimal, page aligned).
pub const PROBE_PREFIX: &str = "probe: touching 0x";

impl GuestConsole {
    /// An empty console.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            line: FixedString::new(),
            passed: false,
            failed: false,
            probe: None,
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
            other => {
                if let Some(hex) = other.strip_prefix(PROBE_PREFIX) {
                    let digits = hex.split(|c: char| !c.is_ascii_hexdigit()).next();
                    self.probe = digits.and_then(|d| u64::from_str_radix(d, 16).ok());
                }
            }
        }
        emit(text);
        self.line = FixedString::new();
    }

    /// The page the guest last announced it would touch outside its map
    /// ([`PROBE_PREFIX`]), if it did.
    #[must_use]
    pub const fn probe(&self) -> Option<u64> {
        self.probe
    }

    /// Whether the guest printed a `FAIL` line.
    #[must_use]
    pub const fn failed(&self) -> bool {
        self.failed
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

    #[test]
    fn notices_an_announced_probe() {
        let mut console = GuestConsole::new();
        assert_eq!(console.probe(), None);
        console.push(b"probe: touching 0x140000000 outside my map\n", |_| {});
        assert_eq!(console.probe(), Some(0x1_4000_0000));
        console.push(b"probe: touching 0xzz\n", |_| {});
        assert_eq!(
            console.probe(),
            None,
            "a line that names no address clears it"
        );
        console.push(b"note: probe: touching 0x1000\n", |_| {});
        assert_eq!(console.probe(), None, "only at the start of a line");
    }
}
