//! Why a file is not a VM configuration, and where.

use core::fmt;

use nvirt_e820::SynthError;

/// Why a file is not a VM configuration, with the 1-based line it
/// happened on (none for a key missing from the whole file).
///
/// `Display` prints `line 3: unknown key "vcpu"`; [`ParseError::in_file`]
/// prints `a.cfg:3: unknown key "vcpu"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError<'a> {
    /// The 1-based line, or `None` when the error is about the whole file.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ErrorKind<'a>,
}

/// What is wrong with a configuration file. Borrowed text is the file's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind<'a> {
    /// A setting must start with a key (`[A-Za-z_][A-Za-z0-9_]*`).
    ExpectedKey,
    /// The key is not followed by `=`.
    ExpectedEquals {
        /// The key.
        key: &'a str,
    },
    /// Nothing after `=` on the line.
    MissingValue {
        /// The key.
        key: &'a str,
    },
    /// An unquoted value that is not a number.
    BareWord {
        /// The key.
        key: &'a str,
        /// The value as written.
        word: &'a str,
    },
    /// A quoted string without its closing quote on the same line.
    UnterminatedString {
        /// The key.
        key: &'a str,
    },
    /// A backslash in a string: escapes are not part of the accepted subset.
    Escape {
        /// The key.
        key: &'a str,
    },
    /// A `[ … ]` list: no key of the accepted subset takes one.
    List {
        /// The key.
        key: &'a str,
    },
    /// More text after the value before the end of the setting.
    TrailingText {
        /// The key.
        key: &'a str,
    },
    /// A key this parser does not know.
    UnknownKey {
        /// The key.
        key: &'a str,
    },
    /// A key set twice; the error's line is the second setting.
    Duplicate {
        /// The key.
        key: &'static str,
        /// The line of the first setting.
        first: usize,
    },
    /// A number where the key takes a quoted string.
    NotAString {
        /// The key.
        key: &'static str,
    },
    /// A value that is not a number xl would read (decimal, `0` octal,
    /// `0x` hex) or does not fit in 64 bits.
    BadNumber {
        /// The key.
        key: &'static str,
        /// The value as written.
        text: &'a str,
    },
    /// `name` must be 1 to 32 characters of `A-Z a-z 0-9 _ . -`.
    BadName {
        /// The name as written.
        name: &'a str,
    },
    /// `uuid` must be 32 hex digits in the groups 8-4-4-4-12.
    BadUuid {
        /// The value as written.
        text: &'a str,
    },
    /// `memory = 0`.
    ZeroMemory,
    /// A size above [`crate::MAX_MIB`].
    TooLarge {
        /// The key.
        key: &'static str,
        /// The size in MiB.
        mib: u64,
    },
    /// A size that is not a multiple of 2 MiB (the hypervisor maps and
    /// balloons guest memory in 2 MiB blocks).
    Unaligned {
        /// The key.
        key: &'static str,
        /// The size in MiB.
        mib: u64,
    },
    /// `nvram_type` must be 7, 12 or 90.
    BadNvramType {
        /// The value.
        value: u64,
    },
    /// `nvram_populate` must be `"eager"` or `"touch"`.
    BadPopulate {
        /// The value as written.
        text: &'a str,
    },
    /// `on_poweroff` must be `"preserve"` or `"destroy"` (xl's restart
    /// actions have no meaning for this hypervisor).
    BadOnPoweroff {
        /// The value as written.
        text: &'a str,
    },
    /// An empty path.
    EmptyPath {
        /// The key.
        key: &'static str,
    },
    /// `nvram_target` above `nvram`.
    TargetAboveNvram {
        /// The target in MiB.
        target_mib: u64,
        /// The NVRAM in MiB.
        nvram_mib: u64,
    },
    /// `nvram_file` for a VM without NVRAM.
    FileWithoutNvram,
    /// `ramdisk` or `cmdline` without `kernel`: the test guest takes neither.
    NeedsKernel {
        /// The key.
        key: &'static str,
    },
    /// The sizes give no guest memory map (`nvirt_e820::GuestLayout`).
    Layout(SynthError),
    /// A required key is not in the file.
    Missing {
        /// The key.
        key: &'static str,
    },
}

