//! What a mapping allows and how memory behind it is cached, independent of
//! the entry format that encodes it.

use core::fmt;

bitflags::bitflags! {
    /// Access a guest is given to a page. Not the hardware bit layout: each
    /// [`Format`](crate::Format) encodes these in its own entry bits and
    /// rejects combinations it cannot express.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Perms: u8 {
        /// Data reads (and guest page-walk reads).
        const READ = 1 << 0;
        /// Data writes.
        const WRITE = 1 << 1;
        /// Instruction fetches; with EPT mode-based execute control, fetches
        /// from supervisor-mode linear addresses only.
        const EXECUTE = 1 << 2;
        /// EPT mode-based execute control only: fetches from user-mode
        /// linear addresses (SDM Vol. 3C, 29.3.3.2). Ignored by processors
        /// without that control enabled; NPT cannot express it.
        const USER_EXECUTE = 1 << 3;
    }
}

impl Perms {
    /// Read and write.
    pub const RW: Self = Self::READ.union(Self::WRITE);
    /// Execute in every mode: supervisor and user.
    pub const X: Self = Self::EXECUTE.union(Self::USER_EXECUTE);
    /// Read and execute (in every mode).
    pub const RX: Self = Self::READ.union(Self::X);
    /// Read, write and execute (in every mode).
    pub const RWX: Self = Self::RW.union(Self::X);
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |p: Self, c: char| if self.contains(p) { c } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            flag(Self::READ, 'r'),
            flag(Self::WRITE, 'w'),
            flag(Self::EXECUTE, 'x'),
            flag(Self::USER_EXECUTE, 'u')
        )
    }
}

/// A memory type. The discriminants are the architectural encodings shared
/// by EPT leaf entries (bits 5:3), MTRRs and the PAT: 0 UC, 1 WC, 4 WT,
/// 5 WP, 6 WB; 2, 3 and 7 are reserved in EPT entries and cause an EPT
/// misconfiguration (SDM Vol. 3C, 29.3.3.1 and 29.3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MemType {
    /// Uncacheable.
    Uc = 0,
    /// Write-combining.
    Wc = 1,
    /// Write-through.
    Wt = 4,
    /// Write-protected.
    Wp = 5,
    /// Write-back: ordinary RAM and NVRAM.
    Wb = 6,
}

impl MemType {
    /// Every type.
    pub const ALL: [Self; 5] = [Self::Uc, Self::Wc, Self::Wt, Self::Wp, Self::Wb];

    /// The architectural encoding.
    #[must_use]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The type with encoding `code`, if it is one of the five.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Uc),
            1 => Some(Self::Wc),
            4 => Some(Self::Wt),
            5 => Some(Self::Wp),
            6 => Some(Self::Wb),
            _ => None,
        }
    }
}

impl fmt::Display for MemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Uc => "UC",
            Self::Wc => "WC",
            Self::Wt => "WT",
            Self::Wp => "WP",
            Self::Wb => "WB",
        })
    }
}

/// Permissions and memory type of a mapping: what two neighbouring pages
/// must share to be merged into a larger page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Access allowed.
    pub perms: Perms,
    /// Memory type.
    pub mem: MemType,
}

impl Attrs {
    /// Attributes `perms` and `mem`.
    #[must_use]
    pub const fn new(perms: Perms, mem: MemType) -> Self {
        Self { perms, mem }
    }
}

impl fmt::Display for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.perms, self.mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_type_codes_round_trip() {
        for t in MemType::ALL {
            assert_eq!(MemType::from_code(t.code()), Some(t));
        }
        for reserved in [2, 3, 7, 8, 255] {
            assert_eq!(MemType::from_code(reserved), None);
        }
    }

    #[test]
    fn display() {
        assert_eq!(Perms::RW.to_string(), "rw--");
        assert_eq!(Attrs::new(Perms::RWX, MemType::Wb).to_string(), "rwxu WB");
    }
}
