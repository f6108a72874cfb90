//! Xen's error numbers as the ABI returns them: `-errno` in RAX.
//!
//! The numbers are frozen: guests compare against them. Each value below was
//! checked against `xen/include/public/errno.h` (the `XEN_ERRNO(name, value)`
//! list, which matches Linux's asm-generic numbers).

use core::fmt;

/// Errors with Xen's frozen numbers. A hypercall returns one as
/// `-(code)` in RAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Errno {
    /// `EPERM` (1): the caller may not do this (another domain's memory, a
    /// privileged command, a call from user mode).
    Perm = 1,
    /// `ESRCH` (3): no such domain.
    Srch = 3,
    /// `ENOMEM` (12): no memory to satisfy the request.
    NoMem = 12,
    /// `EFAULT` (14): a guest address could not be read or written.
    Fault = 14,
    /// `EINVAL` (22): a malformed argument.
    Inval = 22,
    /// `ENOSYS` (38): no such hypercall or command.
    NoSys = 38,
}

/// The largest magnitude of an error return. Xen (`xen/include/xen/err.h`,
/// `MAX_ERRNO`) and Linux treat the last 4095 values of the unsigned word as
/// errors, so a guest can tell a count from an error without knowing every
/// error number.
pub const MAX_ERRNO: u64 = 4095;

impl Errno {
    /// Every variant, in numeric order.
    pub const ALL: [Self; 6] = [
        Self::Perm,
        Self::Srch,
        Self::NoMem,
        Self::Fault,
        Self::Inval,
        Self::NoSys,
    ];

    /// The positive error number.
    #[must_use]
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The value a hypercall returns in RAX: `-(code)` as a 64-bit word.
    #[must_use]
    pub const fn to_return(self) -> u64 {
        (self as u64).wrapping_neg()
    }

    /// The error with number `code`, if this crate knows it.
    #[must_use]
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(Self::Perm),
            3 => Some(Self::Srch),
            12 => Some(Self::NoMem),
            14 => Some(Self::Fault),
            22 => Some(Self::Inval),
            38 => Some(Self::NoSys),
            _ => None,
        }
    }

    /// Xen's name for the error (`"EINVAL"`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Perm => "EPERM",
            Self::Srch => "ESRCH",
            Self::NoMem => "ENOMEM",
            Self::Fault => "EFAULT",
            Self::Inval => "EINVAL",
            Self::NoSys => "ENOSYS",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Perm => "operation not permitted",
            Self::Srch => "no such domain",
            Self::NoMem => "out of memory",
            Self::Fault => "bad guest address",
            Self::Inval => "invalid argument",
            Self::NoSys => "function not implemented",
        }
    }
}

/// The error number in a hypercall's return value, if the value is one:
/// `Some(code)` for the last [`MAX_ERRNO`] values of the word.
#[must_use]
pub const fn error_code(ret: u64) -> Option<u64> {
    let magnitude = ret.wrapping_neg();
    if magnitude != 0 && magnitude <= MAX_ERRNO {
        Some(magnitude)
    } else {
        None
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code(), self.describe())
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        let numbers: [(Errno, u16); 6] = [
            (Errno::Perm, 1),
            (Errno::Srch, 3),
            (Errno::NoMem, 12),
            (Errno::Fault, 14),
            (Errno::Inval, 22),
            (Errno::NoSys, 38),
        ];
        for (e, n) in numbers {
            assert_eq!(e.code(), n);
            assert_eq!(Errno::from_code(u64::from(n)), Some(e));
            assert_eq!(e.to_return() as i64, -i64::from(n));
            assert_eq!(error_code(e.to_return()), Some(u64::from(n)));
        }
        assert_eq!(Errno::ALL.map(|e| e.code()), numbers.map(|(_, n)| n));
    }

    #[test]
    fn counts_are_not_errors() {
        assert_eq!(error_code(0), None);
        assert_eq!(error_code(1 << 20), None);
        assert_eq!(error_code(u64::MAX - 4095), None, "-4096 is a count");
        assert_eq!(error_code(u64::MAX - 4094), Some(4095));
        assert_eq!(error_code(u64::MAX), Some(1));
        assert_eq!(Errno::from_code(2), None);
    }

    #[test]
    fn display_names_the_error() {
        assert_eq!(Errno::Inval.to_string(), "EINVAL (22): invalid argument");
    }
}