impl<'a> ParseError<'a> {
    /// An error at 1-based `line`.
    #[must_use]
    pub const fn at(line: usize, kind: ErrorKind<'a>) -> Self {
        Self {
            line: Some(line),
            kind,
        }
    }

    /// Prints the error after a file name: `a.cfg:3: unknown key "vcpu"`,
    /// or `a.cfg: missing required key "name"`.
    #[must_use]
    pub const fn in_file<'e>(&'e self, file: &'e str) -> InFile<'e, 'a> {
        InFile { file, error: self }
    }
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl core::error::Error for ParseError<'_> {}

/// A [`ParseError`] with its file's name, from [`ParseError::in_file`].
#[derive(Clone, Copy, Debug)]
pub struct InFile<'e, 'a> {
    file: &'e str,
    error: &'e ParseError<'a>,
}

impl fmt::Display for InFile<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.error.kind),
            None => write!(f, "{}: {}", self.file, self.error.kind),
        }
    }
}

impl fmt::Display for ErrorKind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ExpectedKey => f.write_str("expected a setting KEY = VALUE"),
            Self::ExpectedEquals { key } => write!(f, "expected \"=\" after {key:?}"),
            Self::MissingValue { key } => write!(f, "{key:?} has no value"),
            Self::BareWord { key, word } => write!(
                f,
                "value {word:?} of {key:?} must be a quoted string or a number"
            ),
            Self::UnterminatedString { key } => {
                write!(f, "the string of {key:?} does not end on its line")
            }
            Self::Escape { key } => write!(
                f,
                "the string of {key:?} holds a backslash: escapes are not supported"
            ),
            Self::List { key } => write!(f, "{key:?} does not take a list"),
            Self::TrailingText { key } => {
                write!(
                    f,
                    "text after the value of {key:?} (separate settings with a newline or \";\")"
                )
            }
            Self::UnknownKey { key } => write!(f, "unknown key {key:?}"),
            Self::Duplicate { key, first } => {
                write!(f, "duplicate key {key:?} (first set on line {first})")
            }
            Self::NotAString { key } => write!(f, "{key:?} takes a quoted string"),
            Self::BadNumber { key, text } => write!(
                f,
                "{text:?} is not a number for {key:?} (decimal, 0x hex or 0 octal, 64 bits)"
            ),
            Self::BadName { name } => write!(
                f,
                "name {name:?} must be 1 to {} characters of A-Z a-z 0-9 _ . -",
                crate::MAX_NAME
            ),
            Self::BadUuid { text } => write!(
                f,
                "uuid {text:?} is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits)"
            ),
            Self::ZeroMemory => f.write_str("memory must be above 0 MiB"),
            Self::TooLarge { key, mib } => {
                write!(
                    f,
                    "{key} of {mib} MiB is above the limit of {} MiB",
                    crate::MAX_MIB
                )
            }
            Self::Unaligned { key, mib } => {
                write!(f, "{key} of {mib} MiB is not a multiple of 2 MiB")
            }
            Self::BadNvramType { value } => {
                write!(f, "nvram_type {value} must be 7, 12 or 90")
            }
            Self::BadPopulate { text } => {
                write!(f, "nvram_populate {text:?} must be \"eager\" or \"touch\"")
            }
            Self::BadOnPoweroff { text } => write!(
                f,
                "on_poweroff {text:?} must be \"preserve\" or \"destroy\""
            ),
            Self::EmptyPath { key } => write!(f, "{key:?} is an empty path"),
            Self::TargetAboveNvram {
                target_mib,
                nvram_mib,
            } => write!(
                f,
                "nvram_target of {target_mib} MiB is above nvram of {nvram_mib} MiB"
            ),
            Self::FileWithoutNvram => f.write_str("nvram_file given for a VM without nvram"),
            Self::NeedsKernel { key } => write!(
                f,
                "{key:?} needs \"kernel\" (the test guest takes no {key})"
            ),
            Self::Layout(e) => write!(f, "no guest memory map for these sizes: {e}"),
            Self::Missing { key } => write!(f, "missing required key {key:?}"),
        }
    }
}

