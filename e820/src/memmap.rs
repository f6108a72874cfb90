//! Linux's `memmap=` and `mem=` kernel command-line options
//! (`parse_memmap_one()` / `parse_memopt()` in `arch/x86/kernel/e820.c`),
//! which let an operator mark a range as persistent memory without NVDIMM
//! firmware: `memmap=4G!12G` turns 4 GiB at 12 GiB into type 12.
//!
//! | form | effect |
//! |---|---|
//! | `nn@ss` | add RAM |
//! | `nn#ss` | add ACPI data |
//! | `nn$ss` | add reserved |
//! | `nn!ss` | add persistent memory, type 12 |
//! | `nn%ss-t+u` | change type t to u; `+u` alone adds u, `-t` alone removes t, neither removes all |
//! | `nn` | drop RAM at and above nn (also `mem=nn`) |
//! | `exactmap` | forget the firmware map |
//!
//! Sizes and addresses use `memparse()` syntax: a C-style number (`0x` hex,
//! leading `0` octal, else decimal) with an optional K, M, G, T, P or E
//! suffix. Several ranges may be given at once, comma-separated.
//!
//! As in Linux, the options edit the raw table and the result is sanitized
//! once at the end, so an option sees ranges added by earlier options even
//! where a larger type hides them.

use core::fmt;
use core::ops::Range;

use crate::entry::Entry;
use crate::error::{CapacityError, RangeError};
use crate::kind::Kind;
use crate::map::MemoryMap;

/// One parsed `memmap=` (or `mem=`) item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemmapOp {
    /// `exactmap`: start from an empty map.
    ExactMap,
    /// `nn` or `mem=nn`: remove RAM at and above this address.
    Limit(u64),
    /// `nn@ss`, `nn#ss`, `nn$ss`, `nn!ss`, `nn%ss+u`: add a range.
    Add(Entry),
    /// `nn%ss-t+u`: change kind `from` to `to` inside the range.
    Update {
        /// The range.
        range: Range<u64>,
        /// Old kind.
        from: Kind,
        /// New kind.
        to: Kind,
    },
    /// `nn%ss-t` / `nn%ss`: remove kind `only` (any kind if `None`).
    Remove {
        /// The range.
        range: Range<u64>,
        /// Only this kind, or any.
        only: Option<Kind>,
    },
}

/// Why a `memmap=` or `mem=` value is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemmapError {
    /// The value at this byte offset (within the text given) is malformed.
    Syntax {
        /// Byte offset of the offending item.
        at: usize,
    },
    /// A number does not fit in 64 bits once its suffix is applied.
    Overflow {
        /// Byte offset of the offending item.
        at: usize,
    },
    /// `mem=0` would remove all memory; Linux refuses it too.
    ZeroLimit {
        /// Byte offset of the offending item.
        at: usize,
    },
    /// The range ends at or beyond 2^64.
    Range {
        /// Byte offset of the offending item.
        at: usize,
        /// The range problem.
        error: RangeError,
    },
    /// Applying the options needs more entries than the map holds.
    Capacity(CapacityError),
}

