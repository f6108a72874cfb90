//! Memory maps as text: the lines Linux prints at boot, and plain
//! `START END TYPE` triples.
//!
//! Accepted, one entry per line:
//!
//! - `… [mem 0x0000000000000000-0x000000000009fbff] usable`: Linux's format
//!   since 3.x. Anything before `[mem` is ignored (dmesg timestamps,
//!   `BIOS-e820:`, `user:`, `reserve setup_data:`); the end is inclusive and
//!   an end of start − 1 is an empty entry.
//! - `… BIOS-e820: 0000000000000000 - 000000000009f800 (usable)`: the format
//!   of older kernels, whose end is exclusive.
//! - `START END TYPE`: hexadecimal addresses (`0x` optional), inclusive end,
//!   decimal type code.
//!
//! Blank lines, lines starting with `#`, and the `[gap 0x…-0x…]` lines of
//! recent kernels (which describe holes) carry no entry.

use core::fmt;

use crate::entry::Entry;
use crate::error::RangeError;
use crate::kind::{Kind, parse_decimal_u32};

/// Why a line is not a memory-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// The line matches none of the accepted forms.
    Unrecognized,
    /// An address is not a hexadecimal number of at most 64 bits.
    BadAddress,
    /// The kind is neither a Linux kind name nor a decimal type code.
    BadKind,
    /// Something follows the entry.
    TrailingText,
    /// The addresses do not form a range.
    Range(RangeError),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unrecognized => f.write_str(
                "not a memory-map line (expected `[mem 0xSTART-0xEND] kind` or `START END TYPE`)",
            ),
            Self::BadAddress => f.write_str("address is not a 64-bit hexadecimal number"),
            Self::BadKind => f.write_str("unknown memory kind"),
            Self::TrailingText => f.write_str("unexpected text after the entry"),
            Self::Range(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for LineError {}

impl From<RangeError> for LineError {
    fn from(e: RangeError) -> Self {
        Self::Range(e)
    }
}

/// Parses one line; `Ok(None)` for a blank or comment line.
pub fn parse_line(line: &str) -> Result<Option<Entry>, LineError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if let Some(at) = line.find("[gap ") {
        // Validate the range even though a hole adds nothing.
        let rest = &line[at + "[gap ".len()..];
        let range = rest.strip_suffix(']').ok_or(LineError::TrailingText)?;
        let (start, last) = range.split_once('-').ok_or(LineError::Unrecognized)?;
        Entry::from_inclusive(
            parse_hex(start, true)?,
            parse_hex(last, true)?,
            Kind::Reserved,
        )?;
        return Ok(None);
    }
    if let Some(at) = line.find("[mem ") {
        return parse_mem_form(&line[at + "[mem ".len()..]).map(Some);
    }
    if let Some(entry) = parse_old_form(line)? {
        return Ok(Some(entry));
    }
    parse_triple(line).map(Some)
}

/// `0xS-0xE] kind`
fn parse_mem_form(rest: &str) -> Result<Entry, LineError> {
    let (range, kind) = rest.split_once(']').ok_or(LineError::Unrecognized)?;
    let (start, last) = range.split_once('-').ok_or(LineError::Unrecognized)?;
    let start = parse_hex(start, true)?;
    let last = parse_hex(last, true)?;
    let kind = Kind::from_linux_name(kind.trim()).ok_or(LineError::BadKind)?;
    Ok(Entry::from_inclusive(start, last, kind)?)
}

/// `BIOS-e820: 0000000000000000 - 000000000009f800 (usable)`, exclusive end.
/// `Ok(None)` when the line is not of this form.
fn parse_old_form(line: &str) -> Result<Option<Entry>, LineError> {
    let Some((head, rest)) = line.split_once(": ") else {
        return Ok(None);
    };
    if !head.ends_with("e820") && !head.ends_with("user") {
        return Ok(None);
    }
    let mut words = rest.splitn(4, ' ');
    let (Some(start), Some("-"), Some(end), Some(kind)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Ok(None);
    };
    let start = parse_hex(start, false)?;
    let end = parse_hex(end, false)?;
    let kind = kind.trim();
    let kind = match kind.strip_prefix('(').and_then(|k| k.strip_suffix(')')) {
        Some(name) => Kind::from_linux_name(name),
        None => Kind::from_linux_name(kind),
    }
    .ok_or(LineError::BadKind)?;
    Entry::new(start, end, kind)
        .map(Some)
        .map_err(LineError::Range)
}

