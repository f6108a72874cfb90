//! A tap on the bytes the guest sends through COM1: the hypervisor reads
//! the guest's console line by line, as the person at the other end of
//! the cable would, to see its markers (the Linux guest's init prints
//! `nvirt-linux: …` lines). Only writes to the transmit register count:
//! with the divisor latch (LCR bit 7) set, offsets 0 and 1 are the baud
//! divisor.

/// Most bytes of one line kept (longer lines are cut).
pub const LINE_MAX: usize = 160;
/// The marker a guest prints when it has finished and passed.
pub const PASS_MARKER: &str = "nvirt-linux: PASS";
/// The prefix of every marker.
pub const MARKER_PREFIX: &str = "nvirt-linux: ";

const THR: u16 = 0;
const LCR: u16 = 3;
const DLAB: u8 = 1 << 7;

/// The serial tap.
#[derive(Clone, Debug)]
pub struct SerialTap {
    lcr: u8,
    line: [u8; LINE_MAX],
    len: usize,
    complete: Option<usize>,
    passed: bool,
    lines: u64,
}

impl Default for SerialTap {
    fn default() -> Self {
        Self {
            lcr: 0,
            line: [0; LINE_MAX],
            len: 0,
            complete: None,
            passed: false,
            lines: 0,
        }
    }
}

impl SerialTap {
    /// A byte written to COM1 at `offset` (0–7).
    pub fn out(&mut self, offset: u16, value: u8) {
        match offset {
            LCR => self.lcr = value,
            THR if self.lcr & DLAB == 0 => self.byte(value),
            _ => {}
        }
    }

    fn byte(&mut self, b: u8) {
        if self.complete.is_some() {
            // The last line was not taken: start afresh.
            self.complete = None;
            self.len = 0;
        }
        match b {
            b'\n' => {
                let end = self.len;
                let line = trim(&self.line[..end]);
                if line == PASS_MARKER.as_bytes() {
                    self.passed = true;
                }
                self.lines += 1;
                self.complete = Some(end);
            }
            b'\r' => {}
            _ if self.len < LINE_MAX => {
                self.line[self.len] = b;
                self.len += 1;
            }
            _ => {}
        }
    }

    /// The line just completed, if it is a marker; taking it clears it.
    pub fn take_marker(&mut self) -> Option<&str> {
        let end = self.complete.take()?;
        self.len = 0;
        let line = core::str::from_utf8(trim(&self.line[..end])).ok()?;
        line.strip_prefix(MARKER_PREFIX).map(|_| line)
    }

    /// Whether the guest printed [`PASS_MARKER`] on a line of its own.
    #[must_use]
    pub const fn passed(&self) -> bool {
        self.passed
    }

    /// Lines the guest printed.
    #[must_use]
    pub const fn lines(&self) -> u64 {
        self.lines
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &line[start..end]
}
