//! The one error of the vocabulary: a number outside the space of its type.

use core::fmt;

/// A value that names no address, frame or order of the type asked for.
///
/// Returned by the `TryFrom<u64>` conversions; the `new` constructors
/// return `None` for the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// What was being built (`"guest-physical address"`, `"order"`, ...).
    pub what: &'static str,
    /// The value given.
    pub value: u64,
    /// One past the largest value the type holds.
    pub limit: u64,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:#x} out of range (must be below {:#x})",
            self.what, self.value, self.limit
        )
    }
}

impl core::error::Error for OutOfRange {}