/// Why several configurations cannot run together; the indices are
/// positions in the slice given to [`crate::check_set`], `first < second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetError<'a> {
    /// Two VMs with one name.
    DuplicateName {
        /// The name.
        name: &'a str,
        /// The first VM's index.
        first: usize,
        /// The second VM's index.
        second: usize,
    },
    /// Two VMs with one domain id ([`crate::VmConfig::domain_id`]).
    DuplicateId {
        /// The id.
        id: u128,
        /// The first VM's index.
        first: usize,
        /// The second VM's index.
        second: usize,
    },
    /// Two VMs paging out to one `nvram_file` (compared as given).
    DuplicateNvramFile {
        /// The path.
        path: &'a str,
        /// The first VM's index.
        first: usize,
        /// The second VM's index.
        second: usize,
    },
}

impl SetError<'_> {
    /// The indices of the two VMs, `first < second`.
    #[must_use]
    pub const fn indices(&self) -> (usize, usize) {
        match *self {
            Self::DuplicateName { first, second, .. }
            | Self::DuplicateId { first, second, .. }
            | Self::DuplicateNvramFile { first, second, .. } => (first, second),
        }
    }

    /// Prints the error with the two VMs' file names:
    /// `b.cfg: name "a" is also the name in a.cfg`.
    #[must_use]
    pub const fn in_files<'e>(&'e self, first: &'e str, second: &'e str) -> InFiles<'e> {
        InFiles {
            error: self,
            first,
            second,
        }
    }
}

impl fmt::Display for SetError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (first, second) = self.indices();
        write!(f, "VM {second}: ")?;
        self.what(f)?;
        write!(f, " VM {first}")
    }
}

impl SetError<'_> {
    fn what(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::DuplicateName { name, .. } => write!(f, "name {name:?} is also the name of"),
            Self::DuplicateId { id, .. } => {
                write!(f, "domain id {} is also the id of", crate::Uuid(id))
            }
            Self::DuplicateNvramFile { path, .. } => {
                write!(f, "nvram_file {path:?} is also the nvram_file of")
            }
        }
    }
}

impl core::error::Error for SetError<'_> {}

/// A [`SetError`] with its VMs' file names, from [`SetError::in_files`].
#[derive(Clone, Copy, Debug)]
pub struct InFiles<'e> {
    error: &'e SetError<'e>,
    first: &'e str,
    second: &'e str,
}

impl fmt::Display for InFiles<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.second)?;
        self.error.what(f)?;
        write!(f, " {}", self.first)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn messages_name_file_and_line() {
        let e = ParseError::at(3, ErrorKind::UnknownKey { key: "vcpu" });
        assert_eq!(e.to_string(), "line 3: unknown key \"vcpu\"");
        assert_eq!(
            e.in_file("a.cfg").to_string(),
            "a.cfg:3: unknown key \"vcpu\""
        );
        let e = ParseError::at(
            5,
            ErrorKind::Duplicate {
                key: "memory",
                first: 2,
            },
        );
        assert_eq!(
            e.in_file("b.cfg").to_string(),
            "b.cfg:5: duplicate key \"memory\" (first set on line 2)"
        );
        let e = ParseError {
            line: None,
            kind: ErrorKind::Missing { key: "name" },
        };
        assert_eq!(
            e.in_file("c.cfg").to_string(),
            "c.cfg: missing required key \"name\""
        );
        let s = SetError::DuplicateName {
            name: "a",
            first: 0,
            second: 2,
        };
        assert_eq!(s.to_string(), "VM 2: name \"a\" is also the name of VM 0");
        assert_eq!(
            s.in_files("a.cfg", "c.cfg").to_string(),
            "c.cfg: name \"a\" is also the name of a.cfg"
        );
        assert_eq!(s.indices(), (0, 2));
    }
}