/// `START END TYPE`
fn parse_triple(line: &str) -> Result<Entry, LineError> {
    let mut words = line.split_ascii_whitespace();
    let (Some(start), Some(last), Some(code)) = (words.next(), words.next(), words.next()) else {
        return Err(LineError::Unrecognized);
    };
    if words.next().is_some() {
        return Err(LineError::TrailingText);
    }
    let start = parse_hex(start, false)?;
    let last = parse_hex(last, false)?;
    let code = parse_decimal_u32(code).ok_or(LineError::BadKind)?;
    Ok(Entry::from_inclusive(start, last, Kind::from_raw(code))?)
}

/// A hexadecimal `u64`, with a `0x` prefix required or optional.
fn parse_hex(text: &str, prefix_required: bool) -> Result<u64, LineError> {
    let digits = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(digits) => digits,
        None if prefix_required => return Err(LineError::BadAddress),
        None => text,
    };
    // `from_str_radix` alone would accept a sign.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LineError::BadAddress);
    }
    u64::from_str_radix(digits, 16).map_err(|_| LineError::BadAddress)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> (u64, u64, u32) {
        let e = parse_line(line).unwrap().unwrap();
        (e.start(), e.end(), e.kind().raw())
    }

    #[test]
    fn linux_lines_with_any_prefix() {
        for line in [
            "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
            "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
            "user: [mem 0x0000000000000000-0x000000000009fbff] usable",
            "reserve setup_data: [mem 0x0000000000000000-0x000000000009fbff] usable\r",
            "[mem 0x00000000-0x0009fbff] usable",
        ] {
            assert_eq!(parse(line), (0, 0x9fc00, 1), "{line}");
        }
        assert_eq!(
            parse("BIOS-e820: [mem 0x0000000100000000-0x000000013fffffff] persistent (type 12)"),
            (0x1_0000_0000, 0x1_4000_0000, 12)
        );
        assert_eq!(
            parse("BIOS-e820: [mem 0x1000-0x1fff] type 90"),
            (0x1000, 0x2000, 90)
        );
        assert!(
            parse_line("[mem 0x1000-0x0fff] usable")
                .unwrap()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            parse(
                "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009efff]  System RAM"
            ),
            (0, 0x9f000, 1)
        );
        assert_eq!(
            parse_line("BIOS-e820: [gap 0x00000000af800000-0x00000000fed1ffff]"),
            Ok(None)
        );
        assert!(
            parse_line("BIOS-e820: [gap 0x00000000af800000-0x00000000fed1ffff] usable").is_err()
        );
    }

    #[test]
    fn old_format_has_an_exclusive_end() {
        assert_eq!(
            parse(" BIOS-e820: 0000000000000000 - 000000000009f800 (usable)"),
            (0, 0x9f800, 1)
        );
        assert_eq!(
            parse("[    0.000000]  BIOS-e820: 00000000fec00000 - 00000000fec01000 (reserved)"),
            (0xfec0_0000, 0xfec0_1000, 2)
        );
        assert_eq!(
            parse("BIOS-e820: 0000000100000000 - 0000000200000000 type 12"),
            (1 << 32, 2 << 32, 12)
        );
    }

    #[test]
    fn triples() {
        assert_eq!(parse("0 9fbff 1"), (0, 0x9fc00, 1));
        assert_eq!(parse("0x100000 0x7fffffff 1"), (0x10_0000, 0x8000_0000, 1));
        assert_eq!(
            parse("  100000000\t13fffffff   7  "),
            (1 << 32, 0x1_4000_0000, 7)
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse_line("# comment"), Ok(None));
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("hello"), Err(LineError::Unrecognized));
        assert_eq!(parse_line("[mem 0x0-0x1] bogus"), Err(LineError::BadKind));
        assert_eq!(parse_line("[mem 0-0x1] usable"), Err(LineError::BadAddress));
        assert_eq!(
            parse_line("[mem 0x0-0x10000000000000000] usable"),
            Err(LineError::BadAddress)
        );
        assert_eq!(parse_line("0 +1 1"), Err(LineError::BadAddress));
        assert_eq!(parse_line("0 1 x"), Err(LineError::BadKind));
        assert_eq!(parse_line("0 1 1 1"), Err(LineError::TrailingText));
        assert!(matches!(
            parse_line("0 ffffffffffffffff 1"),
            Err(LineError::Range(RangeError::EndOverflow { .. }))
        ));
        assert!(matches!(
            parse_line("[mem 0x2000-0x0] usable"),
            Err(LineError::Range(_))
        ));
    }
}
