//! Whether memory keeps its content without power.

use core::fmt;

/// The two kinds of memory nvirt keeps apart: every heap, pool, region and
/// request says which it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemKind {
    /// Ordinary RAM, lost at power-off.
    Volatile,
    /// NVRAM (NVDIMM, persistent memory): survives power loss.
    NonVolatile,
}

impl fmt::Display for MemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Volatile => "volatile",
            Self::NonVolatile => "non-volatile",
        })
    }
}