impl fmt::Display for MemmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { at } => write!(f, "malformed memmap=/mem= value at byte {at}"),
            Self::Overflow { at } => write!(f, "number too large at byte {at}"),
            Self::ZeroLimit { at } => write!(f, "memory limit of 0 at byte {at}"),
            Self::Range { at, error } => write!(f, "at byte {at}: {error}"),
            Self::Capacity(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for MemmapError {}

/// Parses a number in Linux `memparse()` syntax: returns the value and the
/// unparsed rest, or `None` if no digit was read or it overflows.
fn memparse(text: &str) -> Result<(u64, &str), bool> {
    let (value, rest) = strtoull(text)?;
    let (shift, rest) = match rest.as_bytes().first().map(u8::to_ascii_uppercase) {
        Some(b'K') => (10, &rest[1..]),
        Some(b'M') => (20, &rest[1..]),
        Some(b'G') => (30, &rest[1..]),
        Some(b'T') => (40, &rest[1..]),
        Some(b'P') => (50, &rest[1..]),
        Some(b'E') => (60, &rest[1..]),
        _ => (0, rest),
    };
    let scaled = value.checked_mul(1u64 << shift).ok_or(true)?;
    Ok((scaled, rest))
}

/// `simple_strtoull(text, &rest, 0)`: `0x` hex, leading `0` octal, else
/// decimal. `Err(false)` when no digit, `Err(true)` on overflow.
fn strtoull(text: &str) -> Result<(u64, &str), bool> {
    let bytes = text.as_bytes();
    let (radix, start) = match bytes {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let digits = text[start..]
        .bytes()
        .take_while(|b| char::from(*b).is_digit(radix))
        .count();
    if digits == 0 {
        return Err(false);
    }
    let end = start + digits;
    let value = u64::from_str_radix(&text[start..end], radix).map_err(|_| true)?;
    Ok((value, &text[end..]))
}

/// Parses one item of a `memmap=` value (no commas); `at` is its offset for
/// error reports.
pub fn parse_item(item: &str, at: usize) -> Result<MemmapOp, MemmapError> {
    if item == "exactmap" {
        return Ok(MemmapOp::ExactMap);
    }
    let syntax = MemmapError::Syntax { at };
    let number = |text| {
        memparse(text).map_err(|overflow| {
            if overflow {
                MemmapError::Overflow { at }
            } else {
                syntax
            }
        })
    };
    let (size, rest) = number(item)?;
    let Some(op) = rest.chars().next() else {
        return if size == 0 {
            Err(MemmapError::ZeroLimit { at })
        } else {
            Ok(MemmapOp::Limit(size))
        };
    };
    let (start, rest) = number(&rest[op.len_utf8()..])?;
    let entry = |kind| {
        Entry::from_base_size(start, size, kind).map_err(|error| MemmapError::Range { at, error })
    };
    let simple = match op {
        '@' => Some(Kind::Ram),
        '#' => Some(Kind::Acpi),
        '$' => Some(Kind::Reserved),
        '!' => Some(Kind::Pram),
        '%' => None,
        _ => return Err(syntax),
    };
    if let Some(kind) = simple {
        return if rest.is_empty() {
            Ok(MemmapOp::Add(entry(kind)?))
        } else {
            Err(syntax)
        };
    }
    let code = |text| type_code(text, at);
    let (from, rest) = match rest.strip_prefix('-') {
        Some(after) => code(after)?,
        None => (None, rest),
    };
    let (to, rest) = match rest.strip_prefix('+') {
        Some(after) => code(after)?,
        None => (None, rest),
    };
    if !rest.is_empty() {
        return Err(syntax);
    }
    let range = entry(Kind::Reserved)?;
    let range = range.start()..range.end();
    Ok(match (from, to) {
        (Some(from), Some(to)) => MemmapOp::Update { range, from, to },
        (None, Some(to)) => MemmapOp::Add(entry(to)?),
        (only, None) => MemmapOp::Remove { range, only },
    })
}

/// A decimal, octal or hex type code after `-` or `+`; code 0 means none.
fn type_code(text: &str, at: usize) -> Result<(Option<Kind>, &str), MemmapError> {
    let (value, rest) = strtoull(text).map_err(|_| MemmapError::Syntax { at })?;
    let code = u32::try_from(value).map_err(|_| MemmapError::Overflow { at })?;
    Ok((Some(Kind::from_raw(code)).filter(|k| !k.is_void()), rest))
}

/// The items of a kernel command line's `memmap=` and `mem=` options, in
/// order, each with its byte offset in `cmdline`.
pub fn parse_cmdline(cmdline: &str) -> impl Iterator<Item = Result<MemmapOp, MemmapError>> + '_ {
    let base = cmdline.as_ptr() as usize;
    cmdline.split_ascii_whitespace().flat_map(move |word| {
        let (value, is_mem) = match (word.strip_prefix("memmap="), word.strip_prefix("mem=")) {
            (Some(v), _) => (Some(v), false),
            (None, Some(v)) => (Some(v), true),
            (None, None) => (None, false),
        };
        value
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(move |item| {
                // `item` is a sub-slice of `cmdline`, so this is its offset.
                let at = (item.as_ptr() as usize).wrapping_sub(base);
                if is_mem {
                    // `mem=` takes one size (and `nopentium`, 32-bit only).
                    match memparse(item) {
                        Ok((0, "")) => Err(MemmapError::ZeroLimit { at }),
                        Ok((size, "")) => Ok(MemmapOp::Limit(size)),
                        Ok(_) | Err(false) => Err(MemmapError::Syntax { at }),
                        Err(true) => Err(MemmapError::Overflow { at }),
                    }
                } else {
                    parse_item(item, at)
                }
            })
    })
}

impl<const N: usize> MemoryMap<N> {
    /// Applies the `memmap=` and `mem=` options of a kernel command line, as
    /// Linux does before it prints its `user:` map. All options are parsed
    /// before anything changes; on error the map is unchanged. Returns the
    /// number of items applied.
    pub fn apply_cmdline(&mut self, cmdline: &str) -> Result<usize, MemmapError> {
        for op in parse_cmdline(cmdline) {
            op?;
        }
        self.apply_memmap(parse_cmdline(cmdline).flatten())
            .map_err(MemmapError::Capacity)
    }

    /// Applies parsed items: each edits the raw table (adds append, updates and
    /// removes cut entries), and the result is sanitized once at the end.
    pub fn apply_memmap(
        &mut self,
        ops: impl IntoIterator<Item = MemmapOp>,
    ) -> Result<usize, CapacityError> {
        let mut raw = self.clone();
        let mut count = 0;
        for op in ops {
            match op {
                MemmapOp::ExactMap => raw = Self::new(),
                MemmapOp::Limit(limit) => {
                    raw.raw_cut(limit..u64::MAX, Some(Kind::Ram), None)?;
                }
                MemmapOp::Add(entry) => raw.push_raw(entry)?,
                MemmapOp::Update { range, from, to } => {
                    if from != to {
                        raw.raw_cut(range, Some(from), Some(to))?;
                    }
                }
                MemmapOp::Remove { range, only } => {
                    raw.raw_cut(range, only, None)?;
                }
            }
            count += 1;
        }
        raw.sanitize()?;
        *self = raw;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(start: u64, end: u64, kind: Kind) -> Entry {
        Entry::new(start, end, kind).unwrap()
    }

    const G: u64 = 1 << 30;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            parse_item("4G!12G", 0),
            Ok(MemmapOp::Add(e(12 * G, 16 * G, Kind::Pram)))
        );
        assert_eq!(
            parse_item("0x1000@0", 0),
            Ok(MemmapOp::Add(e(0, 0x1000, Kind::Ram)))
        );
        assert_eq!(
            parse_item("64k#010", 0),
            Ok(MemmapOp::Add(e(8, 8 + 65536, Kind::Acpi)))
        );
        assert_eq!(
            parse_item("1m$1g", 0),
            Ok(MemmapOp::Add(e(G, G + (1 << 20), Kind::Reserved)))
        );
        assert_eq!(parse_item("2G", 0), Ok(MemmapOp::Limit(2 * G)));
        assert_eq!(parse_item("exactmap", 0), Ok(MemmapOp::ExactMap));
        assert_eq!(
            parse_item("1G%4G-1+12", 0),
            Ok(MemmapOp::Update {
                range: 4 * G..5 * G,
                from: Kind::Ram,
                to: Kind::Pram
            })
        );
        assert_eq!(
            parse_item("1G%4G+7", 0),
            Ok(MemmapOp::Add(e(4 * G, 5 * G, Kind::Pmem)))
        );
        assert_eq!(
            parse_item("1G%4G-2", 0),
            Ok(MemmapOp::Remove {
                range: 4 * G..5 * G,
                only: Some(Kind::Reserved)
            })
        );
        assert_eq!(
            parse_item("1G%4G", 0),
            Ok(MemmapOp::Remove {
                range: 4 * G..5 * G,
                only: None
            })
        );
        for bad in [
            "", "G", "4G!", "4G!x", "4G?1G", "4G!12Gx", "1G%4G-", "1G%4G+1x",
        ] {
            assert_eq!(
                parse_item(bad, 3),
                Err(MemmapError::Syntax { at: 3 }),
                "{bad:?}"
            );
        }
        assert_eq!(parse_item("16E", 0), Err(MemmapError::Overflow { at: 0 }));
        // A multi-byte character where the operator belongs (found by fuzzing).
        assert_eq!(parse_item("27É%5", 0), Err(MemmapError::Syntax { at: 0 }));
        assert_eq!(parse_item("0", 0), Err(MemmapError::ZeroLimit { at: 0 }));
        assert!(matches!(
            parse_item("2!0xffffffffffffffff", 0),
            Err(MemmapError::Range { .. })
        ));
    }

    #[test]
    fn applies_a_command_line_like_linux() {
        let mut map = MemoryMap::<16>::from_entries([
            e(0, 0x9fc00, Kind::Ram),
            e(0x9fc00, 0xa0000, Kind::Reserved),
            e(0x10_0000, 3 * G, Kind::Ram),
            e(4 * G, 20 * G, Kind::Ram),
        ])
        .unwrap();
        let n = map
            .apply_cmdline(
                "BOOT_IMAGE=/vmlinuz root=/dev/sda1 memmap=4G!12G,16M$0x1000000 quiet mem=18G",
            )
            .unwrap();
        assert_eq!(n, 3);
        let got: Vec<_> = map.iter().map(|x| (x.start(), x.end(), x.kind())).collect();
        assert_eq!(
            got,
            [
                (0, 0x9fc00, Kind::Ram),
                (0x9fc00, 0xa0000, Kind::Reserved),
                (0x10_0000, 0x100_0000, Kind::Ram),
                (0x100_0000, 0x200_0000, Kind::Reserved),
                (0x200_0000, 3 * G, Kind::Ram),
                (4 * G, 12 * G, Kind::Ram),
                (12 * G, 16 * G, Kind::Pram),
                (16 * G, 18 * G, Kind::Ram),
            ]
        );
    }

    #[test]
    fn raw_semantics_remove_only_the_hidden_entry() {
        // `memmap=1G$4G,1G%4G-2`: the reserved range is added over RAM, then
        // removed again; the RAM beneath it survives, as in Linux.
        let mut map = MemoryMap::<8>::from_entries([e(0, 8 * G, Kind::Ram)]).unwrap();
        map.apply_cmdline("memmap=1G$4G,1G%4G-2").unwrap();
        assert_eq!(map.entries(), [e(0, 8 * G, Kind::Ram)]);
    }

    #[test]
    fn overlapping_raw_ranges_larger_than_the_address_space_are_fine() {
        // Three nearly 2^64-byte ranges added and then removed: the raw table
        // counts more than 2^64 bytes cut (found by fuzzing).
        let mut map = MemoryMap::<8>::new();
        let n = map
            .apply_cmdline("memmap=0xfffffffffffff000$0,0xfffffffffffff000#0,0xfffffffffffff000!0,0xfffffffffffff000%0")
            .unwrap();
        assert_eq!(n, 4);
        assert!(map.is_empty());
    }

    #[test]
    fn errors_leave_the_map_unchanged() {
        let mut map = MemoryMap::<8>::from_entries([e(0, 8 * G, Kind::Ram)]).unwrap();
        let before = map.clone();
        let err = map.apply_cmdline("memmap=4G!4G memmap=1Q").unwrap_err();
        assert_eq!(err, MemmapError::Syntax { at: 20 });
        assert_eq!(map, before);
        assert_eq!(
            map.apply_cmdline("mem=0"),
            Err(MemmapError::ZeroLimit { at: 4 })
        );
        assert_eq!(
            map.apply_cmdline("mem=1x"),
            Err(MemmapError::Syntax { at: 4 })
        );
    }
}
